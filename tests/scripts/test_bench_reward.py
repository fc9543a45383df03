from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_reward.py"


def test_bench_reward_quick_writes_table_json_and_plot(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_reward", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    out = tmp_path / "reward.md"
    threads = torch.get_num_threads()
    try:
        text = bench.main(["--quick", "--out", str(out), "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert out.read_text() == text
    assert "| majority class (always" in text and "| the labeler itself (ceiling) |" in text
    assert "no labels (SSIM)" in text
    for method in (
        "CNN, output only",
        "CNN, (noisy, output, residual) + aux",
        "similarity",
        "similarity, ensemble x2",
        "similarity, ensemble x2 + active",
    ):
        assert f"| {method} |" in text
    assert "input sensitivity" in text and "exploit" in text
    data = json.loads(out.with_suffix(".json").read_text())
    assert set(data["results"]["similarity"]) == {"20", "40"}
    assert out.with_suffix(".png").stat().st_size > 1000
