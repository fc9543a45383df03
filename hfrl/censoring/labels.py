"""Censored sampling, labels: from people (the labelling page) or the synthetic labeler, through the feedback store (see :mod:`hfrl.censoring`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from hfrl.censoring.judges import MalignLabeler
from hfrl.errors import ConfigError, DataError
from hfrl.judges import BAD, GOOD


@dataclass(frozen=True)
class LabelBudget:
    """When to stop asking for labels (Yoon et al. 2023's budget by default).

    Attributes:
        malign: Stop once this many malign samples are found (the paper: 10).
        max_labels: Stop after this many labels in any case.
        page: Samples put to labelers per query; all of a query's labels count, so the count can overshoot
            the stopping point by up to ``page - 1``.
    """

    malign: int = 10
    max_labels: int = 300
    page: int = 5

    def __post_init__(self) -> None:
        if self.malign < 1 or self.max_labels < 1 or self.page < 1:
            raise ConfigError(f"label budget values must be positive, got {self}")


@dataclass(frozen=True)
class CensorLabels:
    """Generated samples with malign/benign labels.

    Attributes:
        images: ``(N, 1, H, W)`` the labelled samples in ``[0, 1]`` (skipped ones left out).
        benign: ``(N,)`` bool, True for ``good`` (benign), False for ``bad`` (malign).
        labels_used: Labels given, skips included (the human effort).
        query_ids: Feedback-store queries the labels came from.
    """

    images: torch.Tensor
    benign: torch.Tensor
    labels_used: int
    query_ids: tuple[int, ...] = ()

    @property
    def n_malign(self) -> int:
        """Number of malign samples."""
        return int((~self.benign).sum())

    @property
    def n_benign(self) -> int:
        """Number of benign samples."""
        return int(self.benign.sum())


def collect_labels(
    pool: torch.Tensor,
    queue: Any,
    budget: LabelBudget | None = None,
    *,
    labeler: MalignLabeler | None = None,
    timeout: float | None = None,
    checkpoint: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CensorLabels:
    """Put generated samples to labelers page by page until the budget is met.

    Each page is one ``single`` query in the feedback store: ``good`` means benign, ``bad`` malign,
    ``skip`` is left out. With a ``labeler`` the page is answered headless through
    :func:`hfrl.feedback.simulate` (the same store calls as the labelling page); without one, this waits
    for people (``hfrl label serve`` on the same database).

    The synthetic path answers only items that have a clean reference image; a generated sample has none,
    so the sample itself is stored in that slot. The labelling page never serves it.

    Args:
        pool: ``(M, 1, H, W)`` samples in ``[0, 1]``, shown in order.
        queue: A :class:`hfrl.feedback.FeedbackQueue`.
        budget: Stopping rule (default: 10 malign).
        labeler: The synthetic labeler; ``None`` waits for people.
        timeout: Seconds to wait for people per page (``None``: forever).
        checkpoint: Name of the DDPM that made the samples, stored with them.
        progress: Called as ``progress(n_malign, labels_used)`` after each page.

    Returns:
        The labelled samples.

    Raises:
        DataError: when the pool runs out before the budget is met.
    """
    from hfrl.feedback import SINGLE, simulate

    budget = budget or LabelBudget()
    images: list[torch.Tensor] = []
    benign: list[bool] = []
    used = 0
    queries = []
    for start in range(0, pool.shape[0], budget.page):
        page = pool[start : start + budget.page]
        qid = queue.enqueue(
            page, page, kind=SINGLE, clean=page, checkpoint=checkpoint, domain="censor",
            note="censoring: good = benign, bad = malign (crossed)",
        )  # fmt: skip
        queries.append(qid)
        if labeler is not None:
            simulate(queue.store, labeler, kind=SINGLE, batch_size=budget.page)
        result = queue.wait(qid, timeout=timeout)
        for image, word in zip(page, result.labels):
            used += 1
            if word in (GOOD, BAD):
                images.append(image)
                benign.append(word == GOOD)
        n_malign = benign.count(False)
        if progress is not None:
            progress(n_malign, used)
        if n_malign >= budget.malign or used >= budget.max_labels:
            break
    else:
        raise DataError(
            f"the pool of {pool.shape[0]} samples ran out with {benign.count(False)} of {budget.malign} malign found; "
            "sample a larger pool"
        )
    return CensorLabels(torch.stack(images), torch.tensor(benign), used, tuple(queries))


def label_directly(
    pool: torch.Tensor, labeler: MalignLabeler, budget: LabelBudget | None = None
) -> CensorLabels:
    """:func:`collect_labels`' result without a feedback store: the labeler labels the pool in order.

    Same stopping rule and the same answers as the store path with the same labeler seed; for benchmarks
    and tests, where a SQLite round trip per page only costs time.
    """
    budget = budget or LabelBudget()
    images: list[torch.Tensor] = []
    benign: list[bool] = []
    used = 0
    for start in range(0, pool.shape[0], budget.page):
        page = pool[start : start + budget.page]
        for image, word in zip(page, labeler.label(page)):
            used += 1
            if word in (GOOD, BAD):
                images.append(image)
                benign.append(word == GOOD)
        if benign.count(False) >= budget.malign or used >= budget.max_labels:
            return CensorLabels(torch.stack(images), torch.tensor(benign), used)
    raise DataError(f"the pool of {pool.shape[0]} samples ran out before {budget.malign} malign were found")
