"""Damaged run files on the command line: one line on stderr and exit code 2; failed runs leave no empty folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hfrl.agents import make_config, make_trainer
from hfrl.checkpoint import save_checkpoint
from hfrl.cli import main
from hfrl.generators import GeneratorConfig, build_generator
from hfrl.runs import write_json

TINY = {"steps": 4, "batch_size": 8, "aux_batch_size": 4, "device": "cpu", "progress": False, "eval_every": 0}


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    """A finetune run directory as a killed run leaves it: config.json and a checkpoint at step 1."""
    config = make_config("reinforce", **TINY, reward="labeler")
    trainer = make_trainer("reinforce", config, run_dir=tmp_path / "run")
    trainer.update()
    trainer.step += 1
    trainer.save_state()
    write_json(trainer.run_dir / "config.json", {"agent": "reinforce", **config.to_dict()})
    return trainer.run_dir


def _one_line_error(capsys, *names: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("hfrl "), err
    assert "Traceback" not in err and all(name in err for name in names), err
    return err


@pytest.mark.parametrize(
    ("damage", "names"),
    [
        (lambda d: (d / "config.json").write_text(""), ("config.json", "empty")),
        (lambda d: (d / "config.json").write_text("[1, 2]"), ("config.json", "object")),
        (lambda d: (d / "config.json").write_text('{"steps": 4}'), ("config.json", "agent")),
        (lambda d: (d / "config.json").write_text('{"agent": "reinforce", "lr": "fast"}'), ("config.json",)),
        (lambda d: (d / "state.safetensors").write_bytes(b"\x00" * 16), ("state.safetensors", "truncated")),
        (lambda d: (d / "state.safetensors").unlink(), ("state.safetensors",)),
    ],
    ids=[
        "empty config",
        "config not an object",
        "config without agent",
        "mistyped config",
        "torn state",
        "no state",
    ],
)
def test_resume_from_damaged_run_files_is_one_line_exit_2(run_dir: Path, damage, names, capsys) -> None:  # noqa: ANN001
    damage(run_dir)
    assert main(["finetune", "--resume", str(run_dir), "--quiet"]) == 2
    _one_line_error(capsys, *names)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bottleneck": 1_000_000_000}, "bottleneck must be in"),
        ({"bottleneck": 1e9}, "bottleneck must be an integer"),
        ({"width": 1024, "bottleneck": 65536, "image_size": [1024, 1024]}, "parameters"),
        ({"image_size": [28]}, "image_size"),
    ],
)
def test_an_absurd_generator_config_is_refused_before_allocating(
    change: dict, message: str, tmp_path: Path, capsys
) -> None:
    path = tmp_path / "gen"
    save_checkpoint(path, build_generator(GeneratorConfig(width=4, bottleneck=8)), "generator", {})
    doc = json.loads(path.with_suffix(".json").read_text())
    doc["config"] = {**GeneratorConfig(width=4, bottleneck=8).to_dict(), **change}
    path.with_suffix(".json").write_text(json.dumps(doc))
    assert main(["evaluate", "--generator", str(path), "--device", "cpu", "--out", str(tmp_path / "ev")]) == 2
    _one_line_error(capsys, "gen.json", message)
    assert not (tmp_path / "ev").exists()


def test_a_run_that_fails_first_leaves_no_empty_run_directory(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["finetune", "--agent", "reinforce", "--reward", "no/such/reward", "--device", "cpu", "--quiet"]
    assert main([*argv, "--out", "runs/mine"]) == 2
    _one_line_error(capsys, "no/such/reward")
    assert main(argv) == 2  # the default runs/finetune-reinforce-TIMESTAMP folder
    capsys.readouterr()
    assert not (tmp_path / "runs").exists()

    (tmp_path / "kept").mkdir()  # a folder that was there before is never removed
    assert main([*argv, "--out", "kept"]) == 2
    assert (tmp_path / "kept").is_dir()
