from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_hero.py"


def test_bench_hero_quick_writes_table_json_and_plot(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("bench_hero", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    out = tmp_path / "hero.md"
    text = bench.main(["--quick", "--out", str(out), "--device", "cpu", "--reach", "0.0"])
    assert out.read_text() == text
    methods = {"hero", "rwl", "ddpo", "d3po", "flow-grpo", "nft", "awm", "best-of-n"}
    for method in methods:
        assert f"| {method} |" in text
    assert "labels to reach" in text and "digits before → after" in text and "Goal" in text
    assert "source error (× real) before → after" in text
    data = json.loads(out.with_suffix(".json").read_text())
    assert {r["method"] for r in data["runs"]} == methods
    assert out.with_suffix(".png").stat().st_size > 0

    # The tables show the runs' numbers: the label budgets are those the runs used, and each method's row
    # holds its evaluator report before and after (digit rate, source error; one seed, so ± 0).
    budgets = sorted({int(h["labels_used"]) for r in data["runs"] for h in r["history"]})
    assert f"| method | {' | '.join(map(str, budgets))} |" in text
    lines = text.splitlines()
    for run in data["runs"]:
        before, after = run["final"]["before"], run["final"]["after"]
        row = next(line for line in lines if line.startswith(f"| {run['method']} |") and "→" in line)
        assert f"{100 * before['digit_rate']:.1f} ± 0.0 → {100 * after['digit_rate']:.1f} ± 0.0" in row, row
        assert f"{before['source_error']:.2f} ± 0.00 → {after['source_error']:.2f} ± 0.00" in row, row


def _bench() -> object:
    spec = importlib.util.spec_from_file_location("bench_hero", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    return bench


def _run(method: str, seed: int, rates: list[float], recycled: list[float] | None = None) -> dict:
    per_round = 32 if method == "d3po" else 64
    history = []
    for r, rate in enumerate(rates):
        row = {
            "round": float(r),
            "labels_used": float(r * per_round),
            "success_rate": rate,
            "digit_rate": 0.9,
        }
        if recycled is not None and r > 0 and not math.isnan(recycled[r]):
            row["success_rate_recycled"] = recycled[r]
        history.append(row)
    after = {"success_rate": rates[-1], "digit_rate": 0.9}
    if recycled is not None:
        after["success_rate_recycled"] = recycled[-1]
    final = {"before": {"success_rate": rates[0], "digit_rate": 0.9}, "after": after}
    return {"method": method, "seed": seed, "seconds": 1.0, "batch_size": 64, "rounds": len(rates) - 1,
            "history": history, "final": final}  # fmt: skip


def test_labels_to_reach_and_success_at_fall_back_to_fresh_noise_before_recycling() -> None:
    bench = _bench()
    h = _run("hero", 0, [0.05, 0.1, 0.12, 0.3], [math.nan, math.nan, 0.25, 0.4])["history"]
    assert bench.labels_to_reach(h, 0.2) == 192
    assert bench.labels_to_reach(h, 0.2, "success_rate_recycled") == 128
    assert bench.labels_to_reach(h, 0.5) == math.inf
    assert bench.success_at(h, 100, "success_rate_recycled") == 0.1  # no recycled noise yet: fresh
    assert bench.success_at(h, 150, "success_rate_recycled") == 0.25
    assert math.isnan(bench.success_at(h, 1000))
    assert bench.recycled_key(h) == "success_rate_recycled"


def test_merge_combines_seeds_and_judges_the_goal(tmp_path: Path) -> None:
    bench = _bench()
    parts = []
    for seed in (0, 1):
        runs = [
            _run("hero", seed, [0.05, 0.15, 0.25], [math.nan, 0.3, 0.4]),
            _run("d3po", seed, [0.05, 0.06, 0.08, 0.1, 0.12, 0.14, 0.16, 0.18, 0.21]),
        ]
        args = {"rounds": 2, "batch_size": None, "steps": 10, "eval_samples": 128, "target_class": 7}
        path = tmp_path / f"part{seed}.json"
        path.write_text(json.dumps({"args": args, "machine": "test box", "seconds": 5.0, "runs": runs}))
        parts.append(str(path))
    out = tmp_path / "merged.md"
    text = bench.main(["--merge", *parts, "--out", str(out), "--reach", "0.2"])
    assert out.read_text() == text and "seeds (0, 1)" not in text and "2 seed(s) (0, 1)" in text
    assert "d3po 8 × 32 pairs" in text and "hero 2 × 64 samples" in text and "test box" in text
    data = json.loads(out.with_suffix(".json").read_text())
    assert len(data["runs"]) == 4
    summary = data["summary"]
    assert summary["hero"]["labels_to_reach"] == [128.0, 128.0]
    assert summary["hero"]["labels_to_reach_recycled"] == [64.0, 64.0]
    assert summary["ratio_d3po_over_hero_labels_to_reach"] == 2.0
    assert summary["ratio_d3po_over_hero_labels_to_reach_recycled"] == 4.0
    assert "HERO on its recycled noise (the paper's measure): ratio 4.0× (met" in text
    assert "HERO on fresh noise: ratio 2.0× (not met" in text


def test_bad_set_is_a_usage_error(tmp_path: Path) -> None:
    bench = _bench()
    for bad in ("eta=0.5", "nope.eta=0.5", "hero.eta", "hero.inner_rounds=x", "hero.no_such_field=1"):
        with pytest.raises(SystemExit) as exc:
            bench.main(["--quick", "--out", str(tmp_path / "x.md"), "--set", bad])
        assert exc.value.code == 2


def test_set_changes_one_methods_config_and_names_its_row(tmp_path: Path) -> None:
    bench = _bench()
    out = tmp_path / "eta.md"
    argv = ["--quick", "--methods", "hero", "--set", "hero.eta=0.5", "--out", str(out), "--device", "cpu"]
    text = bench.main(argv)
    assert "hero (eta=0.5) 1 × 4 samples" in text and "| hero (eta=0.5) |" in text
    (run,) = json.loads(out.with_suffix(".json").read_text())["runs"]
    assert run["overrides"] == {"eta": 0.5} and run["method"] == "hero"


def test_goal_is_judged_at_every_reach_level(tmp_path: Path) -> None:
    bench = _bench()
    runs = [
        _run("hero", 0, [0.05, 0.15, 0.25, 0.35]),  # 20 % after 128 labels, 30 % after 192
        _run("d3po", 0, [0.05, 0.21] + [0.22] * 10 + [0.31]),  # 20 % after 32 (a lucky round), 30 % after 384
    ]
    args = {"rounds": 3, "batch_size": None, "steps": 10, "eval_samples": 128, "target_class": 7}
    part = tmp_path / "part.json"
    part.write_text(json.dumps({"args": args, "machine": "test box", "seconds": 5.0, "runs": runs}))
    out = tmp_path / "merged.md"
    text = bench.main(["--merge", str(part), "--out", str(out), "--reach", "0.2,0.3"])
    assert "| method | 20 % | 30 % |" in text and "| hero | 128 ± 0 | 192 ± 0 |" in text
    summary = json.loads(out.with_suffix(".json").read_text())["summary"]
    assert summary["hero"]["labels_to_reach_levels"] == {"0.2": [128.0], "0.3": [192.0]}
    assert summary["ratio_d3po_over_hero_labels_to_reach"] == 0.25
    assert summary["ratio_d3po_over_hero_labels_to_reach@0.3"] == 2.0
    assert "to reach 30 %), HERO on fresh noise: ratio 2.0× (not met" in text


@pytest.mark.parametrize("reach", ["0.2,x", "1.5", ","])
def test_bad_reach_levels_are_a_usage_error(reach: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _bench().main(["--merge", "none.json", "--reach", reach])
    assert exc.value.code == 2 and "--reach takes comma-separated success rates" in capsys.readouterr().err
