"""hfrl.judge_training: a labeler's and an evaluator's classifiers of any labelled images, grey or colour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hfrl.checkpoint import read_checkpoint_config
from hfrl.classifiers import EVALUATOR_RECIPE, LABELER_RECIPE, classifier_half, judge_recipes
from hfrl.data import ImageSet
from hfrl.errors import DataError
from hfrl.judge_training import train_judges
from hfrl.judges import Evaluator, SyntheticLabeler, judge_shape
from tests.conftest import shapes_dataset


@pytest.mark.parametrize("shape", [(3, 12, 16), (1, 8, 8)])
def test_two_independent_judges_of_colour_or_small_images(
    tmp_path: Path, shape: tuple[int, int, int]
) -> None:
    images, labels = shapes_dataset(120, *shape)
    data = ImageSet.from_array(images, labels, "shapes")
    report = train_judges(data, tmp_path, seed=0)  # the defaults: 15 epochs, width 32
    # measured on such sets (data seeds 0-2, both shapes): 94-100% on the held-out split, agreeing on 94-100%
    assert report.chance == pytest.approx(0.5)
    assert report.labeler_accuracy > 0.8 and report.evaluator_accuracy > 0.8
    assert report.agreement > 0.75 and report.image_shape == shape and report.classes == (0, 1)
    assert json.loads((tmp_path / "judges.json").read_text())["agreement"] == pytest.approx(report.agreement)

    lab, ev = read_checkpoint_config(tmp_path / "labeler"), read_checkpoint_config(tmp_path / "evaluator")
    assert lab["config"]["arch"] != ev["config"]["arch"]  # other architecture, other half, other seed
    assert lab["metadata"]["recipe"]["half"] != ev["metadata"]["recipe"]["half"]
    assert lab["metadata"]["recipe"]["seed"] != ev["metadata"]["recipe"]["seed"]
    assert lab["config"]["channels"] == shape[0] and lab["config"]["image_size"] == list(shape[1:])

    # usable as labeler= and evaluator=: clean outputs are good, blank ones are not
    labeler = SyntheticLabeler.from_pretrained(report.labeler)
    evaluator = Evaluator.from_pretrained(report.evaluator)
    assert judge_shape(labeler) == judge_shape(evaluator) == shape
    test = data.split("test")
    assert evaluator.good_rate(test.images, test.images, test.labels) > 0.8
    assert labeler.is_good(test.images, test.images, test.labels).float().mean() > 0.8
    blank = torch.zeros_like(test.images)
    assert evaluator.good_rate(blank, test.images, test.labels) == 0.0


def test_the_halves_are_disjoint_and_the_seed_changes_the_judges(tmp_path: Path) -> None:
    images, labels = shapes_dataset(80, 3, 12, 12)
    data = ImageSet.from_array(images, labels, "shapes").split("train")
    a, b = classifier_half(data, 0), classifier_half(data, 1)
    flat = data.images.flatten(1)
    rows = {tuple(x.tolist()) for x in a.images.flatten(1)}
    assert len(a) + len(b) == len(flat) and not rows & {tuple(x.tolist()) for x in b.images.flatten(1)}
    assert judge_recipes(0) == {"labeler": LABELER_RECIPE, "evaluator": EVALUATOR_RECIPE}  # the shipped ones
    assert judge_recipes(0)["labeler"].seed != judge_recipes(1)["labeler"].seed
    train_judges(ImageSet.from_array(images, labels), tmp_path / "s0", seed=0, epochs=1, width=4)
    train_judges(ImageSet.from_array(images, labels), tmp_path / "s1", seed=1, epochs=1, width=4)
    from safetensors.torch import load_file

    w0, w1 = (load_file(tmp_path / s / "labeler.safetensors") for s in ("s0", "s1"))
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)


def test_unlabelled_or_single_class_images_are_refused(tmp_path: Path) -> None:
    images, labels = shapes_dataset(40, 1, 12, 12)
    with pytest.raises(DataError, match="judges need labelled images"):
        train_judges(ImageSet.from_array(images), tmp_path)
    with pytest.raises(DataError, match="at least two classes"):
        train_judges(ImageSet.from_array(images, np.zeros_like(labels)), tmp_path)
