"""Aggregation at read time: majority, mean and agreement of the current labels, per query, sample or pair."""

from __future__ import annotations

import math
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from hfrl.feedback.engine import StoreEngine
from hfrl.feedback.labelling import CURRENT_LABELS
from hfrl.feedback.labels import (
    BAD,
    GOOD,
    HERO,
    PAIR,
    SINGLE,
    SKIP,
    TIE,
    flip_preference,
    preference_value,
    rating_value,
)
from hfrl.feedback.records import ItemResult, PairSummary, QueryResult, RatingSummary
from hfrl.feedback.samples import query_record, row_id


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


class SummaryMixin(StoreEngine):
    """The :class:`~hfrl.feedback.store.FeedbackStore` methods that aggregate labels."""

    def query_result(self, query_id: int) -> QueryResult:
        """Everything said about one query so far, aggregated (majority, mean, agreement, best).

        Raises:
            UnknownIdError: for an unknown id.
        """

        def work(conn: sqlite3.Connection) -> QueryResult:
            query = query_record(conn, row_id(query_id, "query"))
            items = conn.execute(
                "SELECT id, position, sample_id, other_id FROM items WHERE query_id = ? ORDER BY position",
                (query.id,),
            ).fetchall()
            current = conn.execute(
                f"SELECT c.id, c.item_id, c.labeler, c.value, c.best FROM ({CURRENT_LABELS}) c"
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
                    FROM ({CURRENT_LABELS}) c JOIN items i ON i.id = c.item_id JOIN queries q ON q.id = i.query_id
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
                    FROM ({CURRENT_LABELS}) c JOIN items i ON i.id = c.item_id
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
                FROM ({CURRENT_LABELS}) c JOIN items i ON i.id = c.item_id JOIN queries q ON q.id = i.query_id
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
