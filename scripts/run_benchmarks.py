"""Run every benchmark in ``scripts/bench_*.py`` (what ``make bench`` runs).

Each benchmark is a standalone script with a ``main(argv)`` that prints a markdown table and writes it to
``bench-results/NAME.md``. This runner calls them one after another in fresh processes (so one
benchmark's threads, caches and imports cannot skew the next), then collects their tables into
``bench-results/README.md`` with the machine they ran on.

Usage::

    python scripts/run_benchmarks.py            # all of them
    python scripts/run_benchmarks.py env reward  # only bench_env.py and bench_reward.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from hfrl.device import machine_description

SCRIPTS = Path(__file__).resolve().parent
RESULTS = Path("bench-results")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run (bench_NAME.py); default: all")
    args = parser.parse_args(argv)
    available = sorted(p.stem[len("bench_") :] for p in SCRIPTS.glob("bench_*.py"))
    names = args.names or available
    unknown = sorted(set(names) - set(available))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(available)}")
    RESULTS.mkdir(exist_ok=True)
    failed = []
    for name in names:
        print(f"== bench_{name}.py", flush=True)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, str(SCRIPTS / f"bench_{name}.py")], check=False)
        print(f"== bench_{name}.py finished in {time.perf_counter() - start:.0f} s (exit {proc.returncode})")
        if proc.returncode != 0:
            failed.append(name)
    parts = [f"# Benchmark results\n\nMachine: {machine_description()}\n"]
    for name in available:
        table = RESULTS / f"{name}.md"
        if table.exists():
            parts.append(f"## {name}\n\n{table.read_text().strip()}\n")
    (RESULTS / "README.md").write_text("\n".join(parts))
    print(f"wrote {RESULTS / 'README.md'}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
