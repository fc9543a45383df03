"""hfrl finetune: a built-in or an imported agent end to end, resume, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hfrl.agents import AGENTS
from hfrl.cli import main
from hfrl.judges import asset_path

TINY = ["--batch-size", "8", "--aux-batch-size", "4", "--device", "cpu", "--reward", "labeler", "--quiet"]


def test_builtin_agent_then_resume(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    argv = ["finetune", "--agent", "rwl", "--steps", "1", "--checkpoint-every", "1", "--out", str(run)]
    assert main([*argv, *TINY, "--set", "temperature=0.05"]) == 0
    printed = capsys.readouterr().out
    assert "rwl: target good-rate" in printed and f"run directory: {run}" in printed
    config = json.loads((run / "config.json").read_text())
    assert config["agent"] == "rwl" and config["temperature"] == 0.05 and config["batch_size"] == 8
    assert (run / "evaluation.json").is_file() and (run / "generator.safetensors").is_file()

    assert main(["finetune", "--resume", str(run), "--steps", "2", "--device", "cpu", "--quiet"]) == 0
    assert "resuming rwl at step 1 of 2" in capsys.readouterr().out
    assert json.loads((run / "evaluation.json").read_text())["steps"] == 2


def test_an_agent_registered_by_an_imported_file(tmp_path: Path, capsys, custom_agent_file) -> None:
    run = tmp_path / "elite"
    argv = [
        "finetune",
        "--import",
        str(custom_agent_file),
        "--agent",
        "elite",
        "--steps",
        "1",
        "--out",
        str(run),
    ]
    assert main([*argv, *TINY, "--set", "elite_fraction=0.5"]) == 0
    assert "elite: target good-rate" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert config["agent"] == "elite" and config["elite_fraction"] == 0.5

    AGENTS.pop("elite")  # a later process that forgot --import
    assert main(["finetune", "--resume", str(run), "--steps", "2", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'elite'" in err and "--import" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--agent", "nope"], "unknown agent 'nope'"),
        (["--set", "kl"], "FIELD=VALUE"),
        (["--set", "nope=1"], "'nope' is not a setting"),
        (["--set", "lr=fast"], "cannot read 'fast'"),
        (["--import", "/no/such/file.py"], "no such file"),
        (["--agent", "rwl", "--set", "elite_fraction=0.5"], "'elite_fraction' is not a setting"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    out = tmp_path / "out"
    assert main(["finetune", "--out", str(out), *TINY, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("hfrl finetune: error:") and message in err, err
    assert not out.exists()


# -- your own images (--data PATH) -------------------------------------------------------------------------

EVALUATOR = str(asset_path("evaluator_classifier"))  # the images below are digits; hfrl cannot know it


def _digits(mnist) -> tuple[np.ndarray, np.ndarray]:
    every = slice(0, 4800, 16)  # the embedded digits are sorted by class: about 30 of each
    return (mnist.images[every, 0].numpy() * 255).round().astype(np.uint8), mnist.labels[every].numpy()


def test_finetune_on_an_npz_file_then_resume_needs_the_same_file(tmp_path: Path, capsys, mnist) -> None:
    images, labels = _digits(mnist)
    np.savez(tmp_path / "digits.npz", images=images, labels=labels)
    run = tmp_path / "run"
    argv = ["finetune", "--agent", "reinforce", "--steps", "1", "--checkpoint-every", "1", "--out", str(run)]
    data = ["--data", str(tmp_path / "digits.npz"), "--evaluator", EVALUATOR, "--eval-size", "16"]
    assert main([*argv, *data, *TINY]) == 0
    record = json.loads((run / "config.json").read_text())["dataset"]
    assert record["dataset"] == "user" and record["name"] == str(tmp_path / "digits.npz")
    assert record["shape"] == [300, 1, 28, 28] and record["labelled"] and len(record["sha256"]) == 64
    capsys.readouterr()

    resume = ["finetune", "--resume", str(run), "--steps", "2", "--device", "cpu", "--quiet"]
    assert main(resume) == 2  # the run did not save the images: they must be given again
    assert "pass the same images again (--data PATH" in capsys.readouterr().err
    np.savez(tmp_path / "other.npz", images=255 - images, labels=labels)
    assert main([*resume, "--data", str(tmp_path / "other.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "resume it with the same data" in err and "sha256" in err
    assert main([*resume, "--data", str(tmp_path / "digits.npz")]) == 0
    assert "resuming reinforce at step 1 of 2" in capsys.readouterr().out


def test_finetune_on_an_image_folder(tmp_path: Path, capsys, mnist) -> None:
    from PIL import Image

    images, labels = _digits(mnist)
    for i, (image, label) in enumerate(zip(images, labels)):  # torchvision's ImageFolder layout, grey PNGs
        (tmp_path / "digits" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image, mode="L").save(tmp_path / "digits" / str(label) / f"{i:03d}.png")
    run = tmp_path / "run"
    argv = [
        "finetune",
        "--agent",
        "reinforce",
        "--steps",
        "1",
        "--out",
        str(run),
        "--data",
        str(tmp_path / "digits"),
    ]
    assert main([*argv, "--evaluator", EVALUATOR, "--eval-size", "16", *TINY]) == 0
    assert "reinforce: target good-rate" in capsys.readouterr().out
    record = json.loads((run / "config.json").read_text())["dataset"]
    assert record["dataset"] == "user" and record["shape"] == [300, 1, 28, 28] and record["labelled"]
    assert (run / "evaluation.json").is_file()


def test_finetune_on_two_unlabelled_domains_and_pretrain_on_one(tmp_path: Path, capsys, mnist) -> None:
    images, labels = _digits(mnist)
    np.save(tmp_path / "zeros.npy", images[labels == 0])
    np.save(tmp_path / "others.npy", images[labels != 0])
    run = tmp_path / "run"
    argv = ["finetune", "--agent", "reinforce", "--steps", "1", "--out", str(run)]
    data = ["--source-data", str(tmp_path / "zeros.npy"), "--target-data", str(tmp_path / "others.npy")]
    assert main([*argv, *data, "--evaluator", EVALUATOR, "--eval-size", "16", *TINY]) == 0
    config = json.loads((run / "config.json").read_text())
    zeros = int((labels == 0).sum())
    assert config["dataset"] == "user" and config["source_data"]["shape"] == [zeros, 1, 28, 28]
    assert config["target_data"]["labelled"] is False and config["source_classes"] == []

    out = tmp_path / "pretrain"
    pre = ["pretrain", "--source-data", str(tmp_path / "zeros.npy"), "--epochs", "1", "--device", "cpu"]
    assert main([*pre, "--quiet", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["source_data"]["dataset"] == "user" and saved["source_data"]["shape"] == [zeros, 1, 28, 28]
    assert (out / "generator.safetensors").is_file()


def test_sb3_sac_runs_from_the_command_line(tmp_path: Path, capsys) -> None:
    run = tmp_path / "sac"
    argv = ["finetune", "--agent", "sb3-sac", "--steps", "2", "--learning-starts", "0", "--out", str(run)]
    assert main([*argv, "--minibatch-size", "8", *TINY]) == 0
    assert "sb3-sac: target good-rate" in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert (
        config["agent"] == "sb3-sac" and config["learning_starts"] == 0 and config["policy_space"] == "logit"
    )
    header, *rows = (run / "train.csv").read_text().splitlines()
    column = header.split(",").index("sb3/critic_loss")
    assert len(rows) == 2 and all(np.isfinite(float(row.split(",")[column])) for row in rows)  # SAC trained


def test_a_folder_of_colour_pngs_through_pretrain_and_finetune(tmp_path: Path, capsys) -> None:
    from PIL import Image

    from tests.conftest import shapes_dataset

    images, labels = shapes_dataset(48, 3, 12, 16)
    for i, (image, label) in enumerate(zip(images, labels)):  # ImageFolder layout, RGB PNGs
        (tmp_path / "shapes" / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.transpose(1, 2, 0), mode="RGB").save(
            tmp_path / "shapes" / str(label) / f"{i:02d}.png"
        )
    data = ["--data", str(tmp_path / "shapes")]
    pre = ["pretrain", *data, "--source-classes", "0", "--epochs", "1", "--width", "4", "--bottleneck", "8"]
    assert main([*pre, "--device", "cpu", "--quiet", "--out", str(tmp_path / "pre")]) == 0
    saved = json.loads((tmp_path / "pre" / "generator.json").read_text())["config"]
    assert saved["channels"] == 3 and saved["image_size"] == [12, 16]

    run = tmp_path / "run"
    argv = ["finetune", "--agent", "reinforce", "--steps", "1", "--out", str(run), *data]
    generator = [
        "--generator",
        str(tmp_path / "pre" / "generator"),
        "--source-classes",
        "0",
        "--target-classes",
        "1",
    ]
    assert main([*argv, *generator, "--eval-size", "8", *TINY]) == 0
    captured = capsys.readouterr()
    assert (
        "target good-rate not measured" in captured.out and "no evaluator for 3x12x16 images" in captured.err
    )
    record = json.loads((run / "config.json").read_text())["dataset"]
    assert record["shape"] == [48, 3, 12, 16] and record["labelled"]
    assert (run / "evaluation.json").is_file() and (run / "generator.safetensors").is_file()

    from hfrl.rewards import RewardModelConfig, make_reward_model, save_reward_model

    grey_reward = make_reward_model(RewardModelConfig(width=4, hidden=8, image_size=(12, 16)))
    save_reward_model(tmp_path / "grey_reward" / "model", grey_reward)
    wrong = [*argv[:-4], "--out", str(tmp_path / "wrong"), *data, *generator, *TINY, "--reward"]
    assert main([*wrong, str(tmp_path / "grey_reward" / "model")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "scores 1x12x16 images but the data are 3x12x16" in err
    assert not (tmp_path / "wrong" / "train.csv").exists()

    grey = ["finetune", "--agent", "reinforce", "--steps", "1", "--out", str(tmp_path / "bad"), *generator]
    np.savez(tmp_path / "grey.npz", images=images[:, 0], labels=labels)
    assert main([*grey, "--data", str(tmp_path / "grey.npz"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "3x12x16" in err and "1x12x16" in err
