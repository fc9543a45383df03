"""Fixed (not learned) input channels a reward model sees: the noisy input, the output, and their residual.

A bad output here is one that does not fit its input: the generator paints a 0-like shape over another
digit. The residual ``blur(noisy) - blur(output)`` makes that visible without any label: for an output
that fits, it is the low-pass part of the noise, nearly structureless; for one that does not, it holds
the strokes the output dropped (positive) and the ones it invented (negative). Blurring first removes
most of the pixel noise (sigma 0.5 Gaussian noise averaged over a 1-pixel Gaussian window keeps about a
quarter of its standard deviation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hfrl.errors import ConfigError

CHANNELS = ("noisy", "output", "residual", "blurred_noisy", "denoised", "denoised_residual")
"""Channels a reward model may stack: see :class:`PairFeatures`."""
DENOISED_CHANNELS = ("denoised", "denoised_residual")
"""Channels that need the self-supervised denoiser's estimate (:mod:`hfrl.rewards.denoiser`)."""


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian ``(k,)`` with ``k = 2 * ceil(3 sigma) + 1``."""
    radius = max(1, int(torch.ceil(torch.tensor(3.0 * sigma))))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(t**2) / (2.0 * sigma**2))
    return kernel / kernel.sum()


def blur(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` images with a 1-D ``kernel`` ``(k,)``; same shape out."""
    k = kernel.shape[0]
    c = images.shape[1]  # every channel on its own
    out = F.conv2d(images, kernel.view(1, 1, 1, k).expand(c, 1, 1, k), padding=(0, k // 2), groups=c)
    return F.conv2d(out, kernel.view(1, 1, k, 1).expand(c, 1, k, 1), padding=(k // 2, 0), groups=c)


class PairFeatures(nn.Module):
    """Stack chosen channels of a (noisy input, output) pair into the reward network's input.

    Args:
        channels: Any of :data:`CHANNELS`, in order: ``noisy``, ``output``, ``residual``
            (``blur(noisy) - blur(output)``), ``blurred_noisy``, ``denoised`` (a label-free estimate of
            the clean input, see :mod:`hfrl.rewards.denoiser`) and ``denoised_residual``
            (``denoised - output``).
        sigma: Standard deviation in pixels of the blur behind ``residual`` and ``blurred_noisy``.

    The kernel is a non-persistent buffer: it is rebuilt from ``sigma``, never stored in checkpoints.
    """

    def __init__(
        self, channels: tuple[str, ...] = ("noisy", "output", "residual"), sigma: float = 1.0
    ) -> None:
        super().__init__()
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown or not channels:
            raise ConfigError(
                f"reward input channels must be a non-empty subset of {CHANNELS}, got {channels}"
            )
        if sigma <= 0:
            raise ConfigError(f"residual blur sigma must be > 0, got {sigma}")
        self.channels = tuple(channels)
        self.register_buffer("kernel", gaussian_kernel(sigma), persistent=False)

    @property
    def uses_noisy(self) -> bool:
        """Whether any channel depends on the noisy input."""
        return any(c != "output" for c in self.channels)

    @property
    def uses_denoised(self) -> bool:
        """Whether any channel needs the denoiser's estimate."""
        return any(c in DENOISED_CHANNELS for c in self.channels)

    def forward(
        self, noisy: torch.Tensor, output: torch.Tensor, denoised: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B, C, H, W)`` stacked channels for ``(B, C, H, W)`` inputs, outputs and denoised inputs."""
        if denoised is None and self.uses_denoised:
            raise ConfigError(
                "'denoised' channels need the estimate of a self-supervised denoiser; none given"
            )
        parts = []
        blurred: dict[str, torch.Tensor] = {}

        def smooth(name: str, images: torch.Tensor) -> torch.Tensor:
            if name not in blurred:
                blurred[name] = blur(images, self.kernel)
            return blurred[name]

        for name in self.channels:
            if name == "noisy":
                parts.append(noisy)
            elif name == "output":
                parts.append(output)
            elif name == "residual":
                parts.append(smooth("noisy", noisy) - smooth("output", output))
            elif name == "blurred_noisy":
                parts.append(smooth("noisy", noisy))
            elif name == "denoised":
                parts.append(denoised)  # type: ignore[arg-type]
            else:
                parts.append(denoised - output)  # type: ignore[operator]
        return torch.cat(parts, dim=1)
