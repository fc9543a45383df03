r"""Journey 3: how the three regularisers trade target improvement against source forgetting.

Fine-tuning against a reward improves the target digits; the penalties of hfrl's objective — ``kl`` (KL to
the pretrained policy), ``aux`` (supervised denoising of source digits) and ``consistency`` (MSE to the
initial generator's output) — hold the generator near where it started, which costs some target gain and
keeps its source skill. This script sweeps the three weights with :func:`hfrl.experiments.sweep.run_sweep`,
loads the results as a pandas DataFrame, prints the per-cell summary and the Pareto front, and plots
target good-rate against source PSNR change, one panel per consistency weight.

Full run (rwl: 3 x 2 x 2 cells x 3 seeds of 200 steps, about 10-20 minutes on 2 CPU cores; rerun the same
command to resume: finished runs are skipped)::

    python scripts/examples/sweep_tradeoff.py --agent rwl --reward runs/reward/model --steps 200 --seeds 3 \
        --out runs/sweep-tradeoff

``--reward labeler`` (the default) uses the oracle, which sees the clean images, instead of a reward model
trained from labels (``hfrl reward train``). With Ray installed (``pip install 'hfrl[ray]'``) the runs go
to Ray (a local one, or the cluster in ``RAY_ADDRESS``); ``--backend local`` keeps them in a process pool.
The same sweep from the command line::

    hfrl sweep --agent rwl --grid kl=0,0.1,1 aux=0,1 consistency=0,10 --seeds 3 --reward runs/reward/model \
        --set steps=200 --out runs/sweep-tradeoff

Tiny smoke run (what the tests run)::

    python scripts/examples/sweep_tradeoff.py --quick --steps 2 --backend local --workers 1 --out /tmp/sweep-quick
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: this script may run on a machine without a display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from hfrl.experiments.sweep import load_results, pareto_front, run_sweep, summarise  # noqa: E402

GRID = {"kl": [0.0, 0.1, 1.0], "aux": [0.0, 1.0], "consistency": [0.0, 10.0]}
"""The full grid: 12 cells."""
QUICK_GRID = {"kl": [0.0, 0.1], "aux": [1.0], "consistency": [0.0, 10.0]}
"""The smoke-test grid: 4 cells."""
QUICK_BUDGET = {"batch_size": 8, "aux_batch_size": 4, "checkpoint_every": 0}
"""Tiny batches for ``--quick`` (plus a 16-sample dataset for ``rwl``)."""


def plot_tradeoff(summary: pd.DataFrame, path: Path) -> Path:
    """Target good-rate against source PSNR change, one panel per consistency weight, colour = kl."""
    panels = sorted(summary["consistency"].unique())
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.2), sharex=True, sharey=True)
    axes = [axes] if len(panels) == 1 else list(axes)
    kls = sorted(summary["kl"].unique())
    colours = plt.cm.viridis([i / max(len(kls) - 1, 1) for i in range(len(kls))])
    markers = dict(zip(sorted(summary["aux"].unique()), "osD^v"))
    for ax, consistency in zip(axes, panels):
        part = summary[summary["consistency"] == consistency]
        for _, row in part.iterrows():
            ax.errorbar(
                row["source_psnr_change_mean"],
                row["target_good_rate_after_mean"],
                xerr=row["source_psnr_change_std"] if pd.notna(row["source_psnr_change_std"]) else None,
                yerr=row["target_good_rate_after_std"]
                if pd.notna(row["target_good_rate_after_std"])
                else None,
                fmt=markers[row["aux"]],
                color=colours[kls.index(row["kl"])],
                label=f"kl={row['kl']:g}, aux={row['aux']:g}",
            )
        ax.axhline(summary["target_good_rate_before_mean"].mean(), color="grey", ls=":", label="before")
        ax.set_title(f"consistency = {consistency:g}")
        ax.set_xlabel("source PSNR change (dB)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("target good-rate")
    axes[-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agent", default="rwl", help="agent to sweep (default: %(default)s)")
    p.add_argument("--reward", default="labeler", help="reward-model checkpoint or 'labeler' (default)")
    p.add_argument("--steps", type=int, default=200, help="updates per run (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per cell (default: %(default)s)")
    p.add_argument("--out", default="runs/sweep-tradeoff", help="sweep folder (default: %(default)s)")
    p.add_argument(
        "--backend", choices=("auto", "local", "ray"), default="auto", help="auto: Ray if installed"
    )
    p.add_argument("--workers", type=int, default=None, help="runs at a time (default: one per core)")
    p.add_argument("--device", default="cpu", help="device of every run (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="a 4-cell grid, one seed and tiny batches")
    args = p.parse_args(argv)

    grid = QUICK_GRID if args.quick else GRID
    base = {"steps": args.steps, "device": args.device}
    if args.quick:
        base.update(QUICK_BUDGET)
        if args.agent == "rwl":
            base.update(dataset_size=16, round_steps=1)
    backend = args.backend
    if backend == "auto":
        backend = "ray" if importlib.util.find_spec("ray") else "local"
    seeds = 1 if args.quick else args.seeds

    run_sweep(
        args.agent,
        grid,
        seeds=seeds,
        base=base,
        reward=args.reward,
        out=args.out,
        backend=backend,
        workers=args.workers,
    )

    # Any later session (a notebook, say) reads the same table back from the folder.
    df = load_results(args.out)
    summary = summarise(df)
    front = pareto_front(summary["source_psnr_change_mean"], summary["target_good_rate_after_mean"])
    columns = [
        "kl",
        "aux",
        "consistency",
        "n_seeds",
        "target_good_rate_after_mean",
        "source_psnr_change_mean",
    ]
    print(summary[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))

    print("\nPareto front (no other cell is better on both target good-rate and source PSNR):")
    for i in front:
        row = summary.iloc[i]
        print(
            f"  kl={row['kl']:g} aux={row['aux']:g} consistency={row['consistency']:g}: target good-rate "
            f"{row['target_good_rate_after_mean']:.1%}, source PSNR {row['source_psnr_change_mean']:+.2f} dB"
        )
    path = plot_tradeoff(summary, Path(args.out) / "tradeoff_by_consistency.png")
    print(
        f"\nplots: {path} and {Path(args.out) / 'tradeoff.png'}; table: {Path(args.out) / 'results.parquet'}"
    )
    return df


if __name__ == "__main__":  # the guard matters: worker processes re-import this file
    main()
