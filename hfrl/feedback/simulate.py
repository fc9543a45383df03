"""The synthetic labeler on the people's path.

:func:`simulate` answers pending queries with a :class:`~hfrl.judges.SyntheticLabeler` using exactly the
store functions behind the labelling page: :meth:`FeedbackStore.lease_batch` to get what to show and
:meth:`FeedbackStore.submit_labels` to record the answers. The only difference is what it looks at: the
clean reference images (:meth:`FeedbackStore.clean_images`), which the HTTP API never serves. So every
pipeline can run headless in tests and benchmarks through the same code that people use.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol

import torch

from hfrl.feedback.labels import HERO, PAIR, SKIP
from hfrl.feedback.records import Batch, LabelInput
from hfrl.feedback.store import FeedbackStore


class Labeler(Protocol):
    """What :func:`simulate` needs from a labeler (:class:`~hfrl.judges.SyntheticLabeler` has it)."""

    labeler_id: str

    def label(self, outputs: torch.Tensor, clean: torch.Tensor, classes: torch.Tensor) -> list[str]:
        """``good``/``bad``/``skip`` per output."""

    def compare(
        self, left: torch.Tensor, right: torch.Tensor, clean: torch.Tensor, classes: torch.Tensor
    ) -> list[str]:
        """``left``/``right``/``tie`` per pair."""

    def pick_best(
        self, outputs: torch.Tensor, clean: torch.Tensor, classes: torch.Tensor
    ) -> tuple[list[str], int]:
        """Labels per output and the position of the best."""


@dataclass(frozen=True)
class SimulationReport:
    """What :func:`simulate` did.

    Attributes:
        labels: Labels submitted.
        batches: Batches answered.
        seconds: Wall time.
    """

    labels: int
    batches: int
    seconds: float


def answer_batch(store: FeedbackStore, labeler: Labeler, batch: Batch) -> list[LabelInput]:
    """The labeler's answers to one batch, computed from the clean reference images.

    Args:
        store: The feedback store.
        labeler: The synthetic labeler.
        batch: A non-empty batch from :meth:`FeedbackStore.lease_batch` with ``require_clean=True``.

    Returns:
        One :class:`LabelInput` per item, with the time spent per item as ``response_ms``.
    """
    start = time.perf_counter()
    ids = [item.sample_id for item in batch.items]
    clean = store.clean_images(ids)
    classes = store.sample_classes(ids)
    best: int | None = None
    if batch.kind == PAIR:
        left = store.images(ids, "output")
        right = store.images([item.other_id for item in batch.items], "output")  # type: ignore[misc]
        words = labeler.compare(left, right, clean, classes)
    elif batch.kind == HERO:
        words, best = labeler.pick_best(store.images(ids, "output"), clean, classes)
    else:
        words = labeler.label(store.images(ids, "output"), clean, classes)
    per_item = (time.perf_counter() - start) * 1000.0 / len(ids)
    return [
        LabelInput(
            item_id=item.id,
            value=word,
            # A best mark is only meaningful on an answered item; a skipped best would be rejected.
            best=k == best and word != SKIP,
            response_ms=per_item,
        )
        for k, (item, word) in enumerate(zip(batch.items, words))
    ]


def simulate(
    store: FeedbackStore,
    labeler: Labeler,
    *,
    kind: str | None = None,
    batch_size: int = 16,
    max_labels: int | None = None,
    follow: bool = False,
    timeout: float | None = None,
    poll_interval: float = 0.2,
    stop: threading.Event | None = None,
) -> SimulationReport:
    """Answer pending queries with a synthetic labeler until none is left (or until stopped).

    Items whose samples have no clean image are left for people.

    Args:
        store: The feedback store.
        labeler: The synthetic labeler; its ``labeler_id`` is recorded with every label.
        kind: Only queries of this kind.
        batch_size: Items per ``single``/``pair`` batch (a ``hero`` query is answered whole).
        max_labels: Stop after about this many labels.
        follow: Keep waiting for new queries instead of returning when none is pending.
        timeout: Stop after this many seconds.
        poll_interval: Seconds between checks for new queries when following.
        stop: Set it from another thread to stop.

    Returns:
        A :class:`SimulationReport`.
    """
    start = time.monotonic()
    labels = batches = 0
    while True:
        if stop is not None and stop.is_set():
            break
        if timeout is not None and time.monotonic() - start >= timeout:
            break
        if max_labels is not None and labels >= max_labels:
            break
        limit = batch_size if max_labels is None else max(1, min(batch_size, max_labels - labels))
        # Leased like a person's page, so people labelling at the same time are never asked for the same item
        # beyond its labels_needed.
        batch = store.lease_batch(labeler.labeler_id, limit=limit, kind=kind, require_clean=True)
        if not batch.items:
            if not follow:
                break
            if stop is not None:
                stop.wait(poll_interval)
            else:
                time.sleep(poll_interval)
            continue
        result = store.submit_labels(labeler.labeler_id, answer_batch(store, labeler, batch))
        labels += len(result.label_ids)
        batches += 1
    store.release_leases(labeler.labeler_id)
    return SimulationReport(labels, batches, time.monotonic() - start)
