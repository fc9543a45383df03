"""Crash consistency of run files: a run killed at any write resumes bit-exactly or starts again cleanly.

Every file a trainer writes goes through ``os.replace`` (temp file, fsync, rename). The tests stop a run
at each of those renames, in process (an exception no library code catches) and for real (``SIGKILL`` in
a subprocess), then rerun the cell as a sweep does and compare the fine-tuned generator with that of an
uninterrupted run, bit for bit.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from hfrl.agents import NonFiniteLossError, Trainer, TrainerConfig
from hfrl.experiments.sweep import CellLock, CellTask, plan_sweep, run_cell

BASE = {
    "steps": 4,
    "batch_size": 8,
    "aux_batch_size": 4,
    "device": "cpu",
    "checkpoint_every": 2,
    "eval_every": 0,
}
AGENT = "reinforce"
WRITES = (
    "config.json",
    "state.safetensors",  # checkpoint at step 2
    "state.json",
    "state.safetensors",  # checkpoint at step 4
    "state.json",
    "state.safetensors",  # final checkpoint (step 4 again)
    "state.json",
    "generator.safetensors",
    "generator.json",
    "evaluation.json",
)
"""The renames of a run with BASE, in order (checked by the baseline fixture)."""


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the library catches it."""


def _task(out: Path) -> CellTask:
    (task,) = plan_sweep(AGENT, {"kl": [0.0]}, base=BASE, reward="labeler", out=out)
    return task


def _generator(run_dir: str | Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(run_dir) / "generator.safetensors"))


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> dict[str, torch.Tensor]:
    """The generator of an uninterrupted run; also checks the order of its writes."""
    out = tmp_path_factory.mktemp("baseline")
    seen: list[str] = []
    real = os.replace

    def replace(src, dst):  # noqa: ANN001, ANN202
        seen.append(Path(dst).name)
        return real(src, dst)

    mp = pytest.MonkeyPatch()
    mp.setattr(os, "replace", replace)
    try:
        row = run_cell(_task(out))
    finally:
        mp.undo()
    assert row["status"] == "ran"
    assert tuple(seen) == WRITES  # evaluation.json, the "done" marker, comes last
    return _generator(row["run_dir"])


@pytest.mark.parametrize("k", range(1, len(WRITES) + 1))
def test_a_run_stopped_at_any_write_reruns_to_the_uninterrupted_result(
    k: int, baseline: dict[str, torch.Tensor], tmp_path: Path, monkeypatch
) -> None:
    task = _task(tmp_path)
    real, count = os.replace, [0]

    def replace(src, dst):  # noqa: ANN001, ANN202
        count[0] += 1
        if count[0] == k:
            raise Crash(dst)  # the k-th file's new content was written to its temp file, not renamed
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Crash):
        run_cell(task)
    monkeypatch.setattr(os, "replace", real)
    assert not task.finished  # complete or not at all: the done marker is the last write
    row = run_cell(task)
    assert row["status"] == ("resumed" if k >= 3 else "ran")  # a checkpoint exists once renamed (k=2)
    assert task.finished
    after = _generator(task.run_dir)
    assert after.keys() == baseline.keys()
    assert all(torch.equal(after[key], baseline[key]) for key in baseline)
    with (Path(task.run_dir) / "train.csv").open() as fh:  # rows logged after the checkpoint are not doubled
        assert [int(r["step"]) for r in csv.DictReader(fh)] == [1, 2, 3, 4]


SCRIPT = """
import os, signal, sys
from pathlib import Path
from hfrl.experiments.sweep import plan_sweep, run_cell

base, out, k = {base!r}, Path(sys.argv[1]), int(sys.argv[2])
(task,) = plan_sweep({agent!r}, {{"kl": [0.0]}}, base=base, reward="labeler", out=out)
real, count = os.replace, [0]

def replace(src, dst):
    count[0] += 1
    if count[0] == k:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)

os.replace = replace
run_cell(task)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_between_the_checkpoint_and_its_json_resumes_bit_exactly(
    baseline: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    script = tmp_path / "victim.py"
    script.write_text(textwrap.dedent(SCRIPT.format(base=BASE, agent=AGENT)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # killed at the 5th rename: the step-4 checkpoint is committed, its state.json copy is not
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), "5"], env=env, timeout=300)
    assert proc.returncode == -signal.SIGKILL
    task = _task(tmp_path)
    run_dir = Path(task.run_dir)
    with safe_open(str(run_dir / "state.safetensors"), framework="pt") as fh:
        assert fh.metadata()["step"] == "4"
    assert json.loads((run_dir / "state.json").read_text())["step"] == 2  # the copy is stale
    row = run_cell(task)
    assert row["status"] == "resumed" and row["steps"] == 4
    after = _generator(task.run_dir)
    assert all(torch.equal(after[key], baseline[key]) for key in baseline)
    assert json.loads((run_dir / "state.json").read_text())["step"] == 4  # the copy was repaired


# -- sweeps whose parent dies ------------------------------------------------------------------------------

PARENT = """
import sys
from hfrl.experiments.sweep import run_sweep

if __name__ == "__main__":
    run_sweep({agent!r}, {{"kl": [0.0, 0.1]}}, base={base!r}, reward="labeler", out=sys.argv[1], workers=2,
              progress=False)
"""


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie nobody reaped counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sweep_workers_die_with_their_parent_and_a_rerun_leaves_live_cells_alone(tmp_path: Path) -> None:
    long = {**BASE, "steps": 100_000, "checkpoint_every": 0}  # the workers would train for hours
    script = tmp_path / "sweep.py"
    script.write_text(textwrap.dedent(PARENT.format(agent=AGENT, base=long)))
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen([sys.executable, str(script), str(out)], env=env)
    try:
        tasks = plan_sweep(AGENT, {"kl": [0.0, 0.1]}, base=long, reward="labeler", out=out)
        locks = [CellLock(t.run_dir).path for t in tasks]
        configs = [Path(t.run_dir) / "config.json" for t in tasks]
        _wait_for(lambda: all(p.is_file() for p in configs) or parent.poll() is not None, 240, "both cells")
        assert parent.poll() is None, "the sweep ended early"
        workers = [int(p.read_text()) for p in locks]
        assert len(set(workers)) == 2 and parent.pid not in workers and all(map(_alive, workers))

        # a second sweep over the same folder, while the workers run: it skips their cells, deletes nothing
        for task in tasks:
            row = run_cell(task)
            assert row["status"] == "busy" and str(workers[tasks.index(task)]) in row["error"]
        assert all(p.is_file() for p in configs) and all(map(_alive, workers))

        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        _wait_for(lambda: not any(map(_alive, workers)), 10, "the workers to exit after their parent")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    # their locks died with them: a new process takes them over (once the kernel has closed the dead
    # workers' files, which can be a moment after their main thread is a zombie)
    for task in tasks:
        lock = CellLock(task.run_dir)
        _wait_for(lambda: lock.acquire() is None, 10, "a dead worker's lock to be free")  # noqa: B023
        assert int(lock.path.read_text()) == os.getpid()
        lock.release()
        assert not lock.path.exists()


# -- what a NaN says about checkpoints ---------------------------------------------------------------------


class NaNAt(Trainer):
    """Takes real optimiser steps until ``nan_at`` updates are done, then its loss is NaN."""

    name = "test-nan-at"
    config_class = TrainerConfig
    needs_reward = False
    nan_at = 3

    def update(self) -> dict[str, float]:
        loss = self.policy.mode(self.observe()).mean()
        self.optimize(loss * float("nan") if self.step >= self.nan_at else loss)
        return {}


@pytest.mark.parametrize(
    ("every", "said"), [(0, "no checkpoint was written"), (2, "checkpoint (step 2) is in")]
)
def test_a_nan_names_the_last_checkpoint_only_when_there_is_one(
    every: int, said: str, tmp_path: Path
) -> None:
    config = TrainerConfig(**{**BASE, "checkpoint_every": every, "progress": False})
    trainer = NaNAt(config, run_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match="step 4: loss is nan") as info:
        trainer.train()
    assert said in str(info.value)
    assert (tmp_path / "state.safetensors").exists() == (every > 0)
