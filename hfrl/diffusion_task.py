"""The "only digit k" task of online diffusion fine-tuning: its synthetic labeler and its evaluator.

The task (HERO, Hiranaka et al. 2024, arXiv 2410.05116, on digits): the shipped DDPM ``ddpm_digits`` draws
all ten digits; a person wants *only digit k*, which it draws about one time in ten.
:class:`TargetDigitLabeler` stands in for that person (it answers through the same feedback-store calls
as the labelling page, :func:`hfrl.feedback.simulate`) and :class:`TargetDigitEvaluator` is the
benchmark's referee, whose classifier is independent of the labeler's. The online methods that learn
from these answers are in :mod:`hfrl.agents.diffusion`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from hfrl.checkpoint import load_checkpoint
from hfrl.classifiers import DigitClassifier
from hfrl.data import load_embedded_mnist
from hfrl.diffusion import DDPM_DIGITS, UNet2D, denoising_error, load_ddpm
from hfrl.judges import EVALUATOR_CHECKPOINT, LABELER_CHECKPOINT, NoisyLabeler, asset_path

DEFAULT_TARGET_CLASS = 7
"""The digit people want unless told otherwise."""
SOURCE_ERROR_DIGITS = 256
"""Real digits whose base-model denoising error is the yardstick of :attr:`TargetReport.source_error`."""


class TargetDigitLabeler(NoisyLabeler):
    """A simulated person who wants only digit ``k``: marks samples good/bad, picks the best, compares two.

    It has the interface :func:`hfrl.feedback.simulate` needs (``labeler_id``, ``label``, ``compare``,
    ``pick_best``, from :class:`~hfrl.judges.NoisyLabeler`) and ignores the clean images and classes (a
    generated sample has none). It reads the synthetic labeler's digit classifier (``cnn``); a sample is
    good when ``P(k) >= threshold``, and of two samples the one with the higher ``P(k)`` is better.

    Args:
        classifier: The labeler's digit classifier.
        target_class: ``k``.
        threshold: Good when the probability of ``k`` reaches it (0.5: "clearly a k").
        flip_rate: Probability that a good/bad or left/right answer is flipped (human error).
        skip_rate: Probability of answering ``skip`` (good/bad) or ``tie`` (pairs).
        tie_margin: Pairs whose probabilities of ``k`` differ by less than this are ties.
        seed: Seed of the flips and skips.
        labeler_id: Identity recorded with every label.
    """

    def __init__(
        self,
        classifier: DigitClassifier,
        target_class: int = DEFAULT_TARGET_CLASS,
        threshold: float = 0.5,
        flip_rate: float = 0.0,
        skip_rate: float = 0.0,
        tie_margin: float = 0.05,
        seed: int = 0,
        labeler_id: str = "synthetic-hero",
    ) -> None:
        super().__init__(flip_rate, skip_rate, tie_margin, seed, labeler_id)
        self.classifier = classifier.eval()
        self.target_class = int(target_class)
        self.threshold = float(threshold)

    @classmethod
    def from_pretrained(
        cls, target_class: int = DEFAULT_TARGET_CLASS, device: torch.device | str = "cpu", **kwargs: Any
    ) -> TargetDigitLabeler:
        """The shipped labeler classifier (``labeler_classifier``) wanting digit ``target_class``."""
        model, _ = load_checkpoint(asset_path(LABELER_CHECKPOINT), kind="classifier", device=device)
        return cls(model, target_class, **kwargs)  # type: ignore[arg-type]

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> torch.Tensor:
        """``(B,)`` the labeler's probability of digit ``k`` for images ``(B, 1, H, W)`` in ``[0, 1]``."""
        device = next(self.classifier.parameters()).device
        return self.classifier.probabilities(images.to(device))[:, self.target_class].cpu()

    def is_good(self, outputs: torch.Tensor, clean: Any = None, classes: Any = None) -> torch.Tensor:
        """``(B,)`` bool: ``P(k) >= threshold``."""
        return self.score(outputs) >= self.threshold

    def preference(self, outputs: torch.Tensor, clean: Any = None, classes: Any = None) -> torch.Tensor:
        """``(B,)`` ``P(k)``: the more ``k``-like, the better."""
        return self.score(outputs)


@dataclass(frozen=True)
class TargetReport:
    """The evaluator's verdict on a batch of samples.

    Attributes:
        n: Samples judged.
        success_rate: Share the evaluator reads as digit ``k`` (most likely class ``k`` with probability
            at least ``threshold``).
        digit_rate: Share read as *some* digit with probability at least ``digit_threshold`` (source
            quality kept: still digits, not blobs).
        target_prob: Mean probability of ``k``.
        class_counts: Samples per most likely class, ``(num_classes,)``.
        diversity: How varied the samples read as ``k`` are: their mean pairwise pixel distance
            (:func:`spread`) over that of real digits ``k``. About 1: as varied as real ones; near 0: copies
            of one image (a policy that found one good sample and repeats it). ``nan`` with fewer than two
            successes or without real digits to compare with.
        source_error: How natural the samples are to the *base* DDPM: their mean
            :func:`~hfrl.diffusion.denoising_error` over that of real digits. About 1: as natural as real
            digits; 2 or more: speckle, blotches or smeared strokes that the classifiers, trained on degraded
            digits, still read as digits (reward hacking the digit rate misses). ``nan`` without a base model.
    """

    n: int
    success_rate: float
    digit_rate: float
    target_prob: float
    class_counts: tuple[int, ...]
    diversity: float = math.nan
    source_error: float = math.nan


def spread(images: torch.Tensor) -> float:
    """Mean pairwise RMS pixel distance of images ``(B, C, H, W)`` (``nan`` for fewer than two)."""
    n = images.shape[0]
    if n < 2:
        return math.nan
    flat = images.flatten(1).double()  # (B, C*H*W)
    dist = torch.cdist(flat, flat) / math.sqrt(flat.shape[1])  # (B, B), zero diagonal
    return float(dist.sum() / (n * (n - 1)))


class TargetDigitEvaluator:
    """The benchmark's referee for "only digit k": the independent evaluator classifier (``lenet``).

    Args:
        classifier: The evaluator's digit classifier (other architecture, data half and seed than the
            labeler's).
        target_class: ``k``.
        threshold: Success needs ``argmax = k`` and ``P(k) >= threshold``.
        digit_threshold: A sample still is a digit when its most likely class has at least this probability.
        reference: Real digits ``k`` ``(N, 1, H, W)``, the yardstick of :attr:`TargetReport.diversity`.
        base: The DDPM before fine-tuning, whose :func:`~hfrl.diffusion.denoising_error` gives
            :attr:`TargetReport.source_error` (kept frozen; ``None``: not measured).
        real_digits: Real digits of every class ``(M, 1, H, W)``, the yardstick of that error.
    """

    def __init__(
        self,
        classifier: DigitClassifier,
        target_class: int = DEFAULT_TARGET_CLASS,
        threshold: float = 0.5,
        digit_threshold: float = 0.5,
        reference: torch.Tensor | None = None,
        base: UNet2D | None = None,
        real_digits: torch.Tensor | None = None,
    ) -> None:
        self.classifier = classifier.eval()
        self.target_class = int(target_class)
        self.threshold = float(threshold)
        self.digit_threshold = float(digit_threshold)
        self.reference_spread = spread(reference) if reference is not None else math.nan
        self.base = base.eval().requires_grad_(False) if base is not None else None
        self.real_error = (
            float(denoising_error(self.base, real_digits).mean())
            if self.base is not None and real_digits is not None and len(real_digits)
            else math.nan
        )

    @classmethod
    def from_pretrained(
        cls, target_class: int = DEFAULT_TARGET_CLASS, device: torch.device | str = "cpu", **kwargs: Any
    ) -> TargetDigitEvaluator:
        """The shipped evaluator classifier (``evaluator_classifier``) judging digit ``target_class``.

        Diversity is measured against the embedded MNIST digits ``target_class`` unless ``reference`` is given,
        and the source error with the shipped all-digits DDPM on 256 embedded digits unless ``base`` and
        ``real_digits`` are given (``base=None`` turns it off).
        """
        model, _ = load_checkpoint(asset_path(EVALUATOR_CHECKPOINT), kind="classifier", device=device)
        digits = load_embedded_mnist()
        kwargs.setdefault("reference", digits.images[digits.labels == target_class])
        if "base" not in kwargs:
            kwargs["base"] = load_ddpm(DDPM_DIGITS, device=device)
        kwargs.setdefault("real_digits", digits.images[:SOURCE_ERROR_DIGITS])
        return cls(model, target_class, **kwargs)  # type: ignore[arg-type]

    @torch.no_grad()
    def success(self, images: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: the evaluator reads digit ``k``."""
        device = next(self.classifier.parameters()).device
        probs = self.classifier.probabilities(images.to(device)).cpu()
        return (probs.argmax(1) == self.target_class) & (probs[:, self.target_class] >= self.threshold)

    @torch.no_grad()
    def report(self, images: torch.Tensor) -> TargetReport:
        """Judge images ``(B, 1, H, W)`` in ``[0, 1]``."""
        device = next(self.classifier.parameters()).device
        probs = self.classifier.probabilities(images.to(device)).cpu()  # (B, classes)
        top, cls = probs.max(1)
        k = self.target_class
        ok = (cls == k) & (probs[:, k] >= self.threshold)
        return TargetReport(
            n=int(images.shape[0]),
            success_rate=float(ok.float().mean()),
            digit_rate=float((top >= self.digit_threshold).float().mean()),
            target_prob=float(probs[:, k].mean()),
            class_counts=tuple(int(c) for c in torch.bincount(cls, minlength=probs.shape[1])),
            diversity=spread(images.cpu()[ok]) / self.reference_spread,
            source_error=self.source_error(images),
        )

    def source_error(self, images: torch.Tensor) -> float:
        """:attr:`TargetReport.source_error` of images ``(B, 1, H, W)`` (``nan`` without a base model)."""
        if self.base is None or not math.isfinite(self.real_error) or images.shape[0] == 0:
            return math.nan
        return float(denoising_error(self.base, images).mean()) / self.real_error


__all__ = [
    "DEFAULT_TARGET_CLASS",
    "SOURCE_ERROR_DIGITS",
    "TargetDigitEvaluator",
    "TargetDigitLabeler",
    "TargetReport",
    "spread",
]
