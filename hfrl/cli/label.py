"""``hfrl label``: the labelling page, the synthetic labeler, and moving feedback between machines.

* ``hfrl label serve --db PATH``: serve the labelling page (loopback by default).
* ``hfrl label simulate --db PATH``: answer pending queries with the synthetic labeler, through the
  same store functions the page uses.
* ``hfrl label status --db PATH``: counts of queries, items and labels.
* ``hfrl label export --db PATH --out FILE.zip`` / ``hfrl label import --db PATH FILE.zip``: portable
  archives (Parquet tables and a JSON manifest).

``--db`` means the same in every action (:func:`hfrl.feedback.engine.resolve_db_path`): a ``.sqlite``
(``.sqlite3``, ``.db``) file, or a run directory, meaning ``RUN_DIR/feedback.sqlite``. ``status`` and
``export`` open the database read-only and never change it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hfrl.cli import OneLineArgumentParser
from hfrl.cli.common import add_device, add_seed, existing_path, non_negative_float, positive_int

KIND_CHOICES = ("single", "pair", "hero")
DB_HELP = "feedback database: a .sqlite file, or a run directory holding feedback.sqlite"


def _db(text: str) -> Path:
    """Argparse type for ``--db``: the database file it names, by the store's one rule (``resolve_db_path``).

    Imported here, not at the top: ``--help`` must answer without importing torch.
    """
    from hfrl.feedback.engine import resolve_db_path

    if not text.strip():
        raise argparse.ArgumentTypeError("expected a database file or a run directory, got an empty path")
    return resolve_db_path(text)


def _existing_db(text: str) -> Path:
    """``--db`` for actions that read a database: it must exist."""
    path = _db(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no feedback database at {path}")
    return path


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 0-65535, got {value}")
    return value


def _positive_seconds(text: str) -> float:
    value = non_negative_float(text)
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def _rate(text: str) -> float:
    value = non_negative_float(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability below 1, got {text}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``hfrl label`` and its actions."""
    parser = subparsers.add_parser(
        "label",
        help="collect human feedback: labelling page, synthetic labeler, archives",
        description="Collect human feedback in a SQLite feedback store: serve the labelling page to people, "
        "run the synthetic labeler through the same path, or move feedback between machines.",
    )
    actions = parser.add_subparsers(
        dest="label_command", metavar="ACTION", parser_class=OneLineArgumentParser
    )
    actions.required = True

    serve = actions.add_parser(
        "serve",
        help="serve the labelling page",
        description="Serve the labelling page (FastAPI on uvicorn) and print its URL. Bound to loopback it "
        "needs no token; bound to any other address every request needs a token, generated and printed "
        "once unless given with --token or $HFRL_LABEL_TOKEN.",
    )
    serve.add_argument("--db", required=True, type=_db, help=DB_HELP + " (created when missing)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    serve.add_argument(
        "--port", type=_port, default=8765, help="port; 0 picks a free one (default: %(default)s)"
    )
    serve.add_argument(
        "--token",
        default=os.environ.get("HFRL_LABEL_TOKEN"),
        help="token every request must carry (default: $HFRL_LABEL_TOKEN; generated beyond loopback)",
    )
    serve.add_argument(
        "--page-size", type=positive_int, default=16, help="items per page (default: %(default)s)"
    )
    serve.add_argument(
        "--lease-seconds",
        type=_positive_seconds,
        default=60.0,
        help="items handed to a labeler stay theirs this long after the page last checked in "
        "(default: %(default)s)",
    )
    serve.set_defaults(func=run_serve)

    sim = actions.add_parser(
        "simulate",
        help="answer pending queries with the synthetic labeler",
        description="Answer pending queries with the synthetic labeler, which reads the stored clean images, "
        "through the same store functions as the labelling page.",
    )
    sim.add_argument("--db", required=True, type=_existing_db, help=DB_HELP)
    sim.add_argument(
        "--labeler-checkpoint",
        type=existing_path,
        default=None,
        help="classifier checkpoint (default: shipped one)",
    )
    sim.add_argument(
        "--labeler-id", default="synthetic", help="id recorded with the labels (default: %(default)s)"
    )
    sim.add_argument(
        "--flip-rate", type=_rate, default=0.0, help="probability of a wrong answer (default: 0)"
    )
    sim.add_argument("--skip-rate", type=_rate, default=0.0, help="probability of skipping (default: 0)")
    sim.add_argument("--kind", choices=KIND_CHOICES, default=None, help="only queries of this kind")
    sim.add_argument(
        "--batch-size", type=positive_int, default=16, help="items per batch (default: %(default)s)"
    )
    sim.add_argument(
        "--max-labels", type=positive_int, default=None, help="stop after about this many labels"
    )
    sim.add_argument(
        "--follow", action="store_true", help="keep waiting for new queries until --timeout or Ctrl-C"
    )
    sim.add_argument("--timeout", type=non_negative_float, default=None, help="stop after this many seconds")
    add_seed(sim)
    add_device(sim)
    sim.set_defaults(func=run_simulate)

    status = actions.add_parser(
        "status", help="counts of queries, items and labels", description="Show counts."
    )
    status.add_argument("--db", required=True, type=_existing_db, help=DB_HELP + " (opened read-only)")
    status.set_defaults(func=run_status)

    export = actions.add_parser(
        "export",
        help="write a portable archive of the feedback",
        description="Write the whole feedback store to a zip of Parquet tables plus a JSON manifest.",
    )
    export.add_argument("--db", required=True, type=_existing_db, help=DB_HELP + " (opened read-only)")
    export.add_argument("--out", required=True, help="archive to write, e.g. feedback.zip")
    export.add_argument("--no-clean", action="store_true", help="leave out the clean reference images")
    export.set_defaults(func=run_export)

    imp = actions.add_parser(
        "import",
        help="merge a portable archive into a feedback store",
        description="Merge an archive written by 'hfrl label export'; rows already present are skipped.",
    )
    imp.add_argument(
        "--db", required=True, type=_db, help=DB_HELP + " (created when missing; not left behind on failure)"
    )
    imp.add_argument("archive", type=existing_path, help="archive to merge")
    imp.set_defaults(func=run_import)


def run_serve(args: argparse.Namespace) -> int:
    """``hfrl label serve``."""
    from hfrl.feedback.server import serve

    def announce(line: str) -> None:
        print(line, flush=True)

    serve(
        args.db,
        args.host,
        args.port,
        token=args.token,
        page_size=args.page_size,
        lease_seconds=args.lease_seconds,
        announce=announce,
    )
    return 0


def run_simulate(args: argparse.Namespace) -> int:
    """``hfrl label simulate``."""
    from hfrl.device import resolve_device
    from hfrl.feedback.simulate import simulate
    from hfrl.feedback.store import FeedbackStore
    from hfrl.judges import SyntheticLabeler, check_judge_shape, digit_judge_applies

    device = resolve_device(args.device)
    kwargs = {"flip_rate": args.flip_rate, "skip_rate": args.skip_rate, "seed": args.seed,
              "labeler_id": args.labeler_id}  # fmt: skip
    with FeedbackStore(args.db, create=False) as store:
        queries = store.queries()
        items = store.items(queries[0].id) if queries else []
        shape = tuple(store.images([items[0].sample_id], "input").shape[1:]) if items else None
    if args.labeler_checkpoint is None and shape is not None and not digit_judge_applies(shape):
        labeler = SyntheticLabeler(None, **kwargs)  # no shipped classifier reads these: SSIM and correlation
    else:
        labeler = SyntheticLabeler.from_pretrained(args.labeler_checkpoint, device=device, **kwargs)
        if shape is not None:
            check_judge_shape(labeler, shape, "the labeler")
    with FeedbackStore(args.db, create=False) as store:
        report = simulate(
            store,
            labeler,
            kind=args.kind,
            batch_size=args.batch_size,
            max_labels=args.max_labels,
            follow=args.follow,
            timeout=args.timeout,
        )
    print(f"{args.labeler_id}: {report.labels} labels in {report.batches} batches ({report.seconds:.1f} s)")
    return 0


def run_status(args: argparse.Namespace) -> int:
    """``hfrl label status``."""
    from hfrl.feedback.store import FeedbackStore

    with FeedbackStore(args.db, readonly=True) as store:
        progress = store.progress()
        queries = store.queries()
    by_status = {s: sum(q.status == s for q in queries) for s in ("pending", "done", "cancelled")}
    print(f"{args.db}")
    print(f"queries: {len(queries)} ({', '.join(f'{n} {s}' for s, n in by_status.items())})")
    print(f"items still needing labels: {progress.pending_items}")
    print(f"labels: {progress.labels_total} from {progress.labelers} labelers")
    return 0


def run_export(args: argparse.Namespace) -> int:
    """``hfrl label export``."""
    from hfrl.feedback.store import FeedbackStore

    with FeedbackStore(args.db, readonly=True) as store:
        path = store.export_archive(args.out, include_clean=not args.no_clean)
    print(f"wrote {path}")
    return 0


def run_import(args: argparse.Namespace) -> int:
    """``hfrl label import``."""
    from hfrl.feedback.archive import check_archive
    from hfrl.feedback.store import FeedbackStore

    check_archive(args.archive)  # a bad archive is refused before any database is created
    db = args.db
    created = [p for p in (db, *db.parents) if not p.exists()]
    try:
        with FeedbackStore(db) as store:
            summary = store.import_archive(args.archive)
    except BaseException:
        # A failed import into a new database leaves nothing behind: no empty store, no new folders.
        for path in created:
            for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                if leftover.is_file():
                    leftover.unlink()
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        raise
    print(
        f"added {summary.samples} samples, {summary.queries} queries, {summary.items} items, "
        f"{summary.labels} labels ({summary.skipped} rows already present)",
        file=sys.stdout,
    )
    return 0
