"""A small DDPM: a U-Net noise predictor, DDPM and DDIM schedulers with log-probabilities, and a sampler.

As in diffusers, the noise-prediction *model* and the *scheduler* are separate objects:

* :class:`UNet2D` predicts the noise ``eps`` in a noisy image ``x_t`` at timestep ``t``
  (``(B, 1, H, W), (B,) -> (B, 1, H, W)``). It carries the :class:`NoiseSchedule` it was trained with.
* :class:`DDPMScheduler` (Ho et al. 2020, arXiv 2006.11239) and :class:`DDIMScheduler` (Song et al. 2021,
  arXiv 2010.02502) turn a prediction into one reverse step. :meth:`Scheduler.step` returns a
  :class:`SchedulerStepOutput`: the previous sample, the predicted clean sample, and the mean, standard
  deviation and **log-probability** of the step's Gaussian ``p(x_{t-1} | x_t)``, which policy-gradient
  fine-tuning needs (DDPO, Black et al. 2023, arXiv 2305.13301). Given ``prev_sample``, ``step`` scores
  that sample instead of drawing one, so stored trajectories can be re-evaluated under a new model.

The whole sampling loop (:func:`sample`) is::

    x = torch.randn(shape, generator=generator)                       # x_T
    for t in scheduler.timesteps:
        x = scheduler.step(model(x, t), t, x, generator=generator).prev_sample
    images = to_images(x)                                             # [-1, 1] -> [0, 1]

**Model kinds.** :mod:`hfrl.flow` adds a second kind, a rectified flow (the same U-Net predicting a
velocity, with :class:`~hfrl.flow.FlowScheduler`'s ODE and SDE steps under the same ``step`` contract). A
model's ``kind`` (``"ddpm"`` or ``"flow"``) picks its loss (:func:`matching_loss`), its sampler
(:func:`model_scheduler`) and its checkpoint kind (:func:`load_model` loads both).

**Pixel range.** The model works on ``x = 2 * image - 1`` in ``[-1, 1]`` (Ho et al.); :func:`to_model_space`
and :func:`to_images` convert. Everything else in hfrl uses images in ``[0, 1]``.

**Timesteps.** Training uses ``T`` (default 1000) timesteps ``0 .. T-1``; ``t = 0`` is the least noisy. A
scheduler with ``N`` inference steps visits ``t_i = (N - 1 - i) * T // N + 1`` (diffusers' "leading"
spacing with offset 1, as DDPO on Stable Diffusion), and the step from the last ``t = 1`` goes to the
noise level of ``t = 0`` (``alpha_bar_0 = 1 - beta_0``, diffusers' ``set_alpha_to_one=False``). So every
step has a non-zero standard deviation (with ``eta > 0`` for DDIM) and a proper log-probability, and the
final sample carries noise of standard deviation ``sqrt(1 - alpha_bar_0) = 0.01`` in ``[-1, 1]`` units,
which clamping to the pixel range hides.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
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
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


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


# ---------------------------------------------------------------------------------------------------------
# Per-sample losses, by model kind


def denoising_loss(
    model: UNet2D, x0: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """Per-sample DDPM loss ``mean_pixels (eps_theta(x_t, t) - noise)^2`` (Ho et al. 2020, eq. 14).

    Args:
        model: A noise predictor.
        x0: ``(B, C, H, W)`` clean samples in model space.
        timesteps: ``(B,)`` int64 timesteps in ``[0, T)``.
        noise: ``(B, C, H, W)`` standard normal noise.

    Returns:
        ``(B,)`` losses (differentiable in the model's weights).
    """
    x_t = model.schedule.add_noise(x0, noise, timesteps)  # (B, C, H, W)
    return ((model(x_t, timesteps) - noise) ** 2).flatten(1).mean(1)


def matching_input(
    model: UNet2D, x0: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_t, target)``: ``x0`` noised at ``timesteps`` as the model was trained, and what its output matches.

    ``ddpm``: ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``, target the noise (epsilon prediction);
    ``flow``: ``x_t = (1 - t) x0 + t noise`` at ``t = k / T``, target the velocity ``noise - x0``.

    Args:
        model: A DDPM or a rectified flow.
        x0: ``(B, C, H, W)`` clean samples in model space.
        timesteps: ``(B,)`` timesteps in the model's units (see :func:`matching_loss`).
        noise: ``(B, C, H, W)`` standard normal noise.

    Raises:
        ConfigError: for an unknown model kind.
    """
    kind = getattr(model, "kind", DDPM_KIND)
    if kind == DDPM_KIND:
        return model.schedule.add_noise(x0, noise, timesteps.to(x0.device)), noise
    if kind == "flow":
        t = torch.as_tensor(timesteps, device=x0.device, dtype=x0.dtype) / model.schedule.num_train_timesteps
        t = t.reshape(-1, 1, 1, 1)
        return (1.0 - t) * x0 + t * noise, noise - x0
    raise ConfigError(f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")


def matching_loss(
    model: UNet2D, x0: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """The model's own training loss per sample, by its kind: what "likelihood" means to both kinds.

    ``ddpm``: :func:`denoising_loss` (noise prediction); ``flow``: :func:`hfrl.flow.flow_matching_loss`
    (velocity prediction) at flow time ``t = k / T``; both through :func:`matching_input`.

    Args:
        model: A DDPM or a rectified flow.
        x0: ``(B, C, H, W)`` clean samples in model space.
        timesteps: ``(B,)`` timesteps in the model's units, as its samplers' ``timesteps`` and
            :func:`random_timesteps` give them: integers in ``[0, T)`` for a DDPM, ``k = t * T`` in ``[0, T]``
            (fractional allowed) for a flow.
        noise: ``(B, C, H, W)`` standard normal noise.

    Returns:
        ``(B,)`` losses.
    """
    x_t, target = matching_input(model, x0, timesteps, noise)
    return ((model(x_t, timesteps.to(x0.device)) - target) ** 2).flatten(1).mean(1)


def random_timesteps(model: UNet2D, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Training timesteps for :func:`matching_loss`, drawn as the model's own training draws them (CPU).

    ``ddpm``: uniform integers in ``[0, T)`` (int64); ``flow``: ``k = t * T`` with ``t`` uniform in ``(0, 1]``
    (float32).
    """
    total = model.schedule.num_train_timesteps
    if getattr(model, "kind", DDPM_KIND) == DDPM_KIND:
        return torch.randint(0, total, (num,), generator=generator)
    return (1.0 - torch.rand(num, generator=generator)) * total


FIT_TIMESTEPS = (20, 50, 100, 200)
"""Timesteps of :func:`denoising_error`: small enough that the image, not the noise, decides the error."""


@torch.no_grad()
def denoising_error(
    model: UNet2D,
    images: torch.Tensor,
    timesteps: tuple[int, ...] = FIT_TIMESTEPS,
    seed: int = 0,
    batch_size: int = 256,
) -> torch.Tensor:
    """How well a diffusion model fits images: its own training loss, per image.

    Each image is noised to every ``t`` in ``timesteps`` with seeded noise (the training objective's terms,
    Ho et al. 2020, eq. 14); the squared error of the prediction (:func:`matching_loss`: the noise for a
    DDPM, the velocity for a rectified flow at ``t = k / T``) is averaged over pixels and timesteps.
    Images like the model's training data score low. Speckle, blotches and smeared strokes score high, even
    when a classifier still reads the image as a digit. This makes the pretrained model a yardstick of
    source quality kept after fine-tuning.

    Args:
        model: The DDPM or flow model (eval mode is not changed).
        images: ``(B, 1, H, W)`` in ``[0, 1]``.
        timesteps: Timesteps in the model's units (``[0, T)``).
        seed: Seed of the noise, so the same images give the same errors.
        batch_size: Images per forward pass.

    Returns:
        ``(B,)`` float32 errors, on the CPU.
    """
    device = next(model.parameters()).device
    # All the noise up front, so an image's error does not depend on how the batch is split.
    noises = torch.randn((len(timesteps), *images.shape), generator=torch.Generator().manual_seed(seed))
    out = []
    for start in range(0, images.shape[0], batch_size):
        x0 = to_model_space(images[start : start + batch_size].float()).to(device)
        err = torch.zeros(x0.shape[0], device=device)
        for t, noise in zip(timesteps, noises[:, start : start + batch_size].to(device)):
            tt = torch.full((x0.shape[0],), int(t), dtype=torch.long, device=device)
            err += matching_loss(model, x0, tt, noise)
        out.append((err / len(timesteps)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


# ---------------------------------------------------------------------------------------------------------
# Schedulers


@dataclass(frozen=True)
class SchedulerStepOutput:
    """One reverse step ``x_t -> x_prev`` as a Gaussian ``N(mean, std^2 I)``.

    Attributes:
        prev_sample: ``(B, C, H, W)`` the sample drawn (or the ``prev_sample`` passed in to be scored).
        pred_original_sample: ``(B, C, H, W)`` the model's estimate of the clean sample ``x_0``.
        log_prob: ``(B,)`` log-density of ``prev_sample`` under the step's Gaussian, summed over pixels;
            ``NaN`` where the step is deterministic (``std == 0``, e.g. DDIM with ``eta = 0``).
        mean: ``(B, C, H, W)`` mean of the step's Gaussian.
        std: ``(B,)`` its standard deviation (isotropic).
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor
    log_prob: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Log-density of ``x`` under ``N(mean, std^2 I)``, summed over every non-batch dimension.

    Args:
        x: ``(B, ...)`` samples.
        mean: ``(B, ...)`` means.
        std: ``(B,)`` standard deviations; ``NaN`` is returned where ``std == 0``.

    Returns:
        ``(B,)`` log-probabilities.
    """
    s = std.reshape(-1, *([1] * (x.ndim - 1)))
    safe = s.clamp(min=1e-20)
    per_pixel = -0.5 * ((x - mean) / safe) ** 2 - safe.log() - _HALF_LOG_2PI
    out = per_pixel.flatten(1).sum(1)  # (B,)
    return torch.where(std.reshape(-1) > 0, out, torch.full_like(out, float("nan")))


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)


class Scheduler:
    """What DDPM and DDIM share: the inference timesteps and the cumulative alphas.

    Args:
        schedule: The forward process the model was trained with (``model.schedule``).
        num_inference_steps: ``N``, the reverse steps of one sampling run (default 25); at most ``T``.
        clip_sample: Clamp the predicted clean sample to ``[-1, 1]`` (default ``True``).
    """

    def __init__(
        self,
        schedule: NoiseSchedule | None = None,
        num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
        clip_sample: bool = True,
    ) -> None:
        self.schedule = schedule or NoiseSchedule()
        self.alphas_cumprod = self.schedule.alphas_cumprod()  # (T,) float64
        self.final_alpha_cumprod = float(self.alphas_cumprod[0])
        self.clip_sample = bool(clip_sample)
        self.set_timesteps(num_inference_steps)

    def set_timesteps(self, num_inference_steps: int) -> None:
        """Choose ``N`` inference steps: ``timesteps = [(N - 1) r + 1, ..., r + 1, 1]`` with ``r = T // N``.

        With ``N = T`` (every training timestep) the offset is 0 (``[T - 1, ..., 0]``) and the last step, from
        ``t = 0``, is deterministic (``std = 0``), as in Ho et al.'s sampler.
        """
        total = self.schedule.num_train_timesteps
        if not 1 <= int(num_inference_steps) <= total:
            raise ConfigError(f"num_inference_steps must be in [1, {total}], got {num_inference_steps}")
        self.num_inference_steps = int(num_inference_steps)
        self.step_ratio = total // self.num_inference_steps
        offset = min(1, total - 1 - (self.num_inference_steps - 1) * self.step_ratio)
        self.timesteps = (
            torch.arange(self.num_inference_steps - 1, -1, -1) * self.step_ratio + offset
        )  # (N,) int64

    def previous_timestep(self, timestep: torch.Tensor | int) -> torch.Tensor:
        """The timestep a step from ``timestep`` lands on (negative: the final, ``abar_0`` level)."""
        return torch.as_tensor(timestep) - self.step_ratio

    def _abar(self, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``abar_t`` as ``(B, 1, 1, 1)`` in ``like``'s dtype; negative ``t`` maps to ``abar_0``."""
        t = timesteps.to("cpu").long().reshape(-1).expand(like.shape[0])
        values = torch.where(t >= 0, self.alphas_cumprod[t.clamp(min=0)], self.final_alpha_cumprod)
        return values.to(device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)

    def alpha_bar(self, timestep: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """``abar_t`` as ``(B, 1, 1, 1)`` for a batch shaped like ``like`` (helper for guidance)."""
        return self._abar(torch.as_tensor(timestep), like)

    def predict_original(
        self, model_output: torch.Tensor, timestep: torch.Tensor | int, sample: torch.Tensor
    ) -> torch.Tensor:
        """``x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)`` (Ho et al. eq. 15), unclipped.

        Args:
            model_output: ``(B, C, H, W)`` predicted noise.
            timestep: ``(B,)`` or one int.
            sample: ``(B, C, H, W)`` ``x_t``.
        """
        abar = self._abar(torch.as_tensor(timestep), sample)
        return (sample - (1 - abar).sqrt() * model_output) / abar.sqrt()

    def _moments(
        self, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(mean, std, x0_hat)`` of the step; subclasses implement it."""
        raise NotImplementedError

    def step(
        self,
        model_output: torch.Tensor,
        timestep: torch.Tensor | int,
        sample: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        prev_sample: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> SchedulerStepOutput:
        """One reverse step from ``x_t``.

        Args:
            model_output: ``(B, C, H, W)`` predicted noise ``eps_theta(x_t, t)``.
            timestep: ``t``, one int or ``(B,)`` (one of :attr:`timesteps`).
            sample: ``(B, C, H, W)`` ``x_t``.
            generator: Randomness of the draw (ignored when ``prev_sample`` or ``noise`` is given).
            prev_sample: ``(B, C, H, W)``: score this sample instead of drawing one (e.g. the action an agent
                took, to recompute its log-probability under updated weights).
            noise: ``(B, C, H, W)`` standard normal draw to use instead of drawing one from ``generator``
                (``prev_sample = mean + std * noise``).

        Returns:
            A :class:`SchedulerStepOutput`.
        """
        t = torch.as_tensor(timestep)
        mean, std, x0 = self._moments(model_output, t, sample)
        std_b = std.reshape(-1).expand(sample.shape[0])  # (B,)
        if prev_sample is None:
            z = noise.to(sample) if noise is not None else _randn_like(sample, generator)
            prev_sample = mean + std_b.view(-1, 1, 1, 1) * z
        log_prob = gaussian_log_prob(prev_sample, mean, std_b)
        return SchedulerStepOutput(prev_sample, x0, log_prob, mean, std_b)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_inference_steps={self.num_inference_steps}, T={self.schedule.num_train_timesteps})"


class DDPMScheduler(Scheduler):
    """Ancestral sampling with the DDPM posterior ``q(x_prev | x_t, x0_hat)`` (Ho et al. 2020, eqs. 6-7).

    With fewer inference steps than training steps the posterior is that of the respaced chain
    (Nichol & Dhariwal 2021): ``beta' = 1 - abar_t / abar_prev``,
    ``mean = sqrt(abar_prev) beta' / (1 - abar_t) x0_hat + sqrt(1 - beta') (1 - abar_prev) / (1 - abar_t) x_t``,
    ``var = beta' (1 - abar_prev) / (1 - abar_t)`` (the "fixed small" variance).

    Args:
        schedule: The forward process (``model.schedule``).
        num_inference_steps: Reverse steps (default 25; ancestral sampling needs more for the same quality
            as DDIM, e.g. 100 or all 1000).
        clip_sample: Clamp ``x0_hat`` to ``[-1, 1]``.
    """

    def _moments(
        self, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        abar_t = self._abar(timestep, sample)
        abar_prev = self._abar(self.previous_timestep(timestep), sample)
        x0 = self.predict_original(model_output, timestep, sample)
        if self.clip_sample:
            x0 = x0.clamp(-1.0, 1.0)
        beta = 1 - abar_t / abar_prev
        mean = (abar_prev.sqrt() * beta / (1 - abar_t)) * x0 + (
            (1 - beta).sqrt() * (1 - abar_prev) / (1 - abar_t)
        ) * sample
        var = beta * (1 - abar_prev) / (1 - abar_t)
        return mean, var.clamp(min=0).sqrt().reshape(-1), x0


class DDIMScheduler(Scheduler):
    """The DDIM step (Song et al. 2021, eq. 12) with stochasticity ``eta``.

    ``x0_hat`` as in DDPM (clipped, and ``eps`` recomputed from the clipped ``x0_hat`` so the two agree);
    ``sigma = eta * sqrt((1 - abar_prev) / (1 - abar_t)) * sqrt(1 - abar_t / abar_prev)``;
    ``mean = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps``. ``eta = 0`` is deterministic
    (no log-probability); ``eta = 1`` has DDPM's variance; DDPO uses ``eta = 1``.

    Args:
        schedule: The forward process (``model.schedule``).
        num_inference_steps: Reverse steps (default 25).
        eta: Stochasticity in ``[0, 1]`` (default 0).
        clip_sample: Clamp ``x0_hat`` to ``[-1, 1]``.
    """

    def __init__(
        self,
        schedule: NoiseSchedule | None = None,
        num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
        eta: float = 0.0,
        clip_sample: bool = True,
    ) -> None:
        if not 0.0 <= float(eta) <= 1.0:
            raise ConfigError(f"DDIM eta must be in [0, 1], got {eta}")
        self.eta = float(eta)
        super().__init__(schedule, num_inference_steps, clip_sample)

    def _moments(
        self, model_output: torch.Tensor, timestep: torch.Tensor, sample: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        abar_t = self._abar(timestep, sample)
        abar_prev = self._abar(self.previous_timestep(timestep), sample)
        x0 = self.predict_original(model_output, timestep, sample)
        eps = model_output
        if self.clip_sample:
            x0 = x0.clamp(-1.0, 1.0)
            eps = (sample - abar_t.sqrt() * x0) / (1 - abar_t).sqrt()
        var = (1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)
        std = self.eta * var.clamp(min=0).sqrt()  # (B, 1, 1, 1)
        mean = abar_prev.sqrt() * x0 + (1 - abar_prev - std**2).clamp(min=0).sqrt() * eps
        return mean, std.reshape(-1), x0

    def __repr__(self) -> str:
        return f"DDIMScheduler(num_inference_steps={self.num_inference_steps}, eta={self.eta})"


SCHEDULERS = ("ddim", "ddpm", "flow-ode", "flow-sde")
FLOW_SCHEDULERS = ("flow-ode", "flow-sde")
"""The samplers of a rectified flow (:class:`hfrl.flow.FlowScheduler`); the others are a DDPM's."""


def make_scheduler(
    name: str = "ddim",
    schedule: NoiseSchedule | None = None,
    num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
    eta: float = 0.0,
    noise_level: float | None = None,
) -> Scheduler:
    """A scheduler by name.

    ``"ddim"`` (with ``eta``) or ``"ddpm"`` for a DDPM; ``"flow-ode"`` (Euler) or ``"flow-sde"`` (Flow-GRPO's
    SDE with ``noise_level``, default 0.7) for a rectified flow (:class:`hfrl.flow.FlowScheduler`).
    """
    if name == "ddim":
        return DDIMScheduler(schedule, num_inference_steps, eta=eta)
    if name == "ddpm":
        return DDPMScheduler(schedule, num_inference_steps)
    if name in FLOW_SCHEDULERS:
        from hfrl.flow import FLOW_SDE_NOISE_LEVEL, FlowScheduler

        level = 0.0 if name == "flow-ode" else (FLOW_SDE_NOISE_LEVEL if noise_level is None else noise_level)
        return FlowScheduler(schedule, num_inference_steps, noise_level=level)
    raise ConfigError(f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULERS)}")


def model_scheduler(
    model: UNet2D,
    num_inference_steps: int = DEFAULT_INFERENCE_STEPS,
    *,
    stochastic: bool = False,
    eta: float = 1.0,
    noise_level: float | None = None,
) -> Scheduler:
    """The sampler that fits ``model``'s kind: DDIM for a DDPM, Euler steps for a rectified flow.

    Args:
        model: A DDPM or flow model (its ``kind`` and ``schedule``).
        num_inference_steps: Reverse steps.
        stochastic: Gaussian steps with log-probabilities (DDIM with ``eta``; Flow-GRPO's SDE with
            ``noise_level``) instead of deterministic ones (DDIM ``eta = 0``; the flow's ODE).
        eta: DDIM stochasticity when ``stochastic``.
        noise_level: Flow-GRPO's ``a`` when ``stochastic`` (default 0.7).
    """
    if getattr(model, "kind", DDPM_KIND) == DDPM_KIND:
        return make_scheduler("ddim", model.schedule, num_inference_steps, eta=eta if stochastic else 0.0)
    name = "flow-sde" if stochastic else "flow-ode"
    return make_scheduler(name, model.schedule, num_inference_steps, noise_level=noise_level)


# ---------------------------------------------------------------------------------------------------------
# Sampling


def initial_noise(
    num: int, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``x_T ~ N(0, I)`` of shape ``(num, *shape)`` drawn from ``generator`` (on its device), moved to ``device``."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn((num, *shape), generator=generator, device=gen_device).to(device)


@torch.no_grad()
def sample(
    model: UNet2D,
    scheduler: Scheduler,
    num: int,
    *,
    generator: torch.Generator | None = None,
    batch_size: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Draw ``num`` images with the reverse chain (the pipeline of the module docstring).

    The randomness is drawn for the whole set, never per batch: first the initial noise of all ``num``
    samples, then at each step of the chain one standard normal draw for all ``num`` (stochastic schedulers,
    e.g. DDIM with ``eta > 0`` or DDPM), of which each batch takes its rows. So the images do not depend on
    ``batch_size`` (up to the float rounding of batched forward passes); same ``generator`` seed, same images.
    They do depend on ``num``: the first ``k`` of ``num`` samples are not the ``k`` samples of ``num = k``
    when the scheduler is stochastic.

    Args:
        model: The noise predictor (its device is used).
        scheduler: A :class:`DDIMScheduler` or :class:`DDPMScheduler`.
        num: Number of images.
        generator: Randomness of ``x_T`` and of the stochastic steps.
        batch_size: Images denoised at once (default 500).
        progress: Called as ``progress(done, total)`` after each step of the chain (``total`` steps).

    Returns:
        ``(num, C, H, W)`` float32 images in ``[0, 1]`` on the CPU.
    """
    device = next(model.parameters()).device
    shape = (model.config.in_channels, *model.config.image_size)
    x = initial_noise(num, shape, generator, "cpu").to(device)  # (num, C, H, W), the whole set
    draw_device = generator.device if generator is not None else device
    total = len(scheduler.timesteps)
    for done, t in enumerate(scheduler.timesteps.tolist(), start=1):
        z = torch.randn(x.shape, generator=generator, device=draw_device, dtype=x.dtype).to(device)
        for rows in torch.arange(num).split(batch_size):
            chunk = x[rows]
            x[rows] = scheduler.step(model(chunk, int(t)), int(t), chunk, noise=z[rows]).prev_sample
        if progress is not None:
            progress(done, total)
    return to_images(x).cpu()


# ---------------------------------------------------------------------------------------------------------
# Training


@dataclass
class DDPMTrainConfig:
    """How :func:`train_ddpm` trains a noise predictor (Ho et al. 2020's simple loss).

    The defaults are sized for a 2-core CPU; ``scripts/train_ddpm.py`` prints how long a run takes.
    """

    steps: int = 4000
    """Optimiser steps."""
    batch_size: int = 64
    """Images per step."""
    lr: float = 1e-3
    """Peak AdamW learning rate (linear warm-up over 200 steps, then cosine decay to 5 %)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    ema_decay: float = 0.998
    """Decay of the exponential moving average of the weights; the EMA model is what is returned. Short
    runs need a short EMA horizon (here ~500 steps)."""
    max_shift: int = 2
    """Random translation of the training images by up to this many pixels (augmentation)."""
    seed: int = 0
    """Seeds initialisation, batches, timesteps, noise and augmentation."""
    grad_clip: float = 1.0
    """Gradient-norm clipping."""


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels in x and y, filling with background (0).

    Args:
        images: ``(B, C, H, W)`` in ``[0, 1]``.
        max_shift: Largest shift in pixels (0: unchanged).
        generator: Randomness of the shifts (CPU).

    Returns:
        ``(B, C, H, W)``.
    """
    if max_shift <= 0:
        return images
    b, _, h, w = images.shape
    shifts = torch.randint(-max_shift, max_shift + 1, (b, 2), generator=generator)
    padded = F.pad(images, (max_shift,) * 4)  # (B, C, H + 2s, W + 2s)
    out = torch.empty_like(images)
    for i, (dy, dx) in enumerate(shifts.tolist()):
        out[i] = padded[i, :, max_shift - dy : max_shift - dy + h, max_shift - dx : max_shift - dx + w]
    return out


def train_ddpm(
    images: torch.Tensor,
    model: UNet2D,
    config: DDPMTrainConfig | None = None,
    *,
    device: torch.device | str = "cpu",
    log: Callable[[dict[str, float]], None] | None = None,
    log_every: int = 100,
    on_checkpoint: Callable[[int, UNet2D], None] | None = None,
    checkpoint_every: int = 1000,
) -> UNet2D:
    """Train ``model`` to predict the noise of noised ``images`` (``L_simple``, Ho et al. 2020 eq. 14).

    The objective follows the model's kind (:func:`matching_loss` at :func:`random_timesteps`): a
    :class:`hfrl.flow.FlowUNet2D` learns the velocity of a rectified flow instead (see
    :func:`hfrl.flow.train_flow`).

    Args:
        images: ``(N, C, H, W)`` training images in ``[0, 1]``.
        model: The (untrained) noise or velocity predictor; trained in place.
        config: Steps, batch size, learning rate, EMA, augmentation and seed.
        device: Training device.
        log: Called every ``log_every`` steps with ``{"step", "loss", "lr", "seconds"}``.
        log_every: Logging period in steps.
        on_checkpoint: Called as ``on_checkpoint(step, ema_model)`` every ``checkpoint_every`` steps (e.g. to
            save the EMA weights while training runs).
        checkpoint_every: Checkpoint period in steps.

    Returns:
        The exponential moving average of the weights, as a new :class:`UNet2D` in eval mode on ``device``.
    """
    config = config or DDPMTrainConfig()
    gen = torch.Generator().manual_seed(config.seed)
    model.to(device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warmup = min(200, max(1, config.steps // 10))

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, config.steps - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    start = time.perf_counter()
    running = 0.0
    for step in range(config.steps):
        idx = torch.randint(0, images.shape[0], (config.batch_size,), generator=gen)
        x0 = to_model_space(random_shift(images[idx], config.max_shift, gen)).to(device)  # (B, C, H, W)
        t = random_timesteps(model, config.batch_size, gen)  # (B,)
        noise = torch.randn(x0.shape, generator=gen).to(device)
        loss = matching_loss(model, x0, t.to(device), noise).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        sched.step()
        with torch.no_grad():
            decay = min(config.ema_decay, (1 + step) / (10 + step))  # short horizon early on
            for p_ema, p in zip(ema.parameters(), model.parameters()):
                p_ema.lerp_(p, 1 - decay)
            for b_ema, b in zip(ema.buffers(), model.buffers()):
                b_ema.copy_(b)
        running += loss.item()
        if log is not None and ((step + 1) % log_every == 0 or step + 1 == config.steps):
            n = (step % log_every) + 1
            log(
                {
                    "step": step + 1,
                    "loss": running / n,
                    "lr": sched.get_last_lr()[0],
                    "seconds": time.perf_counter() - start,
                }
            )
            running = 0.0
        if on_checkpoint is not None and (step + 1) % checkpoint_every == 0 and step + 1 < config.steps:
            on_checkpoint(step + 1, ema)
    model.eval()
    return ema


def count_parameters(modules: Iterable[nn.Module] | nn.Module) -> int:
    """Number of parameters of a module (or several)."""
    mods = [modules] if isinstance(modules, nn.Module) else list(modules)
    return sum(p.numel() for m in mods for p in m.parameters())
