"""The whole demo's wall time, stage by stage: ``hfrl demo`` as a user runs it, several times.

Each run is a fresh process (imports and start-up count, as they do for a user) running ``hfrl demo`` with
its defaults into its own folder. The demo records the wall and CPU seconds of each stage in
``metrics.json``; the table gives the median over runs, with the slowest run beside it, and the evaluator's
target good-rate before and after (the same seed each run, so the same numbers: a check that timing runs do
not change results).

Usage::

    python scripts/bench_demo.py [--runs 3] [--out bench-results/demo.md] [--quick]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hfrl.device import machine_description

QUICK = [
    "--labels", "16", "--rounds", "2", "--pool", "120", "--candidates", "60", "--denoiser-steps", "5",
    "--reward-steps", "10", "--finetune-steps", "4", "--batch-size", "16", "--eval-every", "2", "--eval-size", "20",
]  # fmt: skip
"""Tiny demo settings (for tests)."""


def run_once(out: Path, quick: bool) -> dict:
    """One ``hfrl demo`` in a fresh process; its ``metrics.json`` plus the process's wall seconds."""
    shutil.rmtree(out, ignore_errors=True)
    argv = [sys.executable, "-c", "import sys; from hfrl.cli import main; sys.exit(main())", "demo"]
    argv += ["--out", str(out), "--no-progress", "--device", "cpu", *(QUICK if quick else [])]
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"hfrl demo failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"process_seconds": wall, **metrics}


def report(runs: list[dict], machine: str, quick: bool) -> str:
    """The Markdown table."""
    stages = list(runs[0]["stages_seconds"])
    lines = [
        "# The demo's wall time (`hfrl demo`, default settings)"
        if not quick
        else "# The demo (quick settings)",
        "",
        f"{len(runs)} runs, each a fresh process; median and slowest run. Machine: {machine}.",
        "",
        "| stage | wall s (median) | wall s (slowest) | CPU s (median) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for stage in stages:
        wall = [r["stages_seconds"][stage] for r in runs]
        cpu = [r.get("stages_cpu_seconds", {}).get(stage, float("nan")) for r in runs]
        lines.append(f"| {stage} | {np.median(wall):.1f} | {max(wall):.1f} | {np.median(cpu):.1f} |")
    totals = [sum(r["stages_seconds"].values()) for r in runs]
    process = [r["process_seconds"] for r in runs]
    cpu_totals = [sum(r.get("stages_cpu_seconds", {}).values()) for r in runs]
    lines.append(
        f"| all stages | {np.median(totals):.1f} | {max(totals):.1f} | {np.median(cpu_totals):.1f} |"
    )
    lines.append(
        f"| whole process (start-up and imports too) | {np.median(process):.1f} | {max(process):.1f} | |"
    )
    before = {round(r["metrics"]["target"]["good_rate"]["before"], 4) for r in runs}
    after = {round(r["metrics"]["target"]["good_rate"]["after"], 4) for r in runs}
    lines += [
        "",
        f"Target good-rate (evaluator): {', '.join(f'{b:.1%}' for b in sorted(before))} -> "
        f"{', '.join(f'{a:.1%}' for a in sorted(after))} "
        f"({'the same in every run' if len(after) == 1 else 'differs between runs'}). "
        f"Goal: the whole demo in at most 3 minutes on a 2-core CPU "
        f"({'met' if np.median(process) <= 180 else 'not met'} by the median run).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    """Run the demo ``--runs`` times; print and write the table; returns its text."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="demo runs (default: %(default)s)")
    parser.add_argument("--out", default="bench-results/demo.md")
    parser.add_argument("--quick", action="store_true", help="tiny demo settings (for tests)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = out.with_name(out.stem + "-runs")
    runs = []
    for i in range(args.runs):
        runs.append(run_once(scratch / f"run{i}", args.quick))
        print(f"run {i + 1}/{args.runs}: {runs[-1]['process_seconds']:.1f} s", flush=True)
    torch.set_num_threads(runs[0]["config"]["threads"])  # describe the machine as the demo used it
    text = report(runs, machine_description(), args.quick)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(runs, indent=2))
    print(text)
    return text


if __name__ == "__main__":
    main()
