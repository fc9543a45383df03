"""Journey 3's example, ``scripts/examples/sweep_tradeoff.py``, runs as users run it, on a tiny budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "examples" / "sweep_tradeoff.py"


def _run(*args: str, timeout: float = 300) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow  # ~20 s; sweeps themselves are tested in tests/experiments/test_sweep.py
def test_sweep_tradeoff_quick(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    stdout = _run("--quick", "--steps", "2", "--backend", "local", "--workers", "1", "--out", str(out))
    assert "Pareto front" in stdout and "target good-rate" in stdout
    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == 4 and set(df.columns) >= {"kl", "aux", "consistency", "seed", "target_good_rate_after"}
    assert sorted(set(df["consistency"])) == [0.0, 10.0]
    for name in ("tradeoff_by_consistency.png", "tradeoff.png", "summary.csv", "results.csv"):
        assert (out / name).is_file(), name
