"""The online trainer's loop for every method: exact resume, and over-optimisation logged per round.

Every run is headless with the synthetic labeler. Resuming 2 rounds + 1 gives the uninterrupted 3-round
run's weights and ``rounds.csv`` rows; a run killed after a round's labels but before its checkpoint
reuses those labels; a run under another config is refused. Every method logs the learned reward, the
evaluator's success rate, KL to the base model, source error and diversity side by side.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import threading
from pathlib import Path

import pytest
import torch

from hfrl.agents.diffusion.trainer import OVER_OPTIMISATION
from hfrl.agents.hero import METHODS, make_online_config, make_online_trainer
from hfrl.diffusion import load_model
from hfrl.diffusion_task import TargetDigitEvaluator
from hfrl.errors import CheckpointError
from hfrl.feedback import FeedbackStore

TINY = {
    "batch_size": 8, "num_inference_steps": 4, "eval_samples": 8, "reward_steps": 2, "reward_batch_size": 4,
    "policy_epochs": 1, "minibatch_size": 8, "device": "cpu", "labeler_threshold": 0.1, "seed": 1,
}  # fmt: skip
EXTRA = {
    "rwl": {"rwl_steps": 1, "rwl_batch_size": 4},
    "hero": {"extra_samples": 2},
    "flow-grpo": {"group_size": 2},
    "nft": {"nft_steps": 2, "nft_batch_size": 4},
    "awm": {"awm_steps": 2, "awm_batch_size": 4},
    "best-of-n": {"best_of": 2},
}
LEARNED_REWARD = {m for m in METHODS if m != "d3po"} - {"nft"}  # nft's default binary mode has none
# one worker runs this module: the uninterrupted runs every test compares with are made once, not per worker
pytestmark = pytest.mark.xdist_group("diffusion_trainer")

FAST = ("hero", "rwl", "d3po")
"""Resumed in the fast tests: recycled noise and an embedding reward, a label pool with a reward model
and every sample so far, pairs without a reward model. The other methods' resume runs are ``slow``."""


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _config(method: str, rounds: int):  # noqa: ANN202
    return make_online_config(method, **TINY, **EXTRA.get(method, {}), rounds=rounds)


_EVALUATOR: list[TargetDigitEvaluator] = []


def _trainer(method: str, rounds: int, run_dir: Path, config: object = None, **kwargs: object):  # noqa: ANN202
    """A tiny run's trainer; one evaluator for them all (its reference errors take seconds to measure)."""
    config = config or _config(method, rounds)
    if not _EVALUATOR:
        base = load_model(config.model_checkpoint()).eval().requires_grad_(False)
        _EVALUATOR.append(TargetDigitEvaluator.from_pretrained(config.target_class, base=base))
    return make_online_trainer(method, config, run_dir=run_dir, evaluator=_EVALUATOR[0], **kwargs)


def _rows(run_dir: Path) -> list[dict[str, float]]:
    """``rounds.csv`` without the wall-clock columns, as numbers."""
    with (run_dir / "rounds.csv").open() as fh:
        return [
            {k: float(v) if v else math.nan for k, v in row.items() if not k.startswith("seconds/")}
            for row in csv.DictReader(fh)
        ]


def _same_rows(a: list[dict[str, float]], b: list[dict[str, float]]) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(x[k] == y[k] or (math.isnan(x[k]) and math.isnan(y[k])) for k in x)
        for x, y in zip(a, b)
    )


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=1e-6, msg=key)


@pytest.fixture(scope="module")
def full_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The uninterrupted 3-round run of every method (shared by the tests below)."""
    runs = {}
    for method in METHODS:
        trainer = _trainer(method, 3, tmp_path_factory.mktemp(f"full-{method}"))
        trainer.train()
        runs[method] = trainer
    return runs


@pytest.mark.parametrize(
    "method", [m if m in FAST else pytest.param(m, marks=pytest.mark.slow) for m in sorted(METHODS)]
)
def test_resume_equals_uninterrupted(method: str, full_runs: dict, tmp_path: Path) -> None:
    full = full_runs[method]
    first = _trainer(method, 2, tmp_path)
    first.train()
    torch.manual_seed(123)  # another global state: resume must not depend on it
    second = _trainer(method, 3, tmp_path)
    second.load_state()
    assert second.round == 2 and second.labels_used == first.labels_used
    second.train()
    _assert_same_weights(full.model, second.model)
    assert second.labels_used == full.labels_used
    assert _same_rows(_rows(full.run_dir), _rows(tmp_path))
    if method in LEARNED_REWARD:  # the label pool and reward model came back too
        _assert_same_weights(full.reward_model, second.reward_model)


@pytest.mark.parametrize("method", ["hero", "ddpo"])  # PPO on a learned reward: embedding, binary
def test_a_run_killed_after_the_labels_reuses_them(method: str, full_runs: dict, tmp_path: Path) -> None:
    class Killed(Exception):
        pass

    def kill(row: dict[str, float]) -> None:
        if row["round"] == 3:  # round 3's labels are in the database; its checkpoint is not written
            raise Killed

    with pytest.raises(Killed):
        _trainer(method, 3, tmp_path, progress=kill).train()
    with FeedbackStore(tmp_path / "feedback.sqlite") as store:
        asked = len(store.queries())
        labels = len(store.labels())
    resumed = _trainer(method, 3, tmp_path)
    resumed.load_state()
    assert resumed.round == 2
    resumed.train()
    with FeedbackStore(tmp_path / "feedback.sqlite") as store:
        assert (len(store.queries()), len(store.labels())) == (asked, labels)  # nothing asked again
    _assert_same_weights(full_runs[method].model, resumed.model)
    assert _same_rows(_rows(full_runs[method].run_dir), _rows(tmp_path))


def test_a_run_stopped_between_rounds_resumes(full_runs: dict, tmp_path: Path) -> None:
    stop = threading.Event()

    def stop_after_first(row: dict[str, float]) -> None:
        if row["round"] == 1:
            stop.set()

    first = _trainer("rwl", 3, tmp_path, progress=stop_after_first, stop=stop)
    first.train()
    assert first.round == 1
    resumed = _trainer("rwl", 3, tmp_path)
    resumed.load_state()
    resumed.train()
    _assert_same_weights(full_runs["rwl"].model, resumed.model)
    assert _same_rows(_rows(full_runs["rwl"].run_dir), _rows(tmp_path))


def test_another_config_is_refused_in_one_line(full_runs: dict) -> None:
    other = dataclasses.replace(_config("ddpo", 3), lr=1e-3)
    trainer = _trainer("ddpo", 3, full_runs["ddpo"].run_dir / "elsewhere", config=other)
    with pytest.raises(CheckpointError) as err:
        trainer.load_state(full_runs["ddpo"].run_dir)
    assert "lr=" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="method 'ddpo', not 'rwl'"):
        _trainer("rwl", 3, full_runs["ddpo"].run_dir / "x").load_state(full_runs["ddpo"].run_dir)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_over_optimisation_is_logged_side_by_side(method: str, full_runs: dict) -> None:
    run_dir = full_runs[method].run_dir
    rows = _rows(run_dir)
    assert [row["round"] for row in rows] == [0.0, 1.0, 2.0, 3.0]
    for key in OVER_OPTIMISATION:
        assert key in rows[0], key
    assert rows[0]["kl_to_base"] == 0.0 and math.isnan(rows[0]["learned_reward"])  # before any update
    # best-of-n leaves the model as it is; every other method moves it away from the base model
    assert (rows[-1]["kl_to_base"] > 0) == (method != "best-of-n")
    if method in LEARNED_REWARD and full_runs[method].reward_ready:
        assert math.isfinite(rows[-1]["learned_reward"])
    assert (run_dir / "over_optimisation.png").stat().st_size > 1000
    assert any((run_dir / "tb").iterdir())
