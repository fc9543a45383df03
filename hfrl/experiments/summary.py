"""Sweep results: the results table on disk, its summary over seeds, the Pareto front and the plots."""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hfrl.errors import ConfigError
from hfrl.experiments.cells import _label

if TYPE_CHECKING:
    import pandas as pd


DEFAULT_METRICS: tuple[str, ...] = ("target_good_rate_after", "source_psnr_change", "target_psnr_gain_mean")
"""Metrics :func:`plot_sweep` draws a heatmap of, and the CLI's summary shows."""

MAX_FACETS = 16
"""Heatmaps over grids of more than two axes get one panel per combination of the other axes, at most this
many (more would be unreadable; the heatmap is then skipped with a warning)."""

_NOT_METRICS = frozenset({"agent", "cell", "seed", "status", "run_dir", "error"})


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
    "DEFAULT_METRICS",
    "MAX_FACETS",
    "grid_columns",
    "load_results",
    "metric_columns",
    "pareto_front",
    "plot_sweep",
    "summarise",
    "write_results",
]
