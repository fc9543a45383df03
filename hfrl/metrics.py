"""Image-quality metrics (PSNR and SSIM from torchmetrics) and the seed paper's per-image statistics."""

from __future__ import annotations

import math

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

SSIM_WINDOW = 11
"""SSIM's Gaussian window (pixels) for images of at least that size; smaller images get a smaller one."""
SSIM_SIGMA = 1.5
"""Standard deviation of the full-size window; a smaller window's shrinks in proportion."""


def ssim_window(height: int, width: int) -> tuple[int, float]:
    """The SSIM window ``(size, sigma)`` for images of ``height x width``.

    :data:`SSIM_WINDOW` pixels with sigma :data:`SSIM_SIGMA` when the images are at least that large (28x28
    digits: 11 and 1.5, the usual choice); otherwise the largest odd size that fits, with sigma scaled
    alike (8x8 images: 7 and 0.95).
    """
    side = min(int(height), int(width), SSIM_WINDOW)
    size = max(side if side % 2 else side - 1, 1)
    return size, SSIM_SIGMA * size / SSIM_WINDOW


def psnr(outputs: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in ``[0, 1]``.

    Args:
        outputs: ``(B, C, H, W)``.
        clean: ``(B, C, H, W)``.

    Returns:
        ``(B,)`` float32; a perfect reconstruction gives ``inf``.
    """
    return peak_signal_noise_ratio(
        outputs.float(), clean.float(), data_range=1.0, reduction="none", dim=(1, 2, 3)
    ).reshape(-1)


def ssim(outputs: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (Gaussian window, :func:`ssim_window` of the image size) for images in ``[0, 1]``.

    Colour images are averaged over their channels.

    Args:
        outputs: ``(B, C, H, W)``.
        clean: ``(B, C, H, W)``.

    Returns:
        ``(B,)`` float32 in ``[-1, 1]``.
    """
    size, sigma = ssim_window(*outputs.shape[-2:])
    return structural_similarity_index_measure(
        outputs.float(), clean.float(), data_range=1.0, reduction="none", kernel_size=size, sigma=sigma
    ).reshape(-1)


def correlation(outputs: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per-image Pearson correlation of pixel values; 0 for a constant (e.g. blank) image.

    SSIM alone rates a blank output close to a thin digit (a '1' is mostly background, and background
    windows match perfectly), so the judges also ask for correlation with the clean image.

    Args:
        outputs: ``(B, C, H, W)``.
        clean: ``(B, C, H, W)``.

    Returns:
        ``(B,)`` float32 in ``[-1, 1]``.
    """
    a = outputs.float().flatten(1)
    b = clean.float().flatten(1)
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    denom = a.norm(dim=1) * b.norm(dim=1)
    return torch.where(denom > 1e-8, (a * b).sum(dim=1) / denom.clamp(min=1e-8), torch.zeros_like(denom))


def _finite(values: torch.Tensor) -> torch.Tensor:
    values = values.float()
    return values[torch.isfinite(values)]


def summary(values: torch.Tensor) -> dict[str, float]:
    """Mean, standard deviation, min and max of the finite entries of a ``(N,)`` tensor."""
    v = _finite(values)
    if v.numel() == 0:
        return {"mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan}
    return {
        "mean": float(v.mean()),
        "std": float(v.std(unbiased=False)),
        "min": float(v.min()),
        "max": float(v.max()),
    }


def psnr_gain_stats(psnr_after: torch.Tensor, psnr_before: torch.Tensor) -> dict[str, float]:
    """Per-image PSNR gain of a fine-tuned generator over the original, as the seed paper reports it.

    Args:
        psnr_after: ``(N,)`` PSNR of the fine-tuned generator's outputs.
        psnr_before: ``(N,)`` PSNR of the original generator's outputs on the same noisy images.

    Returns:
        ``mean``, ``std``, ``max`` and ``min`` of the gain in dB, and ``share_improved`` (gain > 0).
    """
    gain = psnr_after.float() - psnr_before.float()
    stats = summary(gain)
    finite = _finite(gain)
    stats["share_improved"] = float((finite > 0).float().mean()) if finite.numel() else math.nan
    return stats
