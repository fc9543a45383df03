"""Labelling: choosing and leasing items for labelers, their sessions, their answers, undo and progress.

A labeler's *current* label on an item is their latest unretracted one (:data:`CURRENT_LABELS`); a
query is ``done`` once every item has current labels from ``labels_needed`` different labelers
(:func:`refresh_status`).
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import sqlite3
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from hfrl.feedback.engine import StoreEngine
from hfrl.feedback.errors import FeedbackError, NameTakenError, QueryClosedError, UnknownIdError
from hfrl.feedback.labels import HERO, KINDS, SKIP, values_for
from hfrl.feedback.records import Batch, ItemRecord, LabelInput, LabelRecord, Progress, SubmitResult
from hfrl.feedback.samples import ITEM_COLUMNS, item_record, row_id
from hfrl.feedback.schema import LABELERS, LABELS, LEASES

MAX_LABELER_LENGTH = 64
DEFAULT_LEASE_SECONDS = 60.0
"""How long items handed to a labeler are kept from others unless renewed (a labeler who left)."""

CURRENT_LABELS = """
    SELECT * FROM (
        SELECT l.*, ROW_NUMBER() OVER (PARTITION BY l.item_id, l.labeler ORDER BY l.id DESC) AS rn
        FROM labels l WHERE l.retracted IS NULL
    ) WHERE rn = 1
"""
"""A labeler's current label on an item is their latest one that was not undone."""


def check_labeler(labeler: str) -> str:
    """``labeler`` if it is a valid labeler id (1 to 64 characters, not blank), else :class:`FeedbackError`."""
    if not isinstance(labeler, str) or not labeler.strip() or len(labeler) > MAX_LABELER_LENGTH:
        raise FeedbackError(f"labeler id must be 1 to {MAX_LABELER_LENGTH} characters, got {labeler!r}")
    return labeler


def _check_seconds(seconds: float) -> float:
    value = float(seconds)
    if not 0.0 < value < math.inf:
        raise FeedbackError(f"lease seconds must be a positive finite number, got {seconds!r}")
    return value


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def label_record(row: sqlite3.Row) -> LabelRecord:
    """A :class:`LabelRecord` from a row of ``labels``."""
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


def refresh_status(conn: sqlite3.Connection, query_id: int, now: float) -> str:
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
            f"SELECT {ITEM_COLUMNS} FROM items i JOIN queries q ON q.id = i.query_id"
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
        eligible = [item_record(r) for r in rows]
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


class LabellingMixin(StoreEngine):
    """The :class:`~hfrl.feedback.store.FeedbackStore` methods that serve labelers and store their answers."""

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
        check_labeler(labeler)
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
        check_labeler(labeler)
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
                LEASES.insert_sql()
                + " ON CONFLICT (item_id, labeler) DO UPDATE SET expires = excluded.expires",
                [(i, labeler, now + seconds) for i in ids],
            )
            return batch

        return self._write(work)

    def renew_leases(self, labeler: str, seconds: float = DEFAULT_LEASE_SECONDS) -> int:
        """Extend every live lease ``labeler`` holds by ``seconds`` from now; returns how many."""
        check_labeler(labeler)
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
        check_labeler(labeler)
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
        check_labeler(name)
        token = secrets.token_urlsafe(32)

        def work(conn: sqlite3.Connection) -> str:
            if (
                conn.execute("SELECT 1 FROM labelers WHERE name = ?", (name,)).fetchone()
                or conn.execute("SELECT 1 FROM labels WHERE labeler = ? LIMIT 1", (name,)).fetchone()
            ):
                raise NameTakenError(f"labeler name {name!r} is taken; choose another name")
            conn.execute(
                LABELERS.insert_sql(),
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
        check_labeler(labeler)
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
                    LABELS.insert_sql(
                        ("uid", "item_id", "labeler", "value", "best", "response_ms", "created")
                    ),
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
                if refresh_status(conn, qid, now) == "done" and was != "done":
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
        check_labeler(labeler)

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
            refresh_status(conn, qid, now)
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
            args.append(row_id(query_id, "query"))
        if not include_retracted:
            sql += " AND l.retracted IS NULL"
        return [label_record(r) for r in self._reader().execute(sql + " ORDER BY l.id", args)]

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
            cur = conn.execute(f"SELECT count(*), count(DISTINCT labeler) FROM ({CURRENT_LABELS})").fetchone()
            who = "(? IS NULL OR labeler = ?)"
            mine = conn.execute(
                f"SELECT count(*) FROM ({CURRENT_LABELS}) WHERE {who}", (labeler, labeler)
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
