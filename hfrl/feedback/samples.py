"""Samples and the queries that put them to labelers: storing, reading and cancelling them."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from hfrl.data import as_images
from hfrl.feedback.engine import StoreEngine
from hfrl.feedback.errors import FeedbackError, UnknownIdError
from hfrl.feedback.labels import KINDS, PAIR
from hfrl.feedback.records import ItemRecord, QueryRecord, SampleRecord
from hfrl.feedback.schema import ITEMS, QUERIES, SAMPLES

SAMPLE_CHUNK = 64
"""Samples inserted per transaction (about 400 KB with clean images)."""
STATUSES = ("pending", "done", "cancelled")
ITEM_COLUMNS = "i.id, i.query_id, i.position, q.kind, i.sample_id, i.other_id"
"""What :func:`item_record` reads, from ``items i JOIN queries q``."""


def _blob(image: torch.Tensor) -> bytes:
    """Stored bytes of an image: exact ``float32``, row-major."""
    return np.ascontiguousarray(image.detach().cpu().numpy().astype(np.float32, copy=False)).tobytes()


def _array(blob: bytes, height: int, width: int) -> np.ndarray:
    """``(H, W)`` float32 (grey) or ``(3, H, W)`` (colour) from stored bytes.

    The bytes say which: a colour image stores three planes, so its blob is three times a grey one's.
    """
    plane = 4 * height * width
    if len(blob) == plane:
        return np.frombuffer(blob, dtype=np.float32).reshape(height, width)
    if len(blob) == 3 * plane:
        return np.frombuffer(blob, dtype=np.float32).reshape(3, height, width)
    raise FeedbackError(
        f"stored image has {len(blob)} bytes, expected {plane} (grey) or {3 * plane} (RGB) for {height}x{width}"
    )


def row_id(value: int, what: str) -> int:
    """An id as SQLite can hold it; anything else cannot name a row, so it is unknown."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UnknownIdError(f"unknown {what} id {value!r}") from None
    if not 1 <= number < 2**63:
        raise UnknownIdError(f"unknown {what} id {value}")
    return number


def item_record(row: Sequence[Any]) -> ItemRecord:
    """An :class:`ItemRecord` from a row of :data:`ITEM_COLUMNS`."""
    return ItemRecord(int(row[0]), int(row[1]), int(row[2]), str(row[3]), int(row[4]), row[5])


def query_record(conn: sqlite3.Connection, query_id: int) -> QueryRecord:
    """One query, read inside ``conn``'s transaction.

    Raises:
        UnknownIdError: for an unknown id.
    """
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


class SampleMixin(StoreEngine):
    """The :class:`~hfrl.feedback.store.FeedbackStore` methods that store and read samples and queries."""

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
            inputs: ``(N, C, H, W)`` (or ``(N, H, W)``) noisy inputs in ``[0, 1]``.
            outputs: ``(N, C, H, W)`` generator outputs.
            clean: Optional ``(N, C, H, W)`` clean images, read only by the synthetic labeler.
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
            inputs: ``(N, C, H, W)`` noisy inputs.
            outputs: ``(N, C, H, W)`` outputs (the left ones for ``pair``).
            others: ``(N, C, H, W)`` right outputs of the same inputs (``pair`` only).
            clean: Optional ``(N, C, H, W)`` clean images for the synthetic labeler.
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
            cur = conn.execute(SAMPLES.insert_sql(), row)
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
            QUERIES.insert_sql(("uid", "kind", "labels_needed", "note", "created")),
            (uuid.uuid4().hex, kind, labels_needed, note, time.time()),
        )
        qid = int(cur.lastrowid)  # type: ignore[arg-type]
        conn.executemany(
            ITEMS.insert_sql(),
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
                (row_id(sample_id, "sample"),),
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
        """``(H, W)`` (grey) or ``(3, H, W)`` (RGB) float32 arrays of each sample's ``input`` or ``output``, in order.

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
        stacked = torch.from_numpy(np.stack(arrays))
        return stacked[:, None] if stacked.ndim == 3 else stacked  # grey (H, W) arrays gain their channel

    def images(self, sample_ids: Sequence[int], which: str = "output") -> torch.Tensor:
        """``(N, C, H, W)`` float32 ``input`` or ``output`` images, exactly as stored."""
        return self._stack(self.sample_arrays(sample_ids, which))

    def clean_images(self, sample_ids: Sequence[int]) -> torch.Tensor:
        """``(N, C, H, W)`` clean reference images: for the synthetic labeler only, never sent to clients.

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
        return self._read(lambda conn: query_record(conn, row_id(query_id, "query")))

    def query_status(self, query_id: int) -> str:
        """``pending``, ``done`` or ``cancelled`` (cheap enough to poll).

        Raises:
            UnknownIdError: for an unknown id.
        """
        row = (
            self._reader()
            .execute("SELECT status FROM queries WHERE id = ?", (row_id(query_id, "query"),))
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
        return self._read(lambda conn: [query_record(conn, i) for i in ids])

    def items(self, query_id: int) -> list[ItemRecord]:
        """The items of a query in position order.

        Raises:
            UnknownIdError: for an unknown query.
        """
        self.query(query_id)
        rows = self._reader().execute(
            f"SELECT {ITEM_COLUMNS} FROM items i JOIN queries q ON q.id = i.query_id"
            " WHERE i.query_id = ? ORDER BY i.position",
            (row_id(query_id, "query"),),
        )
        return [item_record(r) for r in rows]

    def item(self, item_id: int) -> ItemRecord:
        """One item.

        Raises:
            UnknownIdError: for an unknown id.
        """
        row = (
            self._reader()
            .execute(
                f"SELECT {ITEM_COLUMNS} FROM items i JOIN queries q ON q.id = i.query_id WHERE i.id = ?",
                (row_id(item_id, "item"),),
            )
            .fetchone()
        )
        if row is None:
            raise UnknownIdError(f"unknown item id {item_id}")
        return item_record(row)

    def cancel_query(self, query_id: int) -> None:
        """Withdraw a query from labelers; its labels so far are kept.

        Raises:
            UnknownIdError: for an unknown id.
        """

        def work(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE queries SET status = 'cancelled' WHERE id = ?", (row_id(query_id, "query"),)
            )
            if cur.rowcount == 0:
                raise UnknownIdError(f"unknown query id {query_id}")

        self._write(work)

    # -- labelling
