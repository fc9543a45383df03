"""Sweep cells: one (grid cell, seed) run, its lock, and its results row.

A cell counts as finished once its ``evaluation.json`` is there (see :mod:`hfrl.experiments.sweep`);
:func:`run_cell` trains or resumes one under a :class:`CellLock`, and :func:`make_row` turns its final
evaluation into a row of the results table.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hfrl.agents.base import STATE_FILE, Trainer
from hfrl.errors import HfrlError

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class CellTask:
    """One (cell, seed) of a sweep: everything :func:`run_cell` needs, picklable for worker processes.

    Attributes:
        trainer: The agent's trainer class.
        name: Cell name without the seed, e.g. ``kl=0.01_aux=1.0`` (shared by the cell's seeds).
        values: The cell's grid values ``{field: value}``.
        seed: This run's seed.
        config: Every field of the run's config (``TrainerConfig.to_dict``, the user's images kept as images).
        run_dir: The run directory ``OUT/cells/<name>_seed=<seed>``.
        reward: A reward object for the trainer, or ``None`` when ``config["reward"]`` names it.
        cwd: The working directory relative paths in the config are read from.
    """

    trainer: type[Trainer]
    name: str
    values: dict[str, Any]
    seed: int
    config: dict[str, Any]
    run_dir: str
    reward: Any = None
    cwd: str = "."

    @property
    def finished(self) -> bool:
        """Whether the run directory holds a readable ``evaluation.json``."""
        return _read_final(Path(self.run_dir)) is not None


def run_cell(task: CellTask) -> dict[str, Any]:
    """Train one (cell, seed) and return its results row; resume it if a checkpoint is there.

    The run directory is locked while this process owns it (:class:`CellLock`): a cell another live
    process is running gives a row with ``status="busy"`` and is neither run nor touched, so a second
    sweep over the same folder never deletes a run that is being written. The lock of a process that died
    is taken over. A run directory without a checkpoint is started again from scratch; one with a
    checkpoint is resumed from it (or started again if the checkpoint cannot be read).

    The global Python, NumPy and torch RNGs are seeded with the run's seed for the run (as ``hfrl
    finetune`` does, for third-party code such as Stable-Baselines3) and restored afterwards. A run that
    fails with an :class:`~hfrl.errors.HfrlError` (a NaN loss, say) gives a row with ``status="failed"``
    and its message, and is tried again by the next rerun.

    Args:
        task: What to run (from :func:`plan_sweep`).

    Returns:
        The row (see :func:`make_row`).
    """
    run_dir = Path(task.run_dir)
    lock = CellLock(run_dir)
    owner = lock.acquire()
    if owner is not None:
        return {**make_row(task, {}, "busy"), "error": f"another process (pid {owner}) is running this cell"}
    try:
        final = _read_final(run_dir)
        if final is not None:  # finished by another process since the sweep looked
            return make_row(task, final, "cached")
        return _run_locked(task, run_dir)
    finally:
        lock.release()


def _run_locked(task: CellTask, run_dir: Path) -> dict[str, Any]:
    config = task.trainer.config_class.from_dict(_from_json(task.config))
    resume = (run_dir / f"{STATE_FILE}.safetensors").is_file() and (run_dir / "config.json").is_file()
    if run_dir.exists() and not resume:
        shutil.rmtree(run_dir)  # started but never checkpointed: start again
    try:
        with _seeded(task.seed):
            trainer = task.trainer(config, reward=task.reward, run_dir=run_dir)
            if resume:
                try:
                    trainer.load_state()
                except HfrlError:
                    resume = False
                    shutil.rmtree(run_dir)
                    trainer = task.trainer(config, reward=task.reward, run_dir=run_dir)
            result = trainer.train()
    except HfrlError as exc:
        return {**make_row(task, {}, "failed"), "error": str(exc)}
    return make_row(task, result.final, "resumed" if resume else "ran")


class CellLock:
    """An exclusive, advisory lock on one run directory: ``<run_dir>.lock`` beside it, holding the owner's pid.

    The lock is an operating-system file lock (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows), so
    the kernel releases it when its process dies, however it dies: the next process to ask takes a dead
    owner's lock over. The pid in the file is for messages only. The lock file is removed on release.
    Locks on network file systems are only as good as the file system's ``flock``.

    Args:
        run_dir: The run directory to lock (it need not exist).
    """

    def __init__(self, run_dir: str | Path) -> None:
        run_dir = Path(run_dir)
        self.path = run_dir.with_name(run_dir.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> int | None:
        """Take the lock without waiting.

        Returns:
            ``None`` when this process now holds it; else the pid of the live process that does (0 when
            the file does not say).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                _lock_fd(fd)
            except OSError:
                os.close(fd)
                return _read_pid(self.path)
            try:  # the holder before us may have removed the file after we opened it: lock the file at path
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
            return None

    def release(self) -> None:
        """Give the lock back and remove the lock file (nothing happens when this process does not hold it)."""
        if self._fd is None:
            return
        if os.name == "posix":  # removed while still locked, so no one can lock the old file in between
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        os.close(self._fd)
        self._fd = None


def _lock_fd(fd: int) -> None:
    """Lock an open file without waiting; ``OSError`` when another process holds it."""
    if os.name == "posix":
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:  # pragma: no cover - Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)


def _read_pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def make_row(task: CellTask, final: Mapping[str, Any], status: str) -> dict[str, Any]:
    """A results row: the task's identity, the final evaluation flattened, ``status`` and ``run_dir``.

    Nested metrics are joined with ``_`` (``target_psnr_gain`` -> ``target_psnr_gain_mean``, ...). From the
    per-class table come ``source_psnr_after``, ``target_psnr_after``, ``*_ssim_after`` and the target's
    per-class good-rates ``target_good_rate_after_c<class>``.
    """
    row: dict[str, Any] = {"agent": task.trainer.name, "cell": task.name}
    row.update({k: _cell_value(v) for k, v in task.values.items()})
    row["seed"] = task.seed
    for key, value in final.items():
        if key in ("agent", "per_class"):
            continue
        if isinstance(value, Mapping):
            row.update({f"{key}_{k}": v for k, v in value.items()})
        else:
            row[key] = value
    for r in final.get("per_class", []):
        if r.get("class") == "all":
            row[f"{r['domain']}_psnr_after"] = r["psnr"]
            row[f"{r['domain']}_ssim_after"] = r["ssim"]
        elif r.get("domain") == "target":
            row[f"target_good_rate_after_c{r['class']}"] = r["good_rate"]
    row["status"] = status
    row["run_dir"] = task.run_dir
    return row


def _label(value: Any) -> str:
    """A grid value as a short readable string (``0.01``, ``true``, ``1,7``)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


def _cell_value(value: Any) -> Any:
    """A grid value as a table cell (tuples as their label, so that the table round-trips through CSV)."""
    return _label(value) if isinstance(value, (tuple, list)) else value


def _read_final(run_dir: Path) -> dict[str, Any] | None:
    """``evaluation.json`` when the run is complete, else ``None``.

    The trainer writes ``evaluation.json`` last, atomically, after the fine-tuned generator; a run counts as
    finished only with a readable ``evaluation.json`` and the generator checkpoint beside it.
    """
    try:
        final = json.loads((run_dir / "evaluation.json").read_text())
    except (OSError, ValueError):
        return None
    complete = all((run_dir / f"generator.{ext}").is_file() for ext in ("safetensors", "json"))
    return final if complete and isinstance(final, dict) and "target_good_rate_after" in final else None


def _from_json(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed the global RNGs for one run (like ``hfrl finetune``) and restore them afterwards."""
    from hfrl.device import seed_everything

    py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002 - saved to restore
    with torch.random.fork_rng(devices=[]):
        seed_everything(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)  # noqa: NPY002


__all__ = [
    "CellLock",
    "CellTask",
    "make_row",
    "run_cell",
]
