"""CLI behaviour: help for every subcommand, one-line errors with exit code 2, pretrain -> evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hfrl.cli import build_parser, main


def _subcommands() -> list[list[str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    commands = []
    for name, p in sub.choices.items():
        nested = [a for a in p._actions if getattr(a, "choices", None) and isinstance(a.choices, dict)]
        if nested:
            commands.extend([name, n] for n in nested[0].choices)
        else:
            commands.append([name])
    return commands


@pytest.mark.parametrize("command", _subcommands(), ids=" ".join)
def test_every_subcommand_has_help(command: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    assert "usage: hfrl" in capsys.readouterr().out


def test_foundation_commands_exist() -> None:
    names = {c[0] for c in _subcommands()}
    assert {"pretrain", "evaluate"} <= names


@pytest.mark.parametrize(
    "argv",
    [
        ["no-such-command"],
        ["pretrain", "--epochs", "0"],
        ["pretrain", "--epochs", "many"],
        ["pretrain", "--noise", "speckle"],
        ["pretrain", "--noise-level", "-1"],
        ["evaluate", "--device", "tpu"],
        ["evaluate", "--dataset", "cifar"],
    ],
)
def test_usage_errors_are_one_line_and_exit_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "--dataset", "mnist", "--data-dir", "{tmp}"], "--download"),
        (["evaluate", "--generator", "{tmp}/bad.json"], "not valid JSON"),
        (["evaluate", "--target-classes", "0-3"], "overlap"),
        (["evaluate", "--source-classes", "x"], "cannot read classes"),
        (["evaluate", "--dataset", "fashion-mnist", "--data-dir", "{tmp}"], "judges handwritten digits"),
        (
            ["pretrain", "--source-classes", "42", "--epochs", "1", "--out", "{tmp}/run"],
            "none of the classes",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    (tmp_path / "bad.json").write_text("{oops")
    (tmp_path / "bad.safetensors").write_bytes(b"")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_pretrain_then_evaluate(tmp_path: Path, capsys) -> None:
    run = tmp_path / "pre"
    assert (
        main(["pretrain", "--epochs", "2", "--width", "8", "--out", str(run), "--quiet", "--device", "cpu"])
        == 0
    )
    assert (run / "generator.safetensors").exists()
    capsys.readouterr()
    assert main(["evaluate", "--generator", str(run), "--out", str(tmp_path / "ev"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "target" in out and "good_rate" in out
    result = json.loads((tmp_path / "ev" / "evaluation.json").read_text())
    assert {"source", "target", "per_class"} <= set(result)
    assert (tmp_path / "ev" / "grid.png").exists()


def test_evaluate_shipped_generator_shows_the_gap(tmp_path: Path, capsys) -> None:
    assert main(["evaluate", "--out", str(tmp_path), "--device", "cpu"]) == 0
    result = json.loads((tmp_path / "evaluation.json").read_text())
    assert result["source"]["good_rate"] >= 0.95
    assert 0.15 <= result["target"]["good_rate"] <= 0.3  # the default task's source generator: 21.0 %
    white = tmp_path / "white"
    assert main(["evaluate", "--task", "digits-white", "--out", str(white), "--device", "cpu"]) == 0
    assert 0.5 <= json.loads((white / "evaluation.json").read_text())["target"]["good_rate"] <= 0.55  # 52.4 %


def test_console_script_runs() -> None:
    exe = Path(sys.executable).with_name("hfrl")
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("hfrl ")
