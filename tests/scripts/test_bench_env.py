from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
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

    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 6 and cells[1].isdigit():
            rows[(cells[0], int(cells[1]), cells[2])] = cells
    # Each row is consistent: ms / step = 1000 N / (samples/s), and "x raw forward" is its ratio to the floor.
    for (_setup, n, _), cells in rows.items():
        per_s, ms = float(cells[3].replace(",", "")), float(cells[4])
        assert ms == pytest.approx(1000 * n / per_s, rel=0.02), cells
        if cells[5]:
            floor = float(rows[("raw reward forward (floor)", n, "-")][4])
            assert float(cells[5]) == pytest.approx(ms / floor, rel=0.02), cells
    # How much faster the batched env is than the single-env loop is a measurement (bench-results/env.md),
    # not something a test asserts: under a loaded machine or parallel test processes the ratio is noise.
    # That it makes one reward call per batch of N episodes is tested in tests/envs/test_vector.py.
