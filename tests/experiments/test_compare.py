"""compare_agents: same task, reward and seeds for every agent; one row per run; table, CSV and plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from hfrl.errors import ConfigError
from hfrl.experiments.compare import (
    RESULT_COLUMNS,
    agent_configs,
    compare_agents,
    plot_comparison,
    summarize,
    summary_markdown,
)


def test_two_agents_two_seeds_share_one_reward_per_seed(tmp_path: Path, tiny: dict, reward_factory) -> None:
    calls: list[int] = []
    rewards: dict[int, nn.Module] = {}

    def reward_for_seed(seed: int) -> nn.Module:  # where label collection + reward training plug in
        calls.append(seed)
        rewards[seed] = reward_factory(seed)
        return rewards[seed]

    out = tmp_path / "bench"
    df = compare_agents(
        ["reward-grad", "dpo"],
        reward=reward_for_seed,
        seeds=(0, 1),
        base=tiny,
        overrides={"reward-grad": {"lr": 1e-3}},
        out=out,
        labels_used=50,
        verbose=False,
    )
    assert calls == [0, 1]  # once per seed, shared by every agent of that seed
    assert list(df.columns) == list(RESULT_COLUMNS)
    assert list(zip(df["agent"], df["seed"])) == [
        ("reward-grad", 0),
        ("dpo", 0),
        ("reward-grad", 1),
        ("dpo", 1),
    ]
    assert (df["status"] == "ok").all() and (df["steps"] == 2).all()
    rg, dpo = df[df["agent"] == "reward-grad"], df[df["agent"] == "dpo"]
    assert (rg["labels"] == 50).all()  # the reward model's labels
    assert (dpo["labels"] == 16).all() and (dpo["reward_labels"] == 0).all()  # DPO: its own pairs only
    before = df["target_good_rate_before"]
    assert before.nunique() == 1 and 0.15 < before.iloc[0] < 0.3  # one task for every run (default: 21 %)
    for column in ("target_good_rate_after", "target_psnr_after", "source_psnr_change", "wall_seconds"):
        assert df[column].notna().all(), column
    assert (df["wall_seconds"] >= df["seconds"]).all()

    saved = json.loads((out / "runs" / "reward-grad-seed1" / "config.json").read_text())
    assert saved["seed"] == 1 and saved["lr"] == 1e-3 and saved["steps"] == 2
    assert json.loads((out / "runs" / "dpo-seed0" / "config.json").read_text())["lr"] == 3e-5  # its default
    assert pd.read_csv(out / "results.csv").shape == (4, len(RESULT_COLUMNS))
    table = (out / "summary.md").read_text()
    assert table.startswith("| agent | seeds | good-rate before | good-rate after |")
    assert "| reward-grad | 2 |" in table and "| dpo | 2 |" in table
    assert (out / "compare.png").stat().st_size > 5_000
    config = json.loads((out / "config.json").read_text())
    assert config["agents"] == ["reward-grad", "dpo"] and config["seeds"] == [0, 1]
    assert config["labels_used"] == 50 and "cores" in config["machine"]


class NaNReward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, noisy: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return self.scale * output.mean((1, 2, 3)) * float("nan")


def test_a_diverged_run_is_a_row_and_the_tables_survive(tmp_path: Path, tiny: dict) -> None:
    df = compare_agents(
        ["reward-grad"], reward=NaNReward(), seeds=(0,), base=tiny, out=tmp_path, verbose=False
    )
    assert df["status"].tolist() == ["diverged"] and "loss" in df["error"].iloc[0]
    assert "| reward-grad | 0 (1 diverged) | – |" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "compare.png").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"agents": ["no-such-agent"]}, "unknown agent"),
        ({"agents": ["rwl", "rwl"]}, "twice"),
        ({"seeds": ()}, "no seeds"),
        ({"base": {"no_such_field": 1}}, "no_such_field"),
        ({"base": {"seed": 3}}, "seeds="),
        ({"base": {"steps": 0}}, "steps must be at least 1"),
        ({"overrides": {"ppo": {"lr": 1.0}}}, "not compared"),
        ({"overrides": {"rwl": {"weighting": "nope"}}}, "rwl: weighting"),
        ({"overrides": {"rwl": {"noise_level": 0.3}}}, "change the task"),
        ({"overrides": {"rwl": {"evaluator": "x.safetensors"}}}, "change the task"),
        ({"overrides": {"rwl": {"task": "digits-white"}}}, "change the task"),
        ({"base": {"reward": "labeler"}}, "reward="),
        ({"reward": "/no/such/reward"}, "unknown reward"),
        ({"reward": 3}, "reward must be"),
    ],
)
def test_bad_input_fails_before_anything_runs(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"agents": ["rwl"], "reward": "labeler", "out": tmp_path / "out", "verbose": False, **kwargs}
    with pytest.raises(ConfigError, match=message):
        compare_agents(**args)
    assert not (tmp_path / "out").exists()


def test_a_field_only_some_agents_have_goes_to_those() -> None:
    agents = ["reward-grad", "rwl"]
    base = {"dataset_size": 16, "kl": 0.5}
    rwl = agent_configs("rwl", agents, [0, 1], base, None)
    rg = agent_configs("reward-grad", agents, [0, 1], base, {"reward-grad": {"kl": 0.0}})
    assert rwl[1].dataset_size == 16 and rwl[1].kl == 0.5 and rwl[1].seed == 1
    assert not hasattr(rg[0], "dataset_size") and rg[0].kl == 0.0


def _rows() -> pd.DataFrame:
    rows = []
    for agent, after in (("a", [0.8, 0.9]), ("b", [0.6, 0.6])):
        for seed, value in enumerate(after):
            rows.append(
                {
                    "agent": agent,
                    "seed": seed,
                    "status": "ok",
                    "labels": 200,
                    "target_good_rate_before": 0.5,
                    "target_good_rate_after": value,
                    "target_psnr_change": 1.0 + seed,
                    "source_psnr_change": -0.25,
                    "target_psnr_gain_share_improved": 0.75,
                    "wall_seconds": 10.0,
                }
            )
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


def test_summary_is_mean_and_sample_std_per_agent_in_order(tmp_path: Path) -> None:
    summary = summarize(_rows())
    assert summary["agent"].tolist() == ["a", "b"]
    a = summary.iloc[0]
    assert a["target_good_rate_after_mean"] == pytest.approx(0.85)
    assert a["target_good_rate_after_std"] == pytest.approx(math.sqrt(0.005))
    lines = summary_markdown(_rows()).splitlines()
    assert (
        lines[2]
        == "| a | 2 | 50.0 ± 0.0 | 85.0 ± 7.1 | +1.50 ± 0.71 | -0.25 ± 0.00 | 75.0 ± 0.0 | 200 | 10.0 ± 0.0 |"
    )
    assert plot_comparison(_rows(), tmp_path / "c.png").stat().st_size > 5_000
