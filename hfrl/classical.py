"""Classical denoisers from scikit-image, tuned on the source domain's noisy/clean pairs.

A practitioner with a denoiser that fails on new data has, besides the noisy target images, the noisy
and clean *source* pairs it was trained on. The cheapest label-free baseline is a classical denoiser
whose parameter is chosen on those pairs: :func:`tune_classical` tries each method of :data:`METHODS`
over its parameter grid, fits a gain and offset that map its outputs to the clean levels (clipping
leaves the noisy background brighter than black, a bias no denoiser of zero-mean noise removes), and
keeps the one with the best source PSNR. :class:`ClassicalDenoiser` wraps the
result as a module, so it is evaluated, reported and compared exactly like a trained generator. It runs
on the CPU, one image at a time (a few milliseconds each for digits), and has no gradient.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from skimage import filters, restoration
from torch import nn

from hfrl.errors import ConfigError
from hfrl.metrics import psnr


def _gaussian(image: np.ndarray, value: float) -> np.ndarray:
    return filters.gaussian(image, sigma=value, channel_axis=0, preserve_range=True)


def _median(image: np.ndarray, value: float) -> np.ndarray:
    from scipy.ndimage import median_filter

    size = int(value)
    return median_filter(image, size=(1, size, size), mode="reflect")


def _tv(image: np.ndarray, value: float) -> np.ndarray:
    return restoration.denoise_tv_chambolle(image, weight=value, channel_axis=0)


def _nl_means(image: np.ndarray, value: float) -> np.ndarray:
    out = restoration.denoise_nl_means(
        image, h=value, patch_size=5, patch_distance=4, channel_axis=0, fast_mode=True
    )
    return out.reshape(image.shape)  # one channel comes back without its axis


def _wavelet(image: np.ndarray, value: float) -> np.ndarray:
    return restoration.denoise_wavelet(image, sigma=value, channel_axis=0, rescale_sigma=False)


METHODS: dict[str, tuple[Callable[[np.ndarray, float], np.ndarray], tuple[float, ...]]] = {
    "gaussian": (_gaussian, (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5)),
    "median": (_median, (3.0, 5.0, 7.0)),
    "tv": (_tv, (0.05, 0.1, 0.2, 0.3, 0.5, 0.8)),
    "nl-means": (_nl_means, (0.1, 0.2, 0.3, 0.45, 0.6)),
    "wavelet": (_wavelet, (0.1, 0.2, 0.3, 0.45, 0.6)),
}
"""``name -> (function(image (C, H, W), parameter), parameter grid)``: Gaussian blur (sigma in pixels),
median filter (window), total variation (Chambolle's weight), non-local means (filter strength ``h``) and
wavelet shrinkage (noise sigma)."""


class ClassicalDenoiser(nn.Module):
    """One scikit-image denoiser with a fixed parameter, as a module ``(B, C, H, W) -> (B, C, H, W)``.

    Args:
        method: A name in :data:`METHODS`.
        value: Its parameter.
        gain: Multiplies the method's output ...
        offset: ... before this is added and the result clipped to ``[0, 1]``.
    """

    def __init__(self, method: str, value: float, gain: float = 1.0, offset: float = 0.0) -> None:
        super().__init__()
        if method not in METHODS:
            raise ConfigError(f"unknown classical denoiser {method!r}; expected one of {', '.join(METHODS)}")
        self.method, self.value, self.gain, self.offset = method, float(value), float(gain), float(offset)

    def extra_repr(self) -> str:  # noqa: D102
        return f"method={self.method!r}, value={self.value:g}, gain={self.gain:.3g}, offset={self.offset:.3g}"

    def to_dict(self) -> dict[str, float | str]:
        """The denoiser's settings, JSON-ready (``ClassicalDenoiser(**d)`` rebuilds it)."""
        return {"method": self.method, "value": self.value, "gain": self.gain, "offset": self.offset}

    @torch.no_grad()
    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        """Denoised images in ``[0, 1]`` on ``noisy``'s device."""
        return (self.raw(noisy) * self.gain + self.offset).clamp_(0.0, 1.0)

    def raw(self, noisy: torch.Tensor) -> torch.Tensor:
        """The method's output before gain and offset."""
        fn = METHODS[self.method][0]
        arrays = noisy.detach().cpu().double().numpy()
        out = np.stack([fn(image, self.value) for image in arrays])
        return torch.from_numpy(out).float().to(noisy.device)


@dataclass(frozen=True)
class ClassicalChoice:
    """What :func:`tune_classical` chose, and every candidate's score.

    Attributes:
        denoiser: The best candidate, with its gain and offset.
        psnr: Its mean PSNR on the tuning pairs.
        scores: ``(method, value, mean PSNR)`` of every candidate.
    """

    denoiser: ClassicalDenoiser
    psnr: float
    scores: tuple[tuple[str, float, float], ...]


def tune_classical(
    noisy: torch.Tensor, clean: torch.Tensor, methods: Sequence[str] | None = None
) -> ClassicalChoice:
    """Choose the classical denoiser and parameter with the best mean PSNR on noisy/clean pairs.

    Args:
        noisy: ``(N, C, H, W)`` noisy source-domain images.
        clean: ``(N, C, H, W)`` their clean versions (the source domain's, never the target's).
        methods: Names to try (default: all of :data:`METHODS`).

    Returns:
        The best choice and every candidate's score.

    Raises:
        ConfigError: for an unknown method name.
        DataError: for mismatched shapes.
    """
    from hfrl.errors import DataError

    if noisy.shape != clean.shape or noisy.ndim != 4:
        raise DataError(
            f"tune_classical: noisy {tuple(noisy.shape)} and clean {tuple(clean.shape)} must match"
        )
    names = tuple(methods or METHODS)
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ConfigError(f"unknown classical denoiser(s) {unknown}; expected some of {', '.join(METHODS)}")
    scores, best, best_psnr = [], None, -float("inf")
    for name in names:
        for value in METHODS[name][1]:
            raw = ClassicalDenoiser(name, value).raw(noisy).flatten().double()
            design = torch.stack([raw, torch.ones_like(raw)], dim=1)
            gain, offset = torch.linalg.lstsq(design, clean.flatten().double()[:, None]).solution.flatten()
            candidate = ClassicalDenoiser(name, value, float(gain), float(offset))
            score = float(psnr(candidate(noisy), clean).mean())
            scores.append((name, float(value), score))
            if score > best_psnr:
                best, best_psnr = candidate, score
    assert best is not None
    return ClassicalChoice(best, best_psnr, tuple(scores))


def tune_on_source(domains: Any, noise: Any, seed: int = 0) -> ClassicalChoice:
    """:func:`tune_classical` on a run's source-domain validation pairs.

    The pairs are the source validation images under ``noise`` drawn with seed ``seed + 5``: the report's
    classical baseline (:func:`hfrl.baselines.reference_evaluations`) and the reward's classical estimate
    (:func:`hfrl.experiments.reward.prepare_reward` with ``reference="classical"``) are one denoiser.

    Args:
        domains: The run's :class:`~hfrl.data.Domains`.
        noise: The run's noise model (``noise(clean, torch_generator)``).
        seed: The run's seed.
    """
    pairs = domains.source("val").images
    return tune_classical(noise(pairs, torch.Generator().manual_seed(seed + 5)), pairs)
