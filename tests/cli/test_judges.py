"""hfrl judges train: judges of the user's own labelled images, then good-rates of a finetune run with them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hfrl.cli import main
from tests.conftest import shapes_dataset

TINY = ["--batch-size", "8", "--aux-batch-size", "4", "--device", "cpu", "--quiet"]


def test_train_judges_then_finetune_measures_good_rates(tmp_path: Path, capsys) -> None:
    images, labels = shapes_dataset(120, 3, 12, 16)
    np.savez(tmp_path / "shapes.npz", images=images, labels=labels)
    data = ["--data", str(tmp_path / "shapes.npz")]
    judges = tmp_path / "judges"
    assert main(["judges", "train", *data, "--out", str(judges), "--device", "cpu", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "held-out accuracy: labeler" in printed and str(judges / "evaluator") in printed
    report = json.loads((judges / "judges.json").read_text())
    assert report["labeler_accuracy"] > 0.8 and report["evaluator_accuracy"] > 0.8  # chance: 0.5
    lab, ev = (json.loads((judges / f"{r}.json").read_text()) for r in ("labeler", "evaluator"))
    assert (
        lab["config"]["arch"] != ev["config"]["arch"]
        and lab["metadata"]["recipe"] != ev["metadata"]["recipe"]
    )

    pre = ["pretrain", *data, "--source-classes", "0", "--epochs", "1", "--width", "4", "--bottleneck", "8"]
    assert main([*pre, "--device", "cpu", "--quiet", "--out", str(tmp_path / "pre")]) == 0
    run = tmp_path / "run"
    argv = ["finetune", "--agent", "dpo", "--steps", "1", "--out", str(run), *data, "--eval-size", "8", *TINY]
    domains = [
        "--generator",
        str(tmp_path / "pre" / "generator"),
        "--source-classes",
        "0",
        "--target-classes",
        "1",
    ]
    judged = [
        "--labeler",
        str(judges / "labeler"),
        "--evaluator",
        str(judges),
    ]  # a folder holding evaluator.json
    capsys.readouterr()
    assert main([*argv, *domains, *judged]) == 0
    captured = capsys.readouterr()
    assert "not measured" not in captured.out + captured.err
    evaluation = json.loads((run / "evaluation.json").read_text())
    rates = [v for k, v in _flat(evaluation) if k.endswith("good_rate")]
    assert rates and all(isinstance(r, float) and 0.0 <= r <= 1.0 for r in rates)


def _flat(obj: object, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(obj, dict):
        return [kv for k, v in obj.items() for kv in _flat(v, f"{prefix}.{k}")]
    if isinstance(obj, list):
        return [kv for i, v in enumerate(obj) for kv in _flat(v, f"{prefix}[{i}]")]
    return [(prefix, obj)]


def test_bad_input_is_one_line_with_exit_code_2(tmp_path: Path, capsys) -> None:
    images, _labels = shapes_dataset(40, 1, 12, 12)
    np.save(tmp_path / "unlabelled.npy", images)
    for argv, words in (
        (["--data", str(tmp_path / "unlabelled.npy")], "judges need labelled images"),
        ([], "--data PATH is required"),
        (["--data", str(tmp_path / "missing.npz")], "no such file or folder"),
    ):
        assert main(["judges", "train", *argv, "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err and err.startswith("hfrl judges: error:")
    assert not (tmp_path / "out").exists()
