"""Feedback as tensors for reward training: ratings, pairs and HERO batches, and a torch ``Dataset``."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from hfrl.feedback.labels import BAD, GOOD, HERO, rating_value
from hfrl.feedback.samples import SampleMixin
from hfrl.feedback.summaries import SummaryMixin


@dataclass(frozen=True)
class RatingTensors:
    """Good/bad feedback as tensors for reward training, one row per labelled sample.

    Attributes:
        inputs: ``(N, C, H, W)`` float32 noisy inputs.
        outputs: ``(N, C, H, W)`` float32 outputs that were labelled.
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
        inputs: ``(N, C, H, W)`` float32 noisy input of the left sample.
        left: ``(N, C, H, W)`` float32 left outputs.
        right: ``(N, C, H, W)`` float32 right outputs.
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
        inputs: ``(B, C, H, W)`` float32 noisy inputs.
        outputs: ``(B, C, H, W)`` float32 outputs, in the order shown.
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


class TensorMixin(SummaryMixin, SampleMixin):
    """The :class:`~hfrl.feedback.store.FeedbackStore` methods that export feedback as tensors."""

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
