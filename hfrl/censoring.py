"""Censored sampling with minimal feedback (Yoon et al. 2023, arXiv 2307.02770), on crossed 7s.

A DDPM trained on MNIST 7s of which a fixed share carry a horizontal stroke through the stem ("crossed
7s") produces crossed 7s at about that rate. Crossed 7s are *malign*, plain 7s *benign*. Censoring keeps
the diffusion model as it is and steers sampling away from malign images with a reward model learned from
a few labels of generated samples.

Pieces, in the order the method uses them:

1. **Data.** :func:`draw_stroke` adds a stroke to a 7 deterministically from a seed;
   :func:`crossed_sevens` builds the DDPM's training mix: 15 % of the 415 embedded 7s written without a
   cross-bar get one (:data:`NATURALLY_CROSSED` lists the 85 left out).
2. **Stand-ins for people.** :class:`MalignLabeler` is the synthetic labeler: a stroke detector (a
   ``cnn`` :class:`~hfrl.classifiers.DigitClassifier` with two classes) trained on generated crossed and
   plain 7s. :class:`MalignEvaluator` is the benchmark's referee, independent of it: other architecture
   (``lenet``), the other half of the 7s, other stroke draws and another seed. Only the evaluator's
   verdicts are reported as malign rates; reward models learn from the labeler's labels only.
3. **Reward models** :class:`CensorReward`: ``r(x) = P(benign | x)`` from a small CNN, either
   *time-independent* (on clean images, applied to the predicted ``x0_hat``) or *time-dependent* (on
   ``x_t`` with the timestep, trained on noised labelled samples). :class:`ProductEnsemble` combines
   several as a product of probabilities (a sum of log-probabilities), as in the paper.
   :func:`train_censor_reward` fits one with the paper's weighted BCE and augmentation.
4. **Guidance** (:class:`GuidanceConfig`, :func:`censored_sample`), each term with its weight:

   * *classifier guidance* on ``x_t`` (Dhariwal & Nichol 2021, in DDIM form):
     ``eps <- eps - w * sqrt(1 - abar_t) * grad_{x_t} log r(x_t, t)`` with a time-dependent reward;
   * *forward (universal) guidance* on the predicted clean image (Bansal et al. 2023, arXiv 2302.07121):
     ``eps <- eps - w * sqrt(1 - abar_t) * grad_{x_t} log r(x0_hat(x_t))``, back-propagating through the
     noise predictor;
   * *backward guidance* (Bansal et al.): ``m`` Adam steps on ``delta`` to raise ``log r(x0_hat + delta)``,
     then ``eps <- eps - sqrt(abar_t / (1 - abar_t)) * delta``;
   * *recurrence* (Bansal et al.; Yoon et al.'s ``R``): after each guided step, re-noise ``x_prev`` back
     to ``x_t`` and repeat the step, ``R`` times in all.

Label mapping through the feedback store (kind ``single``): ``good`` = benign, ``bad`` = malign
(``hfrl.feedback.labels.rating_value``: good -> 1.0 = benign, the reward's positive class).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hfrl.checkpoint import load_checkpoint
from hfrl.classifiers import ClassifierConfig, DigitClassifier
from hfrl.data import ImageSet, load_embedded_mnist
from hfrl.diffusion import (
    ResBlock,
    Scheduler,
    UNet2D,
    initial_noise,
    timestep_embedding,
    to_images,
    to_model_space,
)
from hfrl.errors import ConfigError, DataError
from hfrl.judges import BAD, GOOD, NoisyLabeler, asset_path

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


# ---------------------------------------------------------------------------------------------------------
# Data: crossed 7s


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


# ---------------------------------------------------------------------------------------------------------
# Stroke detectors: the synthetic labeler and the independent evaluator


@dataclass(frozen=True)
class DetectorRecipe:
    """How a shipped stroke detector is trained (so the script and the tests agree).

    Attributes:
        arch: ``cnn`` or ``lenet`` (see :mod:`hfrl.classifiers`).
        half: Which half of the 415 plain embedded 7s it trains on (:func:`sevens_half`).
        stroke_seed: Seed of the strokes of its training set.
        seed: Training seed.
        epochs: Training epochs.
    """

    arch: str
    half: int
    stroke_seed: int
    seed: int
    epochs: int = 20


LABELER_RECIPE = DetectorRecipe(arch="cnn", half=0, stroke_seed=101, seed=11)
EVALUATOR_RECIPE = DetectorRecipe(arch="lenet", half=1, stroke_seed=202, seed=22)


def build_stroke_detector(config: dict[str, Any]) -> DigitClassifier:
    """Build an untrained two-class stroke detector (the ``stroke_detector`` checkpoint kind)."""
    cfg = ClassifierConfig(**config)
    if cfg.num_classes != 2:
        raise ValueError(f"a stroke detector has 2 classes (malign, benign), got {cfg.num_classes}")
    return DigitClassifier(cfg)


class StrokeJudge:
    """Calls images malign (crossed) or benign from a stroke detector's probability.

    Args:
        detector: A two-class :class:`~hfrl.classifiers.DigitClassifier` (class 0 malign, 1 benign).
        threshold: An image is malign when ``P(malign) >= threshold`` (default 0.5).
    """

    def __init__(self, detector: DigitClassifier, threshold: float = 0.5) -> None:
        self.detector = detector.eval()
        self.threshold = float(threshold)

    @property
    def device(self) -> torch.device:
        """Device of the detector."""
        return next(self.detector.parameters()).device

    def to(self, device: torch.device | str) -> StrokeJudge:
        """Move the detector; returns ``self``."""
        self.detector.to(device)
        return self

    @torch.no_grad()
    def malign_prob(self, images: torch.Tensor) -> torch.Tensor:
        """``(B,)`` probability that each image ``(B, 1, H, W)`` in ``[0, 1]`` is a crossed 7 (CPU)."""
        return self.detector.probabilities(images.to(self.device).float())[:, MALIGN].cpu()

    def is_malign(self, images: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool verdicts."""
        return self.malign_prob(images) >= self.threshold

    def malign_rate(self, images: torch.Tensor) -> float:
        """Share of ``images`` judged malign."""
        return float(self.is_malign(images).float().mean())


class MalignEvaluator(StrokeJudge):
    """The benchmark's referee for malignity: a ``lenet`` detector on the other half of the 7s.

    It shares no training image, no stroke draw, no seed and no architecture with :class:`MalignLabeler`,
    so a sampler that learns to slip past the labeler's reward models is still caught by it.
    """

    @classmethod
    def from_pretrained(
        cls, path: str | Path | None = None, device: torch.device | str = "cpu", threshold: float = 0.5
    ) -> MalignEvaluator:
        """Load the shipped evaluator detector (or the checkpoint at ``path``)."""
        model, _ = load_checkpoint(
            path or asset_path(EVALUATOR_CHECKPOINT), kind=DETECTOR_KIND, device=device
        )
        return cls(model, threshold)  # type: ignore[arg-type]


class MalignLabeler(StrokeJudge, NoisyLabeler):
    """A simulated person who labels generated 7s: ``good`` (benign) or ``bad`` (malign, crossed).

    It has the :class:`~hfrl.judges.SyntheticLabeler` interface that :func:`hfrl.feedback.simulate`
    needs (``labeler_id``, ``label``, ``compare``, ``pick_best``, from :class:`~hfrl.judges.NoisyLabeler`),
    so it answers queued items through the feedback store exactly as people on the labelling page do. It
    ignores the clean images and classes (a generated sample has none). Of two images the less likely
    malign is better (ties within 0.05); the best of a batch is the least likely malign of all of them,
    whatever their labels.

    Args:
        detector: The labeler's stroke detector.
        threshold: Malign when ``P(malign) >= threshold``.
        flip_rate: Probability of a wrong answer (human error).
        skip_rate: Probability of answering ``skip`` (pairs: ``tie``).
        seed: Seed of the flips and skips.
        labeler_id: Identity recorded with every label.
    """

    best_among_good = False

    def __init__(
        self,
        detector: DigitClassifier,
        threshold: float = 0.5,
        flip_rate: float = 0.0,
        skip_rate: float = 0.0,
        seed: int = 0,
        labeler_id: str = "synthetic-censor",
    ) -> None:
        StrokeJudge.__init__(self, detector, threshold)
        NoisyLabeler.__init__(self, flip_rate, skip_rate, 0.05, seed, labeler_id)

    @classmethod
    def from_pretrained(
        cls, path: str | Path | None = None, device: torch.device | str = "cpu", **kwargs: Any
    ) -> MalignLabeler:
        """Load the shipped labeler detector (or the checkpoint at ``path``)."""
        model, _ = load_checkpoint(path or asset_path(LABELER_CHECKPOINT), kind=DETECTOR_KIND, device=device)
        return cls(model, **kwargs)  # type: ignore[arg-type]

    def is_good(self, outputs: torch.Tensor, clean: Any = None, classes: Any = None) -> torch.Tensor:
        """``(B,)`` bool: benign (``P(malign) < threshold``)."""
        return ~self.is_malign(outputs)

    def preference(self, outputs: torch.Tensor, clean: Any = None, classes: Any = None) -> torch.Tensor:
        """``(B,)`` ``-P(malign)``: the less likely malign, the better."""
        return -self.malign_prob(outputs)


def train_stroke_detector(
    images: torch.Tensor, recipe: DetectorRecipe, device: torch.device | str = "cpu", progress: bool = False
) -> DigitClassifier:
    """Train a stroke detector on plain and crossed versions of ``images`` with degradation augmentation.

    Args:
        images: ``(N, 1, H, W)`` 7s (one half of them, see :func:`sevens_half`).
        recipe: Architecture, stroke seed, training seed, epochs.
        device: Training device.
        progress: Show a progress bar.
    """
    from hfrl.classifiers import train_classifier

    x, y = detector_training_set(images, recipe.stroke_seed)
    data = ImageSet(x, y, f"crossed-7 detector set (half {recipe.half})")
    config = ClassifierConfig(arch=recipe.arch, num_classes=2)
    return train_classifier(
        data, config, epochs=recipe.epochs, seed=recipe.seed, device=device, progress=progress
    )


# ---------------------------------------------------------------------------------------------------------
# Reward models: P(benign | x), time-independent or time-dependent


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


# ---------------------------------------------------------------------------------------------------------
# Guidance at sampling time


@dataclass(frozen=True)
class GuidanceConfig:
    """Reward guidance of one sampling run; every term has its own weight and 0 turns it off.

    Attributes:
        classifier_weight: ``w`` of classifier guidance on ``x_t`` (needs a time-dependent reward):
            ``eps <- eps - w sqrt(1 - abar_t) grad_{x_t} log r(x_t, t)``. The paper's MNIST setting: 1.0
            for a 5-member ensemble, 5.0 for a single model.
        forward_weight: ``w`` of forward (universal) guidance on the predicted clean image:
            ``eps <- eps - w sqrt(1 - abar_t) grad_{x_t} log r(x0_hat(x_t))``; back-propagates through the
            noise predictor (about three times the cost of a plain step).
        backward_steps: ``m``, Adam steps of backward guidance on ``x0_hat`` per sampling step (0: off).
        backward_lr: Adam learning rate of backward guidance (pixel units of ``[-1, 1]``).
        recurrences: ``R``: each sampling step is taken ``R`` times, re-noising ``x_prev`` back to ``x_t``
            in between (1: no recurrence).
        guide_until: Apply guidance only while ``t >= guide_until`` (0: at every step). Late steps only
            sharpen details; guiding them can leave artefacts.
    """

    classifier_weight: float = 0.0
    forward_weight: float = 0.0
    backward_steps: int = 0
    backward_lr: float = 0.05
    recurrences: int = 1
    guide_until: int = 0

    def __post_init__(self) -> None:
        if min(self.classifier_weight, self.forward_weight, self.backward_lr) < 0 or self.backward_steps < 0:
            raise ConfigError(f"guidance weights, backward_steps and backward_lr must be >= 0, got {self}")
        if self.recurrences < 1:
            raise ConfigError(f"recurrences must be at least 1, got {self.recurrences}")

    @property
    def active(self) -> bool:
        """Whether any guidance term is on."""
        return self.classifier_weight > 0 or self.forward_weight > 0 or self.backward_steps > 0

    def describe(self) -> str:
        """Short human-readable summary, e.g. ``classifier 1, backward 5x0.05, R=4``."""
        parts = []
        if self.classifier_weight:
            parts.append(f"classifier {self.classifier_weight:g}")
        if self.forward_weight:
            parts.append(f"forward {self.forward_weight:g}")
        if self.backward_steps:
            parts.append(f"backward {self.backward_steps}x{self.backward_lr:g}")
        if self.recurrences > 1:
            parts.append(f"R={self.recurrences}")
        return ", ".join(parts) or "none"


def _grad(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``grad_x sum(fn(x))`` with gradients switched on locally."""
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        return torch.autograd.grad(fn(x_in).sum(), x_in)[0]


def guided_noise(
    model: UNet2D,
    scheduler: Scheduler,
    reward: RewardLike | None,
    x: torch.Tensor,
    t: int,
    guidance: GuidanceConfig,
) -> torch.Tensor:
    """The noise prediction at ``(x_t, t)`` with every active guidance term applied.

    Args:
        model: The noise predictor.
        scheduler: The scheduler (for ``abar_t``).
        reward: ``log r`` to raise; ``None`` (or inactive guidance) gives the plain prediction.
        x: ``(B, 1, H, W)`` ``x_t``.
        t: The timestep.
        guidance: Weights of the terms.

    Returns:
        ``(B, 1, H, W)`` guided ``eps``.
    """
    active = reward is not None and guidance.active and t >= guidance.guide_until
    if not active:
        with torch.no_grad():
            return model(x, t)
    assert reward is not None
    abar = scheduler.alpha_bar(t, x)  # (B, 1, 1, 1)
    if guidance.forward_weight > 0:
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            eps = model(x_in, t)
            x0 = ((x_in - (1 - abar).sqrt() * eps) / abar.sqrt()).clamp(-1, 1)
            grad_fwd = torch.autograd.grad(reward.log_prob(x0, 0).sum(), x_in)[0]
        eps = eps.detach() - guidance.forward_weight * (1 - abar).sqrt() * grad_fwd
    else:
        with torch.no_grad():
            eps = model(x, t)
    if guidance.classifier_weight > 0:
        if not reward.time_dependent:
            raise ConfigError("classifier guidance on x_t needs a time-dependent reward model")
        eps = eps - guidance.classifier_weight * (1 - abar).sqrt() * _grad(lambda z: reward.log_prob(z, t), x)
    if guidance.backward_steps > 0:
        x0 = scheduler.predict_original(eps, t, x).clamp(-1, 1).detach()
        delta = torch.zeros_like(x0, requires_grad=True)
        opt = torch.optim.Adam([delta], lr=guidance.backward_lr)
        with torch.enable_grad():
            for _ in range(guidance.backward_steps):
                loss = -reward.log_prob(x0 + delta, 0).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        # Shifting eps by -sqrt(abar / (1 - abar)) delta moves x0_hat by exactly +delta (Bansal et al., Alg. 1).
        eps = eps - (abar / (1 - abar)).sqrt() * delta.detach()
    return eps.detach()


@torch.no_grad()
def censored_sample(
    model: UNet2D,
    scheduler: Scheduler,
    num: int,
    reward: RewardLike | None = None,
    guidance: GuidanceConfig | None = None,
    *,
    generator: torch.Generator | None = None,
    batch_size: int = 250,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Sample with reward guidance (the plain reverse chain when ``reward`` is ``None``).

    The loop is that of :func:`hfrl.diffusion.sample` with :func:`guided_noise` in place of the model, and
    recurrence around each step: after a step ``x_t -> x_prev``, ``x_t`` is redrawn as
    ``sqrt(abar_t / abar_prev) x_prev + sqrt(1 - abar_t / abar_prev) xi`` and the step is taken again.

    The initial noise of all ``num`` samples is drawn first, so the same ``generator`` seed gives the same
    starting points with and without guidance (a paired comparison), whatever ``batch_size``. Later draws
    (stochastic steps, recurrence) are taken batch by batch, so those samples also depend on ``batch_size``.

    Args:
        model: The noise predictor.
        scheduler: DDIM or DDPM scheduler.
        num: Number of images.
        reward: Reward model or ensemble (``log P(benign)``).
        guidance: Guidance weights (default: none).
        generator: Randomness of ``x_T``, stochastic steps and recurrence noise.
        batch_size: Images sampled at once.
        progress: Called as ``progress(done, num)`` after each batch.

    Returns:
        ``(num, 1, H, W)`` images in ``[0, 1]`` on the CPU.
    """
    guidance = guidance or GuidanceConfig()
    device = next(model.parameters()).device
    if reward is not None:
        reward.to(device).eval()
    shape = (model.config.in_channels, *model.config.image_size)
    noise = initial_noise(num, shape, generator, "cpu")
    out = []
    for chunk in noise.split(batch_size):
        x = chunk.to(device)  # (b, 1, H, W)
        for t in scheduler.timesteps.tolist():
            for r in range(guidance.recurrences):
                eps = guided_noise(model, scheduler, reward, x, t, guidance)
                prev = scheduler.step(eps, t, x, generator=generator).prev_sample
                if r + 1 < guidance.recurrences:
                    ratio = scheduler.alpha_bar(t, x) / scheduler.alpha_bar(scheduler.previous_timestep(t), x)
                    x = ratio.sqrt() * prev + (1 - ratio).sqrt() * initial_noise(
                        len(x), shape, generator, device
                    )
            x = prev
        out.append(to_images(x).cpu())
        if progress is not None:
            progress(sum(len(o) for o in out), num)
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------------------
# Labels: from people (the labelling page) or the synthetic labeler, through the feedback store


@dataclass(frozen=True)
class LabelBudget:
    """When to stop asking for labels (Yoon et al. 2023's budget by default).

    Attributes:
        malign: Stop once this many malign samples are found (the paper: 10).
        max_labels: Stop after this many labels in any case.
        page: Samples put to labelers per query; all of a query's labels count, so the count can overshoot
            the stopping point by up to ``page - 1``.
    """

    malign: int = 10
    max_labels: int = 300
    page: int = 5

    def __post_init__(self) -> None:
        if self.malign < 1 or self.max_labels < 1 or self.page < 1:
            raise ConfigError(f"label budget values must be positive, got {self}")


@dataclass(frozen=True)
class CensorLabels:
    """Generated samples with malign/benign labels.

    Attributes:
        images: ``(N, 1, H, W)`` the labelled samples in ``[0, 1]`` (skipped ones left out).
        benign: ``(N,)`` bool, True for ``good`` (benign), False for ``bad`` (malign).
        labels_used: Labels given, skips included (the human effort).
        query_ids: Feedback-store queries the labels came from.
    """

    images: torch.Tensor
    benign: torch.Tensor
    labels_used: int
    query_ids: tuple[int, ...] = ()

    @property
    def n_malign(self) -> int:
        """Number of malign samples."""
        return int((~self.benign).sum())

    @property
    def n_benign(self) -> int:
        """Number of benign samples."""
        return int(self.benign.sum())


def collect_labels(
    pool: torch.Tensor,
    queue: Any,
    budget: LabelBudget | None = None,
    *,
    labeler: MalignLabeler | None = None,
    timeout: float | None = None,
    checkpoint: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CensorLabels:
    """Put generated samples to labelers page by page until the budget is met.

    Each page is one ``single`` query in the feedback store: ``good`` means benign, ``bad`` malign,
    ``skip`` is left out. With a ``labeler`` the page is answered headless through
    :func:`hfrl.feedback.simulate` (the same store calls as the labelling page); without one, this waits
    for people (``hfrl label serve`` on the same database).

    The synthetic path answers only items that have a clean reference image; a generated sample has none,
    so the sample itself is stored in that slot. The labelling page never serves it.

    Args:
        pool: ``(M, 1, H, W)`` samples in ``[0, 1]``, shown in order.
        queue: A :class:`hfrl.feedback.FeedbackQueue`.
        budget: Stopping rule (default: 10 malign).
        labeler: The synthetic labeler; ``None`` waits for people.
        timeout: Seconds to wait for people per page (``None``: forever).
        checkpoint: Name of the DDPM that made the samples, stored with them.
        progress: Called as ``progress(n_malign, labels_used)`` after each page.

    Returns:
        The labelled samples.

    Raises:
        DataError: when the pool runs out before the budget is met.
    """
    from hfrl.feedback import SINGLE, simulate

    budget = budget or LabelBudget()
    images: list[torch.Tensor] = []
    benign: list[bool] = []
    used = 0
    queries = []
    for start in range(0, pool.shape[0], budget.page):
        page = pool[start : start + budget.page]
        qid = queue.enqueue(
            page, page, kind=SINGLE, clean=page, checkpoint=checkpoint, domain="censor",
            note="censoring: good = benign, bad = malign (crossed)",
        )  # fmt: skip
        queries.append(qid)
        if labeler is not None:
            simulate(queue.store, labeler, kind=SINGLE, batch_size=budget.page)
        result = queue.wait(qid, timeout=timeout)
        for image, word in zip(page, result.labels):
            used += 1
            if word in (GOOD, BAD):
                images.append(image)
                benign.append(word == GOOD)
        n_malign = benign.count(False)
        if progress is not None:
            progress(n_malign, used)
        if n_malign >= budget.malign or used >= budget.max_labels:
            break
    else:
        raise DataError(
            f"the pool of {pool.shape[0]} samples ran out with {benign.count(False)} of {budget.malign} malign found; "
            "sample a larger pool"
        )
    return CensorLabels(torch.stack(images), torch.tensor(benign), used, tuple(queries))


def label_directly(
    pool: torch.Tensor, labeler: MalignLabeler, budget: LabelBudget | None = None
) -> CensorLabels:
    """:func:`collect_labels`' result without a feedback store: the labeler labels the pool in order.

    Same stopping rule and the same answers as the store path with the same labeler seed; for benchmarks
    and tests, where a SQLite round trip per page only costs time.
    """
    budget = budget or LabelBudget()
    images: list[torch.Tensor] = []
    benign: list[bool] = []
    used = 0
    for start in range(0, pool.shape[0], budget.page):
        page = pool[start : start + budget.page]
        for image, word in zip(page, labeler.label(page)):
            used += 1
            if word in (GOOD, BAD):
                images.append(image)
                benign.append(word == GOOD)
        if benign.count(False) >= budget.malign or used >= budget.max_labels:
            return CensorLabels(torch.stack(images), torch.tensor(benign), used)
    raise DataError(f"the pool of {pool.shape[0]} samples ran out before {budget.malign} malign were found")


# ---------------------------------------------------------------------------------------------------------
# Single model, union and ensemble (Yoon et al. 2023, Sec. 5)

REWARD_SETUPS = ("single", "union", "ensemble")


def ensemble_subsets(
    labels: CensorLabels, members: int = 5, benign_per_member: int = 10, seed: int = 0
) -> list[torch.Tensor]:
    """Index sets of the ensemble members: every malign sample plus ``benign_per_member`` benign ones each.

    Benign samples are dealt from one seeded permutation, so members get disjoint benign sets while there
    are enough (``members * benign_per_member``) and overlapping ones (dealt round again) when there are not.

    Returns:
        ``members`` int64 index tensors into ``labels``.
    """
    malign_idx = torch.nonzero(~labels.benign).flatten()
    benign_idx = torch.nonzero(labels.benign).flatten()
    if len(benign_idx) == 0 or len(malign_idx) == 0:
        raise DataError(
            f"need benign and malign labels, got {labels.n_benign} benign and {labels.n_malign} malign"
        )
    perm = benign_idx[torch.randperm(len(benign_idx), generator=torch.Generator().manual_seed(seed))]
    take = min(benign_per_member, len(perm))
    subsets = []
    for k in range(members):
        pos = torch.arange(k * take, (k + 1) * take) % len(perm)
        subsets.append(torch.cat([malign_idx, perm[pos]]))
    return subsets


def train_reward_setup(
    labels: CensorLabels,
    setup: str = "ensemble",
    *,
    time_dependent: bool = True,
    members: int = 5,
    benign_per_member: int = 10,
    train: RewardTrainConfig | None = None,
    schedule: Any = None,
    device: torch.device | str = "cpu",
) -> RewardLike:
    """Train the reward model of one of the paper's setups from the same labels.

    * ``single``: one model on member 0's data (all malign + ``benign_per_member`` benign);
    * ``union``: one model on the union of the members' data (all malign + all benign they use);
    * ``ensemble``: ``members`` models, one per subset, combined by :class:`ProductEnsemble`.

    Args:
        labels: The labelled samples.
        setup: ``single``, ``union`` or ``ensemble``.
        time_dependent: Train time-dependent models (for classifier guidance) or time-independent ones.
        members: Ensemble size (the paper: 5).
        benign_per_member: Benign samples per member (the paper: 10, as many as malign).
        train: Optimisation settings; member ``k`` uses ``seed + k``. The union model trains for
            ``members / 2`` times as many iterations (the paper: 3x), as it has more data.
        schedule: The DDPM's noise schedule (time-dependent models).
        device: Training device.
    """
    if setup not in REWARD_SETUPS:
        raise ConfigError(f"unknown reward setup {setup!r}; expected one of {', '.join(REWARD_SETUPS)}")
    train = train or RewardTrainConfig()
    config = CensorRewardConfig(time_dependent=time_dependent)
    subsets = ensemble_subsets(labels, members, benign_per_member, seed=train.seed)

    def fit(index: torch.Tensor, cfg: RewardTrainConfig) -> CensorReward:
        return train_censor_reward(
            labels.images[index], labels.benign[index], config, cfg, schedule=schedule, device=device
        )

    if setup == "single":
        return fit(subsets[0], train)
    if setup == "union":
        union = torch.unique(torch.cat(subsets))
        iterations = int(train.iterations * max(1.0, members / 2))
        return fit(union, RewardTrainConfig(**{**asdict(train), "iterations": iterations}))
    return ProductEnsemble(
        [
            fit(s, RewardTrainConfig(**{**asdict(train), "seed": train.seed + k}))
            for k, s in enumerate(subsets)
        ]
    )


# ---------------------------------------------------------------------------------------------------------
# Measuring


SEVEN_PROB_THRESHOLD = 0.5


@dataclass(frozen=True)
class CensorReport:
    """What the independent evaluators say about a batch of samples.

    Attributes:
        n: Number of samples.
        malign_rate: Share the malign evaluator calls crossed.
        labeler_malign_rate: Share the synthetic labeler calls crossed (for reference: its models are what
            guidance optimises, so this is the optimistic number).
        fidelity: Share the digit evaluator reads as a 7 (probability >= 0.5).
        seconds: Sampling time.
    """

    n: int
    malign_rate: float
    labeler_malign_rate: float
    fidelity: float
    seconds: float = math.nan


def measure(
    images: torch.Tensor,
    evaluator: MalignEvaluator,
    labeler: StrokeJudge | None = None,
    digit_classifier: DigitClassifier | None = None,
    seconds: float = math.nan,
) -> CensorReport:
    """Malign rate by the evaluator (and by the labeler), and fidelity as a 7 by the digit evaluator.

    Args:
        images: ``(N, 1, H, W)`` samples in ``[0, 1]``.
        evaluator: The independent stroke detector.
        labeler: The labeler's detector (optional).
        digit_classifier: The digit evaluator's classifier (default: the shipped one).
        seconds: Sampling time to record.
    """
    from hfrl.judges import Evaluator

    digits = digit_classifier if digit_classifier is not None else Evaluator.from_pretrained().classifier
    seven = digits.probabilities(images.to(next(digits.parameters()).device))[:, SEVEN].cpu()
    return CensorReport(
        n=int(images.shape[0]),
        malign_rate=evaluator.malign_rate(images),
        labeler_malign_rate=labeler.malign_rate(images) if labeler is not None else math.nan,
        fidelity=float((seven >= SEVEN_PROB_THRESHOLD).float().mean()),
        seconds=float(seconds),
    )


def timed(fn: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, float]:
    """``(fn(), seconds)``."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start
