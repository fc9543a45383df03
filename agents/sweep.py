"""Sweeps moved to :mod:`hfrl.experiments.sweep`; this module re-exports them for old imports."""

from __future__ import annotations

from hfrl.experiments.sweep import (
    BACKENDS,
    DEFAULT_METRICS,
    Backend,
    CellLock,
    CellTask,
    exit_with_parent,
    grid_columns,
    load_results,
    make_row,
    metric_columns,
    normalise_grid,
    pareto_front,
    parse_grid,
    plan_sweep,
    plot_sweep,
    run_cell,
    run_sweep,
    summarise,
    write_results,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_METRICS",
    "Backend",
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
