"""scripts/bench_fashion.py: skips cleanly without the files; runs the whole pipeline on IDX files when present.

CI has no Fashion-MNIST, so the pipeline test stands real digits in for it, written as the four IDX files
lying flat in a folder (as Debian's ``dataset-fashion-mnist`` ships them).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from hfrl.data import load_embedded_mnist, write_idx

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_fashion.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_fashion", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_without_the_files_it_says_where_it_looked_and_skips(bench, tmp_path: Path) -> None:
    out = tmp_path / "fashion.md"
    text = bench.main(["--data-dir", str(tmp_path / "nowhere"), "--out", str(out)])
    assert text.startswith("# Fashion-MNIST\n\nSkipped") and str(tmp_path / "nowhere") in text
    assert out.read_text() == text and not out.with_suffix(".json").exists()


@pytest.mark.slow  # a quick benchmark run, 25-60 s on 2 cores: `make test-all` runs it
def test_quick_run_on_idx_files_writes_the_table(bench, tmp_path: Path) -> None:
    digits = load_embedded_mnist()
    order = np.random.default_rng(0).permutation(len(digits))  # the embedded digits are sorted by class
    pixels = (digits.images[order, 0].numpy() * 255).round().astype(np.uint8)
    labels = digits.labels.numpy()[order].astype(np.uint8)
    data = tmp_path / "idx"
    data.mkdir()
    for part, idx in (("train", slice(0, 4000)), ("t10k", slice(4000, 5000))):
        write_idx(data / f"{part}-images-idx3-ubyte.gz", pixels[idx])
        write_idx(data / f"{part}-labels-idx1-ubyte.gz", labels[idx])
    assert bench.find_fashion(str(data)) == data

    out = tmp_path / "fashion.md"
    text = bench.main(["--quick", "--data-dir", str(data), "--out", str(out)])
    assert out.read_text() == text
    assert (
        "| source generator (lower bound) |" in text
        and "| supervised on clean images (upper bound) |" in text
    )
    assert "| reward-grad, 20 labels |" in text and "+1.61" in text
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["data_dir"] == str(data)
    assert set(results["judges"]) == {"labeler", "evaluator"}
    assert results["judges"]["labeler"]["arch"] != results["judges"]["evaluator"]["arch"]
    (run,) = results["runs"]
    assert run["agent"] == "reward-grad" and run["status"] == "ok"
    # The row shows the run's numbers; "gap closed" is (agent - lower) / (upper - lower) with its sign, also
    # when the quick upper bound (1 epoch) is below the lower one (it was -9259259700.8 % with a clamped span).
    lower = results["bounds"]["source"]["target"]["good_rate"]
    upper = results["bounds"]["upper"]["target"]["good_rate"]
    row = next(line for line in text.splitlines() if line.startswith("| reward-grad, 20 labels |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == f"{100 * run['target_good_rate_after']:.1f} ± 0.0"
    gap = 100 * (run["target_good_rate_after"] - lower) / (upper - lower)
    assert cells[2] == f"{gap:.1f} ± 0.0" and abs(gap) < 1000, cells
    # two updates against the fitted reward raise most test images' PSNR: 82 % measured on this quick run
    assert run["target_psnr_gain_share_improved"] >= 0.6, run
    # the task images, judges and generators are the benchmark's own, not the shipped digit ones
    runs = tmp_path / "fashion-runs"
    config = json.loads((runs / "agents" / "runs" / "reward-grad-seed0" / "config.json").read_text())
    assert config["dataset"] == "fashion-mnist" and config["data_dir"] == str(runs / "data")
    assert config["evaluator"] == str(runs / "judges" / "evaluator_classifier")
    assert config["generator"] == str(runs / "source_generator")
