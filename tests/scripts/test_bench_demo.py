"""scripts/bench_demo.py: times real ``hfrl demo`` processes and tabulates their stages."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_demo.py"


def test_quick_runs_give_the_stage_table(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_demo", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    out = tmp_path / "demo.md"
    text = bench.main(["--quick", "--runs", "2", "--out", str(out)])
    assert out.read_text() == text
    for stage in ("setup", "denoiser", "labels", "reward", "finetune", "evaluate", "report", "all stages"):
        assert f"| {stage} |" in text
    assert "| whole process (start-up and imports too) |" in text
    assert "the same in every run" in text  # same seed, same numbers
    runs = json.loads(out.with_suffix(".json").read_text())
    assert len(runs) == 2 and all(r["process_seconds"] >= sum(r["stages_seconds"].values()) for r in runs)
    assert (tmp_path / "demo-runs" / "run1" / "report.html").is_file()
