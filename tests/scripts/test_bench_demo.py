"""scripts/bench_demo.py: times real ``hfrl demo`` processes and tabulates their stages."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_demo.py"


@pytest.mark.slow  # a quick benchmark run, 25-60 s on 2 cores: `make test-all` runs it
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
    for stage in runs[0]["stages_seconds"]:  # each row: the median and the slowest of the runs' own times
        wall = sorted(r["stages_seconds"][stage] for r in runs)
        assert f"| {stage} | {sum(wall) / 2:.1f} | {wall[-1]:.1f} | " in text, stage
    # the same seed gives the same result in every run (all but the timing)
    finals = [{k: v for k, v in r["final"].items() if k != "seconds"} for r in runs]
    assert finals[0] == finals[1]
    # and the quick demo's fine-tuning raises most target images' PSNR (91 % measured, seed 0)
    assert finals[0]["target_psnr_gain"]["share_improved"] >= 0.7, finals[0]
    assert (tmp_path / "demo-runs" / "run1" / "report.html").is_file()
