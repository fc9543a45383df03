"""The "only digit k" task's synthetic labeler and evaluator, on real digits."""

from __future__ import annotations

import math

import torch

from hfrl.diffusion_task import TargetDigitEvaluator, TargetDigitLabeler


def test_synthetic_labeler_and_evaluator_on_real_digits() -> None:
    from hfrl.data import load_embedded_mnist

    data = load_embedded_mnist()
    sevens, others = data.images[data.labels == 7][:20], data.images[data.labels == 3][:20]
    labeler = TargetDigitLabeler.from_pretrained(7)
    assert labeler.label(sevens).count("good") >= 18 and labeler.label(others).count("good") <= 2
    words, best = labeler.pick_best(torch.cat([others[:5], sevens[:1]]))
    assert best == 5 and words[5] == "good"
    assert labeler.compare(sevens[:5], others[:5]) == ["left"] * 5
    evaluator = TargetDigitEvaluator.from_pretrained(7)
    report = evaluator.report(torch.cat([sevens, others]))
    assert 0.4 <= report.success_rate <= 0.6 and report.digit_rate > 0.9 and sum(report.class_counts) == 40
    assert 0.8 <= report.diversity <= 1.2  # real sevens are as varied as real sevens
    copies = evaluator.report(sevens[:1].expand(10, -1, -1, -1))
    assert copies.success_rate == 1.0 and copies.diversity == 0.0  # one seven ten times: no diversity
    assert math.isnan(evaluator.report(others).diversity)  # no seven at all


def test_source_error_flags_speckled_digits_the_classifiers_still_accept() -> None:
    from hfrl.data import load_embedded_mnist

    data = load_embedded_mnist()
    sevens = data.images[data.labels == 7][-64:]  # not among the 256 yardstick digits
    speckled = (sevens + 0.1 * torch.randn(sevens.shape, generator=torch.Generator().manual_seed(0))).clamp(
        0, 1
    )
    evaluator = TargetDigitEvaluator.from_pretrained(7)
    clean, noisy = evaluator.report(sevens), evaluator.report(speckled)
    assert noisy.success_rate >= clean.success_rate - 0.05 and noisy.digit_rate == clean.digit_rate == 1.0
    assert 0.5 < clean.source_error < 1.2 < 1.8 < noisy.source_error  # the base DDPM sees the speckle
    assert evaluator.source_error(sevens) == clean.source_error  # seeded noise: same images, same number
    blind = TargetDigitEvaluator.from_pretrained(7, base=None)
    assert math.isnan(blind.report(sevens).source_error)
