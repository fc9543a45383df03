"""The stand-ins for people: a synthetic labeler, and an independent evaluator for benchmarks.

Both look at an output beside the clean image (which agents never see) and call it *good* when

1. a digit classifier gives the right class a probability >= ``prob_threshold`` (0.2: the output is
   plausibly that digit, not clearly another one),
2. the output's SSIM to the clean image is >= ``ssim_threshold`` (0.65: it is the same digit, not another
   instance of the class nor a blend with a '0'), and
3. the output's pixel correlation with the clean image is >= ``corr_threshold`` (SSIM alone accepts a
   blank output for a thin '1', whose windows are mostly empty background).

The :class:`SyntheticLabeler` adds human error (label flips, skips) and answers the three kinds of
question people are asked: good/bad, which of two is better, and the best of a batch. That part is
:class:`NoisyLabeler`, which every synthetic labeler shares (this one, the online diffusion task's
:class:`~hfrl.diffusion_task.TargetDigitLabeler`, censoring's :class:`~hfrl.censoring.MalignLabeler`):
each supplies its verdict and its preference score, and the wrapper adds seeded human error. The
:class:`Evaluator` uses a different classifier — other architecture, other half of the data, other seed
— so a generator that games the labeler's classifier does not fool the evaluator.

Why these thresholds: the source generator's target outputs are often blends of the right digit and a
'0', on which two good classifiers of different architecture disagree a lot (on the shipped generator's
target outputs, "probability >= 0.5" verdicts of the two classifiers often disagree, with or without
ensembling, longer training or mixup). Leaning on the shared structural test (SSIM 0.65) and asking the
classifier only to rule out a wrong digit (0.2) raises labeler-evaluator agreement to about what two
careful people reach on such images (the labeler's own row in ``scripts/bench_reward.py``'s
``bench-results/reward.md`` and the README), while a generator that games one classifier is still caught
by the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from hfrl.checkpoint import load_checkpoint
from hfrl.classifiers import DigitClassifier
from hfrl.errors import ConfigError, DataError
from hfrl.judge_training import JudgesReport as JudgesReport  # re-exported: judges of the user's images
from hfrl.judge_training import train_judges as train_judges
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
DIGIT_SHAPE = (1, 28, 28)
"""``(C, H, W)`` of the images the shipped judges' classifiers take."""


def shape_text(shape: Sequence[int]) -> str:
    """``1x28x28`` for ``(1, 28, 28)``."""
    return "x".join(str(int(v)) for v in shape)


def judge_shape(judge: Any) -> tuple[int, int, int] | None:
    """``(C, H, W)`` a judge's classifier takes, or ``None`` for a judge without one (any images)."""
    classifier = getattr(judge, "classifier", None)
    config = getattr(classifier, "config", None)
    size = getattr(config, "image_size", None)
    if size is None:
        return None
    return (int(getattr(config, "channels", 1)), int(size[0]), int(size[1]))


def check_judge_shape(judge: Any, image_shape: Sequence[int], what: str = "the evaluator") -> None:
    """Refuse a judge whose classifier takes other images than the data's, in one line naming both shapes.

    Raises:
        DataError: when the shapes differ.
    """
    want = judge_shape(judge)
    if want is not None and want != tuple(int(v) for v in image_shape):
        raise DataError(
            f"{what}'s classifier judges {shape_text(want)} images but the data are {shape_text(image_shape)}; "
            "pass a classifier of these images, or none (then runs report PSNR/SSIM and the reward only)"
        )


def digit_judge_applies(image_shape: Sequence[int]) -> bool:
    """Whether the shipped digit judges can look at images of this ``(C, H, W)`` (28x28 grey only)."""
    return tuple(int(v) for v in image_shape) == DIGIT_SHAPE


class NotMeasuredWarning(UserWarning):
    """A run cannot measure something (a good-rate without a judge of its images); the message says what."""


def missing_judge_note(image_shape: Sequence[int], role: str = "evaluator") -> str:
    """The one line a run without a judge says about what it does not measure."""
    return (
        f"no {role} for {shape_text(image_shape)} images (the shipped judges take {shape_text(DIGIT_SHAPE)} "
        f"digits): good-rates are not measured, only PSNR/SSIM against the clean images and the reward; pass "
        f"a classifier of these images (--{role} PATH, or {role}= from Python; hfrl judges train makes one from "
        "labelled images) to measure them"
    )


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
            f"checkpoint for this dataset (--{role} PATH, or {role}= from Python; hfrl judges train trains one "
            "from labelled images)"
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

    Without a classifier (``classifier=None``, for images no classifier of hfrl knows) a judge checks SSIM
    and correlation to the clean image only, as it does for images of unknown class.

    Args:
        classifier: A trained :class:`~hfrl.classifiers.DigitClassifier`, or ``None``.
        prob_threshold: Minimum probability of the true class.
        ssim_threshold: Minimum SSIM to the clean image.
        corr_threshold: Minimum pixel correlation with the clean image.
    """

    def __init__(
        self,
        classifier: DigitClassifier | None,
        prob_threshold: float = DEFAULT_PROB_THRESHOLD,
        ssim_threshold: float = DEFAULT_SSIM_THRESHOLD,
        corr_threshold: float = DEFAULT_CORR_THRESHOLD,
    ) -> None:
        self.classifier = classifier.eval() if classifier is not None else None
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
    def has_classifier(self) -> bool:
        """Whether the judge has a classifier (else it checks SSIM and correlation only)."""
        return self.classifier is not None

    @property
    def device(self) -> torch.device:
        """Device of the classifier (the CPU without one)."""
        if self.classifier is None:
            return torch.device("cpu")
        return next(self.classifier.parameters()).device

    def to(self, device: torch.device | str) -> DigitJudge:
        """Move the classifier; returns ``self``."""
        if self.classifier is not None:
            self.classifier.to(device)
        return self

    @torch.no_grad()
    def judge(
        self, outputs: torch.Tensor, clean: torch.Tensor, classes: torch.Tensor | Sequence[int] | None
    ) -> Judgement:
        """Judge a batch.

        Args:
            outputs: ``(B, C, H, W)`` in ``[0, 1]``.
            clean: ``(B, C, H, W)`` the clean images the outputs should show.
            classes: ``(B,)`` true classes; ``-1`` or ``None`` (unknown) checks SSIM only.
        """
        dev = self.device if self.classifier is not None else outputs.device  # no classifier: where they are
        outputs, clean = outputs.to(dev).float(), clean.to(dev).float()
        if classes is None:  # unknown classes: SSIM and correlation only
            classes = torch.full((outputs.shape[0],), -1)
        cls = torch.as_tensor(classes, device=dev).long().reshape(-1)
        if self.classifier is None:  # no classifier: SSIM and correlation only, as for unknown classes
            probs = torch.ones(outputs.shape[0], 1, device=dev)
            cls = torch.full_like(cls, -1)
        else:
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
            predicted=probs.argmax(1).cpu() if self.classifier is not None else cls.cpu(),
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


class NoisyLabeler:
    """Seeded human error around a judge: the one wrapper every synthetic labeler shares.

    A labeler supplies two things about a batch of outputs ``(B, C, H, W)`` (with the clean images and
    classes, which labelers of generated samples ignore):

    * :meth:`is_good`: ``(B,)`` bool, its verdict;
    * :meth:`preference`: ``(B,)`` float, higher is better (to compare two outputs and pick the best).

    This class answers the three kinds of question :func:`hfrl.feedback.simulate` puts to people
    (``label``, ``compare``, ``pick_best``, with ``labeler_id`` recorded beside every answer). Each
    question draws ``B`` flips and then ``B`` skips from one NumPy generator seeded with ``seed``, so the
    same seed and the same questions give the same answers:

    * ``label``: ``skip`` with probability ``skip_rate``, otherwise the verdict, flipped with probability
      ``flip_rate``;
    * ``compare``: ``tie`` with probability ``skip_rate`` or when the preferences differ by less than
      ``tie_margin``, otherwise the preferred side, flipped with probability ``flip_rate``;
    * ``pick_best``: the labels and the position of the most preferred output among those labelled good
      (among all of them when none is, or when :attr:`best_among_good` is ``False``).

    Args:
        flip_rate: Probability that a good/bad or left/right answer is flipped, in ``[0, 0.5]``.
        skip_rate: Probability of answering ``skip`` (good/bad) or ``tie`` (pairs), in ``[0, 1)``.
        tie_margin: Pairs whose preferences differ by less than this are ties.
        seed: Seed of the flips and skips.
        labeler_id: Identity recorded with every label.

    Raises:
        ConfigError: for a rate out of range.
    """

    best_among_good: ClassVar[bool] = True
    """Whether ``pick_best`` picks among the outputs labelled good (else among all)."""

    def __init__(
        self, flip_rate: float, skip_rate: float, tie_margin: float, seed: int, labeler_id: str
    ) -> None:
        if not (0.0 <= flip_rate <= 0.5 and 0.0 <= skip_rate < 1.0):
            raise ConfigError(
                f"flip_rate must be in [0, 0.5] and skip_rate in [0, 1), got {flip_rate}, {skip_rate}"
            )
        self.flip_rate = float(flip_rate)
        self.skip_rate = float(skip_rate)
        self.tie_margin = float(tie_margin)
        self.rng = np.random.default_rng(seed)
        self.labeler_id = labeler_id

    def is_good(self, outputs: torch.Tensor, clean: Any, classes: Any) -> torch.Tensor:
        """``(B,)`` bool: the labeler's verdict before human error (supplied by the labeler)."""
        raise NotImplementedError

    def preference(self, outputs: torch.Tensor, clean: Any, classes: Any) -> torch.Tensor:
        """``(B,)`` float: how much the labeler likes each output, higher is better (supplied by the labeler)."""
        raise NotImplementedError

    def _errors(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(flips, skips)``, ``(n,)`` bool each, drawn in that order."""
        flips = self.rng.random(n) < self.flip_rate
        skips = self.rng.random(n) < self.skip_rate
        return flips, skips

    def label(self, outputs: torch.Tensor, clean: Any = None, classes: Any = None) -> list[str]:
        """``good`` / ``bad`` / ``skip`` for each output."""
        good = self.is_good(outputs, clean, classes).numpy()
        flips, skips = self._errors(len(good))
        return [SKIP if s else (GOOD if (g ^ f) else BAD) for g, f, s in zip(good, flips, skips)]

    def compare(
        self, left: torch.Tensor, right: torch.Tensor, clean: Any = None, classes: Any = None
    ) -> list[str]:
        """``left`` / ``right`` / ``tie``: which of two outputs (of the same input) is better."""
        pl = self.preference(left, clean, classes).numpy()
        pr = self.preference(right, clean, classes).numpy()
        flips, skips = self._errors(len(pl))
        return [
            TIE if s or abs(a - b) < self.tie_margin else (LEFT if (a > b) ^ f else RIGHT)
            for a, b, f, s in zip(pl, pr, flips, skips)
        ]

    def pick_best(
        self, outputs: torch.Tensor, clean: Any = None, classes: Any = None
    ) -> tuple[list[str], int]:
        """HERO-style feedback on one batch: good/bad for each output and the position of the best one.

        Returns:
            ``(labels, best)``: a label per output, and the position of the most preferred output among
            those labelled good (or overall, see :attr:`best_among_good`); the first one on a tie.
        """
        labels = self.label(outputs, clean, classes)
        pref = self.preference(outputs, clean, classes).numpy()
        good = [i for i, word in enumerate(labels) if word == GOOD] if self.best_among_good else []
        pool = good or list(range(len(labels)))
        return labels, int(max(pool, key=lambda i: pref[i]))


class SyntheticLabeler(DigitJudge, NoisyLabeler):
    """A simulated person: labels outputs good/bad, compares pairs, picks the best of a batch.

    Its verdict is the judge's (:meth:`DigitJudge.is_good`), its preference the judgement's ``quality``;
    :class:`NoisyLabeler` adds the human error.

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
        DigitJudge.__init__(self, classifier, prob_threshold, ssim_threshold, corr_threshold)
        NoisyLabeler.__init__(self, flip_rate, skip_rate, tie_margin, seed, labeler_id)

    default_checkpoint = LABELER_CHECKPOINT

    def preference(
        self, outputs: torch.Tensor, clean: torch.Tensor, classes: torch.Tensor | Sequence[int]
    ) -> torch.Tensor:
        """``(B,)`` the judgement's ``quality`` (``prob * max(ssim, 0)``)."""
        return self.judge(outputs, clean, classes).quality


def make_labeler(
    dataset: str,
    checkpoint: str | Path | None,
    image_shape: Sequence[int],
    device: torch.device | str = "cpu",
    **kwargs: Any,
) -> SyntheticLabeler:
    """The synthetic labeler of a run's images, checked against them before any work.

    The shipped digit labeler for 1x28x28 digits, the classifier at ``checkpoint`` when given, and for
    images no shipped classifier can read a labeler without one (SSIM and correlation to the clean image).

    Args:
        dataset: The run's dataset name (``user`` for the user's images).
        checkpoint: The labeler's classifier checkpoint, or ``None``.
        image_shape: ``(C, H, W)`` of the images it labels.
        device: Where to load the classifier.
        **kwargs: Other :class:`SyntheticLabeler` arguments (flip rate, seed, ...).

    Raises:
        ConfigError: for the shipped digit classifier on a named dataset of other 28x28 images.
        DataError: for a classifier of other images than ``image_shape``.
    """
    if checkpoint is None and not digit_judge_applies(image_shape):
        return SyntheticLabeler(None, **kwargs)
    require_judge(dataset, checkpoint, "labeler")
    labeler = SyntheticLabeler.from_pretrained(checkpoint, device=device, **kwargs)
    check_judge_shape(labeler, image_shape, "the labeler")
    return labeler
