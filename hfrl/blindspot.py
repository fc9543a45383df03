"""Blind-spot self-supervision: learn to denoise from noisy images alone, for white and correlated noise.

Noise2Self (Batson & Royer 2019, arXiv 1901.11365) hides some pixels of a noisy image and trains a
network to predict them from the rest. Where the noise is independent from pixel to pixel, the rest
carries no information about a hidden pixel's noise, so the best prediction is the clean value (up to
clipping's distortion): a denoiser learned without a clean image. Where the noise is spatially correlated
— camera and microscope noise — the neighbours do carry the hidden pixel's noise, and a one-pixel blind
spot learns (almost) the identity. The variants practitioners use for such noise:

* **wide blind spots** (``radius = R``): hide a ``(2R + 1)``-pixel square around each predicted pixel,
  so the nearest visible pixel is ``R + 1`` away, beyond the correlation length;
* **pixel-shuffle down-sampling** (``stride = s``; Zhou et al. 2020, arXiv 2003.06994, and AP-BSN, Lee et
  al. 2022): split the image into ``s * s`` sub-images of every ``s``-th pixel, where neighbouring
  samples are ``s`` pixels apart and their noise nearly independent, and learn on those.

:func:`blindspot_batch` builds one training batch for any of these; :func:`shuffle_down` and
:func:`shuffle_up` move between images and their sub-images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from hfrl.errors import ConfigError

_NEIGHBOURS = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]) / 8.0


def check_blindspot(grid: int, radius: int, stride: int) -> None:
    """Refuse settings under which the hidden pixels would not be hidden.

    Raises:
        ConfigError: unless ``radius >= 0``, ``stride >= 1`` and ``grid >= 2 * radius + 2`` (so that
            hidden squares never touch and every predicted pixel has visible context).
    """
    if radius < 0 or stride < 1:
        raise ConfigError(f"blind spot: radius must be >= 0 and stride >= 1, got {radius} and {stride}")
    if grid < 2 * radius + 2:
        raise ConfigError(
            f"blind spot: grid must be at least 2 * radius + 2 = {2 * radius + 2} so hidden squares do not "
            f"touch, got {grid}"
        )


def blindspot_batch(
    noisy: torch.Tensor, phase: tuple[int, int], grid: int, radius: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hide the pixels of one grid phase (and, with ``radius > 0``, the squares around them).

    With ``radius = 0`` each hidden pixel is replaced by the mean of its 8 neighbours (Noise2Self's
    masking). With ``radius = R > 0`` the whole ``(2R + 1) x (2R + 1)`` square around it is replaced by
    the image's mean, so nothing within ``R`` pixels of a predicted pixel is seen.

    Args:
        noisy: ``(B, C, H, W)`` noisy images.
        phase: ``(row, column)`` offset of the hidden grid, each in ``[0, grid)``.
        grid: Spacing of the predicted pixels in each direction.
        radius: Half-width of the hidden square around each predicted pixel.

    Returns:
        ``(input, mask)``: the masked images and a ``(1, 1, H, W)`` mask of the predicted pixels (where
        the loss is taken).
    """
    mask = torch.zeros_like(noisy[:1, :1])
    mask[..., phase[0] :: grid, phase[1] :: grid] = 1.0  # (1, 1, H, W)
    if radius == 0:
        c = noisy.shape[1]
        kernel = _NEIGHBOURS.to(noisy).view(1, 1, 3, 3).expand(c, 1, 3, 3)
        fill = F.conv2d(noisy, kernel, padding=1, groups=c)
        return noisy * (1 - mask) + fill * mask, mask
    hidden = F.max_pool2d(mask, 2 * radius + 1, stride=1, padding=radius)  # (1, 1, H, W)
    fill = noisy.mean(dim=(2, 3), keepdim=True)
    return noisy * (1 - hidden) + fill * hidden, mask


def shuffled_size(size: int, stride: int, multiple: int = 4) -> int:
    """The padded side length whose sub-images (``size / stride``) are a multiple of ``multiple``."""
    return math.ceil(size / (stride * multiple)) * stride * multiple


def shuffle_down(images: torch.Tensor, stride: int, multiple: int = 4) -> torch.Tensor:
    """Split ``(B, C, H, W)`` images into their ``stride**2`` sub-images ``(B * stride**2, C, h, w)``.

    The images are first padded (by reflection) so that ``h`` and ``w`` are multiples of ``multiple``.
    """
    if stride == 1:
        return images
    b, c, h, w = images.shape
    ph, pw = shuffled_size(h, stride, multiple), shuffled_size(w, stride, multiple)
    padded = F.pad(images, (0, pw - w, 0, ph - h), mode="replicate")
    sub = F.pixel_unshuffle(padded, stride)  # (B, C * s * s, h, w), channel c * s * s + i * s + j
    sub = sub.reshape(b, c, stride * stride, ph // stride, pw // stride).transpose(1, 2)
    return sub.reshape(b * stride * stride, c, ph // stride, pw // stride)


def shuffle_up(sub: torch.Tensor, stride: int, size: tuple[int, int]) -> torch.Tensor:
    """Reassemble the sub-images of :func:`shuffle_down` into ``(B, C, H, W)`` images of ``size``."""
    if stride == 1:
        return sub
    n, c, h, w = sub.shape
    b = n // (stride * stride)
    grouped = sub.reshape(b, stride * stride, c, h, w).transpose(1, 2).reshape(b, c * stride * stride, h, w)
    return F.pixel_shuffle(grouped, stride)[..., : size[0], : size[1]]
