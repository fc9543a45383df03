"""Censored sampling, measuring (see :mod:`hfrl.censoring`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from hfrl.censoring.data import SEVEN
from hfrl.censoring.judges import MalignEvaluator, StrokeJudge
from hfrl.classifiers import DigitClassifier

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
