"""Labelling (:mod:`hfrl.feedback.labelling`): validation, personal undo, batches, best marks, progress."""

from __future__ import annotations

import math

import pytest
import torch

from hfrl.feedback.store import (
    FeedbackError,
    FeedbackStore,
    LabelInput,
    QueryClosedError,
    UnknownIdError,
)
from tests.feedback.conftest import single_query


def test_submit_validates_everything_and_is_atomic(store: FeedbackStore, digits) -> None:
    qs = single_query(store, digits)
    d = digits.take(4, 8)
    qh = store.add_query("hero", d.inputs, d.outputs)
    qp = store.add_query("pair", d.inputs, d.outputs, others=d.others)
    s_items, h_items, p_items = (store.items(q) for q in (qs, qh, qp))
    ok = LabelInput(s_items[0].id, "good")
    cases = [
        ([ok, LabelInput(99999, "good")], UnknownIdError),
        ([ok, LabelInput(s_items[1].id, "left")], FeedbackError),
        ([ok, LabelInput(p_items[0].id, "good")], FeedbackError),
        ([ok, LabelInput(s_items[1].id, "good", best=True)], FeedbackError),
        ([LabelInput(h_items[0].id, "skip", best=True)], FeedbackError),
        (
            [LabelInput(h_items[0].id, "good", best=True), LabelInput(h_items[1].id, "good", best=True)],
            FeedbackError,
        ),
        ([ok, ok], FeedbackError),
        ([LabelInput(s_items[1].id, "good", response_ms=-1.0)], FeedbackError),
        ([LabelInput(s_items[1].id, "good", response_ms=math.nan)], FeedbackError),
        ([], FeedbackError),
    ]
    for entries, error in cases:
        with pytest.raises(error):
            store.submit_labels("alice", entries)
    for bad_id in ("", "x" * 65):
        with pytest.raises(FeedbackError, match="labeler"):
            store.submit_labels(bad_id, [ok])
    assert store.labels(include_retracted=True) == []
    store.cancel_query(qp)
    with pytest.raises(QueryClosedError):
        store.submit_labels("alice", [LabelInput(p_items[0].id, "left")])
    with pytest.raises(UnknownIdError):
        store.cancel_query(777)


def test_two_labelers_never_overwrite_each_other_and_undo_is_personal(store: FeedbackStore, digits) -> None:
    qid = single_query(store, digits, 2, labels_needed=2)
    a, b = store.items(qid)
    store.submit_labels("alice", [LabelInput(a.id, "good"), LabelInput(b.id, "good")])
    assert store.query_status(qid) == "pending"
    res = store.submit_labels("bob", [LabelInput(a.id, "bad"), LabelInput(b.id, "good")])
    assert res.completed == (qid,) and store.query_status(qid) == "done"
    result = store.query_result(qid)
    assert result.items[0].votes == {"alice": "good", "bob": "bad"}
    assert (
        result.items[0].majority is None and result.items[0].value == 0.5 and result.items[0].agreement == 0.5
    )
    assert result.items[1].majority == "good" and result.items[1].agreement == 1.0
    # Alice changes her mind: her latest label counts, Bob's is untouched, both rows are kept.
    store.submit_labels("alice", [LabelInput(a.id, "bad")])
    assert store.query_result(qid).items[0].votes == {"alice": "bad", "bob": "bad"}
    assert len(store.labels(include_retracted=True)) == 5
    # Undo removes only Alice's own last label, which brings back her previous one.
    undone = store.undo("alice")
    assert undone is not None and undone.labeler == "alice" and undone.value == "bad" and undone.retracted
    assert store.query_result(qid).items[0].votes == {"alice": "good", "bob": "bad"}
    # Bob undoes twice: his two labels go, the query is pending again, Alice's stay.
    assert store.undo("bob").item_id == b.id
    assert store.undo("bob").item_id == a.id
    assert store.undo("bob") is None
    assert store.query_status(qid) == "pending"
    assert {lab.labeler for lab in store.labels()} == {"alice"}
    assert len(store.labels(labeler="alice")) == 2 and len(store.labels(include_retracted=True)) == 5


def test_next_batch_order_exclusions_and_kinds(store: FeedbackStore, digits) -> None:
    q1 = single_query(store, digits, 10)
    d = digits.take(10, 16)
    qh = store.add_query("hero", d.inputs, d.outputs, clean=d.clean, classes=d.classes)
    qp = store.add_query("pair", d.inputs, d.outputs, others=d.others)
    q2 = store.add_query("single", d.inputs, d.outputs)  # no clean images
    b = store.next_batch("alice", limit=4)
    assert b.kind == "single" and [i.position for i in b.items] == [0, 1, 2, 3] and len(b) == 4
    # Items handed to someone else come last.
    b2 = store.next_batch("bob", limit=4, avoid=[i.id for i in b.items])
    assert [i.position for i in b2.items] == [4, 5, 6, 7]
    # A single page spans queries of the same kind, skipping other kinds in between.
    b3 = store.next_batch("alice", limit=16)
    assert b3.kind == "single" and {i.query_id for i in b3.items} == {q1, q2} and len(b3) == 16
    store.submit_labels("alice", [LabelInput(i.id, "good") for i in store.items(q1)])
    assert store.query_status(q1) == "done"
    assert store.next_batch("bob", limit=16).items[0].query_id == qh  # enough labels: not shown to bob
    hero = store.next_batch("alice")
    assert hero.kind == "hero" and len(hero) == 6 and {i.query_id for i in hero.items} == {qh}
    assert store.next_batch("alice", kind="pair").items[0].query_id == qp
    assert {i.query_id for i in store.next_batch("alice", kind="single").items} == {q2}
    # The synthetic labeler only gets items with clean images.
    assert store.next_batch("robot", kind="single", require_clean=True).kind is None
    with pytest.raises(FeedbackError):
        store.next_batch("alice", kind="triple")
    # Everything labelled: empty batch.
    for q in (qh, qp, q2):
        kind = store.query(q).kind
        store.submit_labels(
            "alice", [LabelInput(i.id, "left" if kind == "pair" else "bad") for i in store.items(q)]
        )
    assert store.next_batch("alice").kind is None and store.next_batch("alice").items == ()


def test_hero_best_marks_and_progress(store: FeedbackStore, digits) -> None:
    d = digits.take(0, 4)
    qid = store.add_query("hero", d.inputs, d.outputs, labels_needed=2)
    items = store.items(qid)
    store.submit_labels("alice", [LabelInput(i.id, "good", best=(k == 2)) for k, i in enumerate(items)])
    store.submit_labels(
        "bob", [LabelInput(i.id, "bad" if k else "good", best=(k == 0)) for k, i in enumerate(items)]
    )
    store.submit_labels("carol", [LabelInput(i.id, "good", best=(k == 2)) for k, i in enumerate(items)])
    result = store.query_result(qid)
    assert result.done and result.best == 2 and result.best_votes == {"alice": 2, "bob": 0, "carol": 2}
    # A later best mark by the same labeler replaces the earlier one.
    store.submit_labels("bob", [LabelInput(items[3].id, "good", best=True)])
    assert store.query_result(qid).best_votes["bob"] == 3
    summaries = {s.sample_id: s for s in store.rating_summaries()}
    assert summaries[items[2].sample_id].best == 2 and summaries[items[0].sample_id].best == 0
    batches = store.hero_batches()
    assert len(batches) == 1 and batches[0].query_id == qid and batches[0].best == 2 and len(batches[0]) == 4
    assert batches[0].targets.tolist() == [1.0, 1.0, 1.0, 1.0] and torch.equal(batches[0].outputs, d.outputs)
    assert batches[0].sample_ids.tolist() == [i.sample_id for i in items]
    open_q = store.add_query("hero", d.inputs[:2], d.outputs[:2])
    store.submit_labels("alice", [LabelInput(store.items(open_q)[0].id, "skip")])
    assert len(store.hero_batches()) == 1
    partial = store.hero_batches(only_done=False)[1]
    assert partial.best is None and math.isnan(partial.targets[0]) and math.isnan(partial.targets[1])
    p = store.progress("bob")
    assert p.labelled == 4 and p.labels_total == 13 and p.labelers == 3 and p.pending_items == 1
    assert p.labels_per_minute > 0 and store.progress().labelled == 13
