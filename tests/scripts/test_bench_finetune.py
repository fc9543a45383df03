from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_finetune.py"


def test_bench_finetune_quick_writes_every_table_json_and_plot(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_finetune", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    out = tmp_path / "finetune.md"
    text = bench.main(["--quick", "--task", "digits-white", "--out", str(out)])
    assert out.read_text() == text
    for heading in (
        "## The four references (20 labels)",
        "Gap closed by feedback = (feedback - best label-free)",
        "## Target good-rate after fine-tuning (%) versus labels",
        "## Source PSNR change (dB) versus labels",
        "gap closed and the seed paper's per-image PSNR gain",
        "## Preference baseline",
        "## Wall time per stage",
    ):
        assert heading in text
    assert "| source generator (lower bound) | 52.4 | 52.4 |" in text
    assert "| reward-grad |" in text and "| dpo |" in text
    assert "| n2s (label-free) |" in text and "| n2s-finetune (label-free) |" in text and "classical (" in text
    data = json.loads(out.with_suffix(".json").read_text())
    assert {row["labels"] for row in data["curves"]} == {0, 20}
    assert {row["agent_labels"] for row in data["dpo"]} == {8, 16}
    assert out.with_suffix(".png").stat().st_size > 1000
