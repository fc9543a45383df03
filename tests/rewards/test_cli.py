"""``hfrl reward train`` end to end on a feedback store filled by the synthetic labeler, and its errors."""

from __future__ import annotations

import json

import pytest
import torch

from hfrl.cli import main
from hfrl.feedback import FeedbackStore, simulate
from hfrl.judges import SyntheticLabeler
from hfrl.rewards import RewardEnsemble, load_reward_model
from hfrl.rewards.feedback import labelled_samples, preference_pairs, triplet_feedback

N = 96
FAST_ARGS = ["--steps", "20", "--device", "cpu", "--denoiser-steps", "5", "--denoiser-images", "0"]


@pytest.fixture(scope="module")
def store_path(tmp_path_factory, train_split, train_pairs):
    """A store with single, hero and pair queries, all answered by the synthetic labeler."""
    path = tmp_path_factory.mktemp("reward-cli") / "feedback.sqlite"
    s = train_split
    with FeedbackStore(path) as store:
        store.add_query("single", s.noisy[:N], s.output[:N], clean=s.clean[:N], classes=s.classes[:N])
        for start in range(N, 2 * N, 8):
            sl = slice(start, start + 8)
            store.add_query("hero", s.noisy[sl], s.output[sl], clean=s.clean[sl], classes=s.classes[sl])
        p = train_pairs
        store.add_query(
            "pair", p.noisy[:N], p.left[:N], others=p.right[:N], clean=s.clean[:N], classes=s.classes[:N]
        )
        report = simulate(store, SyntheticLabeler.from_pretrained(seed=0), batch_size=32)
        assert report.labels == 3 * N
    return path


def test_store_exports_become_records(store_path) -> None:
    with FeedbackStore(store_path, create=False) as store:
        samples = labelled_samples(store)
        triplets = triplet_feedback(store)
        pairs = preference_pairs(store)
    assert len(samples) == 2 * N and set(samples.label.unique().tolist()) <= {0.0, 1.0}
    assert 0 < int(triplets.best.sum()) <= N // 8
    assert len(pairs) == N and set(pairs.preference.unique().tolist()) <= {0.0, 0.5, 1.0}


@pytest.mark.parametrize(
    "extra",
    [
        ["--kind", "binary"],
        ["--kind", "binary", "--model", "output"],
        [
            "--kind",
            "binary",
            "--ensemble",
            "2",
            "--combine",
            "product",
            "--model",
            "residual",
            "--aux-weight",
            "0.5",
        ],
        ["--kind", "pairwise", "--ensemble", "2", "--denoiser-images", "50"],
        ["--kind", "triplet"],
    ],
    ids=["similarity", "output", "ensemble-aux", "pairwise-similarity", "triplet-denoised"],
)
def test_reward_train_end_to_end(store_path, tmp_path, capsys, extra) -> None:
    out = tmp_path / "run"
    code = main(["reward", "train", "--db", str(store_path), "--out", str(out), *FAST_ARGS, *extra])
    assert code == 0
    for name in ("model.safetensors", "model.json", "report.json", "report.md", "config.json", "metrics.csv"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert report["rows"]["val"] > 0 and report["validation"]["labels"]["n"] > 0
    evaluator = [v for k, v in report["validation"].items() if k.startswith("evaluator")]
    assert evaluator and all(v is not None for v in evaluator)  # the store keeps clean images
    model = load_reward_model(out)  # the run directory is a reward checkpoint
    x = torch.rand(2, 1, 28, 28)
    assert model.predict(x, x).shape == (2,)
    if "--ensemble" in extra:
        assert isinstance(model, RewardEnsemble) and len(model) == 2
    assert "validation against" in capsys.readouterr().out


def test_run_directory_is_a_reward_for_the_environments(store_path, tmp_path) -> None:
    envs = pytest.importorskip("hfrl.envs")
    out = tmp_path / "run"
    assert main(["reward", "train", "--db", str(store_path), "--out", str(out), *FAST_ARGS]) == 0
    reward = envs.resolve_reward(str(out))
    x = torch.rand(3, 1, 28, 28)
    assert reward(x, x).shape == (3,)


@pytest.mark.parametrize(
    "argv",
    [
        ["reward"],
        ["reward", "train"],
        ["reward", "train", "--db", "/nonexistent/feedback.sqlite"],
        ["reward", "train", "--db", "DB", "--kind", "dpo"],
        ["reward", "train", "--db", "DB", "--ensemble", "0"],
        ["reward", "train", "--db", "DB", "--val-fraction", "1.5"],
        ["reward", "train", "--db", "DB", "--model", "clean"],
        ["reward", "train", "--db", "DB", "--kind", "triplet", "--model", "similarity"],
        ["reward", "train", "--db", "DB", "--denoiser-steps", "0"],
        ["reward", "train", "--db", "DB", "--device", "tpu"],
        ["reward", "train", "--db", "DB", "--kind", "triplet", "--aux-weight", "1"],
        ["reward", "train", "--db", "DB", "--model", "output", "--aux-weight", "1"],
        ["reward", "train", "--db", "DB", "--label-smoothing", "0.7"],
        ["reward", "train", "--db", "EMPTY"],
        ["reward", "train", "--db", "NOTADB"],
    ],
)
def test_errors_are_one_line_and_exit_2(argv, store_path, tmp_path, capsys) -> None:
    empty = tmp_path / "empty.sqlite"
    FeedbackStore(empty).close()
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database")
    subst = {"DB": str(store_path), "EMPTY": str(empty), "NOTADB": str(junk)}
    argv = [subst.get(a, a) for a in argv] + ["--out", str(tmp_path / "out")] * (
        "train" in argv and len(argv) > 2
    )
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err, err


def test_pairwise_without_pairs_is_a_clear_error(tmp_path, train_split, capsys) -> None:
    path = tmp_path / "only-single.sqlite"
    s = train_split
    with FeedbackStore(path) as store:
        store.add_query("single", s.noisy[:8], s.output[:8], clean=s.clean[:8], classes=s.classes[:8])
        simulate(store, SyntheticLabeler.from_pretrained())
    assert (
        main(["reward", "train", "--db", str(path), "--kind", "pairwise", "--out", str(tmp_path / "o")]) == 2
    )
    assert "no pairwise labels" in capsys.readouterr().err
