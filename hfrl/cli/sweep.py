"""``hfrl sweep``: run an agent over a grid of config values and seeds, resumably, and plot the trade-off."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from hfrl.cli.common import add_import, non_negative_int, positive_int
from hfrl.cli.finetune import AGENT_NAMES
from hfrl.device import DEVICE_CHOICES
from hfrl.errors import ConfigError
from hfrl.plugins import import_user_code

SUMMARY_METRICS = (
    ("target_good_rate_after", "target good-rate"),
    ("source_psnr_change", "source dPSNR"),
    ("target_psnr_gain_mean", "target PSNR gain"),
)
"""Columns of the summary table the command prints: ``(metric, heading)``."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``hfrl sweep``."""
    p = sub.add_parser(
        "sweep",
        help="run an agent over a grid of settings (kl, aux, consistency, ...) and seeds",
        description="Fine-tune once per grid cell and seed, then write results.csv / results.parquet (one "
        "row per run), summary.csv (mean and std over seeds), tradeoff.png (target good-rate against "
        "source PSNR change, with the Pareto front) and heatmap_*.png. Rerun with the same --out to "
        "resume: finished runs are not run again, and runs another live sweep is writing are left alone "
        "(reported as busy). Killing the sweep stops its workers.",
        epilog="example: hfrl sweep --agent rwl --grid kl=0,0.01,0.1,1 aux=0,0.1,1 --seeds 3 "
        "--reward runs/reward/model --out runs/sweep-rwl",
    )
    p.add_argument(
        "--agent",
        required=True,
        metavar="NAME",
        help=f"the agent: {', '.join(AGENT_NAMES)}, or one registered by --import",
    )
    p.add_argument(
        "--grid",
        nargs="+",
        action="extend",
        required=True,
        metavar="FIELD=V1,V2",
        help="grid axes: a config field and its values, comma-separated (class tuples: ';'-separated, "
        "e.g. target_classes='1-9;1,7')",
    )
    p.add_argument("--seeds", type=positive_int, default=1, help="seeds per cell (default: %(default)s)")
    p.add_argument("--seed", type=non_negative_int, default=None, help="first seed (default: the agent's, 0)")
    p.add_argument(
        "--out", default=None, help="sweep folder; reuse it to resume (default: runs/sweep-AGENT-TIMESTAMP)"
    )
    p.add_argument(
        "--reward",
        default=None,
        metavar="PATH|labeler",
        help="reward-model checkpoint for every run, or 'labeler' (the oracle that sees clean images)",
    )
    p.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local process pool, or a Ray cluster (pip install 'hfrl[ray]'; RAY_ADDRESS picks the "
        "cluster) (default: %(default)s)",
    )
    p.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="runs at a time (default: one per CPU core; 1 runs them in this process)",
    )
    p.add_argument(
        "--set",
        dest="fixed",
        nargs="+",
        action="extend",
        default=[],
        metavar="FIELD=VALUE",
        help="a fixed config value for every run, e.g. --set steps=300 lr=1e-4",
    )
    p.add_argument("--device", choices=DEVICE_CHOICES, default=None, help="where to compute (default: auto)")
    p.add_argument("--no-plots", action="store_true", help="write the tables only")
    p.add_argument("--dry-run", action="store_true", help="list the runs and which are finished; run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_import(p)
    p.set_defaults(func=run)


def parse_fixed(items: list[str]) -> dict[str, str]:
    """``["steps=300", "lr=1e-4"]`` -> ``{"steps": "300", "lr": "1e-4"}`` (typed later, per agent)."""
    fixed: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise ConfigError(f"--set {item!r} is not FIELD=VALUE")
        if name in fixed:
            raise ConfigError(f"--set {name} is given twice")
        fixed[name] = value.strip()
    return fixed


def run(args: argparse.Namespace) -> int:
    """Plan the sweep, run what is not finished, print the summary and the files written."""
    from hfrl.experiments.sweep import parse_grid, plan_sweep, run_sweep, summarise

    for spec in args.imports:
        import_user_code(spec)
    grid = parse_grid(args.agent, args.grid)
    base: dict[str, Any] = parse_fixed(args.fixed)
    for name in ("seed", "device"):
        value = getattr(args, name)
        if value is not None:
            if name in base:
                raise ConfigError(f"--{name} and --set {name}=... both given")
            base[name] = value
    if args.dry_run:
        out = Path(args.out) if args.out else Path("runs") / f"sweep-{args.agent}-TIMESTAMP"
        tasks = plan_sweep(args.agent, grid, seeds=args.seeds, base=base, reward=args.reward, out=out)
        for task in tasks:
            print(f"{'finished' if task.finished else 'to run  '}  {task.run_dir}")
        done = sum(t.finished for t in tasks)
        print(f"{len(tasks)} runs ({len(tasks) // args.seeds} cells x {args.seeds} seeds), {done} finished")
        return 0
    df = run_sweep(
        args.agent,
        grid,
        seeds=args.seeds,
        base=base,
        reward=args.reward,
        out=args.out,
        backend=args.backend,
        workers=args.workers,
        progress=not args.quiet,
        plots=not args.no_plots,
        imports=args.imports,
    )
    print(format_summary(summarise(df), list(grid)))
    counts = df["status"].value_counts().to_dict()
    print(", ".join(f"{n} {status}" for status, n in counts.items()) + f" (of {len(df)} runs)")
    failed = df[df["status"].isin(["failed", "busy"])]
    for _, row in failed.iterrows():
        print(f"{row['status']}: {row['run_dir']}: {row['error']}")
    print("wrote:")
    for path in df.attrs["files"]:
        print(f"  {path}")
    return 1 if len(failed) else 0


def format_summary(summary: Any, grid: list[str]) -> str:
    """The per-cell summary as an aligned table: grid values, seeds, ``mean ± std`` of headline metrics."""
    from hfrl.evaluation import format_table

    def mean_std(mean: float, std: float) -> str:
        if not math.isfinite(mean):
            return "failed"
        return f"{mean:.3f}" if not math.isfinite(std) else f"{mean:.3f} ± {std:.3f}"

    rows = []
    for _, row in summary.iterrows():
        line: dict[str, Any] = {k: str(row[k]) for k in grid}
        line["seeds"] = str(int(row["n_seeds"]))
        for metric, heading in SUMMARY_METRICS:
            if f"{metric}_mean" in summary.columns:
                line[heading] = mean_std(float(row[f"{metric}_mean"]), float(row[f"{metric}_std"]))
        rows.append(line)
    return format_table(rows)
