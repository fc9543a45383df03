"""How well a reward model agrees with labels: accuracy, ROC AUC, calibration error.

Plain NumPy, so that reports need nothing beyond hfrl's own dependencies.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _np(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def roc_auc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (ties count one half).

    Args:
        scores: ``(N,)`` any monotone score, higher = more likely good.
        labels: ``(N,)`` 0/1 (values above 0.5 count as 1).

    Returns:
        AUC in ``[0, 1]``; ``nan`` when only one class is present.
    """
    s, y = _np(scores), _np(labels) > 0.5
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average ranks over ties (Mann–Whitney U)
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def expected_calibration_error(prob: Any, labels: Any, bins: int = 10) -> float:
    """Expected calibration error: ``sum_b (n_b / N) |mean(y_b) - mean(p_b)|`` over equal-width bins.

    Args:
        prob: ``(N,)`` predicted probabilities of *good*.
        labels: ``(N,)`` 0/1 labels.
        bins: Number of bins over ``[0, 1]``.
    """
    p, y = _np(prob), (_np(labels) > 0.5).astype(np.float64)
    if len(p) == 0:
        return math.nan
    which = np.clip((p * bins).astype(int), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(total)


def binary_report(prob: Any, labels: Any, threshold: float = 0.5) -> dict[str, float]:
    """Accuracy at ``threshold``, AUC and ECE of predicted probabilities against 0/1 labels.

    Returns:
        ``{"n", "accuracy", "auc", "ece", "positive_rate", "predicted_positive_rate"}``.
    """
    p, y = _np(prob), _np(labels) > 0.5
    if len(p) == 0:
        return {"n": 0, "accuracy": math.nan, "auc": math.nan, "ece": math.nan, "positive_rate": math.nan,
                "predicted_positive_rate": math.nan}  # fmt: skip
    pred = p >= threshold
    return {
        "n": int(len(p)),
        "accuracy": float((pred == y).mean()),
        "auc": roc_auc(p, y),
        "ece": expected_calibration_error(p, y),
        "positive_rate": float(y.mean()),
        "predicted_positive_rate": float(pred.mean()),
    }


def pairwise_report(left_scores: Any, right_scores: Any, preference: Any) -> dict[str, float]:
    """Agreement of score differences with pairwise preferences (ties left out of the accuracy).

    Args:
        left_scores: ``(N,)`` scores of the left outputs.
        right_scores: ``(N,)`` scores of the right outputs.
        preference: ``(N,)`` 1 left better, 0 right better, 0.5 tie.

    Returns:
        ``{"n", "accuracy", "ties"}``.
    """
    a, b, p = _np(left_scores), _np(right_scores), _np(preference)
    decided = p != 0.5
    if not decided.any():
        return {"n": int(len(p)), "accuracy": math.nan, "ties": int(len(p))}
    acc = ((a[decided] > b[decided]) == (p[decided] > 0.5)).mean()
    return {"n": int(len(p)), "accuracy": float(acc), "ties": int((~decided).sum())}
