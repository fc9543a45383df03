"""The stand-ins for people: a synthetic labeler, and an independent evaluator for benchmarks.

Both look at an output beside the clean image (which agents never see) and call it *good* when

1. a digit classifier gives the right class a probability >= ``prob_threshold`` (0.2: the output is
   plausibly that digit, not clearly another one),
2. the output's SSIM to the clean image is >= ``ssim_threshold`` (0.65: it is the same digit, not another
   instance of the class nor a blend with a '0'), and
3. the output's pixel correlation with the clean image is >= ``corr_threshold`` (SSIM alone accepts a
   blank output for a thin '1', whose windows are mostly empty background).

The :class:`SyntheticLabeler` adds human error (label flips, skips) and answers the three kinds of
question people are asked: good/bad, which of two is better, and the best of a batch. The
:class:`Evaluator` uses a different classifier — other architecture, other half of the data, other seed
— so a generator that games the labeler's classifier does not fool the evaluator.

Why these thresholds: the source generator's target outputs are often blends of the right digit and a
'0', on which two good classifiers of different architecture disagree a lot (on the shipped generator's
target outputs, "probability >= 0.5" verdicts of the two classifiers agree on only 75 % of images, with or
without ensembling, longer training or mixup). Leaning on the shared structural test (SSIM 0.65) and
asking the classifier only to rule out a wrong digit (0.2) raises labeler-evaluator agreement to ~87 %,
about what two careful people reach on such images, while a generator that games one classifier is still
caught by the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from hfrl.checkpoint import load_checkpoint
from hfrl.classifiers import DigitClassifier
from hfrl.errors import ConfigError
from hfrl.metrics import correlation, ssim

J = TypeVar("J", bound="DigitJudge")

GOOD, BAD, SKIP = "good", "bad", "skip"
LEFT, RIGHT, TIE = "left", "right", "tie"

ASSETS = resources.files("hfrl") / "assets"
LABELER_CHECKPOINT = "labeler_classifier"
EVALUATOR_CHECKPOINT = "evaluator_classifier"
DEFAULT_PROB_THRESHOLD = 0.2
DEFAULT_SSIM_THRESHOLD = 0.65
DEFAULT_CORR_THRESHOLD = 0.5


DIGIT_DATASETS = ("mnist-embedded", "mnist", "emnist")
"""Datasets of handwritten digits, which the shipped judges' classifiers know."""


def require_judge(dataset: str, checkpoint: str | Path | None, role: str = "evaluator") -> None:
    """Refuse the shipped digit classifier as a judge of images that are not digits.

    Args:
        dataset: The task's dataset name.
        checkpoint: The judge's classifier checkpoint (``None``: the shipped digit one).
        role: What to call the judge in the message (``evaluator`` or ``labeler``).

    Raises:
        ConfigError: when ``checkpoint`` is ``None`` and ``dataset`` is not a digit dataset.
    """
    if checkpoint is None and dataset not in DIGIT_DATASETS:
        raise ConfigError(
            f"the shipped {role} judges handwritten digits, not {dataset!r} images; pass a classifier "
            f"checkpoint for this dataset (--{role} PATH, or {role}= from Python; scripts/bench_fashion.py "
            "trains one)"
        )


def asset_path(name: str) -> Path:
    """Path (without suffix) of a checkpoint shipped in ``hfrl/assets``."""
    return Path(str(ASSETS / name))


@dataclass(frozen=True)
class Judgement:
    """What a judge saw in a batch of outputs.

    Attributes:
        prob: ``(B,)`` classifier probability of the true class.
        predicted: ``(B,)`` the classifier's most likely class.
        ssim: ``(B,)`` SSIM of output to clean.
        correlation: ``(B,)`` pixel correlation of output and clean.
        quality: ``(B,)`` ``prob * max(ssim, 0)``, used to rank outputs.
        good: ``(B,)`` bool verdict.
    """

    prob: torch.Tensor
    predicted: torch.Tensor
    ssim: torch.Tensor
    correlation: torch.Tensor
    quality: torch.Tensor
    good: torch.Tensor


class DigitJudge:
    """Judges outputs by classifier confidence in the true class and SSIM to the clean image.

    Args:
        classifier: A trained :class:`~hfrl.classifiers.DigitClassifier`.
        prob_threshold: Minimum probability of the true class.
        ssim_threshold: Minimum SSIM to the clean image.
        corr_threshold: Minimum pixel correlation with the clean image.
    """

    def __init__(
        self,
        classifier: DigitClassifier,
        prob_threshold: float = DEFAULT_PROB_THRESHOLD,
        ssim_threshold: float = DEFAULT_SSIM_THRESHOLD,
        corr_threshold: float = DEFAULT_CORR_THRESHOLD,
    ) -> None:
        self.classifier = classifier.eval()
        self.prob_threshold = float(prob_threshold)
        self.ssim_threshold = float(ssim_threshold)
        self.corr_threshold = float(corr_threshold)

    default_checkpoint: str = LABELER_CHECKPOINT
    """The shipped classifier :meth:`from_pretrained` loads (subclasses name their own)."""

    @classmethod
    def from_pretrained(
        cls: type[J], path: str | Path | None = None, device: torch.device | str = "cpu", **kwargs: Any
    ) -> J:
        """Load the shipped classifier of this kind of judge (or the checkpoint at ``path``).

        Args:
            path: A classifier checkpoint; ``None`` for the shipped one (``default_checkpoint``).
            device: Where to put the classifier.
            **kwargs: Other constructor arguments (thresholds, flip rate, seed, ...).
        """
        model, _ = load_checkpoint(
            path or asset_path(cls.default_checkpoint), kind="classifier", device=device
        )
        return cls(model, **kwargs)  # type: ignore[arg-type]

    @property
    def device(self) -> torch.device:
        """Device of the classifier."""
        return next(self.classifier.parameters()).device

    def to(self, device: torch.device | str) -> DigitJudge:
        """Move the classifier; returns ``self``."""
        self.classifier.to(device)
        return self

    @torch.no_grad()
    def judge(
        self, outputs: torch.Tensor, clean: torch.Tensor, classes: torch.Tensor | Sequence[int]
    ) -> Judgement:
        """Judge a batch.

        Args:
            outputs: ``(B, 1, H, W)`` in ``[0, 1]``.
            clean: ``(B, 1, H, W)`` the clean images the outputs should show.
            classes: ``(B,)`` true classes; ``-1`` (unknown) checks SSIM only.
        """
        dev = self.device
        outputs, clean = outputs.to(dev).float(), clean.to(dev).float()
        cls = torch.as_tensor(classes, device=dev).long().reshape(-1)
        probs = self.classifier.probabilities(outputs)
        known = cls >= 0
        p_true = torch.where(
            known,
            probs.gather(1, cls.clamp(min=0)[:, None]).squeeze(1),
            torch.ones_like(cls, dtype=probs.dtype),
        )
        s = ssim(outputs, clean)
        corr = correlation(outputs, clean)
        good = (p_true >= self.prob_threshold) & (s >= self.ssim_threshold) & (corr >= self.corr_threshold)
        return Judgement(
            prob=p_true.cpu(),
            predicted=probs.argmax(1).cpu(),
            ssim=s.cpu(),
            correlation=corr.cpu(),
            quality=(p_true * s.clamp(min=0)).cpu(),
            good=good.cpu(),
        )

    def is_good(
        self, outputs: torch.Tensor, clean: torch.Tensor, classes: torch.Tensor | Sequence[int]
    ) -> torch.Tensor:
        """``(B,)`` bool verdicts."""
        return self.judge(outputs, clean, classes).good


class Evaluator(DigitJudge):
    """The benchmark's referee: an independent classifier with no human error.

    Its good-rate is what every benchmark and ``hfrl evaluate`` report.
    """

    default_checkpoint = EVALUATOR_CHECKPOINT

    def good_rate(
        self, outputs: torch.Tensor, clean: torch.Tensor, classes: torch.Tensor | Sequence[int]
    ) -> float:
        """Share of outputs judged good."""
        return float(self.is_good(outputs, clean, classes).float().mean())


class SyntheticLabeler(DigitJudge):
    """A simulated person: labels outputs good/bad, compares pairs, picks the best of a batch.

    Args:
        classifier: The labeler's own classifier (not the evaluator's).
        prob_threshold: See :class:`DigitJudge`.
        ssim_threshold: See :class:`DigitJudge`.
        corr_threshold: See :class:`DigitJudge`.
        flip_rate: Probability that a good/bad or left/right answer is flipped (human error).
        skip_rate: Probability of answering ``skip`` (good/bad) or ``tie`` (pairs).
        tie_margin: Pairs whose quality differs by less than this are ties.
        seed: Seed of the labeler's own randomness (flips and skips).
        labeler_id: Identity recorded with every label.
    """

    def __init__(
        self,
        classifier: DigitClassifier,
        prob_threshold: float = DEFAULT_PROB_THRESHOLD,
        ssim_threshold: float = DEFAULT_SSIM_THRESHOLD,
        corr_threshold: float = DEFAULT_CORR_THRESHOLD,
        flip_rate: float = 0.0,
        skip_rate: float = 0.0,
        tie_margin: float = 0.02,
        seed: int = 0,
        labeler_id: str = "synthetic",
    ) -> None:
        super().__init__(classifier, prob_threshold, ssim_threshold, corr_threshold)
        if not (0.0 <= flip_rate <= 0.5 and 0.0 <= skip_rate < 1.0):
            raise ValueError(
                f"flip_rate must be in [0, 0.5] and skip_rate in [0, 1), got {flip_rate}, {skip_rate}"
            )
        self.flip_rate = float(flip_rate)
        self.skip_rate = float(skip_rate)
        self.tie_margin = float(tie_margin)
        self.rng = np.random.default_rng(seed)
        self.labeler_id = labeler_id

    default_checkpoint = LABELER_CHECKPOINT

    def label(
        self, outputs: torch.Tensor, clean: torch.Tensor, classes: torch.Tensor | Sequence[int]
    ) -> list[str]:
        """``good``/``bad``/``skip`` for each output ``(B, 1, H, W)``."""
        good = self.is_good(outputs, clean, classes).numpy()
        flips = self.rng.random(len(good)) < self.flip_rate
        skips = self.rng.random(len(good)) < self.skip_rate
        return [SKIP if s else (GOOD if (g ^ f) else BAD) for g, f, s in zip(good, flips, skips)]

    def compare(
        self,
        left: torch.Tensor,
        right: torch.Tensor,
        clean: torch.Tensor,
        classes: torch.Tensor | Sequence[int],
    ) -> list[str]:
        """``left``/``right``/``tie``: which of two outputs ``(B, 1, H, W)`` of the same input is better."""
        ql = self.judge(left, clean, classes).quality.numpy()
        qr = self.judge(right, clean, classes).quality.numpy()
        flips = self.rng.random(len(ql)) < self.flip_rate
        skips = self.rng.random(len(ql)) < self.skip_rate
        answers = []
        for a, b, f, s in zip(ql, qr, flips, skips):
            if s or abs(a - b) < self.tie_margin:
                answers.append(TIE)
            else:
                answers.append(LEFT if (a > b) ^ f else RIGHT)
        return answers

    def pick_best(
        self, outputs: torch.Tensor, clean: torch.Tensor, classes: torch.Tensor | Sequence[int]
    ) -> tuple[list[str], int]:
        """HERO-style feedback on one batch: good/bad for each output and the index of the best one.

        Returns:
            ``(labels, best)``: a label per output, and the position of the highest-quality output
            among those labelled good (or overall, if none is).
        """
        labels = self.label(outputs, clean, classes)
        quality = self.judge(outputs, clean, classes).quality.numpy()
        good_idx = [i for i, lab in enumerate(labels) if lab == GOOD]
        pool = good_idx or list(range(len(labels)))
        best = max(pool, key=lambda i: quality[i])
        return labels, int(best)
