import pytest
import torch

from hfrl.checkpoint import read_checkpoint_config
from hfrl.classifiers import (
    EVALUATOR_RECIPE,
    LABELER_RECIPE,
    ClassifierConfig,
    build_classifier,
    classifier_half,
    degrade,
    train_classifier,
)
from hfrl.data import ImageSet
from hfrl.errors import ConfigError
from hfrl.judges import EVALUATOR_CHECKPOINT, LABELER_CHECKPOINT, asset_path


def test_halves_are_disjoint_and_cover_the_data(mnist: ImageSet) -> None:
    a, b = classifier_half(mnist, 0), classifier_half(mnist, 1)
    assert len(a) + len(b) == len(mnist)
    # disjoint: no image appears in both halves
    ia = {tuple(x.flatten()[::7].tolist()) for x in a.images[:200]}
    ib = {tuple(x.flatten()[::7].tolist()) for x in b.images}
    assert not ia & ib
    assert torch.bincount(a.labels).tolist() == [250] * 10


def test_labeler_and_evaluator_are_independent() -> None:
    # different architecture, different data half, different seed
    assert LABELER_RECIPE.arch != EVALUATOR_RECIPE.arch
    assert LABELER_RECIPE.half != EVALUATOR_RECIPE.half
    assert LABELER_RECIPE.seed != EVALUATOR_RECIPE.seed
    lab = read_checkpoint_config(asset_path(LABELER_CHECKPOINT))
    ev = read_checkpoint_config(asset_path(EVALUATOR_CHECKPOINT))
    assert lab["config"]["arch"] == LABELER_RECIPE.arch and ev["config"]["arch"] == EVALUATOR_RECIPE.arch
    assert lab["metadata"]["recipe"]["half"] != ev["metadata"]["recipe"]["half"]


def test_shipped_classifiers_are_accurate_on_their_held_out_half(mnist: ImageSet) -> None:
    from hfrl.judges import Evaluator, SyntheticLabeler

    for judge, recipe in (
        (SyntheticLabeler.from_pretrained(), LABELER_RECIPE),
        (Evaluator.from_pretrained(), EVALUATOR_RECIPE),
    ):
        held_out = classifier_half(mnist, 1 - recipe.half)
        acc = (judge.classifier.probabilities(held_out.images).argmax(1) == held_out.labels).float().mean()
        assert float(acc) > 0.93


def test_training_learns_something(mnist: ImageSet) -> None:
    data = mnist.subset(torch.arange(0, 5000, 10))
    model = train_classifier(data, ClassifierConfig(arch="lenet", width=8), epochs=3, progress=False)
    test = mnist.subset(torch.arange(5, 5000, 10))
    acc = (model.probabilities(test.images).argmax(1) == test.labels).float().mean()
    assert float(acc) > 0.3  # chance is 0.1


def test_degrade_keeps_range_and_shape() -> None:
    x = torch.rand(16, 1, 28, 28)
    y = degrade(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert build_classifier({"arch": "cnn", "width": 8})(x).shape == (16, 10)


def test_training_leaves_the_callers_global_rng_alone(mnist: ImageSet) -> None:
    data = mnist.subset(torch.arange(0, 5000, 50))
    config = ClassifierConfig(arch="lenet", width=4)  # lenet has dropout: global draws in training too
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    first = train_classifier(data, config, epochs=1, seed=3, progress=False)
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(999)  # another caller state: the same seed still gives the same classifier
    second = train_classifier(data, config, epochs=1, seed=3, progress=False)
    for pa, pb in zip(first.parameters(), second.parameters()):
        assert torch.equal(pa, pb)


def test_classifiers_take_colour_and_sides_from_eight() -> None:
    for arch in ("cnn", "lenet"):
        model = build_classifier(
            {"arch": arch, "width": 4, "channels": 3, "image_size": [8, 20], "num_classes": 3}
        )
        assert model(torch.rand(2, 3, 8, 20)).shape == (2, 3)
    x = torch.rand(8, 3, 8, 8)
    y = degrade(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    with pytest.raises(ConfigError, match="channels must be 1 or 3"):
        ClassifierConfig(channels=2)
