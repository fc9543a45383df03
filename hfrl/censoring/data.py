"""Censored sampling, data: crossed 7s (see :mod:`hfrl.censoring`)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from hfrl.data import ImageSet, load_embedded_mnist
from hfrl.errors import ConfigError

SEVEN = 7
CROSSED_FRACTION = 0.15
"""Share of crossed 7s in the DDPM's training mix (the issue asks for 10-20 %)."""
CROSSED_SEED = 0
"""Seed of which 7s are crossed, and of their strokes, in the shipped DDPM's training data."""
MALIGN, BENIGN = 0, 1
"""Class indices of the stroke detectors and the reward's label convention (the paper's: benign = 1)."""

LABELER_CHECKPOINT = "stroke_detector_labeler"
EVALUATOR_CHECKPOINT = "stroke_detector_evaluator"
DETECTOR_KIND = "stroke_detector"
REWARD_KIND = "censor_reward"


@dataclass(frozen=True)
class StrokeParams:
    """Where and how a stroke is drawn, as fractions and pixels.

    Attributes:
        height: Vertical position as a fraction of the digit's ink extent, from its top (0.45-0.62).
        length: Stroke length in pixels (9-13).
        width: Stroke thickness in pixels (1.6-2.4).
        slope: Tilt, pixels of rise per pixel (-0.08-0.08).
        offset: Horizontal offset of the stroke's centre from the stem, in pixels (-1-1).
        intensity: Peak brightness (0.85-1).
    """

    height: float
    length: float
    width: float
    slope: float
    offset: float
    intensity: float

    @classmethod
    def draw(cls, rng: np.random.Generator) -> StrokeParams:
        """Random stroke parameters from ``rng`` (always six draws, in this order)."""
        return cls(
            height=float(rng.uniform(0.45, 0.62)),
            length=float(rng.uniform(9.0, 13.0)),
            width=float(rng.uniform(1.6, 2.4)),
            slope=float(rng.uniform(-0.08, 0.08)),
            offset=float(rng.uniform(-1.0, 1.0)),
            intensity=float(rng.uniform(0.85, 1.0)),
        )


def _stem_position(image: np.ndarray, row: int, threshold: float = 0.3) -> float | None:
    """Centre column of the heaviest run of ink in ``row`` (``None`` if the row has no ink)."""
    ink = image[row] > threshold
    if not ink.any():
        return None
    runs, start = [], None
    for x, on in enumerate(list(ink) + [False]):
        if on and start is None:
            start = x
        elif not on and start is not None:
            runs.append((start, x))
            start = None
    a, b = max(runs, key=lambda r: float(image[row, r[0] : r[1]].sum()))
    cols = np.arange(a, b)
    return float((cols * image[row, a:b]).sum() / image[row, a:b].sum())


def draw_stroke(image: torch.Tensor, params: StrokeParams) -> torch.Tensor:
    """Draw a horizontal stroke through the stem of a 7 (a "crossed 7").

    The stroke's row is ``params.height`` of the way down the digit's ink; its centre is the middle of the
    heaviest run of ink in that row (the stem), searched in nearby rows when the row is empty. It is drawn
    anti-aliased (brightness falls off linearly over one pixel beyond half the width) and merged with
    ``max``, like ink on ink.

    Args:
        image: ``(1, H, W)`` a 7 in ``[0, 1]``.
        params: Where and how to draw.

    Returns:
        ``(1, H, W)`` the crossed 7 (a new tensor).
    """
    img = image[0].detach().cpu().numpy().astype(np.float64)  # (H, W)
    h, w = img.shape
    rows = np.flatnonzero(img.max(axis=1) > 0.3)
    top, bottom = (int(rows[0]), int(rows[-1])) if rows.size else (h // 4, 3 * h // 4)
    y = top + params.height * (bottom - top)
    x = None
    for dy in (0, 1, -1, 2, -2, 3, -3):
        r = int(round(y)) + dy
        if 0 <= r < h:
            x = _stem_position(img, r)
            if x is not None:
                break
    if x is None:
        x = (w - 1) / 2.0
    cx = float(np.clip(x + params.offset, 3, w - 4))
    half = params.length / 2.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    # Distance from each pixel to the segment through (cx, y) with the given slope.
    direction = np.array([1.0, params.slope]) / math.hypot(1.0, params.slope)
    px, py = xx - cx, yy - y
    along = np.clip(px * direction[0] + py * direction[1], -half, half)
    dist = np.hypot(px - along * direction[0], py - along * direction[1])
    stroke = np.clip(1.0 - (dist - params.width / 2.0), 0.0, 1.0) * params.intensity
    out = np.maximum(img, stroke)
    return torch.from_numpy(out.astype(np.float32))[None]


@dataclass(frozen=True)
class CrossedSevens:
    """The 7s with a seeded share crossed.

    Attributes:
        images: ``(N, 1, H, W)`` float32 in ``[0, 1]``.
        crossed: ``(N,)`` bool, True where a stroke was drawn (malign).
        source_index: ``(N,)`` int64 position of each image among the input 7s.
    """

    images: torch.Tensor
    crossed: torch.Tensor
    source_index: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])


NATURALLY_CROSSED = (
    2, 15, 16, 32, 34, 40, 49, 54, 79, 95, 97, 101, 107, 108, 109, 111, 116, 127, 129, 130, 133, 134, 136,
    150, 152, 154, 159, 160, 164, 167, 174, 183, 186, 201, 217, 218, 225, 226, 232, 235, 238, 250, 251, 253,
    260, 266, 272, 275, 277, 281, 288, 291, 295, 299, 310, 313, 323, 327, 330, 338, 346, 353, 357, 371, 377,
    378, 383, 385, 395, 405, 415, 416, 418, 429, 430, 435, 439, 443, 455, 464, 471, 472, 489, 497, 499,
)  # fmt: skip
"""Positions among the 500 embedded 7s of those that already have a cross-bar (or might: the list errs on
the side of dropping). About one MNIST 7 in ten is written crossed, the European way; left in, they would
be malign images that the data's crossed share does not count. Found by three rounds of cross-fitting (a
stroke detector trained on one half scores the other half; drop what it finds, repeat; thresholds 0.05,
0.5, 0.02) and checked by eye; ``scripts/train_ddpm.py --find-crossed`` reruns the search."""


def sevens(data: ImageSet | None = None, *, plain: bool = True) -> torch.Tensor:
    """The 7s of ``data`` (default: the embedded digits) as ``(N, 1, 28, 28)``.

    Args:
        data: Images with labels (default: the 5,000 embedded digits, 500 of them 7s).
        plain: Leave out the :data:`NATURALLY_CROSSED` 7s (default ``True``; only for the embedded digits),
            leaving 415 plain 7s.
    """
    if data is not None:
        return data.with_classes([SEVEN]).images
    images = _embedded_sevens()
    if plain:
        keep = torch.ones(images.shape[0], dtype=torch.bool)
        keep[list(NATURALLY_CROSSED)] = False
        return images[keep]
    return images.clone()


@functools.lru_cache(maxsize=1)
def _embedded_sevens() -> torch.Tensor:
    return load_embedded_mnist().with_classes([SEVEN]).images  # loading takes ~1 s; callers get copies


def crossed_sevens(
    images: torch.Tensor | None = None, fraction: float = CROSSED_FRACTION, seed: int = CROSSED_SEED
) -> CrossedSevens:
    """Cross a fixed share of 7s, deterministically from ``seed``.

    Exactly ``round(fraction * N)`` images, chosen by a permutation from ``seed``, get a stroke with
    parameters drawn from the same generator.

    Args:
        images: ``(N, 1, H, W)`` 7s (default: the 415 plain embedded 7s, :func:`sevens`).
        fraction: Share to cross, in ``[0, 1]`` (default 0.15).
        seed: Seed of the choice and of the strokes.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"fraction must be in [0, 1], got {fraction}")
    images = sevens() if images is None else images
    rng = np.random.default_rng(seed)
    n = images.shape[0]
    chosen = np.sort(rng.permutation(n)[: int(round(fraction * n))])
    out = images.clone()
    crossed = torch.zeros(n, dtype=torch.bool)
    for i in chosen.tolist():
        out[i] = draw_stroke(images[i], StrokeParams.draw(rng))
        crossed[i] = True
    return CrossedSevens(out, crossed, torch.arange(n))


def detector_training_set(images: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every 7 twice, plain and crossed (strokes drawn from ``seed``): a balanced detector training set.

    Args:
        images: ``(N, 1, H, W)`` 7s.
        seed: Seed of the strokes.

    Returns:
        ``(images (2N, 1, H, W), labels (2N,))`` with :data:`BENIGN` for plain and :data:`MALIGN` for crossed.
    """
    rng = np.random.default_rng(seed)
    crossed = torch.stack([draw_stroke(img, StrokeParams.draw(rng)) for img in images])
    x = torch.cat([images, crossed])
    y = torch.cat([torch.full((len(images),), BENIGN), torch.full((len(images),), MALIGN)]).long()
    return x, y


def sevens_half(images: torch.Tensor, half: int, seed: int = 1234) -> torch.Tensor:
    """One of two disjoint halves of the 7s (by a permutation from ``seed``): the detectors never share an image."""
    if half not in (0, 1):
        raise ConfigError(f"half must be 0 or 1, got {half}")
    perm = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
    cut = images.shape[0] // 2
    return images[torch.sort(perm[:cut] if half == 0 else perm[cut:]).values]
