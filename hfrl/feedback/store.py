"""The feedback store: every sample shown to labelers, every batch put to them, every label they gave.

One SQLite file (standard library ``sqlite3``) in WAL mode with foreign keys on. Its schema version is
``PRAGMA user_version`` and its ``PRAGMA application_id`` marks it as an hfrl feedback store; older
schemas are migrated on open, while a file written by a newer hfrl, a corrupt file or another program's
database is refused with a one-line :class:`FeedbackError` and is never written to (it is inspected
through a read-only connection first).

Tables:

* ``samples``: an output image beside the noisy input it came from, the generator checkpoint and round
  that produced it, domain/class metadata and the clean image, which only the synthetic labeler reads
  (:meth:`FeedbackStore.clean_images`; no HTTP route exposes it). Images are stored losslessly as
  ``float32`` bytes.
* ``queries``: batches put to labelers (``single``, ``pair`` or ``hero``), ``pending`` until each item has
  labels from ``labels_needed`` different labelers, then ``done``; or ``cancelled``.
* ``items``: the questions inside a query: one sample, or two for a pair.
* ``labels``: one row per answer: item, labeler id, word (see :mod:`hfrl.feedback.labels`), a best-of-batch
  mark, response time and timestamp. Rows are never updated except to mark them ``retracted`` by undo; a
  labeler's *current* label on an item is their latest unretracted one, so several labelers never
  overwrite each other and undo restores what was there before.
* ``labelers`` (schema 2): labeler names claimed through the labelling server, with the SHA-256 of the
  session token issued for each (:meth:`FeedbackStore.create_session`).
* ``leases`` (schema 2): items handed to a labeler and not yet answered, each until an expiry time
  (:meth:`FeedbackStore.lease_batch`); an item needing ``n`` labels is never handed to more than ``n``
  labelers at once, counting those who answered it and those holding a live lease.

Majority and agreement are computed when reading (:meth:`FeedbackStore.rating_summaries`,
:meth:`FeedbackStore.pair_summaries`, :meth:`FeedbackStore.rating_tensors`). Every row has a random
``uid`` so that :meth:`FeedbackStore.export_archive` / :meth:`FeedbackStore.import_archive` move feedback
between machines and merging the same archive twice adds nothing.

Reading never writes: opening a healthy store of the current schema takes no write lock, and a store
opened with ``readonly=True`` (what ``hfrl label status``/``export`` and reward training use) reads through
SQLite ``mode=ro`` connections, immutable while no other process has the file open, so not a byte of the
file or its folder changes, even in a read-only folder. An empty (zero-byte) file is refused, never
initialised.

Writes go through one writer thread per store that commits whatever writes are waiting in one
transaction (group commit), each inside its own savepoint. Commits use ``synchronous=FULL``: when a write
method returns, the transaction is on disk, which is what lets the labelling server acknowledge a label.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import io
import json
import math
import queue
import secrets
import sqlite3
import threading
import time
import uuid
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from hfrl.data import as_images
from hfrl.errors import HfrlError
from hfrl.feedback.labels import (
    BAD,
    GOOD,
    HERO,
    KINDS,
    PAIR,
    PAIR_VALUES,
    RATING_VALUES,
    SINGLE,
    SKIP,
    TIE,
    flip_preference,
    preference_value,
    rating_value,
    values_for,
)

SCHEMA_VERSION = 2
"""Schema version this hfrl writes (``PRAGMA user_version``)."""
APPLICATION_ID = 0x6866726C
"""``PRAGMA application_id`` of an hfrl feedback store (the bytes ``hfrl``)."""
DEFAULT_DB_NAME = "feedback.sqlite"
"""File name of the feedback store inside a run directory."""
DB_SUFFIXES = (".sqlite", ".sqlite3", ".db")
"""Suffixes that make ``--db`` name a database file rather than a run directory."""
ARCHIVE_FORMAT = "hfrl-feedback-archive"
ARCHIVE_VERSION = 1
MAX_LABELER_LENGTH = 64
DEFAULT_LEASE_SECONDS = 60.0
"""How long items handed to a labeler are kept from others unless renewed (a labeler who left)."""
CHECKPOINT_INTERVAL = 0.5
"""Seconds between background WAL checkpoints."""
SAMPLE_CHUNK = 64
"""Samples inserted per transaction (about 400 KB with clean images)."""
STATUSES = ("pending", "done", "cancelled")

_SQLITE_MAGIC = b"SQLite format 3\x00"
T = TypeVar("T")

MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE samples (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        height INTEGER NOT NULL CHECK (height > 0),
        width INTEGER NOT NULL CHECK (width > 0),
        input BLOB NOT NULL,
        output BLOB NOT NULL,
        clean BLOB,
        checkpoint TEXT,
        round INTEGER,
        domain TEXT,
        class INTEGER,
        meta TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL
    );
    CREATE TABLE queries (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('single', 'pair', 'hero')),
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'cancelled')),
        labels_needed INTEGER NOT NULL DEFAULT 1 CHECK (labels_needed >= 1),
        note TEXT,
        created REAL NOT NULL,
        completed REAL
    );
    CREATE INDEX queries_status ON queries (status, id);
    CREATE TABLE items (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        query_id INTEGER NOT NULL REFERENCES queries (id),
        position INTEGER NOT NULL CHECK (position >= 0),
        sample_id INTEGER NOT NULL REFERENCES samples (id),
        other_id INTEGER REFERENCES samples (id),
        UNIQUE (query_id, position)
    );
    CREATE INDEX items_sample ON items (sample_id);
    CREATE TABLE labels (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        item_id INTEGER NOT NULL REFERENCES items (id),
        labeler TEXT NOT NULL,
        value TEXT NOT NULL CHECK (value IN ('good', 'bad', 'skip', 'left', 'right', 'tie')),
        best INTEGER NOT NULL DEFAULT 0 CHECK (best IN (0, 1)),
        response_ms REAL,
        created REAL NOT NULL,
        retracted REAL
    );
    CREATE INDEX labels_item ON labels (item_id, labeler, id);
    CREATE INDEX labels_labeler ON labels (labeler, id);
    """,
    # 1 -> 2: labeler sessions issued by the server, and leases on the items handed out.
    """
    CREATE TABLE labelers (
        name TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        created REAL NOT NULL
    );
    CREATE TABLE leases (
        item_id INTEGER NOT NULL REFERENCES items (id),
        labeler TEXT NOT NULL,
        expires REAL NOT NULL,
        PRIMARY KEY (item_id, labeler)
    );
    CREATE INDEX leases_labeler ON leases (labeler);
    """,
]
"""``MIGRATIONS[v]`` is the SQL script that upgrades a store from schema ``v`` to ``v + 1``."""


class FeedbackError(HfrlError):
    """A feedback store, archive or label request that cannot be used as asked."""


class UnknownIdError(FeedbackError):
    """A sample, query, item or label id that is not in the store."""


class QueryClosedError(FeedbackError):
    """Labels for a query that was cancelled."""


class StoreBusyError(FeedbackError):
    """The database stayed locked by another process for longer than the busy timeout."""


class ReadOnlyError(FeedbackError):
    """A write asked of a store opened read-only."""


class NameTakenError(FeedbackError):
    """A labeler name that already belongs to someone else (another session, or labels in the store)."""


# --------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class SampleRecord:
    """One stored sample (without its clean image).

    Attributes:
        id: Sample id.
        input: ``(1, H, W)`` float32 noisy input.
        output: ``(1, H, W)`` float32 generator output.
        checkpoint: Generator checkpoint that produced it.
        round: Training round that produced it.
        domain: Domain name (e.g. ``target``).
        cls: Class of the clean image, ``-1`` when unknown.
        meta: Free-form JSON metadata.
        has_clean: Whether a clean reference image is stored.
    """

    id: int
    input: torch.Tensor
    output: torch.Tensor
    checkpoint: str | None
    round: int | None
    domain: str | None
    cls: int
    meta: dict[str, Any]
    has_clean: bool


@dataclass(frozen=True)
class QueryRecord:
    """A batch put to labelers.

    Attributes:
        id: Query id.
        kind: ``single``, ``pair`` or ``hero``.
        status: ``pending``, ``done`` or ``cancelled``.
        labels_needed: Different labelers each item needs before the query is done.
        size: Number of items.
        note: Free text from the trainer.
        created: Unix time of creation.
        completed: Unix time it was last completed, or ``None``.
    """

    id: int
    kind: str
    status: str
    labels_needed: int
    size: int
    note: str | None
    created: float
    completed: float | None


@dataclass(frozen=True)
class ItemRecord:
    """One question of a query: a sample, or two samples for a pair.

    Attributes:
        id: Item id (what clients refer to).
        query_id: Query it belongs to.
        position: Index within the query.
        kind: The query's kind.
        sample_id: The sample (the left one of a pair).
        other_id: The right sample of a pair, else ``None``.
    """

    id: int
    query_id: int
    position: int
    kind: str
    sample_id: int
    other_id: int | None


@dataclass(frozen=True)
class LabelRecord:
    """One answer given by one labeler.

    Attributes:
        id: Label id.
        item_id: Item answered.
        labeler: Who answered.
        value: The word (``good``/``bad``/``skip`` or ``left``/``right``/``tie``).
        best: Whether it was marked best of its batch.
        response_ms: Time the labeler took, if known.
        created: Unix time it was stored.
        retracted: Unix time it was undone, or ``None``.
    """

    id: int
    item_id: int
    labeler: str
    value: str
    best: bool
    response_ms: float | None
    created: float
    retracted: float | None


@dataclass(frozen=True)
class LabelInput:
    """An answer a labeler submits.

    Attributes:
        item_id: Item answered.
        value: A word allowed for the item's kind.
        best: Best of its batch (``hero`` items only, not with ``skip``).
        response_ms: Time the labeler took, in milliseconds.
    """

    item_id: int
    value: str
    best: bool = False
    response_ms: float | None = None


@dataclass(frozen=True)
class SubmitResult:
    """What :meth:`FeedbackStore.submit_labels` stored.

    Attributes:
        label_ids: Ids of the new labels, in the order submitted.
        completed: Queries that these labels completed.
    """

    label_ids: tuple[int, ...]
    completed: tuple[int, ...]


@dataclass(frozen=True)
class Batch:
    """Items to show a labeler next, all of one kind (all of one query for ``hero``).

    Attributes:
        kind: Kind of every item, or ``None`` when nothing is pending.
        items: The items, oldest query first.
    """

    kind: str | None
    items: tuple[ItemRecord, ...]

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Progress:
    """Labelling progress.

    Attributes:
        labelled: Current labels given by the labeler asked about (all labelers when none).
        labels_total: Current labels from everyone.
        pending_items: Items in pending queries that still need labels.
        pending_queries: Queries still pending.
        labels_per_minute: The labeler's rate over the recent window.
        labelers: Distinct labelers who gave a current label.
    """

    labelled: int
    labels_total: int
    pending_items: int
    pending_queries: int
    labels_per_minute: float
    labelers: int


@dataclass(frozen=True)
class RatingSummary:
    """Read-time aggregation of the good/bad labels of one sample (one current label per labeler).

    Attributes:
        sample_id: The sample.
        good: Labelers who said ``good``.
        bad: Labelers who said ``bad``.
        skips: Labelers who said ``skip``.
        majority: ``good``, ``bad``, or ``None`` on a tie or when everyone skipped.
        agreement: Share of good/bad votes that agree with the most common answer (``nan`` with none).
        mean: Mean of the votes as numbers (``good`` = 1), ``nan`` with none.
        best: Labelers who marked it best of its batch.
    """

    sample_id: int
    good: int
    bad: int
    skips: int
    majority: str | None
    agreement: float
    mean: float
    best: int

    @property
    def votes(self) -> int:
        """Good plus bad votes."""
        return self.good + self.bad

    @property
    def target(self) -> float:
        """Majority as a number: 1.0, 0.0, or 0.5 on a tie (``nan`` with no votes)."""
        if self.votes == 0:
            return math.nan
        return 0.5 if self.majority is None else float(rating_value(self.majority))  # type: ignore[arg-type]


@dataclass(frozen=True)
class PairSummary:
    """Read-time aggregation of the pairwise labels of two samples, ordered ``left_id < right_id``.

    Attributes:
        left_id: The sample with the smaller id.
        right_id: The other sample.
        left: Labelers who preferred ``left_id``.
        right: Labelers who preferred ``right_id``.
        ties: Labelers who answered ``tie``.
        majority: The most common answer, or ``None`` when two answers tie for most common.
        agreement: Share of votes agreeing with the most common answer.
        mean: Mean preference for ``left_id`` (``left`` = 1, ``tie`` = 0.5).
    """

    left_id: int
    right_id: int
    left: int
    right: int
    ties: int
    majority: str | None
    agreement: float
    mean: float

    @property
    def votes(self) -> int:
        """All votes."""
        return self.left + self.right + self.ties

    @property
    def target(self) -> float:
        """Majority as a preference for ``left_id``: 1.0, 0.0 or 0.5."""
        return 0.5 if self.majority is None else preference_value(self.majority)


@dataclass(frozen=True)
class ItemResult:
    """Aggregated answer to one item of a query.

    Attributes:
        item_id: The item.
        position: Its index in the query.
        sample_id: Its sample (left of a pair).
        other_id: Right sample of a pair.
        votes: Current labels, one per labeler, ``{labeler: word}``.
        majority: Most common informative word (``skip`` if everyone skipped, ``None`` on a tie or no votes).
        value: Mean of the votes as numbers (``nan`` when none counts).
        agreement: Share of informative votes agreeing with the most common answer.
    """

    item_id: int
    position: int
    sample_id: int
    other_id: int | None
    votes: dict[str, str]
    majority: str | None
    value: float
    agreement: float


@dataclass(frozen=True)
class QueryResult:
    """Everything labelers said about one query, aggregated at read time.

    Attributes:
        query: The query.
        items: One result per item, in position order.
        best: Position most often marked best (``hero``), ``None`` when nobody marked one.
        best_votes: ``{labeler: position}`` of each labeler's best mark.
    """

    query: QueryRecord
    items: tuple[ItemResult, ...]
    best: int | None
    best_votes: dict[str, int]

    @property
    def done(self) -> bool:
        """Whether the query has all the labels it asked for."""
        return self.query.status == "done"

    @property
    def labels(self) -> list[str | None]:
        """Majority word per position."""
        return [item.majority for item in self.items]

    @property
    def values(self) -> torch.Tensor:
        """``(N,)`` float32 mean numeric value per position (``nan`` where nothing counts)."""
        return torch.tensor([item.value for item in self.items], dtype=torch.float32)

    @property
    def sample_ids(self) -> list[int]:
        """Sample id per position (the left sample for pairs)."""
        return [item.sample_id for item in self.items]


@dataclass(frozen=True)
class RatingTensors:
    """Good/bad feedback as tensors for reward training, one row per labelled sample.

    Attributes:
        inputs: ``(N, 1, H, W)`` float32 noisy inputs.
        outputs: ``(N, 1, H, W)`` float32 outputs that were labelled.
        targets: ``(N,)`` float32 majority vote (1 good, 0 bad, 0.5 tie).
        mean: ``(N,)`` float32 mean vote.
        agreement: ``(N,)`` float32 share of votes agreeing with the majority.
        votes: ``(N,)`` int64 good plus bad votes.
        best: ``(N,)`` int64 labelers who marked the sample best of its batch.
        classes: ``(N,)`` int64 classes (``-1`` unknown).
        sample_ids: ``(N,)`` int64 store ids.
    """

    inputs: torch.Tensor
    outputs: torch.Tensor
    targets: torch.Tensor
    mean: torch.Tensor
    agreement: torch.Tensor
    votes: torch.Tensor
    best: torch.Tensor
    classes: torch.Tensor
    sample_ids: torch.Tensor

    def __len__(self) -> int:
        return int(self.targets.shape[0])


@dataclass(frozen=True)
class PairTensors:
    """Pairwise feedback as tensors, one row per labelled pair.

    Attributes:
        inputs: ``(N, 1, H, W)`` float32 noisy input of the left sample.
        left: ``(N, 1, H, W)`` float32 left outputs.
        right: ``(N, 1, H, W)`` float32 right outputs.
        preference: ``(N,)`` float32 majority preference for left (1 left, 0 right, 0.5 tie).
        mean: ``(N,)`` float32 mean preference for left.
        agreement: ``(N,)`` float32 share of votes agreeing with the majority.
        votes: ``(N,)`` int64 votes.
        classes: ``(N,)`` int64 class of the left sample.
        left_ids: ``(N,)`` int64 sample ids.
        right_ids: ``(N,)`` int64 sample ids.
    """

    inputs: torch.Tensor
    left: torch.Tensor
    right: torch.Tensor
    preference: torch.Tensor
    mean: torch.Tensor
    agreement: torch.Tensor
    votes: torch.Tensor
    classes: torch.Tensor
    left_ids: torch.Tensor
    right_ids: torch.Tensor

    def __len__(self) -> int:
        return int(self.preference.shape[0])


@dataclass(frozen=True)
class HeroBatch:
    """One HERO query as tensors: the whole batch a labeler judged, with the best pick.

    Attributes:
        query_id: The query.
        inputs: ``(B, 1, H, W)`` float32 noisy inputs.
        outputs: ``(B, 1, H, W)`` float32 outputs, in the order shown.
        targets: ``(B,)`` float32 majority good (1) / bad (0), 0.5 on a tie, ``nan`` where all skipped.
        best: Position most often marked best, or ``None``.
        classes: ``(B,)`` int64 classes (``-1`` unknown).
        sample_ids: ``(B,)`` int64 store ids.
    """

    query_id: int
    inputs: torch.Tensor
    outputs: torch.Tensor
    targets: torch.Tensor
    best: int | None
    classes: torch.Tensor
    sample_ids: torch.Tensor

    def __len__(self) -> int:
        return int(self.targets.shape[0])


class FeedbackDataset(torch.utils.data.Dataset):
    """A torch ``Dataset`` over :class:`RatingTensors` or :class:`PairTensors`.

    Each item is a dict of the per-row tensors, e.g. ``{"outputs": (1, H, W), "targets": (), ...}``.

    Args:
        tensors: What :meth:`FeedbackStore.rating_tensors` or :meth:`FeedbackStore.pair_tensors` returned.
    """

    def __init__(self, tensors: RatingTensors | PairTensors) -> None:
        self.tensors = tensors
        self._names = [f.name for f in fields(tensors)]

    def __len__(self) -> int:
        return len(self.tensors)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {name: getattr(self.tensors, name)[index] for name in self._names}


@dataclass(frozen=True)
class ImportSummary:
    """Rows :meth:`FeedbackStore.import_archive` added (rows already present are skipped).

    Attributes:
        samples: New samples.
        queries: New queries.
        items: New items.
        labels: New labels.
        skipped: Rows that were already in the store.
    """

    samples: int
    queries: int
    items: int
    labels: int
    skipped: int


@dataclass
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


# ----------------------------------------------------------------------------------------- inspection


def default_db_path(run_dir: str | Path) -> Path:
    """The feedback store of a run directory: ``RUN_DIR/feedback.sqlite``."""
    return Path(run_dir) / DEFAULT_DB_NAME


def _wal_path(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _ro_uri(path: Path, immutable: bool | None = None) -> str:
    """A read-only SQLite URI for ``path``.

    Without a write-ahead log (no process has the database open) there is nothing newer than the main
    file, so it is read as immutable: no locks and no -wal/-shm files created next to it, which also
    works in a read-only folder. With a log (a writer is live, or crashed) it is read through the log.
    """
    uri = path.resolve().as_uri() + "?mode=ro"
    if immutable is None:
        immutable = not _wal_path(path).exists()
    if immutable:
        uri += "&immutable=1"
    return uri


def resolve_db_path(db: str | Path) -> Path:
    """The one meaning of ``--db``: a ``.sqlite``/``.db`` file, or a run directory holding ``feedback.sqlite``.

    An existing directory, a path ending in a path separator, or a path without a ``.sqlite``/``.db``
    suffix that does not exist as a file names a run directory; anything else names the file itself.

    Args:
        db: What the user gave.

    Returns:
        The database file.
    """
    text = str(db)
    path = Path(db)
    if path.is_dir() or text.endswith(("/", "\\")):
        return default_db_path(path)
    if path.exists() or path.suffix.lower() in DB_SUFFIXES:
        return path
    return default_db_path(path)


def inspect_database(path: str | Path) -> int:
    """Check an existing file through a read-only connection and return its schema version.

    Args:
        path: The database file.

    Returns:
        The schema version (0 for an empty SQLite database, to be initialised).

    Raises:
        FeedbackError: for an empty (zero-byte) file, a file that is not SQLite, is corrupt, belongs to
            another program, or was written by a newer hfrl. The file is not modified.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            header = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise FeedbackError(f"{path}: cannot read the feedback database ({exc.strerror})") from None
    if size == 0:
        # Never silently turned into a database: an empty file is what a failed copy or a crash of
        # something else leaves, and `label status` must not make a store out of it.
        raise FeedbackError(f"{path}: an empty file, not a feedback database; left untouched")
    if header != _SQLITE_MAGIC:
        raise FeedbackError(
            f"{path}: not an SQLite database (corrupt or another kind of file); left untouched"
        )
    try:
        conn = sqlite3.connect(_ro_uri(path), uri=True)
    except sqlite3.Error as exc:
        raise FeedbackError(f"{path}: cannot open the feedback database read-only ({exc})") from None
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id != APPLICATION_ID:
            if tables == 0:
                return 0
            raise FeedbackError(f"{path}: an SQLite database, but not an hfrl feedback store; left untouched")
        if version > SCHEMA_VERSION:
            raise FeedbackError(
                f"{path}: written by a newer hfrl (feedback schema {version}; this hfrl reads up to "
                f"{SCHEMA_VERSION}); upgrade hfrl to use it. The file was left untouched"
            )
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise FeedbackError(f"{path}: the feedback database is corrupt ({problems[0]}); left untouched")
        return int(version)
    except sqlite3.DatabaseError as exc:
        raise FeedbackError(f"{path}: the feedback database is corrupt ({exc}); left untouched") from None
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------- helpers


def _blob(image: torch.Tensor) -> bytes:
    return np.ascontiguousarray(image.detach().cpu().numpy().astype(np.float32, copy=False)).tobytes()


def _array(blob: bytes, height: int, width: int) -> np.ndarray:
    """``(H, W)`` float32 from stored bytes."""
    if len(blob) != 4 * height * width:
        raise FeedbackError(
            f"stored image has {len(blob)} bytes, expected {4 * height * width} for {height}x{width}"
        )
    return np.frombuffer(blob, dtype=np.float32).reshape(height, width)


def _majority(counts: Counter) -> tuple[str | None, float]:
    """Most common word and the share of votes it got; ``None`` when two words tie for most common."""
    total = sum(counts.values())
    if total == 0:
        return None, math.nan
    ranked = counts.most_common()
    top = ranked[0][1]
    winner = ranked[0][0] if len(ranked) == 1 or ranked[1][1] < top else None
    return winner, top / total


def _rating_stats(words: Iterable[str]) -> tuple[str | None, float, float]:
    """``(majority, mean, agreement)`` of good/bad/skip words."""
    words = list(words)
    counts = Counter(w for w in words if w != SKIP)
    if not counts:
        return (SKIP if words else None), math.nan, math.nan
    majority, agreement = _majority(counts)
    mean = sum(rating_value(w) * n for w, n in counts.items()) / sum(counts.values())  # type: ignore[operator]
    return majority, float(mean), agreement


def _pair_stats(words: Iterable[str]) -> tuple[str | None, float, float]:
    """``(majority, mean preference, agreement)`` of left/right/tie words."""
    counts = Counter(words)
    if not counts:
        return None, math.nan, math.nan
    majority, agreement = _majority(counts)
    mean = sum(preference_value(w) * n for w, n in counts.items()) / sum(counts.values())
    return majority, float(mean), agreement


def _row_id(value: int, what: str) -> int:
    """An id as SQLite can hold it; anything else cannot name a row, so it is unknown."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UnknownIdError(f"unknown {what} id {value!r}") from None
    if not 1 <= number < 2**63:
        raise UnknownIdError(f"unknown {what} id {value}")
    return number


def _check_seconds(seconds: float) -> float:
    value = float(seconds)
    if not 0.0 < value < math.inf:
        raise FeedbackError(f"lease seconds must be a positive finite number, got {seconds!r}")
    return value


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _select_batch(
    conn: sqlite3.Connection,
    labeler: str,
    limit: int,
    kind: str | None,
    avoid_set: set[int],
    require_clean: bool,
    max_hero: int,
    has_leases: bool,
    *,
    now: float,
) -> Batch:
    """The items to show ``labeler`` next (see :meth:`FeedbackStore.next_batch`), inside ``conn``'s transaction."""
    clean_filter = (
        " AND EXISTS (SELECT 1 FROM samples s WHERE s.id = i.sample_id AND s.clean IS NOT NULL)"
        if require_clean
        else ""
    )
    # Who counts against an item's labels_needed: labelers with a current label, and other labelers
    # holding a live lease on it (a labeler's own lease does not keep the item from them).
    if has_leases:
        taken = (
            "(SELECT count(*) FROM (SELECT l.labeler FROM labels l WHERE l.item_id = i.id AND l.retracted IS NULL"
            " UNION SELECT le.labeler FROM leases le WHERE le.item_id = i.id AND le.expires > :now"
            " AND le.labeler != :labeler))"
        )
    else:
        taken = (
            "(SELECT count(DISTINCT l.labeler) FROM labels l WHERE l.item_id = i.id AND l.retracted IS NULL)"
        )
    queries = conn.execute(
        "SELECT id, kind, labels_needed FROM queries WHERE status = 'pending' AND (? IS NULL OR kind = ?)"
        " ORDER BY id",
        (kind, kind),
    ).fetchall()
    page_kind: str | None = None
    fresh: list[ItemRecord] = []
    seen: list[tuple[str, list[ItemRecord]]] = []
    for qid, qkind, needed in queries:
        if page_kind is not None and qkind != page_kind:
            continue
        rows = conn.execute(
            f"SELECT {_ITEM_COLUMNS} FROM items i JOIN queries q ON q.id = i.query_id"
            " WHERE i.query_id = :qid"
            " AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.item_id = i.id AND l.labeler = :labeler"
            "                 AND l.retracted IS NULL)"
            f" AND {taken} < :needed" + clean_filter + " ORDER BY i.position LIMIT :limit",
            {
                "qid": qid,
                "labeler": labeler,
                "now": now,
                "needed": needed,
                # More than `limit` + len(avoid) items can never be needed from one query.
                "limit": max_hero if qkind == HERO else limit + len(avoid_set),
            },
        ).fetchall()
        eligible = [_item(r) for r in rows]
        if not eligible:
            continue
        seen.append((qkind, eligible))
        new = [it for it in eligible if it.id not in avoid_set]
        if qkind == HERO:
            if page_kind is None and new:
                return Batch(HERO, tuple(eligible[:max_hero]))
            continue
        if new and page_kind is None:
            page_kind = qkind
        if page_kind is not None:
            fresh.extend(new)
            if len(fresh) >= limit:
                return Batch(page_kind, tuple(fresh[:limit]))
    if page_kind is None:
        if not seen:
            return Batch(None, ())
        page_kind = seen[0][0]
        if page_kind == HERO:
            return Batch(HERO, tuple(seen[0][1][:max_hero]))
    fill = [it for k, eligible in seen if k == page_kind for it in eligible if it.id in avoid_set]
    return Batch(page_kind, tuple((fresh + fill)[:limit]))


def _check_labeler(labeler: str) -> str:
    if not isinstance(labeler, str) or not labeler.strip() or len(labeler) > MAX_LABELER_LENGTH:
        raise FeedbackError(f"labeler id must be 1 to {MAX_LABELER_LENGTH} characters, got {labeler!r}")
    return labeler


_CURRENT_LABELS = """
    SELECT * FROM (
        SELECT l.*, ROW_NUMBER() OVER (PARTITION BY l.item_id, l.labeler ORDER BY l.id DESC) AS rn
        FROM labels l WHERE l.retracted IS NULL
    ) WHERE rn = 1
"""
"""A labeler's current label on an item is their latest one that was not undone."""

_ITEM_COLUMNS = "i.id, i.query_id, i.position, q.kind, i.sample_id, i.other_id"


def _item(row: Sequence[Any]) -> ItemRecord:
    return ItemRecord(int(row[0]), int(row[1]), int(row[2]), str(row[3]), int(row[4]), row[5])


def _label(row: sqlite3.Row) -> LabelRecord:
    return LabelRecord(
        id=row["id"],
        item_id=row["item_id"],
        labeler=row["labeler"],
        value=row["value"],
        best=bool(row["best"]),
        response_ms=row["response_ms"],
        created=row["created"],
        retracted=row["retracted"],
    )


def _refresh_status(conn: sqlite3.Connection, query_id: int, now: float) -> str:
    """Set a query ``done`` or ``pending`` from its labels (``cancelled`` stays); returns the status."""
    row = conn.execute("SELECT status, labels_needed FROM queries WHERE id = ?", (query_id,)).fetchone()
    if row is None or row[0] == "cancelled":
        return "cancelled" if row else "missing"
    # One item short of labels is enough to know; labelers work front to back, so search from the back.
    missing = conn.execute(
        """
        SELECT 1 FROM items i
        WHERE i.query_id = ?
          AND (SELECT count(DISTINCT l.labeler) FROM labels l
               WHERE l.item_id = i.id AND l.retracted IS NULL) < ?
        ORDER BY i.position DESC LIMIT 1
        """,
        (query_id, row[1]),
    ).fetchone()
    status = "pending" if missing else "done"
    if status != row[0]:
        conn.execute(
            "UPDATE queries SET status = ?, completed = ? WHERE id = ?",
            (status, now if status == "done" else None, query_id),
        )
    return status


# ----------------------------------------------------------------------------------------- the store


class FeedbackStore:
    """The SQLite feedback store (see the module docstring).

    Safe to share between threads; several processes may open the same file (a trainer enqueueing, the
    labelling server, the synthetic labeler).

    Opening a healthy store of the current schema writes nothing: the write lock is taken only by a
    migration, by creating a new store, and by the write methods. A store opened ``readonly`` uses
    SQLite read-only connections (URI ``mode=ro``) and never changes a byte of the file or its folder.

    Args:
        path: The database file, or a run directory (meaning ``RUN_DIR/feedback.sqlite``); see
            :func:`resolve_db_path`.
        create: Create the file (and its folder) when missing; otherwise a missing file is an error.
        readonly: Open read-only (implies ``create=False``); write methods raise :class:`ReadOnlyError`.
            A store of an older schema is read as it is, without migrating it.
        busy_timeout: Seconds to wait for another process's write lock before failing.

    Raises:
        FeedbackError: for a missing file (``create=False``), an empty or corrupt file, another program's
            database, or a database written by a newer hfrl; such files are left untouched.
    """

    def __init__(
        self, path: str | Path, *, create: bool = True, readonly: bool = False, busy_timeout: float = 30.0
    ) -> None:
        self.path = resolve_db_path(path)
        self.readonly = bool(readonly)
        self.busy_timeout = float(busy_timeout)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        self._closed = False
        self._immutable = False  # reading an immutable file (read-only, while nobody has it open)
        self._opened_state: tuple[bool, int, int] | None = None
        exists = self.path.is_file()
        if not exists and (not create or self.readonly):
            raise FeedbackError(f"{self.path}: no feedback database there")
        version = inspect_database(self.path) if exists else 0
        self.created = not exists or version == 0
        if self.readonly:
            if version == 0:
                raise FeedbackError(f"{self.path}: an empty SQLite database, not a feedback store yet")
            self._version = version
            return
        if not exists:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if version != SCHEMA_VERSION or not _is_wal(self.path):
            self._initialise(version)
        self._version = SCHEMA_VERSION

    # -- connections

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            return self._connect_readonly()
        try:
            conn = sqlite3.connect(
                str(self.path), timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise FeedbackError(f"{self.path}: cannot open the feedback database ({exc})") from None
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        # FULL makes each commit reach the disk before the writer reports success: a label is durable
        # when the server acknowledges it, even across a power cut, not just a process kill.
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        """A ``mode=ro`` connection: immutable while no write-ahead log exists (see :func:`_ro_uri`)."""
        with self._lock:
            state = self._file_state()
            immutable = not state[0]
            if immutable and not self._immutable:
                self._immutable, self._opened_state = True, state
        try:
            conn = sqlite3.connect(
                _ro_uri(self.path, immutable),
                uri=True,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            raise FeedbackError(f"{self.path}: cannot open the feedback database read-only ({exc})") from None
        return conn

    def _file_state(self) -> tuple[bool, int, int]:
        """What tells an immutable reader that a writer appeared: a log, or a changed main file."""
        try:
            st = self.path.stat()
        except OSError:
            return (True, -1, -1)
        return (_wal_path(self.path).exists(), st.st_size, st.st_mtime_ns)

    def _reopen_readers(self) -> None:
        """Drop this store's immutable connections; the next read opens ones that read through the log."""
        with self._lock:
            readers, self._readers = self._readers, []
            self._immutable, self._opened_state = False, None
            self._local = threading.local()
        for conn in readers:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _initialise(self, version: int) -> None:
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have migrated while we waited for the lock.
                current = conn.execute("PRAGMA user_version").fetchone()[0]
                if current > SCHEMA_VERSION:
                    raise FeedbackError(f"{self.path}: written by a newer hfrl (feedback schema {current})")
                for step in range(current, SCHEMA_VERSION):
                    for statement in _split_sql(MIGRATIONS[step]):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {step + 1}")
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise FeedbackError(f"{self.path}: cannot initialise the feedback database ({exc})") from None
        finally:
            conn.close()

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise FeedbackError(f"{self.path}: the feedback store is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._lock:
                self._readers.append(conn)
        return conn

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` inside one read transaction, so it sees a single snapshot.

        A read-only store reads an immutable file while no writer has it open; if one appeared during
        the read (a log now exists, or the file changed), the read is done again through the log.
        """
        if self.readonly and self._immutable and self._file_state() != self._opened_state:
            self._reopen_readers()  # a writer came since: read through its log from now on
        conn = self._reader()
        if conn.in_transaction:  # already inside a snapshot on this thread
            return fn(conn)
        guard = self.readonly and self._immutable
        failed = False
        try:
            conn.execute("BEGIN")
            try:
                result = fn(conn)
            finally:
                conn.execute("COMMIT")
        except sqlite3.DatabaseError:
            if not guard:
                raise
            failed = True
        if guard and (failed or self._file_state() != self._opened_state):
            self._reopen_readers()  # a writer appeared during the read: read again, through its log
            return self._read(fn)
        return result  # type: ignore[return-value]

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the writer thread inside a savepoint; returns once its transaction is on disk."""
        if self.readonly:
            raise ReadOnlyError(f"{self.path}: the feedback store was opened read-only")
        job = _Job(fn)
        with self._lock:
            # Checked and queued under the lock, so no job can land behind close()'s stop sentinel.
            if self._closed:
                raise FeedbackError(f"{self.path}: the feedback store is closed")
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="hfrl-feedback-writer", daemon=True
                )
                self._writer.start()
                self._checkpointer = threading.Thread(
                    target=self._checkpoint_loop, name="hfrl-feedback-checkpoint", daemon=True
                )
                self._checkpointer.start()
            self._jobs.put(job)
        return job.future.result()

    def _write_loop(self) -> None:
        try:
            conn = self._connect()
            conn.execute("PRAGMA busy_timeout = 0")  # _begin retries itself, at a finer grain
            # The checkpointer thread copies the log into the database; a commit that did it itself would
            # keep its caller (a labeler waiting for an acknowledgement) waiting for megabytes of copying.
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        except (FeedbackError, sqlite3.Error) as exc:
            # Without a connection no write can succeed: fail every caller rather than leave them waiting.
            err = (
                exc if isinstance(exc, FeedbackError) else FeedbackError(f"{self.path}: cannot write ({exc})")
            )
            while (job := self._jobs.get()) is not None:
                job.future.set_exception(err)
            return
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                jobs, stop = [job], False
                while len(jobs) < 512:
                    try:
                        nxt = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    jobs.append(nxt)
                self._commit(conn, jobs)
                if stop:
                    return
        finally:
            conn.close()

    def _checkpoint_loop(self) -> None:
        """Copy committed log pages into the database file in the background (PASSIVE: never blocks writers)."""
        conn = self._connect()
        try:
            stopping = False
            while not stopping:
                stopping = self._stop_checkpoints.wait(CHECKPOINT_INTERVAL)
                with contextlib.suppress(sqlite3.Error):  # best effort: the next round tries again
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    def _begin(self, conn: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE``, retrying every millisecond or so while another process holds the lock.

        SQLite's own busy handler backs off to sleeps of 50-100 ms, far longer than the other writer
        (a trainer adding a chunk of samples) usually holds the lock.
        """
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.0005
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(2 * delay, 0.004)

    def _commit(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        """One transaction for all waiting jobs; a job that fails rolls back only its own savepoint."""
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            self._begin(conn)
        except sqlite3.OperationalError as exc:
            err = StoreBusyError(f"{self.path}: the feedback database is locked ({exc}); try again")
            for job in jobs:
                job.future.set_exception(err)
            return
        try:
            for job in jobs:
                conn.execute("SAVEPOINT job")
                try:
                    result = job.fn(conn)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    if isinstance(exc, sqlite3.IntegrityError):
                        exc = FeedbackError(f"rejected by the feedback database: {exc}")
                    outcomes.append((job, None, exc))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((job, result, None))
            conn.execute("COMMIT")
        except BaseException as exc:  # noqa: BLE001 - the writer thread must survive to serve the next job
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            err = FeedbackError(f"{self.path}: could not save to the feedback database ({exc})")
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(err)
            return
        for job, result, exc in outcomes:
            if exc is None:
                job.future.set_result(result)
            else:
                job.future.set_exception(exc)

    def close(self) -> None:
        """Finish pending writes and close every connection; further use raises :class:`FeedbackError`."""
        if self._closed:
            return
        with self._lock:
            self._closed = True
            writer, self._writer = self._writer, None
        if writer is not None:
            self._jobs.put(None)
            writer.join()
            self._stop_checkpoints.set()
            if self._checkpointer is not None:
                self._checkpointer.join()
        with self._lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeedbackStore({str(self.path)!r})"

    @property
    def schema_version(self) -> int:
        """The store's schema version."""
        return int(self._read(lambda conn: conn.execute("PRAGMA user_version").fetchone()[0]))

    # -- samples and queries

    def add_samples(
        self,
        inputs: Any,
        outputs: Any,
        *,
        clean: Any | None = None,
        classes: Any | None = None,
        checkpoint: str | None = None,
        round: int | None = None,
        domain: str | None = None,
        meta: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> list[int]:
        """Store samples; returns their ids.

        Args:
            inputs: ``(N, 1, H, W)`` (or ``(N, H, W)``) noisy inputs in ``[0, 1]``.
            outputs: ``(N, 1, H, W)`` generator outputs.
            clean: Optional ``(N, 1, H, W)`` clean images, read only by the synthetic labeler.
            classes: Optional ``(N,)`` classes (``-1`` unknown).
            checkpoint: Generator checkpoint that produced the outputs.
            round: Training round that produced them.
            domain: Domain name.
            meta: One JSON-serialisable dict for all samples, or one per sample.

        Raises:
            DataError: for images of the wrong shape, dtype or range.
        """
        rows = self._sample_rows(inputs, outputs, clean, classes, checkpoint, round, domain, meta)
        return self._insert_chunked(rows)

    def _insert_chunked(self, rows: list[tuple[Any, ...]]) -> list[int]:
        """Insert samples a chunk per transaction, so a large batch never holds the write lock for long.

        Labels submitted meanwhile commit between the chunks. Samples belong to no query until
        :meth:`_insert_query` adds one atomically, so a failure half-way leaves nothing visible.
        """
        ids: list[int] = []
        for start in range(0, len(rows), SAMPLE_CHUNK):
            chunk = rows[start : start + SAMPLE_CHUNK]
            ids.extend(self._write(lambda conn, chunk=chunk: self._insert_samples(conn, chunk)))
        return ids

    def add_query(
        self,
        kind: str,
        inputs: Any,
        outputs: Any,
        *,
        others: Any | None = None,
        clean: Any | None = None,
        classes: Any | None = None,
        checkpoint: str | None = None,
        round: int | None = None,
        domain: str | None = None,
        meta: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        labels_needed: int = 1,
        note: str | None = None,
    ) -> int:
        """Store samples and put them to labelers as one query, atomically; returns the query id.

        Args:
            kind: ``single``, ``pair`` or ``hero``.
            inputs: ``(N, 1, H, W)`` noisy inputs.
            outputs: ``(N, 1, H, W)`` outputs (the left ones for ``pair``).
            others: ``(N, 1, H, W)`` right outputs of the same inputs (``pair`` only).
            clean: Optional ``(N, 1, H, W)`` clean images for the synthetic labeler.
            classes: Optional ``(N,)`` classes.
            checkpoint: Generator checkpoint that produced the outputs.
            round: Training round.
            domain: Domain name.
            meta: Metadata for the samples (see :meth:`add_samples`).
            labels_needed: Different labelers each item needs (default 1).
            note: Free text stored with the query.

        Raises:
            FeedbackError: for an unknown kind, or ``others`` given or missing against the kind.
            DataError: for images of the wrong shape, dtype or range.
        """
        self._check_kind(kind, others is not None)
        rows = self._sample_rows(inputs, outputs, clean, classes, checkpoint, round, domain, meta)
        other_rows = (
            self._sample_rows(inputs, others, clean, classes, checkpoint, round, domain, meta, name="others")
            if others is not None
            else None
        )
        if other_rows is not None and len(other_rows) != len(rows):
            raise FeedbackError(f"pair query: {len(rows)} left outputs but {len(other_rows)} right outputs")
        labels_needed = self._check_needed(labels_needed)

        ids = self._insert_chunked(rows)
        pairs = list(zip(ids, self._insert_chunked(other_rows))) if other_rows else [(i, None) for i in ids]
        return self._write(lambda conn: self._insert_query(conn, kind, pairs, labels_needed, note))

    def create_query(
        self,
        kind: str,
        samples: Sequence[int] | Sequence[tuple[int, int]],
        *,
        labels_needed: int = 1,
        note: str | None = None,
    ) -> int:
        """Put stored samples to labelers; returns the query id.

        Args:
            kind: ``single``, ``pair`` or ``hero``.
            samples: Sample ids, or ``(left, right)`` id pairs for ``pair``.
            labels_needed: Different labelers each item needs.
            note: Free text stored with the query.

        Raises:
            FeedbackError: for an unknown kind, an empty or mis-shaped list, or unknown sample ids.
        """
        pairs: list[tuple[int, int | None]] = []
        for entry in samples:
            if isinstance(entry, (tuple, list)):
                if len(entry) != 2:
                    raise FeedbackError(f"a pair is two sample ids, got {entry!r}")
                pairs.append((int(entry[0]), int(entry[1])))
            else:
                pairs.append((int(entry), None))
        self._check_kind(kind, any(o is not None for _, o in pairs))
        if kind == PAIR and any(o is None for _, o in pairs):
            raise FeedbackError("a pair query needs (left, right) sample-id pairs")
        labels_needed = self._check_needed(labels_needed)

        def work(conn: sqlite3.Connection) -> int:
            wanted = {i for pair in pairs for i in pair if i is not None}
            found = {
                r[0]
                for r in conn.execute(
                    "SELECT id FROM samples WHERE id IN (SELECT value FROM json_each(?))",
                    (json.dumps(sorted(wanted)),),
                )
            }
            if wanted - found:
                raise UnknownIdError(f"unknown sample ids: {sorted(wanted - found)[:10]}")
            return self._insert_query(conn, kind, pairs, labels_needed, note)

        return self._write(work)

    @staticmethod
    def _check_kind(kind: str, has_others: bool) -> None:
        if kind not in KINDS:
            raise FeedbackError(f"unknown query kind {kind!r}; expected one of {', '.join(KINDS)}")
        if (kind == PAIR) != has_others:
            raise FeedbackError(
                "a pair query needs a right-hand output for every item"
                if kind == PAIR
                else f"a {kind} query has one output per item; right-hand outputs are for pair queries"
            )

    @staticmethod
    def _check_needed(labels_needed: int) -> int:
        if int(labels_needed) != labels_needed or labels_needed < 1:
            raise FeedbackError(f"labels_needed must be an integer >= 1, got {labels_needed!r}")
        return int(labels_needed)

    @staticmethod
    def _sample_rows(
        inputs: Any,
        outputs: Any,
        clean: Any | None,
        classes: Any | None,
        checkpoint: str | None,
        round: int | None,
        domain: str | None,
        meta: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
        name: str = "outputs",
    ) -> list[tuple[Any, ...]]:
        x = as_images(inputs, name="inputs")
        y = as_images(outputs, name=name)
        c = as_images(clean, name="clean") if clean is not None else None
        n, _, h, w = y.shape
        for label, t in (("inputs", x), ("clean", c)):
            if t is not None and tuple(t.shape) != tuple(y.shape):
                raise FeedbackError(
                    f"{label} have shape {tuple(t.shape)} but {name} have shape {tuple(y.shape)}"
                )
        if classes is None:
            cls = [None] * n
        else:
            arr = np.asarray(classes.cpu() if isinstance(classes, torch.Tensor) else classes).reshape(-1)
            if arr.shape[0] != n or arr.dtype.kind not in "iu":
                raise FeedbackError(
                    f"classes: expected {n} integers, got {arr.shape[0]} of dtype {arr.dtype}"
                )
            cls = [int(v) if v >= 0 else None for v in arr]
        if meta is None:
            metas = ["{}"] * n
        elif isinstance(meta, Mapping):
            metas = [json.dumps(dict(meta))] * n
        else:
            if len(meta) != n:
                raise FeedbackError(f"meta: expected one dict per sample ({n}), got {len(meta)}")
            metas = [json.dumps(dict(m)) for m in meta]
        now = time.time()
        return [
            (
                uuid.uuid4().hex,
                h,
                w,
                _blob(x[k]),
                _blob(y[k]),
                _blob(c[k]) if c is not None else None,
                checkpoint,
                None if round is None else int(round),
                domain,
                cls[k],
                metas[k],
                now,
            )
            for k in range(n)
        ]

    @staticmethod
    def _insert_samples(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[int]:
        ids = []
        for row in rows:
            cur = conn.execute(
                "INSERT INTO samples (uid, height, width, input, output, clean, checkpoint, round, domain, class,"
                " meta, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            ids.append(int(cur.lastrowid))  # type: ignore[arg-type]
        return ids

    @staticmethod
    def _insert_query(
        conn: sqlite3.Connection,
        kind: str,
        pairs: list[tuple[int, int | None]],
        labels_needed: int,
        note: str | None,
    ) -> int:
        if not pairs:
            raise FeedbackError("a query needs at least one item")
        cur = conn.execute(
            "INSERT INTO queries (uid, kind, labels_needed, note, created) VALUES (?, ?, ?, ?, ?)",
            (uuid.uuid4().hex, kind, labels_needed, note, time.time()),
        )
        qid = int(cur.lastrowid)  # type: ignore[arg-type]
        conn.executemany(
            "INSERT INTO items (uid, query_id, position, sample_id, other_id) VALUES (?, ?, ?, ?, ?)",
            [(uuid.uuid4().hex, qid, pos, s, o) for pos, (s, o) in enumerate(pairs)],
        )
        return qid

    def sample(self, sample_id: int) -> SampleRecord:
        """One sample without its clean image.

        Raises:
            UnknownIdError: for an unknown id.
        """
        row = (
            self._reader()
            .execute(
                "SELECT id, height, width, input, output, checkpoint, round, domain, class, meta,"
                " clean IS NOT NULL AS has_clean FROM samples WHERE id = ?",
                (_row_id(sample_id, "sample"),),
            )
            .fetchone()
        )
        if row is None:
            raise UnknownIdError(f"unknown sample id {sample_id}")
        h, w = row["height"], row["width"]
        return SampleRecord(
            id=row["id"],
            input=torch.from_numpy(_array(row["input"], h, w).copy())[None],
            output=torch.from_numpy(_array(row["output"], h, w).copy())[None],
            checkpoint=row["checkpoint"],
            round=row["round"],
            domain=row["domain"],
            cls=-1 if row["class"] is None else int(row["class"]),
            meta=json.loads(row["meta"]),
            has_clean=bool(row["has_clean"]),
        )

    def sample_arrays(self, sample_ids: Sequence[int], which: str = "output") -> list[np.ndarray]:
        """``(H, W)`` float32 arrays of the ``input`` or ``output`` image of each sample, in order.

        Raises:
            UnknownIdError: for an unknown id.
        """
        if which not in ("input", "output"):
            raise ValueError(f"which must be 'input' or 'output', got {which!r}")
        return self._arrays(sample_ids, which)

    def _arrays(self, sample_ids: Sequence[int], column: str) -> list[np.ndarray]:
        ids = [int(i) for i in sample_ids]
        rows = (
            self._reader()
            .execute(
                f"SELECT id, height, width, {column} FROM samples WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(sorted(set(ids))),),
            )
            .fetchall()
        )
        by_id = {r[0]: r for r in rows}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise UnknownIdError(f"unknown sample ids: {missing[:10]}")
        out = []
        for i in ids:
            r = by_id[i]
            if r[3] is None:
                raise FeedbackError(f"sample {i} has no {column} image")
            out.append(_array(r[3], r[1], r[2]))
        return out

    @staticmethod
    def _stack(arrays: list[np.ndarray]) -> torch.Tensor:
        if not arrays:
            return torch.zeros(0, 1, 0, 0)
        if len({a.shape for a in arrays}) > 1:
            raise FeedbackError(f"samples have different image sizes: {sorted({a.shape for a in arrays})}")
        return torch.from_numpy(np.stack(arrays))[:, None]

    def images(self, sample_ids: Sequence[int], which: str = "output") -> torch.Tensor:
        """``(N, 1, H, W)`` float32 ``input`` or ``output`` images, exactly as stored."""
        return self._stack(self.sample_arrays(sample_ids, which))

    def clean_images(self, sample_ids: Sequence[int]) -> torch.Tensor:
        """``(N, 1, H, W)`` clean reference images: for the synthetic labeler only, never sent to clients.

        Raises:
            FeedbackError: when a sample has no clean image.
        """
        return self._stack(self._arrays(sample_ids, "clean"))

    def sample_classes(self, sample_ids: Sequence[int]) -> torch.Tensor:
        """``(N,)`` int64 classes of the samples (``-1`` unknown)."""
        ids = [int(i) for i in sample_ids]
        rows = dict(
            self._reader()
            .execute(
                "SELECT id, class FROM samples WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(ids),),
            )
            .fetchall()
        )
        missing = [i for i in ids if i not in rows]
        if missing:
            raise UnknownIdError(f"unknown sample ids: {missing[:10]}")
        return torch.tensor([-1 if rows[i] is None else rows[i] for i in ids], dtype=torch.long)

    def query(self, query_id: int) -> QueryRecord:
        """One query.

        Raises:
            UnknownIdError: for an unknown id.
        """
        return self._read(lambda conn: self._query(conn, _row_id(query_id, "query")))

    @staticmethod
    def _query(conn: sqlite3.Connection, query_id: int) -> QueryRecord:
        row = conn.execute(
            "SELECT q.*, (SELECT count(*) FROM items i WHERE i.query_id = q.id) AS size FROM queries q WHERE id = ?",
            (query_id,),
        ).fetchone()
        if row is None:
            raise UnknownIdError(f"unknown query id {query_id}")
        return QueryRecord(
            id=row["id"],
            kind=row["kind"],
            status=row["status"],
            labels_needed=row["labels_needed"],
            size=row["size"],
            note=row["note"],
            created=row["created"],
            completed=row["completed"],
        )

    def query_status(self, query_id: int) -> str:
        """``pending``, ``done`` or ``cancelled`` (cheap enough to poll).

        Raises:
            UnknownIdError: for an unknown id.
        """
        row = (
            self._reader()
            .execute("SELECT status FROM queries WHERE id = ?", (_row_id(query_id, "query"),))
            .fetchone()
        )
        if row is None:
            raise UnknownIdError(f"unknown query id {query_id}")
        return str(row[0])

    def queries(self, status: str | None = None) -> list[QueryRecord]:
        """All queries, oldest first, optionally only those with ``status``."""
        if status is not None and status not in STATUSES:
            raise FeedbackError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        ids = [
            r[0]
            for r in self._reader().execute(
                "SELECT id FROM queries WHERE ? IS NULL OR status = ? ORDER BY id", (status, status)
            )
        ]
        return self._read(lambda conn: [self._query(conn, i) for i in ids])

    def items(self, query_id: int) -> list[ItemRecord]:
        """The items of a query in position order.

        Raises:
            UnknownIdError: for an unknown query.
        """
        self.query(query_id)
        rows = self._reader().execute(
            f"SELECT {_ITEM_COLUMNS} FROM items i JOIN queries q ON q.id = i.query_id"
            " WHERE i.query_id = ? ORDER BY i.position",
            (_row_id(query_id, "query"),),
        )
        return [_item(r) for r in rows]

    def item(self, item_id: int) -> ItemRecord:
        """One item.

        Raises:
            UnknownIdError: for an unknown id.
        """
        row = (
            self._reader()
            .execute(
                f"SELECT {_ITEM_COLUMNS} FROM items i JOIN queries q ON q.id = i.query_id WHERE i.id = ?",
                (_row_id(item_id, "item"),),
            )
            .fetchone()
        )
        if row is None:
            raise UnknownIdError(f"unknown item id {item_id}")
        return _item(row)

    def cancel_query(self, query_id: int) -> None:
        """Withdraw a query from labelers; its labels so far are kept.

        Raises:
            UnknownIdError: for an unknown id.
        """

        def work(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE queries SET status = 'cancelled' WHERE id = ?", (_row_id(query_id, "query"),)
            )
            if cur.rowcount == 0:
                raise UnknownIdError(f"unknown query id {query_id}")

        self._write(work)

    # -- labelling

    def next_batch(
        self,
        labeler: str,
        *,
        limit: int = 16,
        kind: str | None = None,
        avoid: Iterable[int] = (),
        require_clean: bool = False,
        max_hero: int = 256,
    ) -> Batch:
        """The items to show ``labeler`` next (a read: nothing is leased; see :meth:`lease_batch`).

        Oldest query first; items the labeler already answered and items that have enough labelers
        (counting the live leases other labelers hold on them) are left out. Items in ``avoid`` come
        last. A ``hero`` query is shown whole.

        Args:
            labeler: Labeler id.
            limit: Most items for ``single`` and ``pair`` batches.
            kind: Only queries of this kind.
            avoid: Item ids to show only when nothing else is pending.
            require_clean: Only items whose samples have a clean image (the synthetic labeler).
            max_hero: Most items of a ``hero`` batch.

        Returns:
            A :class:`Batch`; empty (kind ``None``) when nothing is pending for this labeler.
        """
        _check_labeler(labeler)
        args = self._batch_args(limit, kind, avoid, require_clean, max_hero)
        return self._read(lambda conn: _select_batch(conn, labeler, *args, now=time.time()))

    def lease_batch(
        self,
        labeler: str,
        *,
        limit: int = 16,
        kind: str | None = None,
        seconds: float = DEFAULT_LEASE_SECONDS,
        require_clean: bool = False,
        max_hero: int = 256,
    ) -> Batch:
        """Choose the next items for ``labeler`` and lease them to it, in one write transaction.

        An item needing ``n`` labels is handed to at most ``n`` labelers at once, counting those who
        already answered it and those holding a live lease: two labelers racing for the same page get
        different items. The labeler's leases on items not in the new batch are released (a labeler
        holds one page). A lease lapses after ``seconds`` unless renewed (:meth:`renew_leases`) or
        answered, so items held by a labeler who left go back to the others.

        Args:
            labeler: Labeler id.
            limit: Most items for ``single`` and ``pair`` batches.
            kind: Only queries of this kind.
            seconds: Lease length.
            require_clean: Only items whose samples have a clean image.
            max_hero: Most items of a ``hero`` batch.

        Returns:
            The leased :class:`Batch` (empty when nothing is available to this labeler).
        """
        _check_labeler(labeler)
        seconds = _check_seconds(seconds)
        args = self._batch_args(limit, kind, (), require_clean, max_hero)

        def work(conn: sqlite3.Connection) -> Batch:
            now = time.time()
            conn.execute("DELETE FROM leases WHERE expires <= ?", (now,))
            batch = _select_batch(conn, labeler, *args, now=now)
            ids = [it.id for it in batch.items]
            conn.execute(
                "DELETE FROM leases WHERE labeler = ? AND item_id NOT IN (SELECT value FROM json_each(?))",
                (labeler, json.dumps(ids)),
            )
            conn.executemany(
                "INSERT INTO leases (item_id, labeler, expires) VALUES (?, ?, ?)"
                " ON CONFLICT (item_id, labeler) DO UPDATE SET expires = excluded.expires",
                [(i, labeler, now + seconds) for i in ids],
            )
            return batch

        return self._write(work)

    def renew_leases(self, labeler: str, seconds: float = DEFAULT_LEASE_SECONDS) -> int:
        """Extend every live lease ``labeler`` holds by ``seconds`` from now; returns how many."""
        _check_labeler(labeler)
        seconds = _check_seconds(seconds)

        def work(conn: sqlite3.Connection) -> int:
            now = time.time()
            cur = conn.execute(
                "UPDATE leases SET expires = ? WHERE labeler = ? AND expires > ?",
                (now + seconds, labeler, now),
            )
            return int(cur.rowcount)

        return self._write(work)

    def release_leases(self, labeler: str) -> int:
        """Give back every item leased to ``labeler``; returns how many."""
        _check_labeler(labeler)
        return self._write(
            lambda conn: int(conn.execute("DELETE FROM leases WHERE labeler = ?", (labeler,)).rowcount)
        )

    def leases(self) -> dict[int, dict[str, float]]:
        """Live leases: ``{item id: {labeler: expiry (Unix time)}}``."""
        if self._version < 2:
            return {}

        def work(conn: sqlite3.Connection) -> dict[int, dict[str, float]]:
            out: dict[int, dict[str, float]] = defaultdict(dict)
            for item_id, who, until in conn.execute(
                "SELECT item_id, labeler, expires FROM leases WHERE expires > ?", (time.time(),)
            ):
                out[int(item_id)][str(who)] = float(until)
            return dict(out)

        return self._read(work)

    def _batch_args(
        self, limit: int, kind: str | None, avoid: Iterable[int], require_clean: bool, max_hero: int
    ) -> tuple[int, str | None, set[int], bool, int, bool]:
        if kind is not None and kind not in KINDS:
            raise FeedbackError(f"unknown query kind {kind!r}; expected one of {', '.join(KINDS)}")
        return max(1, int(limit)), kind, set(avoid), require_clean, max(1, int(max_hero)), self._version >= 2

    # -- labeler sessions

    def create_session(self, name: str) -> str:
        """Issue a session for a new labeler name; returns its secret token (only its hash is stored).

        A name belongs to the first session issued for it. A name that already has a session, or that
        already has labels in the store (e.g. written by the synthetic labeler or imported), is refused,
        so nobody can act for a labeler by claiming their name.

        Raises:
            NameTakenError: for a name that belongs to someone else.
        """
        _check_labeler(name)
        token = secrets.token_urlsafe(32)

        def work(conn: sqlite3.Connection) -> str:
            if (
                conn.execute("SELECT 1 FROM labelers WHERE name = ?", (name,)).fetchone()
                or conn.execute("SELECT 1 FROM labels WHERE labeler = ? LIMIT 1", (name,)).fetchone()
            ):
                raise NameTakenError(f"labeler name {name!r} is taken; choose another name")
            conn.execute(
                "INSERT INTO labelers (name, token_hash, created) VALUES (?, ?, ?)",
                (name, _token_hash(token), time.time()),
            )
            return token

        return self._write(work)

    def session_labeler(self, token: str) -> str | None:
        """The labeler a session token was issued to, or ``None`` for an unknown token."""
        if not isinstance(token, str) or not token or len(token) > 256 or self._version < 2:
            return None
        digest = _token_hash(token)
        row = self._read(
            lambda conn: conn.execute("SELECT name FROM labelers WHERE token_hash = ?", (digest,)).fetchone()
        )
        return None if row is None else str(row[0])

    def submit_labels(self, labeler: str, labels: Sequence[LabelInput]) -> SubmitResult:
        """Store a labeler's answers in one transaction: all are stored, or none.

        When this returns, the labels are on disk. A labeler who answers an item again replaces their own
        earlier answer for reading purposes (both rows are kept); other labelers' answers are untouched.

        Args:
            labeler: Labeler id (1 to 64 characters).
            labels: The answers; each item at most once.

        Raises:
            UnknownIdError: for an unknown item id.
            QueryClosedError: for an item of a cancelled query.
            FeedbackError: for a word not allowed for the item's kind, a best mark outside a ``hero``
                query or on ``skip``, two best marks in one query, or an item given twice.
        """
        _check_labeler(labeler)
        entries = list(labels)
        if not entries:
            raise FeedbackError("no labels given")
        ids = [int(e.item_id) for e in entries]
        if len(set(ids)) != len(ids):
            raise FeedbackError("an item appears more than once in one submission")
        for e in entries:
            if e.response_ms is not None and not (0.0 <= float(e.response_ms) < math.inf):
                raise FeedbackError(f"response_ms must be a finite number >= 0, got {e.response_ms}")

        def work(conn: sqlite3.Connection) -> SubmitResult:
            rows = conn.execute(
                "SELECT i.id, i.query_id, q.kind, q.status FROM items i JOIN queries q ON q.id = i.query_id"
                " WHERE i.id IN (SELECT value FROM json_each(?))",
                (json.dumps(ids),),
            ).fetchall()
            info = {r[0]: (r[1], r[2], r[3]) for r in rows}
            unknown = [i for i in ids if i not in info]
            if unknown:
                raise UnknownIdError(f"unknown item ids: {unknown[:10]}")
            best_queries: set[int] = set()
            for e in entries:
                qid, qkind, status = info[int(e.item_id)]
                if status == "cancelled":
                    raise QueryClosedError(f"item {e.item_id} belongs to query {qid}, which was cancelled")
                if e.value not in values_for(qkind):
                    raise FeedbackError(
                        f"item {e.item_id} is a {qkind} item: label must be one of "
                        f"{', '.join(values_for(qkind))}, got {e.value!r}"
                    )
                if e.best:
                    if qkind != HERO:
                        raise FeedbackError(
                            f"item {e.item_id}: only hero items can be marked best, not {qkind}"
                        )
                    if e.value == SKIP:
                        raise FeedbackError(f"item {e.item_id}: a skipped item cannot be marked best")
                    if qid in best_queries:
                        raise FeedbackError(f"query {qid}: only one item can be marked best per submission")
                    best_queries.add(qid)
            now = time.time()
            new_ids = []
            for e in entries:
                cur = conn.execute(
                    "INSERT INTO labels (uid, item_id, labeler, value, best, response_ms, created)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        uuid.uuid4().hex,
                        int(e.item_id),
                        labeler,
                        e.value,
                        int(bool(e.best)),
                        None if e.response_ms is None else float(e.response_ms),
                        now,
                    ),
                )
                new_ids.append(int(cur.lastrowid))  # type: ignore[arg-type]
            # Answered: the label now counts for the item, not the lease.
            conn.execute(
                "DELETE FROM leases WHERE labeler = ? AND item_id IN (SELECT value FROM json_each(?))",
                (labeler, json.dumps(ids)),
            )
            completed = []
            for qid in sorted({info[i][0] for i in ids}):
                was = info[next(i for i in ids if info[i][0] == qid)][2]
                if _refresh_status(conn, qid, now) == "done" and was != "done":
                    completed.append(qid)
            return SubmitResult(tuple(new_ids), tuple(completed))

        return self._write(work)

    def undo(self, labeler: str) -> LabelRecord | None:
        """Retract ``labeler``'s most recent current label (never anyone else's).

        The row is kept, marked retracted; the labeler's previous answer on that item, if any, becomes
        current again, and the query goes back to ``pending`` if it no longer has enough labels.

        Returns:
            The retracted label, or ``None`` when the labeler has nothing to undo.
        """
        _check_labeler(labeler)

        def work(conn: sqlite3.Connection) -> LabelRecord | None:
            row = conn.execute(
                "SELECT * FROM labels WHERE labeler = ? AND retracted IS NULL ORDER BY id DESC LIMIT 1",
                (labeler,),
            ).fetchone()
            if row is None:
                return None
            now = time.time()
            conn.execute("UPDATE labels SET retracted = ? WHERE id = ?", (now, row["id"]))
            qid = conn.execute("SELECT query_id FROM items WHERE id = ?", (row["item_id"],)).fetchone()[0]
            _refresh_status(conn, qid, now)
            return LabelRecord(
                id=row["id"],
                item_id=row["item_id"],
                labeler=row["labeler"],
                value=row["value"],
                best=bool(row["best"]),
                response_ms=row["response_ms"],
                created=row["created"],
                retracted=now,
            )

        return self._write(work)

    def labels(
        self,
        *,
        labeler: str | None = None,
        query_id: int | None = None,
        include_retracted: bool = False,
    ) -> list[LabelRecord]:
        """Stored label rows, oldest first (every row, not only current ones, when ``include_retracted``)."""
        sql = "SELECT l.* FROM labels l JOIN items i ON i.id = l.item_id WHERE 1 = 1"
        args: list[Any] = []
        if labeler is not None:
            sql += " AND l.labeler = ?"
            args.append(labeler)
        if query_id is not None:
            sql += " AND i.query_id = ?"
            args.append(_row_id(query_id, "query"))
        if not include_retracted:
            sql += " AND l.retracted IS NULL"
        return [_label(r) for r in self._reader().execute(sql + " ORDER BY l.id", args)]

    def label_ids(self) -> set[int]:
        """Ids of every stored label row (retracted ones included)."""
        return {r[0] for r in self._reader().execute("SELECT id FROM labels")}

    def progress(self, labeler: str | None = None, window_s: float = 300.0) -> Progress:
        """Counts for the progress bar of the labelling page.

        Args:
            labeler: Whose labels and rate to count (everyone's when ``None``).
            window_s: Seconds over which the labelling rate is measured.
        """
        now = time.time()

        def work(conn: sqlite3.Connection) -> Progress:
            cur = conn.execute(
                f"SELECT count(*), count(DISTINCT labeler) FROM ({_CURRENT_LABELS})"
            ).fetchone()
            who = "(? IS NULL OR labeler = ?)"
            mine = conn.execute(
                f"SELECT count(*) FROM ({_CURRENT_LABELS}) WHERE {who}", (labeler, labeler)
            ).fetchone()[0]
            recent, first = conn.execute(
                f"SELECT count(*), min(created) FROM labels WHERE retracted IS NULL AND created >= ? AND {who}",
                (now - window_s, labeler, labeler),
            ).fetchone()
            minutes = max((now - first) / 60.0, 1.0) if recent else 1.0
            pending_items = conn.execute(
                """
                SELECT count(*) FROM items i JOIN queries q ON q.id = i.query_id
                WHERE q.status = 'pending'
                  AND (SELECT count(DISTINCT l.labeler) FROM labels l
                       WHERE l.item_id = i.id AND l.retracted IS NULL) < q.labels_needed
                """
            ).fetchone()[0]
            pending_queries = conn.execute(
                "SELECT count(*) FROM queries WHERE status = 'pending'"
            ).fetchone()[0]
            return Progress(
                labelled=int(mine),
                labels_total=int(cur[0]),
                pending_items=int(pending_items),
                pending_queries=int(pending_queries),
                labels_per_minute=round(recent / minutes, 2),
                labelers=int(cur[1]),
            )

        return self._read(work)

    # -- aggregation and export

    def query_result(self, query_id: int) -> QueryResult:
        """Everything said about one query so far, aggregated (majority, mean, agreement, best).

        Raises:
            UnknownIdError: for an unknown id.
        """

        def work(conn: sqlite3.Connection) -> QueryResult:
            query = self._query(conn, _row_id(query_id, "query"))
            items = conn.execute(
                "SELECT id, position, sample_id, other_id FROM items WHERE query_id = ? ORDER BY position",
                (query.id,),
            ).fetchall()
            current = conn.execute(
                f"SELECT c.id, c.item_id, c.labeler, c.value, c.best FROM ({_CURRENT_LABELS}) c"
                " JOIN items i ON i.id = c.item_id WHERE i.query_id = ? ORDER BY c.id",
                (query.id,),
            ).fetchall()
            votes: dict[int, dict[str, str]] = defaultdict(dict)
            best_votes: dict[str, int] = {}
            position = {r[0]: r[1] for r in items}
            for _, item_id, who, value, best in current:
                votes[item_id][who] = value
                if best:
                    best_votes[who] = position[item_id]  # ordered by id: the latest best mark wins
            results = []
            for item_id, pos, sid, oid in items:
                words = list(votes[item_id].values())
                stats = _pair_stats(words) if query.kind == PAIR else _rating_stats(words)
                results.append(
                    ItemResult(item_id, pos, sid, oid, dict(votes[item_id]), stats[0], stats[1], stats[2])
                )
            best = None
            if best_votes:
                counts = Counter(best_votes.values())
                best = min(counts, key=lambda p: (-counts[p], p))
            return QueryResult(query, tuple(results), best, best_votes)

        return self._read(work)

    def rating_summaries(self, query_id: int | None = None) -> list[RatingSummary]:
        """Good/bad aggregation per sample over ``single`` and ``hero`` queries (or one query).

        Each labeler counts once per sample: their latest unretracted label on it. Samples nobody
        labelled are left out; samples only skipped are kept with zero votes.
        """

        def work(conn: sqlite3.Connection) -> tuple[list[Any], dict[int, int]]:
            rows = conn.execute(
                f"""
                SELECT sample_id, labeler, value FROM (
                    SELECT i.sample_id, c.labeler, c.value,
                           ROW_NUMBER() OVER (PARTITION BY i.sample_id, c.labeler ORDER BY c.id DESC) AS r
                    FROM ({_CURRENT_LABELS}) c JOIN items i ON i.id = c.item_id JOIN queries q ON q.id = i.query_id
                    WHERE q.kind IN ('{SINGLE}', '{HERO}') AND (? IS NULL OR q.id = ?)
                ) WHERE r = 1 ORDER BY sample_id
                """,
                (query_id, query_id),
            ).fetchall()
            bests = conn.execute(
                f"""
                SELECT sample_id, count(*) FROM (
                    SELECT i.sample_id,
                           ROW_NUMBER() OVER (PARTITION BY i.query_id, c.labeler ORDER BY c.id DESC) AS r
                    FROM ({_CURRENT_LABELS}) c JOIN items i ON i.id = c.item_id
                    WHERE c.best = 1 AND (? IS NULL OR i.query_id = ?)
                ) WHERE r = 1 GROUP BY sample_id
                """,
                (query_id, query_id),
            ).fetchall()
            return rows, dict(bests)

        rows, bests = self._read(work)
        by_sample: dict[int, list[str]] = defaultdict(list)
        for sid, _, value in rows:
            by_sample[sid].append(value)
        out = []
        for sid, words in by_sample.items():
            majority, mean, agreement = _rating_stats(words)
            out.append(
                RatingSummary(
                    sample_id=sid,
                    good=words.count(GOOD),
                    bad=words.count(BAD),
                    skips=words.count(SKIP),
                    majority=None if majority == SKIP else majority,
                    agreement=agreement,
                    mean=mean,
                    best=int(bests.get(sid, 0)),
                )
            )
        return out

    def pair_summaries(self, query_id: int | None = None) -> list[PairSummary]:
        """Pairwise aggregation per unordered pair of samples, over ``pair`` queries (or one query)."""
        rows = self._read(
            lambda conn: conn.execute(
                f"""
                SELECT i.sample_id, i.other_id, c.labeler, c.value, c.id
                FROM ({_CURRENT_LABELS}) c JOIN items i ON i.id = c.item_id JOIN queries q ON q.id = i.query_id
                WHERE q.kind = '{PAIR}' AND (? IS NULL OR q.id = ?) ORDER BY c.id
                """,
                (query_id, query_id),
            ).fetchall()
        )
        votes: dict[tuple[int, int], dict[str, str]] = defaultdict(dict)
        for a, b, who, value, _ in rows:
            key, word = ((a, b), value) if a < b else ((b, a), flip_preference(value))
            votes[key][who] = word  # ordered by id: a labeler's latest answer on the pair wins
        out = []
        for (a, b), by_labeler in sorted(votes.items()):
            words = list(by_labeler.values())
            majority, mean, agreement = _pair_stats(words)
            out.append(
                PairSummary(
                    a,
                    b,
                    words.count("left"),
                    words.count("right"),
                    words.count(TIE),
                    majority,
                    agreement,
                    mean,
                )
            )
        return out

    def rating_tensors(self, min_votes: int = 1, min_agreement: float = 0.0) -> RatingTensors:
        """Good/bad feedback as tensors (see :class:`RatingTensors`).

        Args:
            min_votes: Leave out samples with fewer good/bad votes.
            min_agreement: Leave out samples whose labelers agree less than this.
        """
        rows = [
            s
            for s in self.rating_summaries()
            if s.votes >= min_votes and s.votes > 0 and s.agreement >= min_agreement
        ]
        ids = [s.sample_id for s in rows]
        outputs = self.images(ids, "output") if ids else torch.zeros(0, 1, 0, 0)
        return RatingTensors(
            inputs=self.images(ids, "input") if ids else torch.zeros(0, 1, 0, 0),
            outputs=outputs,
            targets=torch.tensor([s.target for s in rows], dtype=torch.float32),
            mean=torch.tensor([s.mean for s in rows], dtype=torch.float32),
            agreement=torch.tensor([s.agreement for s in rows], dtype=torch.float32),
            votes=torch.tensor([s.votes for s in rows], dtype=torch.long),
            best=torch.tensor([s.best for s in rows], dtype=torch.long),
            classes=self.sample_classes(ids) if ids else torch.zeros(0, dtype=torch.long),
            sample_ids=torch.tensor(ids, dtype=torch.long),
        )

    def hero_batches(self, only_done: bool = True) -> list[HeroBatch]:
        """Every ``hero`` query as a :class:`HeroBatch`, oldest first.

        Args:
            only_done: Only queries with all the labels they asked for (default); else every hero query
                with at least one label.
        """
        out = []
        for query in self.queries():
            if query.kind != HERO or query.status == "cancelled" or (only_done and query.status != "done"):
                continue
            result = self.query_result(query.id)
            if not any(item.votes for item in result.items):
                continue
            ids = result.sample_ids
            targets = []
            for item in result.items:
                if item.majority in (GOOD, BAD):
                    targets.append(float(rating_value(item.majority)))  # type: ignore[arg-type]
                else:
                    targets.append(0.5 if item.majority is None and item.votes else math.nan)
            out.append(
                HeroBatch(
                    query_id=query.id,
                    inputs=self.images(ids, "input"),
                    outputs=self.images(ids, "output"),
                    targets=torch.tensor(targets, dtype=torch.float32),
                    best=result.best,
                    classes=self.sample_classes(ids),
                    sample_ids=torch.tensor(ids, dtype=torch.long),
                )
            )
        return out

    def pair_tensors(self, min_votes: int = 1, min_agreement: float = 0.0) -> PairTensors:
        """Pairwise feedback as tensors (see :class:`PairTensors`).

        Args:
            min_votes: Leave out pairs with fewer votes.
            min_agreement: Leave out pairs whose labelers agree less than this.
        """
        rows = [
            s for s in self.pair_summaries() if s.votes >= max(min_votes, 1) and s.agreement >= min_agreement
        ]
        left = [s.left_id for s in rows]
        right = [s.right_id for s in rows]
        empty = torch.zeros(0, 1, 0, 0)
        return PairTensors(
            inputs=self.images(left, "input") if rows else empty,
            left=self.images(left, "output") if rows else empty,
            right=self.images(right, "output") if rows else empty,
            preference=torch.tensor([s.target for s in rows], dtype=torch.float32),
            mean=torch.tensor([s.mean for s in rows], dtype=torch.float32),
            agreement=torch.tensor([s.agreement for s in rows], dtype=torch.float32),
            votes=torch.tensor([s.votes for s in rows], dtype=torch.long),
            classes=self.sample_classes(left) if rows else torch.zeros(0, dtype=torch.long),
            left_ids=torch.tensor(left, dtype=torch.long),
            right_ids=torch.tensor(right, dtype=torch.long),
        )

    # -- portable archives

    def export_archive(self, path: str | Path, *, include_clean: bool = True) -> Path:
        """Write the whole store to a portable archive: a zip of Parquet tables and a JSON manifest.

        Rows refer to each other by ``uid``, so the archive can be merged into any store with
        :meth:`import_archive`. Images stay exact ``float32`` bytes.

        Args:
            path: The ``.zip`` file to write (replaced atomically).
            include_clean: Also export clean reference images (needed to run the synthetic labeler there).

        Returns:
            ``path``.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        clean_col = "s.clean" if include_clean else "NULL"
        sql = {
            "samples": f"SELECT s.uid, s.height, s.width, s.input, s.output, {clean_col} AS clean, s.checkpoint,"
            " s.round, s.domain, s.class, s.meta, s.created FROM samples s ORDER BY s.id",
            "queries": "SELECT uid, kind, status, labels_needed, note, created, completed FROM queries ORDER BY id",
            "items": "SELECT i.uid, q.uid AS query_uid, i.position, s.uid AS sample_uid, o.uid AS other_uid"
            " FROM items i JOIN queries q ON q.id = i.query_id JOIN samples s ON s.id = i.sample_id"
            " LEFT JOIN samples o ON o.id = i.other_id ORDER BY i.id",
            "labels": "SELECT l.uid, i.uid AS item_uid, l.labeler, l.value, l.best, l.response_ms, l.created,"
            " l.retracted FROM labels l JOIN items i ON i.id = l.item_id ORDER BY l.id",
        }
        types = {
            "samples": [
                ("uid", pa.string()),
                ("height", pa.int32()),
                ("width", pa.int32()),
                ("input", pa.binary()),
                ("output", pa.binary()),
                ("clean", pa.binary()),
                ("checkpoint", pa.string()),
                ("round", pa.int64()),
                ("domain", pa.string()),
                ("class", pa.int64()),
                ("meta", pa.string()),
                ("created", pa.float64()),
            ],
            "queries": [
                ("uid", pa.string()),
                ("kind", pa.string()),
                ("status", pa.string()),
                ("labels_needed", pa.int64()),
                ("note", pa.string()),
                ("created", pa.float64()),
                ("completed", pa.float64()),
            ],
            "items": [
                ("uid", pa.string()),
                ("query_uid", pa.string()),
                ("position", pa.int64()),
                ("sample_uid", pa.string()),
                ("other_uid", pa.string()),
            ],
            "labels": [
                ("uid", pa.string()),
                ("item_uid", pa.string()),
                ("labeler", pa.string()),
                ("value", pa.string()),
                ("best", pa.int64()),
                ("response_ms", pa.float64()),
                ("created", pa.float64()),
                ("retracted", pa.float64()),
            ],
        }

        def work(conn: sqlite3.Connection) -> dict[str, bytes]:
            blobs = {}
            for name, query in sql.items():
                rows = conn.execute(query).fetchall()
                schema = pa.schema(types[name])
                columns = {col: [r[k] for r in rows] for k, (col, _) in enumerate(types[name])}
                table = pa.table(columns, schema=schema)
                buf = io.BytesIO()
                pq.write_table(table, buf, compression="zstd")
                blobs[name] = buf.getvalue()
            return blobs

        blobs = self._read(work)
        manifest = {
            "format": ARCHIVE_FORMAT,
            "format_version": ARCHIVE_VERSION,
            "schema_version": SCHEMA_VERSION,
            "created": time.time(),
            "include_clean": include_clean,
            "tables": {
                name: {"file": f"{name}.parquet", "sha256": hashlib.sha256(b).hexdigest()}
                for name, b in blobs.items()
            },
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("manifest.json", json.dumps(manifest, indent=2))
            for name, b in blobs.items():
                zf.writestr(f"{name}.parquet", b)
        tmp.replace(path)
        return path

    def import_archive(self, path: str | Path) -> ImportSummary:
        """Merge an archive written by :meth:`export_archive` into this store, in one transaction.

        Rows already present (same ``uid``) are skipped, so importing twice adds nothing. Query
        statuses are recomputed from the merged labels.

        Raises:
            FeedbackError: for a missing, corrupt or newer archive; the store is then unchanged.
        """
        tables = _read_archive(Path(path))

        def work(conn: sqlite3.Connection) -> ImportSummary:
            return _merge(conn, tables, Path(path))

        return self._write(work)


def _is_wal(path: Path) -> bool:
    """Whether the file's header says WAL mode (bytes 18-19 are 2), read without opening it in SQLite."""
    try:
        with path.open("rb") as fh:
            header = fh.read(20)
    except OSError:
        return False
    return len(header) == 20 and header[18] == 2 and header[19] == 2


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def check_archive(path: str | Path) -> None:
    """Check that ``path`` is a readable feedback archive this hfrl can import.

    Raises:
        FeedbackError: for a missing, corrupt or newer archive.
    """
    _read_archive(Path(path))


def _read_archive(path: Path) -> dict[str, list[dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise FeedbackError(f"{path}: no such feedback archive")
    try:
        with zipfile.ZipFile(path) as zf:
            manifest = json.loads(zf.read("manifest.json"))
            if not isinstance(manifest, dict) or manifest.get("format") != ARCHIVE_FORMAT:
                raise FeedbackError(f"{path}: not an hfrl feedback archive")
            version = manifest.get("format_version")
            if not isinstance(version, int) or version > ARCHIVE_VERSION:
                raise FeedbackError(
                    f"{path}: archive format {version} is newer than this hfrl reads ({ARCHIVE_VERSION})"
                )
            tables = {}
            for name in ("samples", "queries", "items", "labels"):
                entry = manifest["tables"][name]
                data = zf.read(entry["file"])
                if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                    raise FeedbackError(f"{path}: table {name} does not match its checksum (corrupt archive)")
                tables[name] = pq.read_table(io.BytesIO(data)).to_pylist()
            return tables
    except FeedbackError:
        raise
    except (zipfile.BadZipFile, KeyError, TypeError, ValueError, OSError, pa.ArrowException) as exc:
        raise FeedbackError(
            f"{path}: corrupt or incomplete feedback archive ({type(exc).__name__}: {exc})"
        ) from None


def _merge(conn: sqlite3.Connection, tables: dict[str, list[dict[str, Any]]], path: Path) -> ImportSummary:
    def existing(table: str) -> dict[str, int]:
        return {uid: i for uid, i in conn.execute(f"SELECT uid, id FROM {table}")}  # noqa: S608 - fixed names

    added = dict.fromkeys(("samples", "queries", "items", "labels"), 0)
    skipped = 0
    try:
        sample_ids = existing("samples")
        for r in tables["samples"]:
            if r["uid"] in sample_ids:
                skipped += 1
                continue
            h, w = int(r["height"]), int(r["width"])
            for col in ("input", "output", "clean"):
                if r[col] is not None and len(r[col]) != 4 * h * w:
                    raise FeedbackError(f"{path}: sample {r['uid']} has a {col} image of the wrong size")
            cur = conn.execute(
                "INSERT INTO samples (uid, height, width, input, output, clean, checkpoint, round, domain, class,"
                " meta, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r["uid"],
                    h,
                    w,
                    r["input"],
                    r["output"],
                    r["clean"],
                    r["checkpoint"],
                    r["round"],
                    r["domain"],
                    r["class"],
                    r["meta"] or "{}",
                    r["created"],
                ),
            )
            sample_ids[r["uid"]] = int(cur.lastrowid)  # type: ignore[arg-type]
            added["samples"] += 1
        query_ids = existing("queries")
        for r in tables["queries"]:
            if r["uid"] in query_ids:
                skipped += 1
                continue
            cur = conn.execute(
                "INSERT INTO queries (uid, kind, status, labels_needed, note, created, completed)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    r["uid"],
                    r["kind"],
                    r["status"],
                    r["labels_needed"],
                    r["note"],
                    r["created"],
                    r["completed"],
                ),
            )
            query_ids[r["uid"]] = int(cur.lastrowid)  # type: ignore[arg-type]
            added["queries"] += 1
        item_ids = existing("items")
        for r in tables["items"]:
            if r["uid"] in item_ids:
                skipped += 1
                continue
            other = r["other_uid"]
            cur = conn.execute(
                "INSERT INTO items (uid, query_id, position, sample_id, other_id) VALUES (?, ?, ?, ?, ?)",
                (
                    r["uid"],
                    query_ids[r["query_uid"]],
                    r["position"],
                    sample_ids[r["sample_uid"]],
                    None if other is None else sample_ids[other],
                ),
            )
            item_ids[r["uid"]] = int(cur.lastrowid)  # type: ignore[arg-type]
            added["items"] += 1
        label_uids = existing("labels")
        first_new_label = conn.execute("SELECT coalesce(max(id), 0) FROM labels").fetchone()[0]
        touched: set[int] = set()
        for r in tables["labels"]:
            if r["uid"] in label_uids:
                skipped += 1
                continue
            if r["value"] not in RATING_VALUES + PAIR_VALUES:
                raise FeedbackError(f"{path}: label {r['uid']} has an unknown value {r['value']!r}")
            conn.execute(
                "INSERT INTO labels (uid, item_id, labeler, value, best, response_ms, created, retracted)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r["uid"],
                    item_ids[r["item_uid"]],
                    r["labeler"],
                    r["value"],
                    int(r["best"]),
                    r["response_ms"],
                    r["created"],
                    r["retracted"],
                ),
            )
            touched.add(item_ids[r["item_uid"]])
            added["labels"] += 1
        mismatched = conn.execute(
            f"SELECT count(*) FROM labels l JOIN items i ON i.id = l.item_id JOIN queries q ON q.id = i.query_id"
            f" WHERE l.id > ? AND ((q.kind = '{PAIR}') != (l.value IN {PAIR_VALUES}) OR (l.best = 1 AND q.kind != '{HERO}'))",
            (first_new_label,),
        ).fetchone()[0]
        bad_items = conn.execute(
            f"SELECT count(*) FROM items i JOIN queries q ON q.id = i.query_id"
            f" WHERE (q.kind = '{PAIR}') != (i.other_id IS NOT NULL)"
        ).fetchone()[0]
        if mismatched or bad_items:
            raise FeedbackError(
                f"{path}: the archive holds labels or items that do not fit their query's kind"
            )
    except KeyError as exc:
        raise FeedbackError(f"{path}: the archive refers to a missing row or column ({exc})") from None
    except sqlite3.IntegrityError as exc:
        raise FeedbackError(f"{path}: the archive holds invalid rows ({exc})") from None
    now = time.time()
    qids = {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT query_id FROM items WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(touched)),),
        )
    }
    for qid in sorted(qids):
        _refresh_status(conn, qid, now)
    return ImportSummary(added["samples"], added["queries"], added["items"], added["labels"], skipped)
