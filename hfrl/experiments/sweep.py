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

    from hfrl.experiments.sweep import run_sweep

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

import hashlib
import itertools
import json
import os
import re
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from hfrl.agents.base import Trainer
from hfrl.agents.config import (
    DATA_FIELDS,
    TrainerConfig,
    config_values,
    with_images,
)
from hfrl.agents.registry import agent_class
from hfrl.data import data_record
from hfrl.errors import ConfigError
from hfrl.experiments.cells import CellLock, CellTask, _label, _read_final, make_row, run_cell
from hfrl.experiments.pool import _cpu_count, _run_inline, _run_pool, _run_ray, exit_with_parent
from hfrl.experiments.summary import (
    DEFAULT_METRICS,
    grid_columns,
    load_results,
    metric_columns,
    pareto_front,
    plot_sweep,
    summarise,
    write_results,
)
from hfrl.fields import base_type, field_types, read_field
from hfrl.plugins import import_user_code
from hfrl.runs import make_run_dir, to_jsonable, write_json

if TYPE_CHECKING:
    import pandas as pd


Backend = Literal["local", "ray"]

BACKENDS: tuple[str, ...] = ("local", "ray")

IGNORED_ON_RESUME = frozenset({"progress", "device", "checkpoint_every", "eval_every", "eval_size"})
"""Config fields that may differ between a finished run and a rerun of its cell: bookkeeping only."""


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
        hint = field_types(cls).get(name)
        tuple_field = hint is not None and typing.get_origin(base_type(hint)[0]) is tuple
        texts = [t.strip() for t in text.split(";" if tuple_field else ",")]
        if any(not t for t in texts):
            raise ConfigError(f"grid axis {spec!r} has an empty value")
        if name in grid:
            raise ConfigError(f"grid axis {name!r} is given twice")
        grid[name] = [read_field(cls, name, t) for t in texts]
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
        typed = [read_field(cls, name, v) for v in values]
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
    fixed = {k: read_field(cls, k, v) for k, v in (base or {}).items()}
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


def _order_columns(df: pd.DataFrame, grid: list[str]) -> pd.DataFrame:
    head = ["agent", "cell", *grid, "seed"]
    tail = [c for c in ("status", "error", "run_dir") if c in df.columns]
    middle = [c for c in df.columns if c not in head and c not in tail]
    return df[head + middle + tail]


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
