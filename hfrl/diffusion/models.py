"""The diffusion models' network and what defines them: the U-Net, its noise schedule, pixel ranges, model kinds and checkpoints (see :mod:`hfrl.diffusion`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from hfrl.errors import ConfigError

DEFAULT_TRAIN_TIMESTEPS = 1000
DEFAULT_INFERENCE_STEPS = 25
"""DDIM with 25 steps is where sample quality of the small model levels off (see ``scripts/train_ddpm.py``)."""
SCHEDULE_KINDS = ("linear", "cosine")


# ---------------------------------------------------------------------------------------------------------
# Pixel range


def to_model_space(images: torch.Tensor) -> torch.Tensor:
    """Images ``(B, 1, H, W)`` in ``[0, 1]`` to the model's ``[-1, 1]``."""
    return images * 2.0 - 1.0


def to_images(x: torch.Tensor) -> torch.Tensor:
    """Model-space samples ``(B, 1, H, W)`` to images in ``[0, 1]`` (clamped)."""
    return ((x + 1.0) * 0.5).clamp(0.0, 1.0)


# ---------------------------------------------------------------------------------------------------------
# The forward process


@dataclass(frozen=True)
class NoiseSchedule:
    """The forward process ``q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)`` (Ho et al. 2020, eq. 4).

    Attributes:
        num_train_timesteps: ``T``, the number of training timesteps (default 1000).
        beta_start: ``beta_0`` of the linear schedule (default 1e-4, Ho et al.).
        beta_end: ``beta_{T-1}`` of the linear schedule (default 0.02, Ho et al.).
        kind: ``"linear"`` (Ho et al.) or ``"cosine"`` (Nichol & Dhariwal 2021; ``beta_start``/``beta_end``
            unused).
    """

    num_train_timesteps: int = DEFAULT_TRAIN_TIMESTEPS
    beta_start: float = 1e-4
    beta_end: float = 0.02
    kind: str = "linear"

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ConfigError(
                f"unknown noise schedule {self.kind!r}; expected one of {', '.join(SCHEDULE_KINDS)}"
            )
        if self.num_train_timesteps < 2:
            raise ConfigError(f"num_train_timesteps must be at least 2, got {self.num_train_timesteps}")
        if not 0.0 < self.beta_start <= self.beta_end < 1.0:
            raise ConfigError(f"need 0 < beta_start <= beta_end < 1, got {self.beta_start}, {self.beta_end}")

    def betas(self) -> torch.Tensor:
        """``(T,)`` float64 ``beta_t``."""
        steps = self.num_train_timesteps
        if self.kind == "linear":
            return torch.linspace(self.beta_start, self.beta_end, steps, dtype=torch.float64)
        s = 0.008  # Nichol & Dhariwal's offset, so beta_0 is not tiny
        x = torch.linspace(0, steps, steps + 1, dtype=torch.float64)
        f = torch.cos(((x / steps) + s) / (1 + s) * math.pi / 2) ** 2
        return (1 - f[1:] / f[:-1]).clamp(max=0.999)

    def alphas_cumprod(self) -> torch.Tensor:
        """``(T,)`` float64 ``abar_t = prod_{s <= t} (1 - beta_s)``."""
        return torch.cumprod(1.0 - self.betas(), dim=0)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Draw ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise``.

        Args:
            x0: ``(B, C, H, W)`` clean samples in model space.
            noise: ``(B, C, H, W)`` standard normal noise.
            timesteps: ``(B,)`` int64 timesteps in ``[0, T)``.
        """
        abar = self.alphas_cumprod().to(device=x0.device, dtype=x0.dtype)[timesteps].view(-1, 1, 1, 1)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise  # (B, C, H, W)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------
# The noise-prediction model


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet2D`.

    Attributes:
        image_size: ``(H, W)``; each must be divisible by ``2 ** (len(width_mults) - 1)``.
        in_channels: Image channels (1 for grey digits).
        base_width: Channels at full resolution (default 16).
        width_mults: Channel multiplier per resolution; the default ``(1, 2, 4)`` gives 28 -> 14 -> 7 pixels
            with 16, 32, 64 channels. Most of the cost is at full resolution, so width goes where it is cheap
            (doubling ``base_width`` roughly quadruples the cost of a step).
        blocks_per_level: Residual blocks per resolution on the way down (one more on the way up).
        attention: One self-attention layer in the middle (at the lowest resolution, 7x7: 49 tokens, cheap).
        time_dim: Width of the timestep embedding.
        groups: Group-norm groups (at most the channel count).
        dropout: Dropout inside residual blocks.
    """

    image_size: tuple[int, int] = field(default=(28, 28))
    in_channels: int = 1
    base_width: int = 16
    width_mults: tuple[int, ...] = (1, 2, 4)
    blocks_per_level: int = 1
    attention: bool = True
    time_dim: int = 128
    groups: int = 8
    dropout: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "width_mults", tuple(int(v) for v in self.width_mults))
        if self.base_width < 1 or self.blocks_per_level < 1 or not self.width_mults:
            raise ConfigError(
                "UNet base_width, blocks_per_level and width_mults must be positive and non-empty"
            )
        factor = 2 ** (len(self.width_mults) - 1)
        if any(v % factor for v in self.image_size):
            raise ConfigError(
                f"UNet with {len(self.width_mults)} resolutions needs H and W divisible by {factor}, "
                f"got {self.image_size}"
            )


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps (Vaswani et al. 2017; Ho et al. 2020).

    Args:
        timesteps: ``(B,)`` timesteps.
        dim: Embedding width (even).
        max_period: Longest wavelength.

    Returns:
        ``(B, dim)`` float32.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=timesteps.device) / half)  # (half,)
    args = timesteps.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)  # (B, dim)


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with group norm and SiLU, the time embedding added in between, and a skip.

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        time_dim: Width of the time embedding (0: no time input).
        groups: Group-norm groups.
        dropout: Dropout before the second convolution.
    """

    def __init__(self, in_ch: int, out_ch: int, time_dim: int, groups: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = _norm(in_ch, groups)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time = nn.Linear(time_dim, out_ch) if time_dim > 0 else None
        self.norm2 = _norm(out_ch, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stable early training
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, in_ch, H, W)`` and ``(B, time_dim)`` to ``(B, out_ch, H, W)``."""
        h = self.conv1(F.silu(self.norm1(x)))  # (B, out, H, W)
        if self.time is not None and temb is not None:
            h = h + self.time(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Single-head self-attention over the pixels of a feature map, with a residual connection."""

    def __init__(self, channels: int, groups: int = 8) -> None:
        super().__init__()
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` to ``(B, C, H, W)``."""
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)  # each (B, C, HW)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        )  # (B, HW, C)
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


class UNet2D(nn.Module):
    """Noise predictor ``eps_theta(x_t, t)`` for small grey images (Ho et al. 2020, simplified).

    Down path: a residual block per level, then a stride-2 convolution; middle: residual block,
    self-attention, residual block; up path mirrors the down path with skip connections and
    nearest-neighbour upsampling. Every residual block gets the sinusoidal timestep embedding through an
    MLP. The default (16/32/64 channels at 28/14/7 pixels) has 0.68 M parameters (2.7 MB in float32).

    Args:
        config: The architecture.
        schedule: The forward process the model is (to be) trained with; kept with the model so a checkpoint
            says how to sample from it.

    Attributes:
        kind: ``"ddpm"``: the model predicts noise (:class:`hfrl.flow.FlowUNet2D`, the same network
            predicting a rectified flow's velocity, has ``"flow"``). Losses, samplers and checkpoints follow it.
    """

    kind: ClassVar[str] = "ddpm"

    def __init__(self, config: UNetConfig, schedule: NoiseSchedule | None = None) -> None:
        super().__init__()
        self.config = config
        self.schedule = schedule or NoiseSchedule()
        c, g, td = config.base_width, config.groups, config.time_dim
        widths = [c * m for m in config.width_mults]
        self.time_mlp = nn.Sequential(nn.Linear(c, td), nn.SiLU(), nn.Linear(td, td))
        self.conv_in = nn.Conv2d(config.in_channels, c, 3, padding=1)

        self.down = nn.ModuleList()
        skip_widths = [c]
        ch = c
        for level, width in enumerate(widths):
            for _ in range(config.blocks_per_level):
                self.down.append(ResBlock(ch, width, td, g, config.dropout))
                ch = width
                skip_widths.append(ch)
            if level < len(widths) - 1:
                self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skip_widths.append(ch)

        self.mid1 = ResBlock(ch, ch, td, g, config.dropout)
        self.mid_attn = SelfAttention(ch, g) if config.attention else nn.Identity()
        self.mid2 = ResBlock(ch, ch, td, g, config.dropout)

        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            for _ in range(config.blocks_per_level + 1):
                self.up.append(ResBlock(ch + skip_widths.pop(), width, td, g, config.dropout))
                ch = width
            if level > 0:
                self.up.append(
                    nn.Sequential(
                        nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)
                    )
                )

        self.norm_out = _norm(ch, g)
        self.conv_out = nn.Conv2d(ch, config.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | int) -> torch.Tensor:
        """Predict the noise in ``x``.

        Args:
            x: ``(B, C, H, W)`` noisy samples in model space.
            timesteps: ``(B,)`` timesteps, or one int for the whole batch.

        Returns:
            ``(B, C, H, W)`` predicted noise.
        """
        t = torch.as_tensor(timesteps, device=x.device).reshape(-1).expand(x.shape[0])
        temb = self.time_mlp(timestep_embedding(t, self.config.base_width))  # (B, time_dim)
        h = self.conv_in(x)  # (B, c, H, W)
        skips = [h]
        for layer in self.down:
            h = layer(h, temb) if isinstance(layer, ResBlock) else layer(h)
            skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)  # (B, c_low, H_low, W_low)
        for layer in self.up:
            h = layer(torch.cat([h, skips.pop()], dim=1), temb) if isinstance(layer, ResBlock) else layer(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, C, H, W)

    def config_dict(self) -> dict[str, Any]:
        """The checkpoint config: ``{"unet": ..., "schedule": ...}`` (see :func:`build_ddpm`)."""
        return {"unet": asdict(self.config), "schedule": self.schedule.to_dict()}


def build_ddpm(config: dict[str, Any]) -> UNet2D:
    """Build an untrained :class:`UNet2D` from a checkpoint config (the ``ddpm`` checkpoint kind).

    Args:
        config: ``{"unet": UNetConfig fields, "schedule": NoiseSchedule fields}``; either may be omitted for
            the defaults.
    """
    unknown = set(config) - {"unet", "schedule"}
    if unknown:
        raise ValueError(f"unknown DDPM config keys {sorted(unknown)}")
    return UNet2D(UNetConfig(**config.get("unet", {})), NoiseSchedule(**config.get("schedule", {})))


DDPM_KIND = "ddpm"
DDPM_SEVENS = "ddpm_sevens"
"""Shipped DDPM trained on the crossed-7 mix (:func:`hfrl.censoring.crossed_sevens`)."""
DDPM_DIGITS = "ddpm_digits"
"""Shipped DDPM trained on all 5,000 embedded digits (the base model of HERO fine-tuning)."""
MODEL_KINDS = ("ddpm", "flow")
"""Model (and checkpoint) kinds of the diffusion track: noise-predicting DDPMs and rectified flows
(:mod:`hfrl.flow`)."""
SHIPPED_MODELS = (DDPM_SEVENS, DDPM_DIGITS, "flow_digits")
"""Asset names :func:`load_model` resolves to ``hfrl/assets``."""


def model_checkpoint(path: Any = None) -> Any:
    """A checkpoint path for ``path``: shipped asset names resolved, ``None`` -> ``ddpm_sevens``."""
    from hfrl.judges import asset_path

    if path is None or str(path) in SHIPPED_MODELS:
        return asset_path(str(path or DDPM_SEVENS))
    return path


def load_model(path: Any = None, device: torch.device | str = "cpu") -> UNet2D:
    """Load a diffusion model of either kind, a DDPM or a rectified flow, in eval mode.

    The checkpoint's kind (``ddpm`` or ``flow``) decides the class: :class:`UNet2D` or
    :class:`hfrl.flow.FlowUNet2D` (its ``kind`` attribute says which).

    Args:
        path: A checkpoint path, a shipped asset name (``"ddpm_sevens"``, ``"ddpm_digits"``,
            ``"flow_digits"``), or ``None`` (``ddpm_sevens``).
        device: Where to put the model.

    Raises:
        CheckpointError: for a missing, corrupt or mismatched checkpoint, or one of another kind.
    """
    from hfrl.checkpoint import load_checkpoint, read_checkpoint_config
    from hfrl.errors import CheckpointError

    path = model_checkpoint(path)
    kind = read_checkpoint_config(path).get("kind")
    if kind not in MODEL_KINDS:
        raise CheckpointError(f"{path}: is a {kind!r} checkpoint, expected one of {', '.join(MODEL_KINDS)}")
    model, _ = load_checkpoint(path, kind=kind, device=device)
    return model  # type: ignore[return-value]


def load_ddpm(path: Any = None, device: torch.device | str = "cpu") -> UNet2D:
    """Load a DDPM checkpoint (default: the shipped crossed-7 model ``ddpm_sevens``) in eval mode.

    A rectified-flow checkpoint loads too (as :func:`load_model`), so code written for the DDPM takes both.

    Args:
        path: A checkpoint path, a shipped asset name (``"ddpm_sevens"``, ``"ddpm_digits"``, ``"flow_digits"``),
            or ``None``.
        device: Where to put the model.

    Raises:
        CheckpointError: for a missing, corrupt or mismatched checkpoint.
    """
    return load_model(path, device)


def count_parameters(modules: Iterable[nn.Module] | nn.Module) -> int:
    """Number of parameters of a module (or several)."""
    mods = [modules] if isinstance(modules, nn.Module) else list(modules)
    return sum(p.numel() for m in mods for p in m.parameters())
