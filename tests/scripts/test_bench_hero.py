from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

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
    for method in ("| hero |", "| rwl |", "| ddpo |", "| d3po |"):
        assert method in text
    assert "labels to reach" in text and "digits before → after" in text and "Goal" in text
    data = json.loads(out.with_suffix(".json").read_text())
    assert {r["method"] for r in data["runs"]} == {"hero", "rwl", "ddpo", "d3po"}
    assert out.with_suffix(".png").stat().st_size > 0
