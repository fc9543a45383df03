"""The user's own images through the agents' API: tensors, pairs of domains, comparisons, sweeps, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hfrl.agents import compare_agents, make_config, make_trainer, run_sweep
from hfrl.data import ImageSet, load_embedded_mnist
from hfrl.errors import CheckpointError, ConfigError, DataError
from hfrl.judges import asset_path

EVALUATOR = str(asset_path("evaluator_classifier"))
"""The shipped digit classifier, named explicitly: the images below are digits, but hfrl cannot know."""


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """300 real digits as a user would have them: uint8 ``(N, 28, 28)`` and their classes."""
    data = load_embedded_mnist()
    every = slice(0, 4800, 16)  # the file is sorted by class: about 30 of each
    return (data.images[every, 0] * 255).round().to(torch.uint8), data.labels[every]


def _fields(tiny: dict, **more) -> dict:
    return {**tiny, "evaluator": EVALUATOR, "eval_size": 16, **more}


def test_a_user_tensor_without_a_dataset_name_end_to_end(digits, tiny, tiny_reward, tmp_path: Path) -> None:
    images, labels = digits
    config = make_config("reinforce", **_fields(tiny, dataset=(images, labels)))
    assert isinstance(config.dataset, ImageSet) and config.dataset.labelled
    result = make_trainer("reinforce", config, reward=tiny_reward, run_dir=tmp_path / "run").train()
    assert result.steps == tiny["steps"] and (tmp_path / "run" / "generator.safetensors").is_file()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    record = saved["dataset"]
    assert record["dataset"] == "user" and record["shape"] == [300, 1, 28, 28] and record["labelled"] is True
    assert record["sha256"] == config.dataset.digest and len(record["sha256"]) == 64
    assert "tensor" not in (tmp_path / "run" / "config.json").read_text()


def test_unlabelled_domains_as_two_datasets(digits, tiny, tiny_reward, tmp_path: Path) -> None:
    images, labels = digits
    zeros, others = images[labels == 0].numpy(), images[labels != 0].numpy()  # arrays, no labels
    config = make_config("reinforce", **_fields(tiny, source_data=zeros, target_data=others))
    assert config.dataset == "user" and config.source_classes == () and config.target_classes == ()
    trainer = make_trainer("reinforce", config, reward=tiny_reward, run_dir=tmp_path / "run")
    assert len(trainer.env.task.images) == len(trainer.domains.target("train"))
    trainer.train()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (
        saved["source_data"]["shape"] == [len(zeros), 1, 28, 28] and saved["source_data"]["labelled"] is False
    )
    assert saved["target_data"]["sha256"] == config.target_data.digest


def test_unlabelled_images_alone_say_how_to_give_two_domains(digits, tiny, tiny_reward) -> None:
    config = make_config("reinforce", **_fields(tiny, dataset=digits[0]))  # no labels
    with pytest.raises(DataError, match="no labels.*source_data= and target_data="):
        make_trainer("reinforce", config, reward=tiny_reward)
    with pytest.raises(ConfigError, match="both source_data and target_data"):
        make_config("reinforce", source_data=digits[0])


def test_images_of_another_size_fail_before_training_naming_both_shapes(tiny, tiny_reward, tmp_path) -> None:
    small = np.random.default_rng(0).integers(0, 256, size=(40, 16, 16), dtype=np.uint8)
    config = make_config("reinforce", **_fields(tiny, dataset=(small, np.arange(40) % 10)))
    with pytest.raises(DataError) as info:
        make_trainer("reinforce", config, reward=tiny_reward, run_dir=tmp_path / "run")
    message = str(info.value)
    assert "\n" not in message and "1x28x28" in message and "1x16x16" in message
    assert not (tmp_path / "run" / "train.csv").exists()


def test_resume_requires_the_same_images(digits, tiny, tiny_reward, tmp_path: Path) -> None:
    images, labels = digits
    run = tmp_path / "run"
    config = make_config("reinforce", **_fields(tiny, dataset=(images, labels), steps=1))
    make_trainer("reinforce", config, reward=tiny_reward, run_dir=run).train()
    saved = json.loads((run / "config.json").read_text())
    saved.pop("agent")
    with pytest.raises(ConfigError, match=r"runs do not save.*--data PATH") as info:
        make_config("reinforce", **saved)  # the record alone is not the images
    assert "\n" not in str(info.value)

    same = make_trainer(
        "reinforce",
        config.replace(dataset=(images.clone(), labels), steps=2),
        reward=tiny_reward,
        run_dir=run,
    )
    same.load_state()
    assert same.step == 1
    other = images.clone()
    other[0, 0, 0] ^= 1
    changed = make_trainer(
        "reinforce", config.replace(dataset=(other, labels), steps=2), reward=tiny_reward, run_dir=run
    )
    with pytest.raises(CheckpointError, match="resume it with the same data") as info:
        changed.load_state()
    assert "\n" not in str(info.value) and "sha256" in str(info.value)


def test_compare_and_sweep_take_user_images(digits, tiny, tiny_reward, tmp_path: Path) -> None:
    images, labels = digits
    base = {k: v for k, v in _fields(tiny, dataset=(images.numpy(), labels.numpy()), steps=1).items()}
    df = compare_agents(
        ["reinforce"],
        reward=lambda seed: tiny_reward,
        seeds=(0,),
        base=base,
        out=tmp_path / "cmp",
        verbose=False,
    )
    assert list(df["status"]) == ["ok"]
    written = json.loads((tmp_path / "cmp" / "config.json").read_text())
    assert written["base"]["dataset"]["dataset"] == "user" and written["base"]["dataset"]["shape"] == [
        300,
        1,
        28,
        28,
    ]

    sweep = run_sweep(
        "reinforce",
        {"kl": [0.0]},
        base=base,
        reward=tiny_reward,
        out=tmp_path / "sweep",
        workers=1,
        progress=False,
        plots=False,
    )
    assert list(sweep["status"]) == ["ran"]
    cell = json.loads((Path(sweep["run_dir"][0]) / "config.json").read_text())
    assert cell["dataset"]["sha256"] == written["base"]["dataset"]["sha256"]
    again = run_sweep(
        "reinforce",
        {"kl": [0.0]},
        base=base,
        reward=tiny_reward,
        out=tmp_path / "sweep",
        workers=1,
        progress=False,
        plots=False,
    )
    assert list(again["status"]) == ["cached"]
    other = {**base, "dataset": (images.numpy()[::-1].copy(), labels.numpy()[::-1].copy())}
    with pytest.raises(ConfigError, match="other settings"):
        run_sweep(
            "reinforce", {"kl": [0.0]}, base=other, reward=tiny_reward, out=tmp_path / "sweep", workers=1
        )
    with pytest.raises(ConfigError, match="cannot be a grid axis"):
        run_sweep(
            "reinforce", {"dataset": [images]}, base={}, reward=tiny_reward, out=tmp_path / "s2", workers=1
        )
