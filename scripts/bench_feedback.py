"""Load benchmark of the labelling server over loopback.

N simulated labelers (threads, one HTTP client each) fetch a page with ``GET /api/next`` and submit it
with ``POST /api/labels``. The server is the real ``hfrl label serve`` in its own process; a trainer
thread keeps the queue topped up through :class:`~hfrl.feedback.FeedbackQueue`, as an online run would.
Two scenarios run one after the other on the same server:

* **paced**: each labeler submits a page of 16 labels every ``--interval`` seconds (default 0.5, with
  jitter): 32 labels a second per labeler, far faster than any person, so the server is never idle.
* **saturated**: no pause at all (capacity; latency then is mostly queueing behind the other labelers).

Afterwards the server is stopped and every acknowledged label id is looked up in the database. Reports
p50/p90/p99/max latency of a submit (and of fetching a page), labels acknowledged, labels in the database,
and lost labels (acknowledged but missing). Goal: submit p99 < 50 ms (paced), 0 lost.

    python scripts/bench_feedback.py                 # 10 labelers, 30 s paced + 10 s saturated
    python scripts/bench_feedback.py --seconds 2 --saturate-seconds 1 --labelers 3 --out /tmp/fb.md
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import torch

from hfrl.data import load_embedded_mnist
from hfrl.device import cpu_name
from hfrl.feedback import FeedbackQueue, FeedbackStore

REPO = Path(__file__).resolve().parents[1]
# `hfrl label serve`, registering only the `label` subcommand (the full CLI imports every other subcommand's
# training stack first, which only slows the start).
CLI = [
    sys.executable,
    "-c",
    "import sys; from hfrl.cli import OneLineArgumentParser, label; "
    "p = OneLineArgumentParser(prog='hfrl'); "
    "label.add_parser(p.add_subparsers(dest='command', parser_class=OneLineArgumentParser)); "
    "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))",
]


@dataclass
class LabelerStats:
    """What one labeler saw: latencies in ms, acknowledged ``{label id: (item id, value)}``, errors."""

    submit_ms: list[float] = field(default_factory=list)
    next_ms: list[float] = field(default_factory=list)
    acked: dict[int, tuple[int, str]] = field(default_factory=dict)
    errors: int = 0
    empty_pages: int = 0


def start_server(db: Path, timeout: float = 120.0) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [*CLI, "label", "serve", "--db", str(db), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            break
        lines.append(line)
        match = re.search(r"(http://\S+)", line)
        if match:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
            return proc, match.group(1).rstrip("/")
    proc.kill()
    raise RuntimeError("the server did not start:\n" + "".join(lines))


def labeler_loop(
    url: str, name: str, seed: int, page: int, interval: float, stop: threading.Event, stats: LabelerStats
) -> None:
    """Fetch a page, label it, submit it; then wait out the rest of ``interval`` (jittered)."""
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=30) as client:
        # The server issues each labeler a session; its token says who submits (X-Hfrl-Session).
        client.headers["X-Hfrl-Session"] = client.post("/api/session", json={"labeler": name}).json()[
            "session"
        ]
        if interval:
            stop.wait(rng.uniform(0, interval))  # labelers do not start in lockstep
        while not stop.is_set():
            started = time.perf_counter()
            try:
                batch = client.get("/api/next", params={"limit": page}).json()
                stats.next_ms.append((time.perf_counter() - started) * 1000)
                if not batch["items"]:
                    stats.empty_pages += 1
                    stop.wait(0.05)
                    continue
                labels = [
                    {"item_id": it["id"], "value": rng.choice(("good", "bad", "skip"))}
                    for it in batch["items"]
                ]
                t0 = time.perf_counter()
                r = client.post("/api/labels", json={"labels": labels})
                elapsed = (time.perf_counter() - t0) * 1000
            except httpx.HTTPError:
                stats.errors += 1
                continue
            if r.status_code != 200:
                stats.errors += 1
                continue
            stats.submit_ms.append(elapsed)
            for label_id, sent in zip(r.json()["label_ids"], labels):
                stats.acked[label_id] = (sent["item_id"], sent["value"])
            if interval:
                stop.wait(max(0.0, rng.uniform(0.5, 1.5) * interval - (time.perf_counter() - started)))


def trainer_loop(
    queue: FeedbackQueue, images: torch.Tensor, stop: threading.Event, low: int, chunk: int
) -> int:
    """Keep at least ``low`` items pending, enqueueing ``chunk`` at a time; returns queries enqueued."""
    rng = np.random.default_rng(0)
    g = torch.Generator().manual_seed(0)
    n = 0
    while not stop.is_set():
        if queue.store.progress().pending_items < low:
            idx = torch.from_numpy(rng.integers(0, len(images), chunk))
            clean = images[idx]
            noisy = (clean + 0.3 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
            queue.enqueue(noisy, (0.8 * clean + 0.1).clamp(0, 1), round=n)
            n += 1
        stop.wait(0.2)
    return n


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def load(
    url: str, name: str, seconds: float, labelers: int, page: int, interval: float
) -> list[LabelerStats]:
    stop = threading.Event()
    stats = [LabelerStats() for _ in range(labelers)]
    threads = [
        threading.Thread(target=labeler_loop, args=(url, f"{name}-{k}", k, page, interval, stop, stats[k]))
        for k in range(labelers)
    ]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(60)
    return stats


def summarise(
    name: str, stats: list[LabelerStats], seconds: float, stored: dict[int, tuple[int, str]]
) -> dict:
    acked = {k: v for s in stats for k, v in s.acked.items()}
    submit = [x for s in stats for x in s.submit_ms]
    fetch = [x for s in stats for x in s.next_ms]
    return {
        "name": name,
        "seconds": seconds,
        "submits": len(submit),
        "acked": len(acked),
        "stored": sum(1 for k in acked if k in stored),
        "lost": sum(1 for k, v in acked.items() if stored.get(k) != v),
        "errors": sum(s.errors for s in stats),
        "labels_per_s": len(acked) / seconds,
        "submit_p50": percentile(submit, 50),
        "submit_p90": percentile(submit, 90),
        "submit_p99": percentile(submit, 99),
        "submit_max": max(submit, default=float("nan")),
        "next_p50": percentile(fetch, 50),
        "next_p99": percentile(fetch, 99),
    }


def run(seconds: float, saturate_seconds: float, labelers: int, page: int, interval: float, db: Path) -> dict:
    images = load_embedded_mnist().images
    queue = FeedbackQueue(FeedbackStore(db))
    low = max(4 * labelers * page, 256)
    trainer_stop = threading.Event()
    trainer = threading.Thread(
        target=trainer_loop, args=(queue, images, trainer_stop, low, 2 * low), daemon=True
    )
    trainer.start()
    while queue.store.progress().pending_items < low:
        time.sleep(0.05)
    proc, url = start_server(db)
    gc.collect()
    gc.freeze()  # the client's own collector pauses would otherwise show up as server latency
    runs = []
    try:
        runs.append(("paced", seconds, load(url, "paced", seconds, labelers, page, interval)))
        if saturate_seconds > 0:
            runs.append(
                ("saturated", saturate_seconds, load(url, "saturated", saturate_seconds, labelers, page, 0.0))
            )
    finally:
        gc.unfreeze()
        trainer_stop.set()
        trainer.join(30)
        proc.terminate()
        proc.wait(30)
        queue.close()
    with FeedbackStore(db, create=False) as store:
        stored = {lab.id: (lab.item_id, lab.value) for lab in store.labels(include_retracted=True)}
    return {
        "labelers": labelers,
        "page": page,
        "interval": interval,
        "total_stored": len(stored),
        "scenarios": [summarise(name, stats, secs, stored) for name, secs, stats in runs],
    }


def table(r: dict) -> str:
    rows = r["scenarios"]
    paced = rows[0]
    lost = sum(row["lost"] for row in rows)
    ok = paced["submit_p99"] < 50 and lost == 0

    def line(label: str, fmt) -> str:  # noqa: ANN001 - a small formatter
        return f"| {label} | " + " | ".join(fmt(row) for row in rows) + " |"

    return "\n".join(
        [
            "## Feedback server load (loopback)",
            "",
            f"{r['labelers']} simulated labelers, pages of {r['page']} labels; paced = one page per "
            f"~{r['interval']:g} s per labeler, saturated = no pause. `hfrl label serve` in its own process, "
            f"commits with synchronous=FULL; {os.cpu_count()} CPUs ({cpu_name()}), Python {platform.python_version()}.",
            "",
            "| metric | " + " | ".join(row["name"] for row in rows) + " |",
            "|---|" + "---|" * len(rows),
            line("duration", lambda x: f"{x['seconds']:.0f} s"),
            line("submits (POST /api/labels)", lambda x: str(x["submits"])),
            line(
                "submit latency p50 / p90 / p99 / max (ms)",
                lambda x: (
                    f"{x['submit_p50']:.1f} / {x['submit_p90']:.1f} / {x['submit_p99']:.1f} / {x['submit_max']:.1f}"
                ),
            ),
            line(
                "page fetch (GET /api/next) p50 / p99 (ms)",
                lambda x: f"{x['next_p50']:.1f} / {x['next_p99']:.1f}",
            ),
            line("labels acknowledged", lambda x: f"{x['acked']} ({x['labels_per_s']:.0f}/s)"),
            line("acknowledged labels found in the database", lambda x: str(x["stored"])),
            line("acknowledged labels lost", lambda x: str(x["lost"])),
            line("failed requests", lambda x: str(x["errors"])),
            "",
            f"Goal (paced p99 < 50 ms, 0 lost): **{'met' if ok else 'NOT met'}**.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="length of the paced load (default: %(default)s)"
    )
    parser.add_argument(
        "--saturate-seconds",
        type=float,
        default=10.0,
        help="length of the saturated load; 0 skips it (default: %(default)s)",
    )
    parser.add_argument("--labelers", type=int, default=10, help="concurrent labelers (default: %(default)s)")
    parser.add_argument("--page", type=int, default=16, help="labels per submit (default: %(default)s)")
    parser.add_argument(
        "--interval",
        type=float,
        default=0.5,
        help="seconds between a paced labeler's pages (default: %(default)s)",
    )
    parser.add_argument("--db", default=None, help="feedback database (default: a temporary file)")
    parser.add_argument(
        "--out", default="bench-results/feedback.md", help="markdown table (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "bench.sqlite"
        result = run(args.seconds, args.saturate_seconds, args.labelers, args.page, args.interval, db)
    text = table(result)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    lost = sum(row["lost"] for row in result["scenarios"])
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
