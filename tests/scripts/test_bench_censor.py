from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_censor.py"


def test_bench_censor_quick_writes_the_table(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_censor", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    out = tmp_path / "censor.md"
    text = bench.main(["--quick", "--out", str(out), "--device", "cpu"])
    assert out.read_text() == text
    assert "| baseline | 0 | none |" in text
    for setup in ("| single |", "| ensemble |", "| ensemble, time-independent |"):
        assert setup in text
    assert "malign (evaluator)" in text and "fidelity (7)" in text and "nproc" in text and "Goal" in text
