"""The records a feedback store returns and takes: samples, queries, items, labels and their summaries.

All are frozen dataclasses; tensors are ``float32`` images shaped ``(C, H, W)`` unless said otherwise.
The tensor bundles for reward training are in :mod:`hfrl.feedback.tensors`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from hfrl.feedback.labels import preference_value, rating_value


@dataclass(frozen=True)
class SampleRecord:
    """One stored sample (without its clean image).

    Attributes:
        id: Sample id.
        input: ``(C, H, W)`` float32 noisy input.
        output: ``(C, H, W)`` float32 generator output.
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
