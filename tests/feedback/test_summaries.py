"""Aggregation (:mod:`hfrl.feedback.summaries`) and the tensors made from it (:mod:`hfrl.feedback.tensors`)."""

from __future__ import annotations

import math

import pytest
import torch

from hfrl.feedback.store import (
    FeedbackDataset,
    FeedbackStore,
    LabelInput,
)
from tests.feedback.conftest import single_query


def test_aggregation_and_tensors(store: FeedbackStore, digits) -> None:
    qid = single_query(store, digits, 4)
    items = store.items(qid)
    votes = {
        "a": ["good", "good", "skip", "bad"],
        "b": ["good", "bad", "skip", "bad"],
        "c": ["bad", "bad", "skip", "bad"],
    }
    for who, words in votes.items():
        store.submit_labels(who, [LabelInput(i.id, w) for i, w in zip(items, words)])
    s = {x.sample_id: x for x in store.rating_summaries()}
    first = s[items[0].sample_id]
    assert (first.good, first.bad, first.majority, first.target) == (2, 1, "good", 1.0)
    assert first.agreement == pytest.approx(2 / 3) and first.mean == pytest.approx(2 / 3)
    skipped = s[items[2].sample_id]
    assert (
        skipped.votes == 0 and skipped.skips == 3 and skipped.majority is None and math.isnan(skipped.target)
    )
    t = store.rating_tensors()
    assert len(t) == 3 and t.outputs.shape == (3, 1, 28, 28) and t.inputs.dtype == torch.float32
    assert t.targets.tolist() == [1.0, 0.0, 0.0] and t.votes.tolist() == [3, 3, 3]
    order = [items[k].sample_id for k in (0, 1, 3)]
    assert t.sample_ids.tolist() == order and torch.equal(t.outputs, digits.outputs[[0, 1, 3]])
    assert torch.equal(t.classes, digits.classes[[0, 1, 3]])
    assert len(store.rating_tensors(min_agreement=0.9)) == 1
    ds = FeedbackDataset(t)
    row = ds[0]
    assert len(ds) == 3 and row["outputs"].shape == (1, 28, 28) and row["targets"].item() == 1.0
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["outputs"].shape == (2, 1, 28, 28)


def test_pair_aggregation_folds_both_orders(store: FeedbackStore, digits) -> None:
    d = digits.take(0, 2)
    ids = store.add_samples(torch.cat([d.inputs, d.inputs]), torch.cat([d.outputs, d.others]))
    q1 = store.create_query("pair", [(ids[0], ids[2]), (ids[1], ids[3])])
    q2 = store.create_query("pair", [(ids[2], ids[0])])  # same pair, shown the other way round
    i1, i2 = store.items(q1)
    store.submit_labels("a", [LabelInput(i1.id, "left"), LabelInput(i2.id, "tie")])
    store.submit_labels("b", [LabelInput(store.items(q2)[0].id, "right")])  # also prefers ids[0]
    store.submit_labels("c", [LabelInput(i1.id, "right")])
    summaries = store.pair_summaries()
    first = next(s for s in summaries if (s.left_id, s.right_id) == (ids[0], ids[2]))
    assert (first.left, first.right, first.ties, first.majority) == (2, 1, 0, "left")
    assert first.mean == pytest.approx(2 / 3) and first.target == 1.0
    t = store.pair_tensors()
    assert len(t) == 2 and t.left.shape == (2, 1, 28, 28)
    assert t.preference.tolist() == [1.0, 0.5] and t.left_ids.tolist() == [ids[0], ids[1]]
    assert torch.equal(t.right, digits.others[:2]) and torch.equal(t.inputs, digits.inputs[:2])
    assert len(store.pair_summaries(query_id=q2)) == 1
    assert len(FeedbackDataset(t)) == 2
