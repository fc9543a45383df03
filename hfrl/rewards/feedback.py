"""Feedback from a :class:`~hfrl.feedback.FeedbackStore` as reward-training records.

The store keeps label words and aggregates them at read time (majority per sample or pair, one current
vote per labeler); these functions take its tensor exports and wrap them in the records of
:mod:`hfrl.rewards.records`. Words become numbers only in :mod:`hfrl.feedback.labels` (good 1, bad 0,
left 1, right 0, tie 0.5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hfrl.rewards.records import LabelledSamples, PreferencePairs, TripletFeedback

if TYPE_CHECKING:  # the store pulls in SQLite and friends; reward models do not need it to load
    from hfrl.feedback import FeedbackStore


def labelled_samples(store: FeedbackStore, min_votes: int = 1, min_agreement: float = 0.0) -> LabelledSamples:
    """Good/bad feedback of ``single`` and ``hero`` queries, one row per labelled sample.

    Args:
        store: The feedback store.
        min_votes: Leave out samples with fewer good/bad votes.
        min_agreement: Leave out samples whose labelers agree less than this.

    Returns:
        The majority label per sample (0.5 where votes tie).
    """
    t = store.rating_tensors(min_votes=min_votes, min_agreement=min_agreement)
    return LabelledSamples(t.inputs, t.outputs, t.targets)


def triplet_feedback(store: FeedbackStore, min_votes: int = 1, min_agreement: float = 0.0) -> TripletFeedback:
    """Good/bad feedback plus best-of-batch marks (any labeler marked it best), for HERO's triplets."""
    t = store.rating_tensors(min_votes=min_votes, min_agreement=min_agreement)
    return TripletFeedback(t.inputs, t.outputs, t.targets, t.best > 0)


def preference_pairs(store: FeedbackStore, min_votes: int = 1, min_agreement: float = 0.0) -> PreferencePairs:
    """Pairwise feedback of ``pair`` queries, one row per labelled pair (majority preference)."""
    t = store.pair_tensors(min_votes=min_votes, min_agreement=min_agreement)
    return PreferencePairs(t.inputs, t.left, t.right, t.preference.to(torch.float32))
