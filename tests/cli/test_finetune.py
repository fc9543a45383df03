"""hfrl finetune: a built-in or an imported agent end to end, resume, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hfrl.agents import AGENTS
from hfrl.cli import main

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
