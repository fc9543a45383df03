"""Censored sampling, reward models: P(benign | x), time-independent or time-dependent (see :mod:`hfrl.censoring`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hfrl.censoring.data import REWARD_KIND
from hfrl.checkpoint import load_checkpoint
from hfrl.diffusion import (
    ResBlock,
    timestep_embedding,
    to_model_space,
)
from hfrl.errors import ConfigError, DataError


@dataclass(frozen=True)
class CensorRewardConfig:
    """Architecture of a :class:`CensorReward`.

    Attributes:
        time_dependent: Take ``(x_t, t)`` and learn on noised samples (for classifier guidance on ``x_t``),
            or take clean images only (for guidance on the predicted ``x0_hat``).
        width: Channels at full resolution (doubled at 14x14 and 7x7).
        time_dim: Width of the timestep embedding (time-dependent models only).
        image_size: ``(H, W)`` of the inputs (divisible by 4).
    """

    time_dependent: bool = True
    width: int = 16
    time_dim: int = 64
    image_size: tuple[int, int] = field(default=(28, 28))

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        if self.width < 2 or any(v % 4 for v in self.image_size):
            raise ConfigError(f"reward width must be >= 2 and image size divisible by 4, got {self}")


class CensorReward(nn.Module):
    """``r(x) = P(benign | x)`` from a small CNN (Yoon et al. 2023's reward model, scaled down).

    Three residual blocks at 28, 14 and 7 pixels (stride-2 convolutions between them), then average and
    max pooling and a linear head giving the logit of *benign*. A time-dependent model adds the sinusoidal
    timestep embedding to every block (as the U-Net does) and sees noised inputs ``x_t``; a time-independent
    one sees clean images and ignores ``t``. Inputs are in the diffusion model's space, ``[-1, 1]``.

    Args:
        config: The architecture.
    """

    def __init__(self, config: CensorRewardConfig | None = None) -> None:
        super().__init__()
        self.config = config or CensorRewardConfig()
        w = self.config.width
        td = self.config.time_dim if self.config.time_dependent else 0
        self.time_mlp = (
            nn.Sequential(nn.Linear(w, td), nn.SiLU(), nn.Linear(td, td))
            if self.config.time_dependent
            else None
        )
        self.conv_in = nn.Conv2d(1, w, 3, padding=1)
        self.block1 = ResBlock(w, w, td, groups=4)
        self.down1 = nn.Conv2d(w, 2 * w, 3, stride=2, padding=1)
        self.block2 = ResBlock(2 * w, 2 * w, td, groups=4)
        self.down2 = nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1)
        self.block3 = ResBlock(2 * w, 2 * w, td, groups=4)
        self.head = nn.Linear(4 * w, 1)

    @property
    def time_dependent(self) -> bool:
        """Whether the model reads the timestep."""
        return self.config.time_dependent

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | int | None = None) -> torch.Tensor:
        """Logit of benign.

        Args:
            x: ``(B, 1, H, W)`` in model space (``x_t``, or a clean image for ``t = 0``).
            timesteps: ``(B,)`` or one int; ``None`` means 0 (clean). Ignored by time-independent models.

        Returns:
            ``(B,)`` logits.
        """
        temb = None
        if self.time_mlp is not None:
            t = (
                torch.as_tensor(0 if timesteps is None else timesteps, device=x.device)
                .reshape(-1)
                .expand(x.shape[0])
            )
            temb = self.time_mlp(timestep_embedding(t, self.config.width))  # (B, time_dim)
        h = self.block1(self.conv_in(x), temb)  # (B, w, 28, 28)
        h = self.block2(self.down1(h), temb)  # (B, 2w, 14, 14)
        h = F.silu(self.block3(self.down2(h), temb))  # (B, 2w, 7, 7)
        pooled = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)  # (B, 4w)
        return self.head(pooled).squeeze(1)

    def log_prob(self, x: torch.Tensor, timesteps: torch.Tensor | int | None = None) -> torch.Tensor:
        """``(B,)`` ``log r(x) = log P(benign | x)``, with gradients."""
        return F.logsigmoid(self(x, timesteps))

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> torch.Tensor:
        """``(B,)`` ``P(benign)`` of clean images ``(B, 1, H, W)`` in ``[0, 1]``, without gradients."""
        device = next(self.parameters()).device
        return self.log_prob(to_model_space(images.to(device)), 0).exp()

    def config_dict(self) -> dict[str, Any]:
        """The checkpoint config (see :func:`build_censor_reward`)."""
        return asdict(self.config)


class ProductEnsemble(nn.Module):
    """Several reward models combined as a product of probabilities (Yoon et al. 2023, Sec. 3).

    ``r(x) = prod_k r_k(x)``, so ``log r = sum_k log r_k``: a sample passes only if every member calls it
    benign, and guidance follows the sum of the members' gradients. Members must agree on
    ``time_dependent``.

    Args:
        members: The reward models.
    """

    def __init__(self, members: Sequence[CensorReward]) -> None:
        super().__init__()
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        kinds = {m.time_dependent for m in members}
        if len(kinds) != 1:
            raise ConfigError("ensemble members must all be time-dependent or all time-independent")
        self.members = nn.ModuleList(members)

    @property
    def time_dependent(self) -> bool:
        """Whether the members read the timestep."""
        return bool(self.members[0].time_dependent)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor | int | None = None) -> torch.Tensor:
        """``(B,)`` ``log r(x) = sum_k log r_k(x)`` (a log-probability, not a logit)."""
        return self.log_prob(x, timesteps)

    def log_prob(self, x: torch.Tensor, timesteps: torch.Tensor | int | None = None) -> torch.Tensor:
        """``(B,)`` sum of the members' log-probabilities of benign, with gradients."""
        return torch.stack([m.log_prob(x, timesteps) for m in self.members]).sum(0)

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> torch.Tensor:
        """``(B,)`` product of the members' ``P(benign)`` for clean images in ``[0, 1]``."""
        device = next(self.parameters()).device
        return self.log_prob(to_model_space(images.to(device)), 0).exp()

    def config_dict(self) -> dict[str, Any]:
        """The checkpoint config: ``{"members": [...]}``."""
        return {"members": [m.config_dict() for m in self.members]}


RewardLike = CensorReward | ProductEnsemble


def build_censor_reward(config: dict[str, Any]) -> RewardLike:
    """Build an untrained reward model or ensemble from a checkpoint config (kind ``censor_reward``)."""
    if "members" in config:
        return ProductEnsemble([CensorReward(CensorRewardConfig(**m)) for m in config["members"]])
    return CensorReward(CensorRewardConfig(**config))


def save_censor_reward(path: str | Path, reward: RewardLike, metadata: dict[str, Any] | None = None) -> Path:
    """Write a reward model or ensemble as a ``censor_reward`` checkpoint (safetensors + JSON)."""
    from hfrl.checkpoint import save_checkpoint

    return save_checkpoint(path, reward, REWARD_KIND, reward.config_dict(), metadata)


def load_censor_reward(path: str | Path, device: torch.device | str = "cpu") -> RewardLike:
    """Load a ``censor_reward`` checkpoint (one model or an ensemble) in eval mode."""
    model, _ = load_checkpoint(path, kind=REWARD_KIND, device=device)
    return model  # type: ignore[return-value]


def random_affine(
    images: torch.Tensor, generator: torch.Generator, degrees: float = 15.0, shift: float = 2.0
) -> torch.Tensor:
    """Rotate each image by up to ``degrees`` and shift it by up to ``shift`` pixels (bilinear).

    The paper augments its MNIST labels with random rotations of up to 20 degrees; small shifts are added
    here because the detectors' and the DDPM's 7s are not centred exactly alike.

    Args:
        images: ``(B, 1, H, W)`` in any range (the background must be its minimum, filled by clamping).
        generator: CPU randomness.
        degrees: Largest rotation.
        shift: Largest shift in pixels.

    Returns:
        ``(B, 1, H, W)``.
    """
    b, _, h, w = images.shape
    angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(degrees)
    offset = (torch.rand(b, 2, generator=generator) * 2 - 1) * shift * 2 / torch.tensor([w, h])
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack(
        [torch.stack([cos, -sin, offset[:, 0]], 1), torch.stack([sin, cos, offset[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)  # (B, H, W, 2)
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    # Pad with the background value: shift to 0, sample with zero padding, shift back.
    return F.grid_sample(images - low, grid, align_corners=False, padding_mode="zeros") + low


@dataclass
class RewardTrainConfig:
    """How :func:`train_censor_reward` fits a reward model to a few labels (Yoon et al. 2023, App. B).

    The loss is the paper's weighted binary cross-entropy
    ``BCE_alpha = -alpha * y * log r - (1 - y) * log(1 - r)`` with ``y = 1`` for benign: ``alpha < 1`` weights
    the benign labels down, so the model errs towards calling doubtful images malign — censoring may cost
    some benign samples but should miss no malign one. The paper keeps ``alpha * n_benign`` fixed as the
    benign share grows (0.02 for 10 benign, 0.005 for the 50 of the union model); ``pos_weight=None`` does
    the same here with ``alpha = 0.2 * n_malign / n_benign``.
    """

    iterations: int = 400
    """Optimiser steps (the paper: 1,000 for members, 3,000 for the union model; small data, small net)."""
    batch_size: int = 64
    """Augmented images per step, drawn from the labelled set with replacement."""
    lr: float = 3e-3
    """AdamW learning rate, annealed linearly to 0 (as the paper)."""
    weight_decay: float = 0.05
    """AdamW weight decay (the paper's)."""
    pos_weight: float | None = None
    """``alpha`` of the weighted BCE; ``None``: ``0.2 * n_malign / n_benign``."""
    max_noise_t: int | None = None
    """Time-dependent models: noise levels drawn uniformly from ``[0, max_noise_t)`` (default: all ``T``)."""
    seed: int = 0
    """Seeds initialisation, batches, augmentation and noise."""


def train_censor_reward(
    images: torch.Tensor,
    benign: torch.Tensor,
    config: CensorRewardConfig | None = None,
    train: RewardTrainConfig | None = None,
    *,
    schedule: Any = None,
    device: torch.device | str = "cpu",
) -> CensorReward:
    """Fit a reward model to labelled generated samples.

    Args:
        images: ``(N, 1, H, W)`` labelled samples in ``[0, 1]``.
        benign: ``(N,)`` bool, True for benign (``good``), False for malign (``bad``).
        config: Architecture (default: time-dependent, width 16).
        train: Optimisation settings.
        schedule: The DDPM's :class:`~hfrl.diffusion.NoiseSchedule` (time-dependent models are trained on
            ``x_t`` drawn from it; default: the standard linear schedule).
        device: Training device.

    Returns:
        The trained model in eval mode on ``device``.

    Raises:
        DataError: when the labels are not both present.
    """
    from hfrl.diffusion import NoiseSchedule

    config = config or CensorRewardConfig()
    train = train or RewardTrainConfig()
    benign = torch.as_tensor(benign, dtype=torch.bool).reshape(-1)
    n_benign, n_malign = int(benign.sum()), int((~benign).sum())
    if n_benign == 0 or n_malign == 0 or len(benign) != images.shape[0]:
        raise DataError(
            f"need benign and malign labels, one per image; got {n_benign} benign, {n_malign} malign for {images.shape[0]} images"
        )
    alpha = train.pos_weight if train.pos_weight is not None else 0.2 * n_malign / n_benign
    schedule = schedule or NoiseSchedule()
    abar = schedule.alphas_cumprod().float()
    max_t = train.max_noise_t or schedule.num_train_timesteps
    gen = torch.Generator().manual_seed(train.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train.seed)
        model = CensorReward(config)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    x_all = to_model_space(images.float())
    y_all = benign.float()
    for step in range(train.iterations):
        for group in opt.param_groups:
            group["lr"] = train.lr * (1 - step / train.iterations)
        idx = torch.randint(0, len(y_all), (train.batch_size,), generator=gen)
        x = random_affine(x_all[idx], gen)  # (B, 1, H, W)
        t = torch.zeros(train.batch_size, dtype=torch.long)
        if config.time_dependent:
            t = torch.randint(0, max_t, (train.batch_size,), generator=gen)
            a = abar[t].view(-1, 1, 1, 1)
            x = a.sqrt() * x + (1 - a).sqrt() * torch.randn(x.shape, generator=gen)
        logits = model(x.to(device), t.to(device))
        loss = F.binary_cross_entropy_with_logits(
            logits, y_all[idx].to(device), pos_weight=torch.tensor(alpha, device=device)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()
