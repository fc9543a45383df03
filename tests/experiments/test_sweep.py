"""Sweeps: grid parsing, inline and process-pool runs, resuming, tables, plots, and the Ray backend."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hfrl.agents import NonFiniteLossError, Trainer, TrainerConfig, register_agent
from hfrl.errors import ConfigError
from hfrl.experiments.sweep import (
    load_results,
    pareto_front,
    parse_grid,
    plan_sweep,
    plot_sweep,
    run_sweep,
    summarise,
)

TINY = {
    "steps": 2,
    "batch_size": 8,
    "aux_batch_size": 4,
    "dataset_size": 16,
    "round_steps": 1,
    "device": "cpu",
    "checkpoint_every": 0,
}
TINY_BASE = {k: v for k, v in TINY.items() if k not in ("dataset_size", "round_steps")}
"""The same budget for agents without RWL's fields."""
GRID = {"kl": [0, 0.1], "aux": [0.0, 1.0]}
FILES = (
    "results.csv",
    "results.parquet",
    "summary.csv",
    "sweep.json",
    "tradeoff.png",
    "heatmap_target_good_rate_after.png",
    "heatmap_source_psnr_change.png",
)


@pytest.fixture(scope="module")
def inline_sweep(tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    out = tmp_path_factory.mktemp("sweep") / "inline"
    df = run_sweep("rwl", GRID, seeds=1, base=TINY, reward="labeler", out=out, workers=1, progress=False)
    return df, out


# -- grids -------------------------------------------------------------------------------------------------


def test_parse_grid_types_values_by_field() -> None:
    grid = parse_grid(
        "rwl",
        ["kl=0,0.01", "aux=1", "weighting=reward,filter", "learn-std=true,no", "target_classes=1-9;1,7"],
    )
    assert grid == {
        "kl": [0.0, 0.01],
        "aux": [1.0],
        "weighting": ["reward", "filter"],
        "learn_std": [True, False],
        "target_classes": [(1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 7)],
    }
    assert all(isinstance(v, float) for v in grid["kl"])


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([], "empty"),
        (["kl"], "NAME=VALUE"),
        (["kl="], "NAME=VALUE"),
        (["kl=0,,1"], "empty value"),
        (["nope=1,2"], "not a setting"),
        (["kl=a,b"], "cannot read"),
        (["kl=0,0.0"], "repeats"),
        (["kl=0", "kl=1"], "twice"),
        (["seed=1,2"], "seeds"),
    ],
)
def test_bad_grids_are_config_errors(specs: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_grid("rwl", specs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"agent": "nope"}, "unknown agent"),
        ({"grid": {}}, "empty"),
        ({"grid": {"kl": [-1.0]}}, "kl must be"),
        ({"grid": {"kl": []}}, "no values"),
        ({"base": {"kl": 0.1}}, "both"),
        ({"base": {"steps": "many"}}, "cannot read"),
        ({"reward": None}, "needs a reward"),
        ({"reward": "/nonexistent/model"}, "no such reward"),
        ({"seeds": 0}, "seeds"),
        ({"backend": "slurm"}, "backend"),
        ({"workers": 0}, "workers"),
    ],
)
def test_bad_sweeps_fail_before_running(kwargs: dict, message: str, tmp_path: Path) -> None:
    args = {"agent": "rwl", "grid": GRID, "reward": "labeler", "base": TINY, "out": tmp_path / "s", **kwargs}
    with pytest.raises(ConfigError, match=message):
        run_sweep(args.pop("agent"), args.pop("grid"), **args)
    assert not (tmp_path / "s" / "cells").exists()


def test_plan_names_runs_by_cell_and_seed(tmp_path: Path) -> None:
    tasks = plan_sweep("rwl", GRID, seeds=2, base={**TINY, "seed": 5}, reward="labeler", out=tmp_path)
    names = [Path(t.run_dir).name for t in tasks]
    assert names[:3] == ["kl=0.0_aux=0.0_seed=5", "kl=0.0_aux=0.0_seed=6", "kl=0.0_aux=1.0_seed=5"]
    assert len(set(names)) == 8
    assert tasks[0].config["reward"] == "labeler" and tasks[0].config["progress"] is False


# -- running -----------------------------------------------------------------------------------------------


def test_inline_sweep_writes_one_row_per_run_and_every_file(inline_sweep) -> None:
    df, out = inline_sweep
    assert len(df) == 4 and list(df["status"]) == ["ran"] * 4
    assert list(df.columns[:5]) == ["agent", "cell", "kl", "aux", "seed"]
    assert df[["kl", "aux"]].values.tolist() == [[0.0, 0.0], [0.0, 1.0], [0.1, 0.0], [0.1, 1.0]]
    for column in ("target_good_rate_after", "source_psnr_change", "target_psnr_gain_mean", "run_dir"):
        assert column in df.columns
    assert df["target_good_rate_after"].between(0, 1).all()
    for name in FILES:
        assert (out / name).is_file(), name
    assert sorted(Path(p).name for p in df.attrs["files"]) == sorted(
        set(FILES) - {"sweep.json"} | {"heatmap_target_psnr_gain_mean.png"}
    )
    for run_dir in df["run_dir"]:
        assert (Path(run_dir) / "evaluation.json").is_file()
    loaded = load_results(out)
    pd.testing.assert_frame_equal(loaded, df, check_like=False, check_dtype=False)
    from_csv = pd.read_csv(out / "results.csv")
    assert from_csv["target_good_rate_after"].tolist() == pytest.approx(df["target_good_rate_after"].tolist())
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 4 and (summary["n_seeds"] == 1).all()
    assert "target_good_rate_after_mean" in summary and "target_good_rate_after_std" in summary


def test_rerun_skips_finished_runs_and_redoes_only_the_missing(inline_sweep, tmp_path: Path) -> None:
    _, first = inline_sweep
    out = tmp_path / "copy"
    shutil.copytree(first, out)
    cells = sorted((out / "cells").iterdir())
    (cells[0] / "evaluation.json").unlink()  # killed while evaluating: resumed from its checkpoint
    shutil.rmtree(cells[1])  # never started
    stamps = {c.name: (c / "evaluation.json").stat().st_mtime_ns for c in cells[2:]}
    df = run_sweep("rwl", GRID, seeds=1, base=TINY, reward="labeler", out=out, workers=1, progress=False)
    status = dict(zip(df["run_dir"].map(lambda p: Path(p).name), df["status"]))
    assert status == {
        cells[0].name: "resumed",
        cells[1].name: "ran",
        cells[2].name: "cached",
        cells[3].name: "cached",
    }
    assert {c.name: (c / "evaluation.json").stat().st_mtime_ns for c in cells[2:]} == stamps
    # a resumed or rerun run gives the same numbers as the uninterrupted one
    original = load_results(first)
    assert df["target_good_rate_after"].tolist() == pytest.approx(original["target_good_rate_after"].tolist())
    # a bigger grid has only its new cells to run; other settings for an existing run are refused
    tasks = plan_sweep("rwl", {"kl": [0.1], "aux": [1.0, 0.5]}, base=TINY, reward="labeler", out=out)
    assert [t.finished for t in tasks] == [True, False]
    with pytest.raises(ConfigError, match="other settings"):
        run_sweep("rwl", GRID, base={**TINY, "steps": 3}, reward="labeler", out=out, workers=1)


def test_process_pool_gives_the_inline_results(inline_sweep, tmp_path: Path) -> None:
    inline, _ = inline_sweep
    grid = {"kl": [0.0, 0.1], "aux": [1.0]}  # one run per worker: spawning them is the slow part
    out = tmp_path / "pool"
    df = run_sweep("rwl", grid, base=TINY, reward="labeler", out=out, workers=2, progress=False, plots=False)
    assert list(df["status"]) == ["ran"] * 2
    same = inline[inline["aux"] == 1.0]
    assert df["cell"].tolist() == same["cell"].tolist()
    for column in ("target_good_rate_after", "source_psnr_change", "target_psnr_gain_mean"):
        assert df[column].tolist() == pytest.approx(same[column].tolist(), abs=1e-6), column
    assert (out / "results.parquet").is_file() and not (out / "tradeoff.png").exists()


@pytest.mark.slow  # ~25 s; worker processes: test_process_pool_gives_the_inline_results, a user's file: the inline tests
def test_an_agent_from_a_users_file_runs_in_worker_processes(tmp_path: Path, custom_agent_file) -> None:
    grid = {"elite_fraction": [0.25, 0.5]}
    kwargs = {"base": TINY_BASE, "reward": "labeler", "progress": False, "plots": False}
    df = run_sweep(
        "elite", grid, out=tmp_path / "pool", workers=2, imports=[str(custom_agent_file)], **kwargs
    )
    assert list(df["status"]) == ["ran", "ran"] and df["agent"].tolist() == ["elite", "elite"]
    inline = run_sweep("elite", grid, out=tmp_path / "inline", workers=1, **kwargs)  # registered above
    assert df["target_good_rate_after"].tolist() == pytest.approx(inline["target_good_rate_after"].tolist())
    assert json.loads((tmp_path / "pool" / "sweep.json").read_text())["imports"] == [str(custom_agent_file)]


class _NaNTrainer(Trainer):
    name = "sweep-test-nan"
    config_class = TrainerConfig
    needs_reward = False

    def update(self) -> dict[str, float]:
        raise NonFiniteLossError(f"step {self.step + 1}: loss is nan")


def test_a_failing_run_is_reported_and_the_others_go_on(tmp_path: Path) -> None:
    register_agent(_NaNTrainer.name, _NaNTrainer, overwrite=True)
    df = run_sweep(_NaNTrainer.name, {"kl": [0.0]}, base=TINY_BASE, out=tmp_path, workers=1, progress=False)
    assert df["status"].tolist() == ["failed"] and "loss is nan" in df["error"].iloc[0]
    assert not (tmp_path / "cells" / "kl=0.0_seed=0" / "evaluation.json").exists()


# -- tables and plots without training ---------------------------------------------------------------------


def _fake_results(grid: dict[str, list], seeds: int = 2) -> pd.DataFrame:
    import itertools

    rng = np.random.default_rng(0)
    rows = []
    for combo in itertools.product(*grid.values()):
        for seed in range(seeds):
            values = dict(zip(grid, combo))
            rows.append(
                {
                    "agent": "rwl",
                    "cell": "_".join(f"{k}={v}" for k, v in values.items()),
                    **values,
                    "seed": seed,
                    "target_good_rate_before": 0.52,
                    "target_good_rate_after": float(rng.uniform(0.4, 0.7)),
                    "source_psnr_change": float(rng.uniform(-2, 0)),
                    "target_psnr_gain_mean": float(rng.normal()),
                    "status": "ran",
                    "run_dir": "x",
                }
            )
    return pd.DataFrame(rows)


def test_summarise_means_and_stds_over_seeds() -> None:
    df = _fake_results({"kl": [0.0, 0.1]}, seeds=3)
    summary = summarise(df)
    assert summary["kl"].tolist() == [0.0, 0.1] and summary["n_seeds"].tolist() == [3, 3]
    first = df[df["kl"] == 0.0]["target_good_rate_after"]
    assert summary["target_good_rate_after_mean"].iloc[0] == pytest.approx(first.mean())
    assert summary["target_good_rate_after_std"].iloc[0] == pytest.approx(first.std())
    assert "seed_mean" not in summary and "kl_mean" not in summary


@pytest.mark.parametrize(
    ("grid", "heatmaps"),
    [
        ({"kl": [0.0, 0.1, 1.0]}, True),  # one row
        ({"kl": [0.0, 0.1], "aux": [0.0, 1.0]}, True),
        ({"kl": [0.0, 0.1], "aux": [0.0, 1.0], "consistency": [0.0, 1.0, 10.0]}, True),  # 3 panels
        ({"kl": [0.1], "aux": [1.0]}, False),  # one cell: nothing to map
    ],
)
def test_plots_for_grids_of_any_shape(grid: dict, heatmaps: bool, tmp_path: Path) -> None:
    paths = plot_sweep(_fake_results(grid), tmp_path)
    assert (tmp_path / "tradeoff.png").is_file()
    assert (tmp_path / "heatmap_target_good_rate_after.png").is_file() == heatmaps
    assert all(p.is_file() and p.stat().st_size > 1000 for p in paths)


def test_too_many_panels_skip_the_heatmap_with_a_warning(tmp_path: Path) -> None:
    df = _fake_results(
        {"kl": [0.0, 0.1], "aux": [0.0, 1.0], "consistency": list(range(5)), "lr": [1e-4, 1e-3, 1e-2, 0.1]},
        seeds=1,
    )
    with pytest.warns(UserWarning, match="panels"):
        paths = plot_sweep(df, tmp_path, metrics=["target_good_rate_after"])
    assert [p.name for p in paths] == ["tradeoff.png"]


def test_pareto_front_keeps_the_undominated_points() -> None:
    x = [0.0, -1.0, -0.5, -2.0, float("nan")]
    y = [0.5, 0.7, 0.4, 0.8, 0.9]
    assert pareto_front(x, y) == [3, 1, 0]


# -- Ray ---------------------------------------------------------------------------------------------------


def test_ray_backend_without_ray_names_the_extra(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"hfrl\[ray\]"):
        run_sweep("rwl", {"kl": [0.0]}, base=TINY, reward="labeler", out=tmp_path, backend="ray")


@pytest.mark.slow  # starting Ray and its workers takes 20-45 s on 2 cores
def test_ray_backend_runs_the_same_cells(inline_sweep, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # a local Ray, started and stopped by the sweep
    inline, _ = inline_sweep
    grid = {"kl": [0.0, 0.1], "aux": [1.0]}
    df = run_sweep(
        "rwl", grid, base=TINY, reward="labeler", out=tmp_path, backend="ray", workers=2, progress=False
    )
    assert list(df["status"]) == ["ran", "ran"]
    expected = inline[inline["aux"] == 1.0]["target_good_rate_after"].tolist()
    assert df["target_good_rate_after"].tolist() == pytest.approx(expected, abs=1e-6)
    assert all((Path(p) / "evaluation.json").is_file() for p in df["run_dir"])
    again = run_sweep("rwl", grid, base=TINY, reward="labeler", out=tmp_path, backend="ray", progress=False)
    assert list(again["status"]) == ["cached", "cached"]  # nothing pending: Ray is not even started
    assert json.loads((tmp_path / "sweep.json").read_text())["backend"] == "ray"


@pytest.mark.slow  # starting Ray and its workers takes 20-45 s on 2 cores
def test_ray_backend_ships_an_agent_from_a_users_file(tmp_path: Path, monkeypatch, custom_agent_file) -> None:
    pytest.importorskip("ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    df = run_sweep(
        "elite", {"elite_fraction": [0.25, 0.5]}, base=TINY_BASE, reward="labeler", out=tmp_path,
        backend="ray", workers=2, progress=False, plots=False, imports=[str(custom_agent_file)],
    )  # fmt: skip
    assert list(df["status"]) == ["ran", "ran"] and df["agent"].tolist() == ["elite", "elite"]
