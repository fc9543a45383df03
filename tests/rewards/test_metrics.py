"""Accuracy, AUC and calibration error against known values."""

from __future__ import annotations

import math

import numpy as np

from hfrl.rewards import binary_report, expected_calibration_error, pairwise_report, roc_auc


def test_auc_known_values() -> None:
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1]) == 0.5  # ties count one half
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert math.isnan(roc_auc([0.1, 0.2], [1, 1]))


def test_auc_matches_the_pairwise_definition() -> None:
    rng = np.random.default_rng(0)
    s, y = rng.random(200).round(2), rng.random(200) < 0.4
    pos, neg = s[y], s[~y]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (
        len(pos) * len(neg)
    )
    assert abs(roc_auc(s, y) - brute) < 1e-12


def test_calibration_error() -> None:
    assert expected_calibration_error([1.0, 1.0, 0.0, 0.0], [1, 1, 0, 0]) == 0.0
    assert abs(expected_calibration_error([0.75] * 4, [1, 1, 1, 0])) < 1e-12
    assert abs(expected_calibration_error([0.9] * 2, [0, 0]) - 0.9) < 1e-12


def test_reports() -> None:
    r = binary_report([0.9, 0.2, 0.6, 0.4], [1, 0, 0, 1])
    assert r["n"] == 4 and r["accuracy"] == 0.5 and r["positive_rate"] == 0.5
    p = pairwise_report([1, 2, 3], [0, 3, 3], [1, 0, 0.5])
    assert p == {"n": 3, "accuracy": 1.0, "ties": 1}
