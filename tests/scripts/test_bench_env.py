from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_env.py"


def test_bench_env_quick_writes_the_table(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_env", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    out = tmp_path / "env.md"
    threads = torch.get_num_threads()
    try:  # one thread: steadier on a shared machine; main() sets it for the whole process
        text = bench.main(["--quick", "--out", str(out), "--device", "cpu", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert out.read_text() == text
    for setup in (
        "raw reward forward (floor)",
        "batched env, torch face",
        "batched env, NumPy face",
        "single env, Python loop",
        "SyncVectorEnv of single envs",
    ):
        assert f"| {setup} |" in text
    assert "samples/s" in text and "Goals at N = 4" in text and "nproc" in text
