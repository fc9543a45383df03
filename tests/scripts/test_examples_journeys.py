"""The README's journey examples run, as users run them, on a tiny budget (and in full when slow tests run)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "scripts" / "examples"


def _run(script: str, *args: str, timeout: float = 300) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _psnr(stdout: str, label: str) -> float:
    match = re.search(rf"^{label}.*PSNR ([\d.]+) dB", stdout, re.MULTILINE)
    assert match, stdout
    return float(match.group(1))


def test_custom_algorithm_tiny() -> None:
    out = _run("custom_algorithm.py", "--steps", "2", "--batch-size", "8", "--eval-size", "16")
    for line in (
        "before (the output is the noisy input): reward",
        "part 1: REINFORCE",
        "after part 1:",
        "after part 2:",
    ):
        assert line in out, out
    # part 2 optimises the regularised objective: the wrappers' terms show up in the reward components
    assert re.search(
        r"step 2: reward -?[\d.]+ \(reward_model [-+][\d.]+, kl [-+][\d.]+, consistency [-+][\d.]+\)", out
    )
    assert "good-rate" in out


@pytest.mark.slow
def test_custom_algorithm_full_budget_raises_psnr() -> None:
    out = _run("custom_algorithm.py")
    assert _psnr(out, "after part 1") > _psnr(out, "before") + 2.0  # 9.4 -> 12.6 dB when written


def test_custom_agent_tiny_compares_it_with_a_built_in_agent(tmp_path: Path) -> None:
    from hfrl.rewards import RewardModelConfig, make_reward_model, save_reward_model

    reward = tmp_path / "reward" / "model"
    save_reward_model(reward, make_reward_model(RewardModelConfig(width=2, hidden=4)))  # untrained, tiny
    out = tmp_path / "bench"
    argv = ["--reward", str(reward), "--labels", "200", "--agents", "reward-grad,elite", "--seeds", "1"]
    stdout = _run("custom_agent.py", *argv, "--steps", "2", "--batch-size", "8", "--out", str(out))
    assert "[2/2] elite seed 0: target good-rate" in stdout
    assert "| reward-grad | 1 |" in stdout and "| elite | 1 |" in stdout
    df = pd.read_csv(out / "results.csv")
    assert df["agent"].tolist() == ["reward-grad", "elite"] and (df["status"] == "ok").all()
    assert (df["labels"] == 200).all() and (df["steps"] == 2).all()
    assert (out / "summary.md").read_text() in stdout
    assert (out / "compare.png").exists()
