import numpy as np
import pytest
import torch

from hfrl.data import Domains
from hfrl.errors import ConfigError
from hfrl.evaluation import generate
from hfrl.judges import (
    BAD,
    GOOD,
    LEFT,
    RIGHT,
    SKIP,
    TIE,
    Evaluator,
    NoisyLabeler,
    SyntheticLabeler,
    require_judge,
)
from hfrl.noise import make_noise


def _batch(domains: Domains, split: str = "test", n: int = 90):
    target = domains.target(split)
    idx = torch.arange(0, len(target), max(1, len(target) // n))[:n]
    return target.images[idx], target.labels[idx]


def test_clean_images_are_good_and_blank_or_wrong_images_are_bad(
    domains: Domains, labeler, evaluator
) -> None:
    clean, classes = _batch(domains)
    for judge in (labeler, evaluator):
        assert judge.is_good(clean, clean, classes).float().mean() > 0.9
        assert judge.is_good(torch.zeros_like(clean), clean, classes).float().mean() < 0.05
        other_class = clean.roll(10, dims=0)  # _batch holds 10 per class, in class order
        assert judge.is_good(other_class, clean, classes).float().mean() < 0.1


def test_labels_flips_and_skips(domains: Domains) -> None:
    clean, classes = _batch(domains, n=200)
    exact = SyntheticLabeler.from_pretrained(seed=0)
    assert set(exact.label(clean, clean, classes)) <= {GOOD, BAD}
    noisy = SyntheticLabeler.from_pretrained(flip_rate=0.3, skip_rate=0.2, seed=0)
    labels = noisy.label(clean, clean, classes)
    skips = labels.count(SKIP) / len(labels)
    bads = labels.count(BAD) / len(labels)
    assert 0.1 < skips < 0.3
    assert 0.15 < bads < 0.45  # clean images are good, so BAD comes from flips
    again = SyntheticLabeler.from_pretrained(flip_rate=0.3, skip_rate=0.2, seed=0).label(
        clean, clean, classes
    )
    assert labels == again
    with pytest.raises(ValueError):
        SyntheticLabeler.from_pretrained(flip_rate=0.9)


def test_pairwise_and_best_of_batch(domains: Domains) -> None:
    clean, classes = _batch(domains, n=40)
    labeler = SyntheticLabeler.from_pretrained()
    blurred = torch.nn.functional.avg_pool2d(clean, 3, stride=1, padding=1)
    assert labeler.compare(clean, torch.zeros_like(clean), clean, classes) == [LEFT] * 40
    assert labeler.compare(torch.zeros_like(clean), clean, clean, classes) == [RIGHT] * 40
    assert set(labeler.compare(clean, clean, clean, classes)) == {TIE}
    answers = labeler.compare(clean, blurred, clean, classes)
    assert answers.count(LEFT) > answers.count(RIGHT)
    outputs = torch.stack([torch.zeros_like(clean[0]), blurred[0], clean[0], clean[1]])
    same = clean[0].expand(4, -1, -1, -1)
    labels, best = labeler.pick_best(outputs, same, [int(classes[0])] * 4)
    assert best == 2 and labels[0] == BAD and labels[2] == GOOD


def test_unknown_class_uses_ssim_only(domains: Domains, evaluator: Evaluator) -> None:
    clean, _ = _batch(domains, n=10)
    unknown = torch.full((10,), -1)
    assert bool(evaluator.is_good(clean, clean, unknown).all())
    assert not bool(evaluator.is_good(torch.zeros_like(clean), clean, unknown).any())


def test_shipped_generator_shows_the_domain_gap(domains: Domains, source_generator, evaluator) -> None:
    """The seed paper's situation: good on the source digit, a mix of good and bad on the others."""
    noise = make_noise()
    for split, lo, hi in (("source", 0.95, 1.0), ("target", 0.3, 0.8)):
        images = domains.source("test") if split == "source" else domains.target("test")
        noisy = noise(images.images, torch.Generator().manual_seed(0))
        rate = evaluator.good_rate(generate(source_generator, noisy), images.images, images.labels)
        assert lo <= rate <= hi, (split, rate)


def test_labeler_and_evaluator_disagree_sometimes_but_mostly_agree(
    domains: Domains, source_generator
) -> None:
    images = domains.target("test")
    noisy = make_noise()(images.images, torch.Generator().manual_seed(0))
    out = generate(source_generator, noisy)
    a = SyntheticLabeler.from_pretrained().is_good(out, images.images, images.labels)
    b = Evaluator.from_pretrained().is_good(out, images.images, images.labels)
    agreement = float((a == b).float().mean())
    assert 0.8 < agreement < 0.97


def test_the_shipped_judges_refuse_images_that_are_not_digits(tmp_path) -> None:
    for digits in ("mnist-embedded", "mnist", "emnist"):
        require_judge(digits, None)
    require_judge("fashion-mnist", tmp_path / "fashion_classifier")  # a dataset's own judge is fine
    with pytest.raises(ConfigError, match="shipped labeler judges handwritten digits, not 'kmnist'"):
        require_judge("kmnist", None, "labeler")


def test_trainers_and_reward_preparation_need_a_judge_for_other_datasets(tmp_path) -> None:
    from hfrl.agents import make_config, make_trainer
    from hfrl.data import write_idx
    from hfrl.experiments.reward import prepare_reward
    from hfrl.judges import asset_path

    images = (torch.rand(40, 28, 28) * 255).to(torch.uint8).numpy()
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", torch.arange(40).remainder(10).numpy())
    task = {"dataset": "fashion-mnist", "data_dir": str(tmp_path)}
    with pytest.raises(ConfigError, match="evaluator"):
        make_trainer("reward-grad", make_config("reward-grad", **task, device="cpu"), reward="labeler")
    with pytest.raises(ConfigError, match="labeler"):
        own = str(asset_path("evaluator_classifier"))  # stands in for a Fashion-MNIST evaluator
        make_trainer("dpo", make_config("dpo", **task, evaluator=own, device="cpu"))
    with pytest.raises(ConfigError, match="labeler"):
        prepare_reward(tmp_path / "out", n_labels=10, **task, progress=False)
    assert not (tmp_path / "out").exists()


class _Brightness(NoisyLabeler):
    """A toy labeler: an image is good when its mean is at least 0.5, and brighter is better."""

    def is_good(self, outputs: torch.Tensor, clean=None, classes=None) -> torch.Tensor:
        return outputs.flatten(1).mean(1) >= 0.5

    def preference(self, outputs: torch.Tensor, clean=None, classes=None) -> torch.Tensor:
        return outputs.flatten(1).mean(1)


def test_the_noisy_labeler_wrapper_adds_seeded_flips_skips_and_ties() -> None:
    x = torch.linspace(0, 1, 101).view(101, 1, 1, 1)
    good = [bool(v >= 0.5) for v in x.flatten()]
    assert _Brightness(0.0, 0.0, 0.05, 0, "toy").label(x) == [GOOD if g else BAD for g in good]
    noisy = _Brightness(0.2, 0.1, 0.05, 3, "toy")
    words = noisy.label(x)
    rng = np.random.default_rng(3)  # the draws: B flips, then B skips
    flips, skips = rng.random(101) < 0.2, rng.random(101) < 0.1
    assert words == [SKIP if s else (GOOD if g ^ f else BAD) for g, f, s in zip(good, flips, skips)]
    assert words == _Brightness(0.2, 0.1, 0.05, 3, "toy").label(x)  # same seed, same answers
    assert words != _Brightness(0.2, 0.1, 0.05, 4, "toy").label(x)
    # Pairs: ties within the margin, else the brighter side (no error here).
    exact = _Brightness(0.0, 0.0, 0.05, 0, "toy")
    assert exact.compare(x[[90, 10, 50]], x[[10, 90, 53]]) == [LEFT, RIGHT, TIE]
    # The best: the brightest among those labelled good, or among all when best_among_good is off.
    exact.label = lambda outputs, clean=None, classes=None: [GOOD, BAD, GOOD, BAD]  # type: ignore[method-assign]
    assert exact.pick_best(x[[20, 100, 30, 0]]) == ([GOOD, BAD, GOOD, BAD], 2)
    exact.best_among_good = False
    assert exact.pick_best(x[[20, 100, 30, 0]])[1] == 1
    with pytest.raises(ConfigError):
        _Brightness(0.6, 0.0, 0.05, 0, "toy")


def test_a_judge_without_a_classifier_for_images_no_shipped_one_reads() -> None:
    from hfrl.errors import DataError
    from hfrl.judges import check_judge_shape, digit_judge_applies, judge_shape, make_labeler

    assert digit_judge_applies((1, 28, 28)) and not digit_judge_applies((3, 28, 28))
    labeler = make_labeler("user", None, (3, 12, 20))
    assert not labeler.has_classifier and judge_shape(labeler) is None
    clean = torch.rand(4, 3, 12, 20, generator=torch.Generator().manual_seed(0))
    outputs = torch.cat([clean[:2], torch.zeros(2, 3, 12, 20)])
    judgement = labeler.judge(outputs, clean, torch.tensor([0, 1, 0, 1]))
    assert judgement.good.tolist() == [True, True, False, False]  # SSIM and correlation to the clean image
    assert judgement.predicted.tolist() == [-1] * 4 and torch.equal(judgement.prob, torch.ones(4))
    assert labeler.label(outputs, clean) == ["good", "good", "bad", "bad"]
    digit = make_labeler("mnist-embedded", None, (1, 28, 28))
    assert judge_shape(digit) == (1, 28, 28)
    with pytest.raises(DataError, match="judges 1x28x28 images but the data are 3x12x20") as info:
        check_judge_shape(digit, (3, 12, 20), "the labeler")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="handwritten digits"):
        make_labeler("fashion-mnist", None, (1, 28, 28))
