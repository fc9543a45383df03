"""Sweeps: one agent over a grid of config values and seeds, resumable, with a results table and plots.

A sweep runs every combination of the grid's values (a *cell*) once per seed. Each (cell, seed) is an
ordinary fine-tuning run with its own run directory, ``OUT/cells/<cell>_seed=<seed>/``, and counts as
finished once its ``evaluation.json`` is there: a rerun with the same ``out`` skips finished runs, resumes
half-finished ones from their last checkpoint (``checkpoint_every``) and starts the rest. So a sweep can
be killed at any time, and a grid can be extended later: only the new cells run.

What a kill leaves is safe to rerun: checkpoints and ``evaluation.json`` are written atomically, and
``evaluation.json`` last (:meth:`~hfrl.agents.base.Trainer.finish`), so a cell is finished only when it
is complete. While a process runs a cell it holds ``OUT/cells/<run>.lock`` (:class:`CellLock`), so a
second sweep over the same folder skips that cell (``status="busy"``) instead of deleting it, and takes
the lock over once its owner is dead. Worker processes end when the sweep process dies
(:func:`exit_with_parent`), so killing a sweep stops all of its training.

``OUT`` then holds:

* ``results.csv`` / ``results.parquet``: one row per (cell, seed) — the agent, the cell's name, its grid
  values, the seed, the final evaluation flattened (``target_good_rate_after``, ``source_psnr_change``,
  ``target_psnr_gain_mean``, per-class good-rates ``target_good_rate_after_c3``, ...), ``status`` and
  ``run_dir``;
* ``summary.csv``: mean and standard deviation over seeds per cell (:func:`summarise`);
* ``tradeoff.png``: target good-rate against source PSNR change (forgetting) with the Pareto front, and
  ``heatmap_<metric>.png`` over the grid's axes (:func:`plot_sweep`);
* ``sweep.json``: what was asked for.

Cells run in a local process pool by default, or on a Ray cluster with ``backend="ray"`` (``pip install
'hfrl[ray]'``); both run :func:`run_cell`, so their results are the same.

Example::

    from hfrl.agents.sweep import run_sweep

    df = run_sweep(
        "rwl",
        {"kl": [0, 0.01, 0.1, 1], "aux": [0, 0.1, 1]},
        seeds=3,
        base={"steps": 200},
        reward="runs/reward/model",
        out="runs/sweep-rwl",
    )
    print(df.groupby(["kl", "aux"])["target_good_rate_after"].mean())
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import random
import re
import shutil
import sys
import threading
import time
import typing
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from hfrl.agents.base import STATE_FILE, Trainer
from hfrl.agents.config import (
    DATA_FIELDS,
    TrainerConfig,
    coerce_field,
    config_values,
    field_types,
    with_images,
)
from hfrl.agents.registry import agent_class
from hfrl.data import data_record
from hfrl.errors import ConfigError, HfrlError
from hfrl.plugins import USER_PREFIX, import_user_code
from hfrl.runs import make_run_dir, to_jsonable, write_json

if TYPE_CHECKING:
    import pandas as pd

Backend = Literal["local", "ray"]
BACKENDS: tuple[str, ...] = ("local", "ray")

DEFAULT_METRICS: tuple[str, ...] = ("target_good_rate_after", "source_psnr_change", "target_psnr_gain_mean")
"""Metrics :func:`plot_sweep` draws a heatmap of, and the CLI's summary shows."""

IGNORED_ON_RESUME = frozenset({"progress", "device", "checkpoint_every", "eval_every", "eval_size"})
"""Config fields that may differ between a finished run and a rerun of its cell: bookkeeping only."""

MAX_FACETS = 16
"""Heatmaps over grids of more than two axes get one panel per combination of the other axes, at most this
many (more would be unreadable; the heatmap is then skipped with a warning)."""

_NOT_METRICS = frozenset({"agent", "cell", "seed", "status", "run_dir", "error"})


# -- planning ----------------------------------------------------------------------------------------------


def parse_grid(agent: str, specs: Sequence[str]) -> dict[str, list[Any]]:
    """Parse command-line grid axes such as ``["kl=0,0.01,0.1", "aux=0,1"]`` into typed values.

    Values are separated by commas and read as the config field's type (``float``, ``int``, ``bool``,
    ``str``, ``none`` for optional fields). Class-tuple fields (``target_classes``) separate their values
    with ``;`` instead, since a single value may hold commas: ``target_classes=1-9;1,7``.

    Args:
        agent: Registered agent name (its config class gives the field types).
        specs: One ``NAME=V1,V2,...`` string per axis; names may use ``-`` for ``_``.

    Returns:
        ``{field: [values...]}`` in the order given.

    Raises:
        ConfigError: for an empty grid, a malformed axis, an unknown field, a value of the wrong type, a
            repeated axis or value, or the ``seed`` field (seeds are their own argument).
    """
    cls = agent_class(agent).config_class
    if not specs:
        raise ConfigError("the grid is empty; give at least one axis such as kl=0,0.1")
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name or not text.strip():
            raise ConfigError(f"grid axis {spec!r} is not NAME=VALUE1,VALUE2,...")
        tuple_field = typing.get_origin(_field_hint(cls, name)) is tuple
        texts = [t.strip() for t in text.split(";" if tuple_field else ",")]
        if any(not t for t in texts):
            raise ConfigError(f"grid axis {spec!r} has an empty value")
        if name in grid:
            raise ConfigError(f"grid axis {name!r} is given twice")
        grid[name] = [coerce_field(cls, name, t) for t in texts]
    return normalise_grid(cls, grid)


def normalise_grid(cls: type[TrainerConfig], grid: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """Check a grid against a config class and type its values (strings are parsed, ints become floats).

    Args:
        cls: The agent's config class.
        grid: ``{field: values}``; values may be typed or strings.

    Raises:
        ConfigError: see :func:`parse_grid`.
    """
    if not grid:
        raise ConfigError("the grid is empty; give at least one axis such as kl=0,0.1")
    out: dict[str, list[Any]] = {}
    for name, values in grid.items():
        if name == "seed":
            raise ConfigError("'seed' cannot be a grid axis; use seeds= (--seeds N) instead")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            values = [values]
        if len(values) == 0:
            raise ConfigError(f"grid axis {name!r} has no values")
        typed = [_typed(cls, name, v) for v in values]
        if name in DATA_FIELDS and not all(isinstance(v, str) or v is None for v in typed):
            raise ConfigError(
                f"grid axis {name!r}: your own images cannot be a grid axis; run one sweep per dataset"
            )
        seen: list[Any] = []
        for value in typed:
            if value in seen:
                raise ConfigError(f"grid axis {name!r} repeats the value {_label(value)}")
            seen.append(value)
        out[name] = typed
    return out


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


def plan_sweep(
    agent: str,
    grid: Mapping[str, Sequence[Any]],
    *,
    seeds: int | Sequence[int] = 1,
    base: Mapping[str, Any] | None = None,
    reward: Any = None,
    out: str | Path,
) -> list[CellTask]:
    """Every (cell, seed) of a sweep, checked but not run (the grid order: last axis fastest, then seeds).

    Args:
        agent: Registered agent name.
        grid: ``{field: values}``; see :func:`normalise_grid`.
        seeds: Number of seeds (``n``: seeds ``s0 .. s0+n-1`` with ``s0 = base.get("seed", 0)``) or the seeds.
        base: Fixed values of other config fields (typed or strings).
        reward: Reward-model checkpoint path or ``"labeler"`` (stored in each run's config), or a reward
            object (passed to each trainer; must pickle for worker processes).
        out: The sweep's folder.

    Raises:
        ConfigError: for bad settings, an invalid cell config, or a finished run in ``out`` whose config
            differs from the one planned for it (bookkeeping fields aside).
    """
    trainer = agent_class(agent)
    cls = trainer.config_class
    grid = normalise_grid(cls, grid)
    fixed = {k: _typed(cls, k, v) for k, v in (base or {}).items()}
    clash = sorted(set(fixed) & set(grid))
    if clash:
        raise ConfigError(f"{', '.join(clash)}: set both as a grid axis and as a fixed value")
    fixed = with_images(fixed)  # the user's images, read and converted once for every cell
    fixed.setdefault("progress", False)
    reward_object = None
    if isinstance(reward, (str, os.PathLike)):
        fixed["reward"] = str(reward)
    elif reward is not None:
        reward_object = reward
    _check_reward(trainer, fixed.get("reward"), reward_object)
    seed_list = _seeds(seeds, int(fixed.pop("seed", 0)))

    out = Path(out)
    tasks: list[CellTask] = []
    names: set[str] = set()
    for combo in itertools.product(*grid.values()):
        values = dict(zip(grid, combo))
        name = _cell_name(values)
        if name in names:  # two values that read the same once made safe for a folder name
            name = f"{name}_{_digest(values)}"
        names.add(name)
        for seed in seed_list:
            try:
                config = cls.from_dict({**fixed, **values, "seed": seed})
            except ConfigError as exc:
                raise ConfigError(f"cell {name}: {exc}") from None
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"cell {name}: invalid settings ({exc})") from None
            run_dir = out / "cells" / f"{name}_seed={seed}"
            task = CellTask(
                trainer, name, values, seed, config_values(config), str(run_dir), reward_object, os.getcwd()
            )
            _check_existing(task)
            tasks.append(task)
    return tasks


# -- running -----------------------------------------------------------------------------------------------


def run_sweep(
    agent: str,
    grid: Mapping[str, Sequence[Any]],
    *,
    seeds: int | Sequence[int] = 1,
    base: Mapping[str, Any] | None = None,
    reward: Any = None,
    out: str | Path | None = None,
    backend: Backend = "local",
    workers: int | None = None,
    resources: Mapping[str, float] | None = None,
    progress: bool = True,
    plots: bool = True,
    imports: Sequence[str] = (),
) -> pd.DataFrame:
    """Run an agent over a grid of config values and seeds; skip what ``out`` already holds.

    Args:
        agent: Registered agent name (``rwl``, ``ppo``, ...).
        grid: ``{field: values}``, e.g. ``{"kl": [0, 0.01], "aux": [0, 1]}``; string values are parsed as in
            :func:`parse_grid`.
        seeds: Seeds per cell (default 1): a count ``n`` (seeds ``s0 .. s0+n-1``, ``s0 = base["seed"]`` or
            0) or explicit seeds.
        base: Fixed values of other config fields, e.g. ``{"steps": 200, "device": "cpu"}``. Each run's
            progress bar is off unless ``base`` sets ``progress``. ``dataset`` (or ``source_data`` and
            ``target_data``) may hold your own images, read once for every cell (not a grid axis).
        reward: Reward-model checkpoint path or ``"labeler"`` (the oracle), the same for every cell; or a
            reward object (with worker processes it must pickle). Default: ``base["reward"]``.
        out: The sweep's folder (default ``runs/sweep-<agent>-TIMESTAMP``). Rerun with the same ``out`` to
            resume.
        backend: ``"local"`` (a process pool on this machine) or ``"ray"`` (Ray Tune; connects to the
            cluster in ``RAY_ADDRESS`` or one already initialised, else starts Ray locally). On a cluster,
            ``out`` must be on storage every node sees.
        workers: Runs at a time (default: ``min(pending runs, CPU cores)``). Locally, ``1`` runs them in
            this process, one after another; more start that many worker processes (``spawn``), each with
            one torch thread. A script that starts workers needs an ``if __name__ == "__main__":`` guard,
            since each worker imports it again.
        resources: Ray only: resources per run (default ``{"cpu": 1}``, plus ``{"gpu": 1}`` when
            ``base["device"]`` is ``cuda``).
        progress: Show a progress bar over runs.
        plots: Write ``tradeoff.png`` and the heatmaps.
        imports: Modules or Python files to import first, here and in every worker (see
            :func:`hfrl.plugins.import_user_code`): where an agent registered outside hfrl comes from.

    Returns:
        One row per (cell, seed), in grid order: ``agent``, ``cell``, the grid's fields, ``seed``, the
        final metrics, ``status`` (``ran``, ``resumed``, ``cached``, ``failed`` with ``error``, or ``busy``
        when another live process holds the cell's lock; see :func:`run_cell`) and ``run_dir``. ``df.attrs["files"]`` lists the files written to ``out``.

    Raises:
        ConfigError: for bad settings (checked before anything runs), or ``backend="ray"`` without Ray.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    imports = tuple(str(spec) for spec in imports)
    modules = [import_user_code(spec) for spec in imports]
    made = out is None
    out = make_run_dir(out, f"sweep-{agent}") if out is None else Path(out)
    try:
        tasks = plan_sweep(agent, grid, seeds=seeds, base=base, reward=reward, out=out)
    except ConfigError:
        if made and not any(out.iterdir()):
            out.rmdir()  # bad settings leave no empty sweep folder behind
        raise
    out.mkdir(parents=True, exist_ok=True)
    grid_fields = list(tasks[0].values)
    write_json(
        out / "sweep.json",
        {
            "agent": agent,
            "grid": {
                k: [_plain(v) for v in vs]
                for k, vs in normalise_grid(tasks[0].trainer.config_class, grid).items()
            },
            "seeds": sorted({t.seed for t in tasks}),
            "base": {k: _plain(data_record(tasks[0].config.get(k, v))) for k, v in (base or {}).items()},
            "reward": _describe_reward(reward),
            "backend": backend,
            "imports": list(imports),
            "cells": [Path(t.run_dir).name for t in tasks],
        },
    )

    rows: dict[str, dict[str, Any]] = {}
    pending: list[CellTask] = []
    for task in tasks:
        final = _read_final(Path(task.run_dir))
        if final is None:
            pending.append(task)
        else:
            rows[task.run_dir] = make_row(task, final, "cached")
    if pending:
        n = workers or min(len(pending), _cpu_count())
        if backend == "ray":
            done = _run_ray(pending, n, resources, out, progress, modules)
        elif n == 1:
            done = _run_inline(pending, progress)
        else:
            done = _run_pool(pending, n, progress, imports)
        rows.update(done)

    import pandas as pd

    df = pd.DataFrame([rows[t.run_dir] for t in tasks])
    df = _order_columns(df, grid_fields)
    df.attrs["grid"] = grid_fields
    df.attrs["files"] = [str(p) for p in write_results(df, out, plots=plots)]
    return df


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


def _run_inline(tasks: Sequence[CellTask], progress: bool) -> dict[str, dict[str, Any]]:
    rows = {}
    for task in tqdm(tasks, desc="sweep", unit="run", disable=not progress):
        rows[task.run_dir] = run_cell(task)
    return rows


def _init_worker(imports: Sequence[str] = (), parent: int | None = None) -> None:
    if parent is not None:
        exit_with_parent(parent)
    torch.set_num_threads(1)  # the pool already uses every core; more threads per worker only contend
    for spec in imports:  # before any task is unpickled: a user's trainer class lives in these modules
        import_user_code(spec)


def exit_with_parent(parent: int, interval: float = 0.5) -> None:
    """Make this worker process end as soon as its parent (the sweep) dies, however the parent dies.

    On Linux the kernel sends the worker ``SIGKILL`` when the parent exits (``prctl(PR_SET_PDEATHSIG)``).
    Everywhere, a daemon thread checks every ``interval`` seconds that the parent is still this process's
    parent and ends the process otherwise; that also covers a parent that died before the ``prctl`` call.
    Without it, the workers of a killed sweep kept training queued cells and then waited forever.

    Args:
        parent: The parent's pid (``os.getpid()`` in the parent, passed to the worker).
        interval: Seconds between the thread's checks.
    """
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(1)  # no cleanup to do: the cell's checkpoints are written atomically

    threading.Thread(target=watch, name="hfrl-exit-with-parent", daemon=True).start()


def _run_pool(
    tasks: Sequence[CellTask], workers: int, progress: bool, imports: Sequence[str] = ()
) -> dict[str, dict[str, Any]]:
    import multiprocessing

    rows: dict[str, dict[str, Any]] = {}
    # spawn, not fork: forking a process that has used torch (threads, CUDA) can deadlock
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(tuple(imports), os.getpid()),
    )
    bar = tqdm(total=len(tasks), desc=f"sweep ({workers} workers)", unit="run", disable=not progress)
    try:
        futures: dict[Future, CellTask] = {pool.submit(run_cell, t): t for t in tasks}
        for future in as_completed(futures):
            rows[futures[future].run_dir] = future.result()  # re-raises a worker's bug here
            bar.update(1)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # finished runs stay on disk for the rerun
        raise
    finally:
        bar.close()
    pool.shutdown()
    return rows


def _ray_trainable(config: dict[str, Any], tasks: dict[str, CellTask]) -> None:
    """Ray Tune function trainable: run the cell named ``config["cell"]`` and report its row."""
    task = tasks[config["cell"]]
    if os.path.isdir(task.cwd):
        os.chdir(task.cwd)  # Tune starts trials in their own folder; relative paths are the driver's
    torch.set_num_threads(1)
    row = run_cell(task)
    report = _ray_report()
    report({"row_json": json.dumps(to_jsonable(row))})


def _run_ray(
    tasks: Sequence[CellTask],
    workers: int,
    resources: Mapping[str, float] | None,
    out: Path,
    progress: bool,
    modules: Sequence[ModuleType] = (),
) -> dict[str, dict[str, Any]]:
    try:
        import ray
        from ray import cloudpickle, tune
    except ImportError:
        raise ConfigError("the ray backend needs Ray: pip install 'hfrl[ray]'") from None
    for module in modules:
        if module.__name__.startswith(USER_PREFIX):  # a file no Ray worker could import by name: ship it
            cloudpickle.register_pickle_by_value(module)
    if resources is None:
        resources = {"cpu": 1}
        if str(tasks[0].config.get("device", "")).startswith("cuda"):
            resources = {"cpu": 1, "gpu": 1}
    started = False
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init()
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=progress)
        started = True
    try:
        by_run = {Path(t.run_dir).name: t for t in tasks}
        trainable = tune.with_resources(tune.with_parameters(_ray_trainable, tasks=by_run), dict(resources))
        tuner = tune.Tuner(
            trainable,
            param_space={"cell": tune.grid_search(list(by_run))},
            tune_config=tune.TuneConfig(max_concurrent_trials=workers),
            run_config=_ray_run_config()(
                name="ray", storage_path=str((out / "ray").resolve()), verbose=1 if progress else 0
            ),
        )
        results = tuner.fit()
        rows: dict[str, dict[str, Any]] = {}
        for result in results:
            if result.error is not None:
                raise RuntimeError(f"a sweep run failed on Ray: {result.error}")
            row = json.loads(result.metrics["row_json"])
            rows[row["run_dir"]] = row
        return rows
    finally:
        if started:
            ray.shutdown()


def _ray_report() -> Any:
    from ray import tune

    if hasattr(tune, "report"):  # Ray >= 2.40
        return tune.report
    from ray import train  # pragma: no cover - older Ray

    return train.report  # pragma: no cover


def _ray_run_config() -> Any:
    from ray import tune

    if hasattr(tune, "RunConfig"):  # Ray >= 2.40
        return tune.RunConfig
    from ray import train  # pragma: no cover - older Ray

    return train.RunConfig  # pragma: no cover


# -- results -----------------------------------------------------------------------------------------------


def write_results(df: pd.DataFrame, out: str | Path, *, plots: bool = True) -> list[Path]:
    """Write ``results.csv``, ``results.parquet``, ``summary.csv`` and (optionally) the plots to ``out``.

    Returns:
        The paths written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.csv", out / "results.parquet", out / "summary.csv"]
    df.to_csv(paths[0], index=False)
    df.to_parquet(paths[1], index=False)
    summarise(df).to_csv(paths[2], index=False)
    if plots:
        paths += plot_sweep(df, out)
    return paths


def load_results(out: str | Path) -> pd.DataFrame:
    """The results table of a sweep folder (``results.parquet``, or ``results.csv`` without it).

    Raises:
        ConfigError: when ``out`` holds neither.
    """
    import pandas as pd

    out = Path(out)
    if (out / "results.parquet").is_file():
        df = pd.read_parquet(out / "results.parquet")
    elif (out / "results.csv").is_file():
        df = pd.read_csv(out / "results.csv")
    else:
        raise ConfigError(f"{out}: no results.parquet or results.csv (not a finished sweep folder)")
    df.attrs["grid"] = grid_columns(df)
    return df


def grid_columns(df: pd.DataFrame) -> list[str]:
    """The grid's fields in a results table.

    ``df.attrs["grid"]`` when set, else the columns between ``cell`` and ``seed`` (tables read from CSV).
    """
    if df.attrs.get("grid"):
        return list(df.attrs["grid"])
    cols = list(df.columns)
    if "cell" not in cols or "seed" not in cols:
        raise ConfigError("not a sweep results table: it needs 'cell' and 'seed' columns")
    return cols[cols.index("cell") + 1 : cols.index("seed")]


def metric_columns(df: pd.DataFrame) -> list[str]:
    """Numeric result columns: every column but the identity, grid and bookkeeping ones."""
    skip = _NOT_METRICS | set(grid_columns(df))
    return [c for c in df.columns if c not in skip and _is_numeric(df[c])]


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every metric, one row per cell.

    Args:
        df: A results table (:func:`run_sweep` or :func:`load_results`).

    Returns:
        ``agent``, ``cell``, the grid's fields, ``n_seeds`` (runs that finished), then ``<metric>_mean`` and
        ``<metric>_std`` per metric (``std`` is NaN with one seed). Cells keep the table's order.
    """
    import pandas as pd

    grid = grid_columns(df)
    keys = [c for c in ("agent", "cell") if c in df.columns] + grid
    metrics = metric_columns(df)
    finished = (
        ~df["status"].isin(["failed", "busy"]) if "status" in df.columns else pd.Series(True, index=df.index)
    )
    groups = df.assign(n_seeds=finished.astype(int)).groupby(keys, sort=False, dropna=False)
    summary = groups["n_seeds"].sum().reset_index()
    if metrics:
        stats = groups[metrics].agg(["mean", "std"])
        stats.columns = [f"{m}_{s}" for m, s in stats.columns]
        summary = pd.concat([summary, stats.reset_index(drop=True)], axis=1)
    summary.attrs["grid"] = grid
    return summary


def pareto_front(x: Sequence[float], y: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats on both ``x`` and ``y`` (both maximised), by ``x``.

    Args:
        x: First objective per point (e.g. source PSNR change: higher means less forgetting).
        y: Second objective per point (e.g. target good-rate).
    """
    points = [
        (float(a), float(b), i) for i, (a, b) in enumerate(zip(x, y)) if math.isfinite(a) and math.isfinite(b)
    ]
    points.sort(key=lambda p: (-p[0], -p[1]))
    front, best_y = [], -math.inf
    for _, b, i in points:
        if b > best_y:
            front.append(i)
            best_y = b
    return sorted(front, key=lambda i: float(x[i]))


def plot_sweep(df: pd.DataFrame, out: str | Path, metrics: Sequence[str] = DEFAULT_METRICS) -> list[Path]:
    """Draw the sweep's trade-off plot and one heatmap per metric (PNG files, no display needed).

    ``tradeoff.png``: each cell's mean target good-rate against its mean source PSNR change (± std over
    seeds), coloured by the first grid axis, with the Pareto front (no other cell is better on both) and
    the initial generator (a star at 0 dB). ``heatmap_<metric>.png``: the metric's mean over the grid —
    one row for a one-axis grid, rows × columns for two axes, and one panel per combination of the other
    axes beyond two (axes with a single value are left out). A heatmap with more than
    :data:`MAX_FACETS` panels is skipped with a warning.

    Args:
        df: A results table.
        out: Folder for the PNG files.
        metrics: Heatmap metrics (those missing from the table are skipped).

    Returns:
        The paths written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(df)
    grid = grid_columns(df)
    varying = [k for k in grid if summary[k].astype(str).nunique() > 1]
    paths = []
    if {"source_psnr_change_mean", "target_good_rate_after_mean"} <= set(summary.columns):
        paths.append(_plot_tradeoff(summary, df, varying or grid, out / "tradeoff.png"))
    for metric in metrics:
        if f"{metric}_mean" in summary.columns and varying:
            path = _plot_heatmap(summary, varying, metric, out / f"heatmap_{metric}.png")
            if path is not None:
                paths.append(path)
    return paths


def _plot_tradeoff(summary: pd.DataFrame, df: pd.DataFrame, axes: list[str], path: Path) -> Path:
    from matplotlib.figure import Figure  # a bare Figure: no pyplot, so the caller's backend is untouched

    x = summary["source_psnr_change_mean"].to_numpy(float)
    y = summary["target_good_rate_after_mean"].to_numpy(float)
    xerr = np.nan_to_num(summary["source_psnr_change_std"].to_numpy(float))
    yerr = np.nan_to_num(summary["target_good_rate_after_std"].to_numpy(float))
    fig = Figure(figsize=(7.5, 5.5), layout="constrained")
    ax = fig.add_subplot()
    colour_by = axes[0]
    levels = _sorted_unique(summary[colour_by])
    palette = _palette(len(levels))
    for level, colour in zip(levels, palette):
        mask = (summary[colour_by].astype(str) == str(level)).to_numpy()
        label = f"{colour_by}={_label(level)}"
        ax.errorbar(
            x[mask],
            y[mask],
            xerr=xerr[mask],
            yerr=yerr[mask],
            fmt="o",
            color=colour,
            label=label,
            elinewidth=0.8,
            alpha=0.8,
        )
    front = pareto_front(x, y)
    if front:
        # the edge of what the front dominates: between two front points it is the lower one's good-rate
        ax.step(x[front], y[front], where="pre", color="black", lw=1.0, ls="--", zorder=1)
        ax.plot(x[front], y[front], "o", ms=13, mfc="none", mec="black", label="Pareto front")
    if "target_good_rate_before" in df.columns and df["target_good_rate_before"].notna().any():
        before = df["target_good_rate_before"].mean()
        ax.plot(0.0, before, marker="*", ms=14, color="grey", ls="none", label="initial generator")
    # name the front's cells (every cell when there are few): those are the settings worth reading off
    named = range(len(summary)) if len(summary) <= 8 else front
    rows = summary.reset_index(drop=True)
    lo, hi = ax.get_xlim()
    for n, i in enumerate(named):
        if math.isfinite(x[i]) and math.isfinite(y[i]):
            text = " ".join(f"{k}={_label(rows.loc[i, k])}" for k in axes)
            left = x[i] > lo + 0.6 * (hi - lo)  # labels of points near the right edge go to their left
            dy = 5 if n % 2 == 0 else -11  # alternate, so that neighbours' labels do not overlap
            note = ax.annotate(
                text,
                (x[i], y[i]),
                textcoords="offset points",
                xytext=(-6 if left else 6, dy),
                ha="right" if left else "left",
                fontsize=7,
            )
            note.set_in_layout(False)  # long labels must not squeeze the axes
    n_seeds = int(summary["n_seeds"].max()) if len(summary) else 0
    agent = str(df["agent"].iloc[0]) if "agent" in df.columns and len(df) else ""
    ax.set_title(f"{agent}: {len(summary)} cells × {n_seeds} seeds (mean ± std)")
    ax.set_xlabel("source PSNR change (dB; higher = less forgetting)")
    ax.set_ylabel("target good-rate (evaluator)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.savefig(path, dpi=120)
    return path


def _plot_heatmap(summary: pd.DataFrame, axes: list[str], metric: str, path: Path) -> Path | None:
    from matplotlib.figure import Figure

    column = f"{metric}_mean"
    row_key, col_key = (None, axes[0]) if len(axes) == 1 else (axes[0], axes[1])
    facet_keys = axes[2:]
    facets = list(itertools.product(*(_sorted_unique(summary[k]) for k in facet_keys)))
    if len(facets) > MAX_FACETS:
        warnings.warn(
            f"heatmap of {metric} skipped: {len(facets)} panels (more than {MAX_FACETS}); plot it from the "
            "results table",
            stacklevel=3,
        )
        return None
    row_levels = _sorted_unique(summary[row_key]) if row_key else [None]
    col_levels = _sorted_unique(summary[col_key])
    values = summary[column].to_numpy(float)
    finite = values[np.isfinite(values)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    ncols = min(len(facets), 4)
    nrows = math.ceil(len(facets) / ncols)
    width = max(3.0, 0.9 * len(col_levels) + 1.8)
    height = max(1.6, 0.6 * len(row_levels) + 1.2)
    fig = Figure(figsize=(width * ncols + 1.0, height * nrows + 0.6), layout="constrained")
    axs = fig.subplots(nrows, ncols, squeeze=False)
    image = None
    for ax, facet in zip(axs.flat, facets):
        mask = np.ones(len(summary), dtype=bool)
        for key, level in zip(facet_keys, facet):
            mask &= (summary[key].astype(str) == str(level)).to_numpy()
        sub = summary[mask]
        matrix = np.full((len(row_levels), len(col_levels)), np.nan)  # (rows, cols)
        for _, row in sub.iterrows():
            i = row_levels.index(_find(row_levels, row[row_key])) if row_key else 0
            j = col_levels.index(_find(col_levels, row[col_key]))
            matrix[i, j] = row[column]
        image = ax.imshow(matrix, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
        for (i, j), v in np.ndenumerate(matrix):
            if np.isfinite(v):
                light = (v - vmin) / (vmax - vmin or 1.0) < 0.6
                ax.text(
                    j,
                    i,
                    f"{v:.3g}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if light else "black",
                )
        ax.set_xticks(range(len(col_levels)), [_label(v) for v in col_levels])
        ax.set_xlabel(col_key)
        if row_key:
            ax.set_yticks(range(len(row_levels)), [_label(v) for v in row_levels])
            ax.set_ylabel(row_key)
        else:
            ax.set_yticks([])
        if facet_keys:
            ax.set_title(", ".join(f"{k}={_label(v)}" for k, v in zip(facet_keys, facet)), fontsize=9)
    for ax in list(axs.flat)[len(facets) :]:
        ax.set_axis_off()
    if image is not None:
        fig.colorbar(image, ax=axs, shrink=0.9, label=metric)
    fig.suptitle(f"{metric} (mean over seeds)")
    fig.savefig(path, dpi=120)
    return path


# -- helpers -----------------------------------------------------------------------------------------------


def _field_hint(cls: type, name: str) -> Any:
    hints = field_types(cls)
    if name not in hints:
        raise ConfigError(
            f"{name!r} is not a setting of {cls.__name__}; settings: {', '.join(sorted(hints))}"
        )
    hint = hints[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if type(None) in typing.get_args(hint) and len(args) == 1:
        return args[0]
    return hint


def _typed(cls: type, name: str, value: Any) -> Any:
    """A grid or base value as the field's type (strings parsed, ints widened to float)."""
    hint = _field_hint(cls, name)
    if isinstance(value, str):
        return coerce_field(cls, name, value)
    if hint is float and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, np.generic):
        return value.item()
    if typing.get_origin(hint) is tuple and value is not None:
        from hfrl.data import parse_classes

        return parse_classes(value)
    return value


def _check_reward(trainer: type[Trainer], spec: Any, reward_object: Any) -> None:
    if reward_object is not None:
        return
    if spec is None:
        if trainer.needs_reward:
            raise ConfigError(
                f"agent {trainer.name!r} needs a reward: a reward-model checkpoint path or 'labeler' (--reward)"
            )
        return
    if spec != "labeler":
        from hfrl.checkpoint import checkpoint_paths

        if not checkpoint_paths(spec)[1].is_file():
            raise ConfigError(f"reward {spec!r}: no such reward-model checkpoint (or use 'labeler')")


def _describe_reward(reward: Any) -> str | None:
    if reward is None or isinstance(reward, (str, os.PathLike)):
        return None if reward is None else str(reward)
    return f"<{type(reward).__name__} object>"


def _seeds(seeds: int | Sequence[int], first: int) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ConfigError(f"seeds must be at least 1, got {seeds}")
        return [first + i for i in range(int(seeds))]
    values = [int(s) for s in seeds]
    if not values or len(set(values)) != len(values):
        raise ConfigError(f"seeds must be a count or distinct integers, got {list(seeds)!r}")
    return values


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


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else to_jsonable(value)


def _cell_name(values: Mapping[str, Any]) -> str:
    text = "_".join(f"{k}={_label(v)}" for k, v in values.items())
    name = re.sub(r"[^A-Za-z0-9._=+-]+", "+", text.replace(",", "+"))
    if len(name) > 120:
        name = f"{name[:100]}_{_digest(values)}"
    return name


def _digest(values: Mapping[str, Any]) -> str:
    return hashlib.sha1(json.dumps(to_jsonable(dict(values)), sort_keys=True).encode()).hexdigest()[:8]


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


def _check_existing(task: CellTask) -> None:
    """Refuse to reuse a run directory whose saved config is not this task's (bookkeeping aside)."""
    saved_path = Path(task.run_dir) / "config.json"
    if not saved_path.is_file():
        return
    try:
        saved = json.loads(saved_path.read_text())
    except (OSError, ValueError):
        return  # unreadable: the run never finished writing it, so it is started again
    if not isinstance(saved, dict):
        return
    agent = saved.pop("agent", None)
    expected = json.loads(json.dumps(to_jsonable({k: data_record(v) for k, v in task.config.items()})))
    diffs = [
        f"{k}: {saved.get(k)!r} there, {expected.get(k)!r} now"
        for k in sorted(set(saved) | set(expected))
        if k not in IGNORED_ON_RESUME and saved.get(k) != expected.get(k)
    ]
    if agent != task.trainer.name:
        diffs.insert(0, f"agent: {agent!r} there, {task.trainer.name!r} now")
    if diffs:
        raise ConfigError(
            f"{task.run_dir} was run with other settings ({'; '.join(diffs[:3])}); use another out folder "
            "or delete that run"
        )


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


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _order_columns(df: pd.DataFrame, grid: list[str]) -> pd.DataFrame:
    head = ["agent", "cell", *grid, "seed"]
    tail = [c for c in ("status", "error", "run_dir") if c in df.columns]
    middle = [c for c in df.columns if c not in head and c not in tail]
    return df[head + middle + tail]


def _is_numeric(series: pd.Series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series)) and not pd.api.types.is_bool_dtype(series)


def _sorted_unique(series: pd.Series) -> list[Any]:
    values = list(dict.fromkeys(series.tolist()))
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def _find(levels: list[Any], value: Any) -> Any:
    for level in levels:
        if str(level) == str(value):
            return level
    raise KeyError(value)


def _palette(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "viridis"]
    return [cmap(i if n <= 10 else i / max(n - 1, 1)) for i in range(n)]


__all__ = [
    "BACKENDS",
    "DEFAULT_METRICS",
    "CellLock",
    "CellTask",
    "exit_with_parent",
    "grid_columns",
    "load_results",
    "make_row",
    "metric_columns",
    "normalise_grid",
    "pareto_front",
    "parse_grid",
    "plan_sweep",
    "plot_sweep",
    "run_cell",
    "run_sweep",
    "summarise",
    "write_results",
]
