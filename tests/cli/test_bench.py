"""hfrl bench: a user's agent imported from a file takes part; bad input is one line with exit code 2."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from hfrl.cli import main
from hfrl.cli.bench import parse_seeds
from hfrl.errors import ConfigError


def test_bench_runs_an_agent_registered_by_an_imported_file(
    tmp_path: Path, capsys, custom_agent_file
) -> None:
    out = tmp_path / "bench"
    argv = ["bench", "--import", str(custom_agent_file), "--agents", "elite", "--seeds", "1", "--steps", "1"]
    argv += ["--reward", "labeler", "--set", "batch_size=8", "--set", "elite.elite_fraction=0.5"]
    argv += ["--set", "aux-batch-size=4", "--out", str(out), "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "[1/1] elite seed 0: target good-rate" in printed and "| elite | 1 |" in printed
    assert f"results: {out / 'results.csv'}" in printed
    df = pd.read_csv(out / "results.csv")
    assert df["agent"].tolist() == ["elite"] and (df["status"] == "ok").all()
    assert (out / "summary.md").exists() and (out / "compare.png").exists()
    assert '"elite_fraction": 0.5' in (out / "runs" / "elite-seed0" / "config.json").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--agents", "rwl,nope"], "unknown agent 'nope'"),
        (["--agents", " , "], "no agent"),
        (["--reward", "/no/such/model"], "no such file or directory"),
        (["--set", "nope=1"], "no compared agent has a setting 'nope'"),
        (["--set", "kl"], "expected FIELD=VALUE"),
        (["--set", "ppo.lr=1e-3"], "'ppo' is not compared"),
        (["--set", "lr=fast"], "cannot read 'fast'"),
        (["--set", "seed=3"], "set seeds with --seeds"),
        (["--set", "steps=0"], "steps must be at least 1"),
        (["--set", "rwl.weighting=nope"], "weighting must be one of"),
        (["--seeds", "0"], "at least 1 seed"),
        (["--seeds", "1,x"], "--seeds"),
        (["--labels", "-1"], "--labels"),
        (["--import", "no_such_module_xyz"], "No module named"),
        (["--import", "/no/such/file.py"], "no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    out = tmp_path / "out"
    argv = ["bench", "--agents", "rwl", "--reward", "labeler", "--out", str(out), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("hfrl bench: error:") and message in err, err
    assert not out.exists()


def test_a_failing_import_shows_the_users_traceback(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    assert main(["bench", "--reward", "labeler", "--import", str(broken)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    # the user's frames (their bug), then hfrl's one-line error; no hfrl or importlib frames
    assert lines[0] == "Traceback (most recent call last):" and str(broken) in lines[1], lines
    assert lines[-1].startswith("hfrl bench: error: --import") and "RuntimeError: boom" in lines[-1]
    assert not any("importlib" in line or "plugins.py" in line for line in lines), lines
    assert not any(name.startswith("hfrl_user_broken") for name in sys.modules)


def test_reward_is_required(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--agents", "rwl"])
    assert exc.value.code == 2 and "--reward" in capsys.readouterr().err


def test_seeds_are_a_count_or_a_list() -> None:
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("4,7") == [4, 7]
    assert parse_seeds("5,") == [5]
    with pytest.raises(ConfigError):
        parse_seeds("-1,2")
