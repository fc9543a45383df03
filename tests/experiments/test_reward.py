"""prepare_reward: labels to a reward model on the shipped task, and the label-free reward with 0 labels."""

from __future__ import annotations

import json
import math

import pytest

from hfrl.errors import ConfigError
from hfrl.experiments.labels import CollectedLabels
from hfrl.experiments.reward import prepare_reward
from hfrl.feedback import FeedbackError
from hfrl.rewards import RewardEnsemble, SimilarityReward, load_reward_model

TINY = {
    "task": "digits-white",  # its source generator is right on half the digits: both answers among 12 labels
    "denoiser_steps": 3,
    "reward_steps": 5,
    "pool": 60,
    "candidates": 30,
    "device": "cpu",
    "progress": False,
}


def test_prepare_reward_with_labels_and_without(tmp_path) -> None:
    stages: list[str] = []

    class Stage:
        def __init__(self, name: str) -> None:
            stages.append(name)

        def __enter__(self) -> None:
            return None

        def __exit__(self, *exc: object) -> None:
            return None

    path, info = prepare_reward(
        tmp_path / "run", n_labels=12, rounds=2, ensemble=2, reward_members=2, seed=0, stage=Stage, **TINY
    )
    assert stages == ["setup", "denoiser", "labels", "reward"]
    assert path.is_file() and info.db is not None and info.db.is_file()
    assert isinstance(info.model, RewardEnsemble) and isinstance(load_reward_model(path), RewardEnsemble)
    assert isinstance(info.labels, CollectedLabels) and len(info.labels) == 12
    assert info.fit["rows"] == {"train": 12, "val": 0} and info.agreement["n"] == 60 - 12
    d = info.to_dict()
    assert d["labeler"] == "synthetic" and d["labels"]["labels"] == 12 and set(d["seconds"]) == set(stages)
    # the store it filled trains a reward on the command line too; --monotone keeps the weights' signs
    from hfrl.cli import main

    out = tmp_path / "cli-reward"
    argv = ["reward", "train", "--db", str(info.db), "--out", str(out), "--monotone", "--device", "cpu",
            "--steps", "20", "--lr", "0.05", "--denoiser-steps", "2", "--denoiser-images", "0"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads((out / "report.json").read_text())["monotone"] is True
    w = load_reward_model(out).head.weight.detach()[0]
    assert w[0] >= 0 and w[1] >= 0 and w[2] <= 0
    with pytest.raises(FeedbackError, match="already exists"):
        prepare_reward(tmp_path / "run", n_labels=12, **TINY)

    path0, info0 = prepare_reward(tmp_path / "zero", n_labels=0, seed=0, **TINY)
    assert info0.labels is None and info0.db is None and info0.labeler == "none"
    assert isinstance(load_reward_model(path0), SimilarityReward)
    assert not math.isnan(info0.agreement["accuracy"])


def test_prepare_reward_on_colour_images_no_shipped_judge_reads(tmp_path) -> None:
    """12x16 RGB images: the synthetic labeler judges SSIM/correlation, the reward scores colour pairs."""
    import torch

    from hfrl.agents import make_config, make_trainer
    from hfrl.data import ImageSet
    from hfrl.pretrain import pretrain
    from hfrl.pretrain_config import PretrainConfig
    from tests.conftest import shapes_dataset

    images, labels = shapes_dataset(96, 3, 12, 16)
    data = ImageSet.from_array(images, labels, "shapes")
    (tmp_path / "pre").mkdir()
    pretrain(
        PretrainConfig(epochs=1, width=4, bottleneck=8, device="cpu", source_classes=(0,)),
        data,
        tmp_path / "pre",
        progress=False,
    )
    generator = str(tmp_path / "pre" / "generator")
    fields = {k: v for k, v in TINY.items() if k != "task"}
    path, info = prepare_reward(
        tmp_path / "run", n_labels=12, rounds=1, selection="random", seed=0, dataset=data, source_classes=(0,),
        target_classes=(1,), generator=generator, flip_rate=0.25, **fields,
    )  # fmt: skip
    assert info.labeler == "synthetic" and len(info.labels) == 12 and info.agreement == {}
    model = load_reward_model(path)
    x = torch.rand(3, 3, 12, 16)
    assert model.predict_th(x, x).shape == (3,)
    config = make_config(
        "reinforce", dataset=data, source_classes=(0,), target_classes=(1,), generator=generator, steps=1,
        batch_size=8, eval_size=8, device="cpu", progress=False, checkpoint_every=0,
    )  # fmt: skip
    with pytest.warns(UserWarning, match="not measured"):
        trainer = make_trainer("reinforce", config, reward=str(path), run_dir=tmp_path / "ft")
    assert trainer.train().final["not_measured"]


def test_prepare_reward_with_the_classical_estimate_tunes_it_on_source_pairs(tmp_path) -> None:
    from hfrl.classical import ClassicalDenoiser

    path, info = prepare_reward(
        tmp_path / "run", n_labels=12, rounds=2, ensemble=2, seed=0, reference="classical", **TINY
    )
    assert info.denoiser["variant"].startswith("classical ") and info.denoiser["source_psnr"] > 15
    assert isinstance(info.model.denoiser, ClassicalDenoiser)
    assert isinstance(load_reward_model(path).denoiser, ClassicalDenoiser)
    with pytest.raises(ConfigError, match="unknown reward reference 'bm3d'"):
        prepare_reward(tmp_path / "other", n_labels=0, reference="bm3d", **TINY)
