"""Where sweep cells run: in this process, in a local process pool, or on a Ray cluster.

Every backend runs :func:`~hfrl.experiments.cells.run_cell`, so their results are the same. Worker
processes end when the sweep process dies (:func:`exit_with_parent`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from hfrl.errors import ConfigError
from hfrl.experiments.cells import CellTask, run_cell
from hfrl.plugins import USER_PREFIX, import_user_code
from hfrl.runs import to_jsonable

if TYPE_CHECKING:
    pass


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


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


__all__ = [
    "exit_with_parent",
]
