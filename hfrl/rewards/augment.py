"""Augmentations for training reward models from a few hundred labels.

* :class:`PairAugment`: the same small rotation and shift applied to a noisy input and its output(s), so
  that they stay aligned (a good output stays good), plus small Gaussian perturbations of the outputs.
  The perturbations matter beyond data volume: agents will score *their* samples — generator outputs
  plus Gaussian noise — and a reward model that never saw perturbed outputs can be moved by them in
  ways the labels never justified.
* :func:`perturb_inputs`: other or perturbed noisy inputs, the negatives of the Lee-style auxiliary task
  (:func:`hfrl.rewards.objectives.pairing_loss`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hfrl.errors import ConfigError
from hfrl.rewards.config import NEGATIVE_KINDS


def _uniform(n: int, bound: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(n, generator=generator) * 2.0 - 1.0) * bound


@dataclass(frozen=True)
class PairAugment:
    """Random geometric jitter shared by an input and its outputs, and noise on the outputs.

    Attributes:
        max_rotation: Largest rotation in degrees (uniform in ``[-max, max]``).
        max_shift: Largest shift in pixels along each axis (uniform, sub-pixel).
        output_noise: Largest standard deviation of Gaussian noise added to outputs (uniform per sample
            in ``[0, output_noise]``, then clipped to ``[0, 1]``).
        p: Probability that a sample is transformed at all (the rest pass unchanged).
    """

    max_rotation: float = 10.0
    max_shift: float = 2.0
    output_noise: float = 0.05
    p: float = 0.8

    def __post_init__(self) -> None:
        if self.max_rotation < 0 or self.max_shift < 0 or self.output_noise < 0 or not 0 <= self.p <= 1:
            raise ConfigError("augmentation ranges must be >= 0 and p in [0, 1]")

    def __call__(
        self,
        generator: torch.Generator,
        noisy: torch.Tensor,
        *outputs: torch.Tensor,
        denoised: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """Transform a batch.

        Args:
            generator: CPU generator (all randomness comes from it).
            noisy: ``(B, C, H, W)`` noisy inputs; resampled with nearest neighbours, which keeps the
                statistics of the pixel noise (bilinear resampling would smooth it).
            *outputs: ``(B, C, H, W)`` outputs of the same inputs; resampled bilinearly, then perturbed.
            denoised: ``(B, C, H, W)`` denoised inputs, moved like the outputs but not perturbed (a
                denoiser's estimate moves with its input).

        Returns:
            ``(noisy, *outputs)`` transformed, then ``denoised`` if given; same shapes and device.
        """
        b, _, h, w = noisy.shape
        device = noisy.device
        active = (torch.rand(b, generator=generator) < self.p).float()
        angle = _uniform(b, math.radians(self.max_rotation), generator) * active
        tx = (
            _uniform(b, 2.0 * self.max_shift / w, generator) * active
        )  # affine_grid units: 2 / width per pixel
        ty = _uniform(b, 2.0 * self.max_shift / h, generator) * active
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).to(device)
        grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)  # (B, H, W, 2)
        out = [F.grid_sample(noisy, grid, mode="nearest", padding_mode="zeros", align_corners=False)]
        for o in outputs:
            moved = F.grid_sample(o, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            if self.output_noise > 0:
                scale = torch.rand(b, 1, 1, 1, generator=generator) * self.output_noise
                eps = torch.randn(moved.shape, generator=generator) * scale
                moved = (moved + eps.to(device)).clamp(0.0, 1.0)
            out.append(moved)
        if denoised is not None:
            out.append(
                F.grid_sample(denoised, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            )
        return tuple(out)


def perturb_inputs(
    noisy: torch.Tensor,
    kind: str,
    generator: torch.Generator,
    pool: torch.Tensor | None = None,
    denoised: torch.Tensor | None = None,
    pool_denoised: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Wrong inputs for the auxiliary task, one per row of ``noisy``.

    Args:
        noisy: ``(B, C, H, W)`` true inputs.
        kind: One of :data:`NEGATIVE_KINDS`.
        generator: CPU generator.
        pool: ``(M, C, H, W)`` inputs to draw ``other`` from (default: ``noisy`` itself, shifted by a
            random non-zero offset so that no row gets its own input back when ``B > 1``).
        denoised: ``(B, C, H, W)`` denoised ``noisy``, perturbed the same way (optional).
        pool_denoised: ``(M, C, H, W)`` denoised ``pool`` (needed with ``pool`` and ``denoised``).

    Returns:
        ``(wrong inputs, their denoised versions or None)``, ``(B, C, H, W)`` on ``noisy``'s device.
    """
    b = noisy.shape[0]
    if kind == "other":
        if pool is not None:
            idx = torch.randint(0, pool.shape[0], (b,), generator=generator).to(pool.device)
            other_d = pool_denoised[idx].to(noisy.device) if pool_denoised is not None else None
            return pool[idx].to(noisy.device), other_d
        offset = int(torch.randint(1, max(b, 2), (1,), generator=generator)) if b > 1 else 0
        return _both(noisy, denoised, lambda t: torch.roll(t, shifts=offset, dims=0))
    if kind == "flip":
        return _both(noisy, denoised, lambda t: torch.flip(t, dims=(3,)))
    if kind == "shift":
        mag = torch.randint(3, 6, (2,), generator=generator)
        sign = torch.randint(0, 2, (2,), generator=generator) * 2 - 1
        dy, dx = (int(v) for v in mag * sign)
        return _both(noisy, denoised, lambda t: torch.roll(t, shifts=(dy, dx), dims=(2, 3)))
    raise ConfigError(f"unknown auxiliary negative {kind!r}; expected one of {', '.join(NEGATIVE_KINDS)}")


def _both(
    noisy: torch.Tensor, denoised: torch.Tensor | None, fn: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    return fn(noisy), (fn(denoised) if denoised is not None else None)
