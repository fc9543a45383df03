"""The online feedback queue: how a trainer asks for labels and waits for them.

A trainer enqueues a batch of samples as one query, then either blocks until labelers (people on the
labelling page, or ``hfrl label simulate``) have answered it, or polls between steps::

    queue = FeedbackQueue("runs/hero/feedback.sqlite")
    qid = queue.enqueue(noisy, outputs, clean=clean, classes=classes, kind="hero", round=3)
    result = queue.wait(qid, timeout=600)          # FeedbackTimeoutError after 10 minutes
    good = [label == "good" for label in result.labels]
    best = result.best                             # position of the best output

The queue only reads and writes the feedback store, so trainer, server and synthetic labeler may be
separate processes sharing the database file.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hfrl.feedback.errors import FeedbackError
from hfrl.feedback.labels import HERO, PAIR, SINGLE
from hfrl.feedback.records import QueryResult
from hfrl.feedback.store import FeedbackStore


class FeedbackTimeoutError(FeedbackError, TimeoutError):
    """A query was not answered within the time a trainer was willing to wait."""


class FeedbackQueue:
    """Enqueue batches for labelers and wait for their answers.

    Args:
        store: A :class:`FeedbackStore` or the path of its database (created when missing).
        poll_interval: Seconds between checks while waiting (default 0.05, doubling up to 0.5).
    """

    def __init__(self, store: FeedbackStore | str | Path, poll_interval: float = 0.05) -> None:
        self._owns_store = not isinstance(store, FeedbackStore)
        self.store = store if isinstance(store, FeedbackStore) else FeedbackStore(store)
        if poll_interval <= 0:
            raise FeedbackError(f"poll_interval must be > 0, got {poll_interval}")
        self.poll_interval = float(poll_interval)

    def enqueue(
        self,
        inputs: Any,
        outputs: Any,
        *,
        kind: str = SINGLE,
        clean: Any | None = None,
        classes: Any | None = None,
        checkpoint: str | None = None,
        round: int | None = None,
        domain: str | None = None,
        labels_needed: int = 1,
        note: str | None = None,
    ) -> int:
        """Put a batch of outputs to labelers: good/bad each (``single``) or good/bad plus best (``hero``).

        Args:
            inputs: ``(B, C, H, W)`` noisy inputs in ``[0, 1]``.
            outputs: ``(B, C, H, W)`` generator outputs in ``[0, 1]``.
            kind: ``single`` (default) or ``hero``.
            clean: Optional ``(B, C, H, W)`` clean images, for the synthetic labeler only.
            classes: Optional ``(B,)`` classes.
            checkpoint: Generator checkpoint that produced the outputs.
            round: Training round.
            domain: Domain name.
            labels_needed: Different labelers each output needs (default 1).
            note: Free text stored with the query.

        Returns:
            The query id.
        """
        if kind not in (SINGLE, HERO):
            raise FeedbackError(
                f"enqueue takes kind 'single' or 'hero' (use enqueue_pairs for pairs), got {kind!r}"
            )
        return self.store.add_query(
            kind, inputs, outputs, clean=clean, classes=classes, checkpoint=checkpoint, round=round,
            domain=domain, labels_needed=labels_needed, note=note,
        )  # fmt: skip

    def enqueue_pairs(
        self,
        inputs: Any,
        left: Any,
        right: Any,
        *,
        clean: Any | None = None,
        classes: Any | None = None,
        checkpoint: str | None = None,
        round: int | None = None,
        domain: str | None = None,
        labels_needed: int = 1,
        note: str | None = None,
    ) -> int:
        """Put pairs of outputs of the same inputs to labelers (``left``/``right``/``tie``).

        Args:
            inputs: ``(B, C, H, W)`` noisy inputs.
            left: ``(B, C, H, W)`` first outputs.
            right: ``(B, C, H, W)`` second outputs.
            clean: Optional ``(B, C, H, W)`` clean images, for the synthetic labeler only.
            classes: Optional ``(B,)`` classes.
            checkpoint: Generator checkpoint.
            round: Training round.
            domain: Domain name.
            labels_needed: Different labelers each pair needs.
            note: Free text stored with the query.

        Returns:
            The query id.
        """
        return self.store.add_query(
            PAIR, inputs, left, others=right, clean=clean, classes=classes, checkpoint=checkpoint, round=round,
            domain=domain, labels_needed=labels_needed, note=note,
        )  # fmt: skip

    def status(self, query_id: int) -> str:
        """``pending``, ``done`` or ``cancelled``."""
        return self.store.query_status(query_id)

    def result(self, query_id: int) -> QueryResult:
        """The answers so far, done or not."""
        return self.store.query_result(query_id)

    def poll(self, query_id: int) -> QueryResult | None:
        """The result when the query is done, else ``None``; never blocks.

        Raises:
            FeedbackError: when the query was cancelled.
            UnknownIdError: for an unknown query.
        """
        status = self.store.query_status(query_id)
        if status == "cancelled":
            raise FeedbackError(f"query {query_id} was cancelled")
        return self.store.query_result(query_id) if status == "done" else None

    def wait(self, query_id: int, timeout: float | None = None) -> QueryResult:
        """Block until the query is done.

        Args:
            query_id: The query.
            timeout: Most seconds to wait; forever when ``None``.

        Raises:
            FeedbackTimeoutError: when ``timeout`` passes first.
            FeedbackError: when the query is cancelled meanwhile.
        """
        deadline = None if timeout is None else time.monotonic() + float(timeout)
        interval = self.poll_interval
        while True:
            result = self.poll(query_id)
            if result is not None:
                return result
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FeedbackTimeoutError(f"query {query_id} was not labelled within {timeout:g} s")
                time.sleep(min(interval, left))
            else:
                time.sleep(interval)
            # Back off so a trainer waiting for people does not spin on the database.
            interval = min(interval * 2, max(self.poll_interval, 0.5))

    def cancel(self, query_id: int) -> None:
        """Withdraw a query from labelers (labels already given are kept)."""
        self.store.cancel_query(query_id)

    def close(self) -> None:
        """Close the store if the queue opened it."""
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> FeedbackQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
