"""The ``patches-colour`` task: scikit-image's pictures cut into RGB patches, through the env, an agent and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import hfrl.envs  # noqa: F401
from hfrl.agents import make_config, make_trainer
from hfrl.cli import main
from hfrl.data import SKIMAGE_PICTURES, Domains, load_dataset, load_skimage_patches
from hfrl.errors import DataError
from hfrl.tasks import get_task


def test_the_patches_load_deterministically_with_a_class_per_picture() -> None:
    data = load_dataset("skimage-patches")
    again = load_skimage_patches()
    assert data.image_shape == (3, 32, 32) and data.images.dtype == torch.float32
    assert torch.equal(data.images, again.images) and torch.equal(data.labels, again.labels)
    assert data.digest == again.digest
    assert data.classes == tuple(range(len(SKIMAGE_PICTURES)))
    assert float(data.images.min()) >= 0.0 and float(data.images.max()) <= 1.0
    counts = torch.bincount(data.labels).tolist()
    assert 2_000 < len(data) < 5_000 and min(counts) >= 100
    # no flat patch: every patch's pixels vary
    assert float(data.images.flatten(1).std(1).min()) >= 0.02
    # colour, not grey: the channels differ
    assert float((data.images[:, 0] - data.images[:, 2]).abs().mean()) > 0.05
    # another seed shifts the grids of pictures whose sides are not multiples of 32 (the cat's: 300x451)
    cat = SKIMAGE_PICTURES.index("chelsea")
    shifted = load_skimage_patches(seed=1).with_classes([cat]).images
    same_size = shifted.shape == data.with_classes([cat]).images.shape
    assert not (same_size and torch.equal(shifted, data.with_classes([cat]).images))
    with pytest.raises(DataError, match="size must be an integer"):
        load_skimage_patches(size=4)


def test_the_task_resolves_to_retina_source_and_photograph_targets() -> None:
    task = get_task("patches-colour")
    assert task.generator_path().with_suffix(".json").exists()
    data = load_dataset(task.dataset, task.data_dir)
    domains = Domains(data, task.source_classes, task.target_classes, task.split_seed)
    source, target = domains.source("test"), domains.target("test")
    assert set(source.classes) == {SKIMAGE_PICTURES.index("retina")}
    assert set(target.classes) == set(range(6)) and target.image_shape == (3, 32, 32)
    noisy = task.noise_model()(target.images[:8], torch.Generator().manual_seed(0))
    assert noisy.shape == (8, 3, 32, 32)


def test_the_environment_steps_on_the_task() -> None:
    env = gym.make("hfrl/Denoise-v0", task="patches-colour", reward="labeler", evaluate=False)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, 32, 32)
    obs, reward, terminated, _, _ = env.step(np.clip(obs, 0.0, 1.0))
    assert terminated and math.isfinite(float(reward))
    env.close()


def test_an_agent_runs_on_the_task_and_reports_psnr(tmp_path: Path) -> None:
    config = make_config(
        "reinforce",
        task="patches-colour",
        steps=2,
        batch_size=8,
        aux_batch_size=4,
        eval_size=16,
        reward="labeler",
        device="cpu",
        progress=False,
        seed=0,
    )
    with pytest.warns(UserWarning, match="no evaluator for 3x32x32 images"):
        result = make_trainer("reinforce", config, run_dir=tmp_path / "run").train()
    assert result.steps == 2 and result.evaluation is not None
    target, source = result.evaluation.target.summary(), result.evaluation.source.summary()
    assert math.isnan(target["good_rate"]) and 0.0 < target["ssim"] <= 1.0
    # the task's domain gap, on the whole test split after two small updates: the source generator cleans
    # its fundus patches (measured 15.0 -> 31.3 dB) and barely helps on the photographs (15.0 -> 16.0 dB)
    assert source["psnr"] > source["psnr_noisy"] + 10.0
    assert target["psnr_noisy"] + 0.5 < target["psnr"] < target["psnr_noisy"] + 5.0


def test_finetune_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    argv = ["finetune", "--task", "patches-colour", "--steps", "2", "--agent", "reinforce", "--out", str(run)]
    tiny = [
        "--batch-size",
        "8",
        "--aux-batch-size",
        "4",
        "--eval-size",
        "16",
        "--reward",
        "labeler",
        "--quiet",
    ]
    assert main([*argv, *tiny]) == 0
    assert "target good-rate not measured" in capsys.readouterr().out
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["steps"] == 2
    assert (run / "generator.safetensors").is_file()


def test_evaluate_from_the_command_line_reports_psnr_without_a_judge(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert (
        main(["evaluate", "--task", "patches-colour", "--out", str(tmp_path / "ev"), "--device", "cpu"]) == 0
    )
    captured = capsys.readouterr()
    assert "no evaluator for 3x32x32 images" in captured.err and "nan%" not in captured.out
    assert "source PSNR" in captured.out and "-> target PSNR" in captured.out
    evaluation = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert evaluation["target"]["good_rate"] is None
    # the task's gap: the fundus generator is far better on its own patches (measured 31.5 / 16.1 dB)
    assert evaluation["source"]["psnr"] > evaluation["target"]["psnr"] + 10.0
