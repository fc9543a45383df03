"""``hfrl sweep`` end to end on a tiny budget, resuming, and one-line errors with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from hfrl.cli import main

TINY = [
    "--set",
    "steps=2",
    "batch_size=8",
    "aux-batch-size=4",
    "dataset_size=16",
    "round_steps=1",
    "checkpoint_every=0",
    "--device",
    "cpu",
]


def test_sweep_end_to_end_then_resume(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sweep"
    argv = ["sweep", "--agent", "rwl", "--grid", "kl=0,0.1", "--reward", "labeler", "--out", str(out)]
    argv += ["--workers", "1", "--quiet", *TINY]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "target good-rate" in text and "source dPSNR" in text
    assert "2 ran (of 2 runs)" in text
    for name in ("results.csv", "results.parquet", "summary.csv", "tradeoff.png"):
        assert (out / name).is_file() and str(out / name) in text
    df = pd.read_parquet(out / "results.parquet")
    assert df["kl"].tolist() == [0.0, 0.1] and df["steps"].tolist() == [2, 2]

    assert main(argv) == 0  # finished runs are not run again
    assert "2 cached (of 2 runs)" in capsys.readouterr().out

    assert main([*argv, "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("finished") and lines[-1] == "2 runs (2 cells x 1 seeds), 2 finished"


def test_a_cell_locked_by_another_run_is_busy_and_left_alone(tmp_path: Path, capsys) -> None:
    from hfrl.experiments.sweep import CellLock

    out = tmp_path / "sweep"
    argv = ["sweep", "--agent", "rwl", "--grid", "kl=0,0.1", "--reward", "labeler", "--out", str(out)]
    argv += ["--workers", "1", "--quiet", "--no-plots", *TINY]
    busy = out / "cells" / "kl=0.0_seed=0"
    (busy / "tb").mkdir(parents=True)  # what the owner has written so far
    (busy / "config.json").write_text("{")
    lock = CellLock(busy)  # another open file: flock excludes it as it would another process
    assert lock.acquire() is None
    try:
        assert main(argv) == 1
        text = capsys.readouterr().out
        assert "1 ran, 1 busy (of 2 runs)" in text or "1 busy, 1 ran (of 2 runs)" in text
        assert f"busy: {busy}: another process (pid " in text
        assert (busy / "config.json").read_text() == "{" and (busy / "tb").is_dir()  # nothing deleted
    finally:
        lock.release()
    # a lock file whose owner is gone (no flock held) is taken over, and the cell runs
    (out / "cells" / "kl=0.0_seed=0.lock").write_text("999999999\n")
    assert main(argv) == 0
    assert "1 ran, 1 cached (of 2 runs)" in capsys.readouterr().out
    assert not (out / "cells" / "kl=0.0_seed=0.lock").exists()


def test_sweep_of_an_agent_registered_by_an_imported_file(tmp_path: Path, capsys, custom_agent_file) -> None:
    out = tmp_path / "elite"
    argv = [
        "sweep",
        "--import",
        str(custom_agent_file),
        "--agent",
        "elite",
        "--grid",
        "elite_fraction=0.25,0.5",
    ]
    argv += ["--reward", "labeler", "--out", str(out), "--workers", "1", "--quiet", "--no-plots"]
    argv += ["--set", "steps=1", "batch_size=8", "aux_batch_size=4", "--device", "cpu"]
    assert main(argv) == 0
    assert "2 ran (of 2 runs)" in capsys.readouterr().out
    assert pd.read_csv(out / "results.csv")["elite_fraction"].tolist() == [0.25, 0.5]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--grid", "nope=1,2"], "not a setting"),
        (["--grid", "kl=a,b"], "cannot read"),
        (["--grid", "kl="], "NAME=VALUE"),
        (["--grid", "kl=-1"], "kl must be"),
        (["--grid", "kl=0", "--set", "steps"], "FIELD=VALUE"),
        (["--grid", "kl=0", "--set", "kl=1"], "both"),
        (["--grid", "kl=0", "--reward", "/nonexistent/model"], "no such reward"),
        (["--grid", "kl=0", "--import", "/no/such/agent.py"], "no such file"),
        (["--grid", "kl=0", "--agent", "nope"], "unknown agent 'nope'"),
    ],
)
def test_bad_input_is_one_line_exit_2(extra: list[str], message: str, tmp_path: Path, capsys) -> None:
    argv = ["sweep", "--agent", "rwl", "--reward", "labeler", "--out", str(tmp_path / "s"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith("hfrl sweep: error:")
    assert not (tmp_path / "s" / "cells").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["sweep", "--agent", "rwl"],  # no grid
        ["sweep", "--agent", "rwl", "--grid"],  # empty grid
        ["sweep", "--agent", "rwl", "--grid", "kl=0", "--seeds", "0"],
        ["sweep", "--agent", "rwl", "--grid", "kl=0", "--backend", "slurm"],
        ["sweep", "--agent", "rwl", "--grid", "kl=0", "--workers", "x"],
    ],
)
def test_usage_errors_are_one_line_exit_2(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err


def test_missing_reward_is_named(tmp_path: Path, capsys) -> None:
    assert main(["sweep", "--agent", "ppo", "--grid", "kl=0", "--out", str(tmp_path)]) == 2
    assert "needs a reward" in capsys.readouterr().err
