"""Censored sampling, stroke detectors: the synthetic labeler and the independent evaluator (see :mod:`hfrl.censoring`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hfrl.censoring.data import (
    DETECTOR_KIND,
    EVALUATOR_CHECKPOINT,
    LABELER_CHECKPOINT,
    MALIGN,
    detector_training_set,
)
from hfrl.checkpoint import load_checkpoint
from hfrl.classifiers import ClassifierConfig, DigitClassifier
from hfrl.data import ImageSet
from hfrl.judges import NoisyLabeler, asset_path


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
