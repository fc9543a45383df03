"""Images of any shape through a whole run: pre-train a tiny generator, fine-tune it, evaluate, save.

Grey 8x8, RGB 32x32 and grey 12x20 images; no shipped judge knows them, so the runs report PSNR/SSIM and
the reward, and say in one line that good-rates are not measured.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hfrl.agents import make_config, make_trainer
from hfrl.checkpoint import load_checkpoint
from hfrl.data import ImageSet
from hfrl.errors import DataError
from hfrl.pretrain import pretrain
from hfrl.pretrain_config import PretrainConfig
from hfrl.rewards import RewardModelConfig, make_reward_model
from tests.conftest import shapes_dataset


def _run(
    images: np.ndarray, labels: np.ndarray, tmp_path: Path, reward: object = "labeler"
) -> tuple[dict, Path]:
    """Pre-train on class 0, fine-tune on class 1 with ``reward``; the evaluation and the run directory."""
    data = ImageSet.from_array(images, labels, "shapes")
    (tmp_path / "pre").mkdir()
    result = pretrain(
        PretrainConfig(epochs=1, width=4, bottleneck=8, batch_size=16, device="cpu", source_classes=(0,)),
        data=data,
        out_dir=tmp_path / "pre",
        progress=False,
    )
    assert result.generator.config.image_shape == data.image_shape
    saved = json.loads((tmp_path / "pre" / "generator.json").read_text())
    assert saved["config"]["channels"] == data.image_shape[0]
    assert saved["config"]["image_size"] == list(data.image_shape[1:])
    config = make_config(
        "reinforce",
        dataset=(images, labels),
        source_classes=(0,),
        target_classes=(1,),
        generator=str(tmp_path / "pre" / "generator"),
        steps=2,
        batch_size=8,
        aux_batch_size=4,
        eval_size=8,
        device="cpu",
        progress=False,
        checkpoint_every=0,
    )
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="good-rates are not measured"):
        trainer = make_trainer("reinforce", config, reward=reward, run_dir=run)
    trainer.train()
    final = json.loads((run / "evaluation.json").read_text())
    return final, run


@pytest.mark.parametrize(
    ("channels", "height", "width"),
    [(1, 8, 8), (3, 32, 32), (1, 12, 20)],
    ids=["grey8", "rgb32", "grey12x20"],
)
def test_a_run_on_images_no_judge_knows_trains_evaluates_and_saves(channels, height, width, tmp_path) -> None:
    images, labels = shapes_dataset(64, channels, height, width)
    final, run = _run(images, labels, tmp_path)
    generator, _ = load_checkpoint(run / "generator", kind="generator")
    assert generator.config.image_shape == (channels, height, width)
    x = torch.rand(2, channels, height, width)
    assert generator(x).shape == x.shape
    assert final["target_good_rate_after"] is None and final["source_good_rate_before"] is None
    assert len(final["not_measured"]) == 1 and "\n" not in final["not_measured"][0]
    assert f"{channels}x{height}x{width}" in final["not_measured"][0]
    rows = {(r["domain"], r["class"]): r for r in final["per_class"]}
    target = rows[("target", "all")]
    assert math.isfinite(target["psnr"]) and 0.0 < target["ssim"] <= 1.0 and target["good_rate"] is None
    assert math.isfinite(final["target_psnr_gain"]["mean"])
    assert 0.0 <= final["target_reward_before"] <= 1.0 and 0.0 <= final["target_reward_after"] <= 1.0
    assert (run / "grid_after.png").is_file() and (run / "train.csv").is_file()


def test_channel_last_colour_images_and_a_reward_model_of_their_shape(tmp_path) -> None:
    images, labels = shapes_dataset(48, 3, 16, 12, seed=1)
    reward = make_reward_model(
        RewardModelConfig(inputs=("noisy", "output"), width=4, hidden=8, image_size=(16, 12), channels=3)
    )
    final, run = _run(images.transpose(0, 2, 3, 1), labels, tmp_path, reward=reward)  # (N, H, W, 3)
    assert math.isfinite(final["target_psnr_gain"]["mean"]) and (run / "generator.safetensors").is_file()
    assert "reward/mean" in (run / "train.csv").read_text().splitlines()[0]


def test_shapes_are_checked_before_any_work_naming_both(tmp_path) -> None:
    grey, labels = shapes_dataset(48, 1, 16, 16)
    colour, _ = shapes_dataset(48, 3, 16, 16)
    data = ImageSet.from_array(colour, labels, "colour")
    (tmp_path / "rgb").mkdir()
    pretrain(
        PretrainConfig(epochs=1, width=4, bottleneck=8, device="cpu", source_classes=(0,)),
        data=data,
        out_dir=tmp_path / "rgb",
        progress=False,
    )
    base = dict(source_classes=(0,), target_classes=(1,), steps=1, batch_size=8, device="cpu", progress=False)
    config = make_config(
        "reinforce", dataset=(grey, labels), generator=str(tmp_path / "rgb" / "generator"), **base
    )
    with pytest.raises(DataError) as info:
        make_trainer("reinforce", config, reward="labeler", run_dir=tmp_path / "run")
    message = str(info.value)
    assert "\n" not in message and "3x16x16" in message and "1x16x16" in message
    assert not (tmp_path / "run" / "train.csv").exists()

    grey_reward = make_reward_model(RewardModelConfig(width=4, hidden=8, image_size=(16, 16)))
    config = make_config(
        "reinforce", dataset=(colour, labels), generator=str(tmp_path / "rgb" / "generator"), **base
    )
    with pytest.raises(
        DataError, match=r"reward model scores 1x16x16 images but the data are 3x16x16"
    ) as info:
        make_trainer("reinforce", config, reward=grey_reward, run_dir=tmp_path / "run2")
    assert "\n" not in str(info.value)

    from hfrl.judges import asset_path

    digit_judge = str(asset_path("evaluator_classifier"))
    config = make_config(
        "reinforce",
        dataset=(colour, labels),
        generator=str(tmp_path / "rgb" / "generator"),
        evaluator=digit_judge,
        **base,
    )
    with pytest.raises(DataError, match=r"classifier judges 1x28x28 images but the data are 3x16x16"):
        make_trainer("reinforce", config, reward="labeler", run_dir=tmp_path / "run3")


def test_every_agent_runs_on_colour_images(tmp_path) -> None:
    from hfrl.agents import AGENTS

    images, labels = shapes_dataset(48, 3, 12, 20, seed=2)
    data = ImageSet.from_array(images, labels, "shapes")
    (tmp_path / "pre").mkdir()
    pretrain(PretrainConfig(epochs=1, width=4, bottleneck=8, device="cpu", source_classes=(0,)), data, tmp_path / "pre", progress=False)  # fmt: skip
    model = RewardModelConfig(inputs=("noisy", "output"), width=4, hidden=8, image_size=(12, 20), channels=3)
    for agent in sorted(AGENTS):
        config = make_config(
            agent, dataset=data, source_classes=(0,), target_classes=(1,), generator=str(tmp_path / "pre" / "generator"),
            steps=1, batch_size=8, eval_size=8, device="cpu", progress=False, checkpoint_every=0,
        )  # fmt: skip
        reward = make_reward_model(model) if agent == "reward-grad" else "labeler"  # it needs gradients
        with pytest.warns(UserWarning, match="not measured"):
            trainer = make_trainer(agent, config, reward=reward, run_dir=tmp_path / agent)
        final = trainer.train().final
        assert math.isfinite(final["target_psnr_gain"]["mean"]), agent
        assert (tmp_path / agent / "generator.safetensors").is_file(), agent


def test_source_and_target_images_of_different_shapes_are_refused_in_one_line(tmp_path) -> None:
    grey, _ = shapes_dataset(32, 1, 16, 16)
    colour, _ = shapes_dataset(32, 3, 16, 16)
    config = make_config(
        "reinforce", source_data=grey, target_data=colour, steps=1, batch_size=8, device="cpu"
    )
    with pytest.raises(DataError, match=r"3x16x16.*1x16x16|1x16x16.*3x16x16") as info:
        make_trainer("reinforce", config, reward="labeler", run_dir=tmp_path / "run")
    assert "\n" not in str(info.value) and not (tmp_path / "run" / "train.csv").exists()
