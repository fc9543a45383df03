"""Samples and queries (:mod:`hfrl.feedback.samples`): stored exactly, validated, read back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfrl.errors import DataError
from hfrl.feedback import samples
from hfrl.feedback.store import (
    FeedbackError,
    FeedbackStore,
    UnknownIdError,
)


def test_images_are_stored_exactly(store: FeedbackStore, digits) -> None:
    d = digits.take(0, 5)
    ids = store.add_samples(d.inputs, d.outputs, clean=d.clean, classes=d.classes, checkpoint="ck", round=3,
                            domain="target", meta={"seed": 1})  # fmt: skip
    assert torch.equal(store.images(ids, "input"), d.inputs)
    assert torch.equal(store.images(ids, "output"), d.outputs)
    assert torch.equal(store.clean_images(ids), d.clean)
    assert torch.equal(store.sample_classes(ids), d.classes)
    rec = store.sample(ids[2])
    assert rec.round == 3 and rec.checkpoint == "ck" and rec.domain == "target" and rec.meta == {"seed": 1}
    assert rec.has_clean and rec.cls == int(d.classes[2]) and torch.equal(rec.output, d.outputs[2])
    with pytest.raises(UnknownIdError):
        store.sample(999)
    with pytest.raises(UnknownIdError):
        store.images([ids[0], 999])
    no_clean = store.add_samples(d.inputs[:1], d.outputs[:1])
    with pytest.raises(FeedbackError, match="no clean"):
        store.clean_images(no_clean)
    assert store.sample_classes(no_clean).tolist() == [-1]


def test_bad_samples_and_queries_are_rejected(store: FeedbackStore, digits) -> None:
    d = digits.take(0, 4)
    with pytest.raises(DataError):
        store.add_samples(d.inputs, d.outputs * 3)
    with pytest.raises(FeedbackError, match="shape"):
        store.add_samples(d.inputs[:3], d.outputs)
    with pytest.raises(FeedbackError, match="classes"):
        store.add_samples(d.inputs, d.outputs, classes=[1, 2])
    with pytest.raises(FeedbackError, match="meta"):
        store.add_samples(d.inputs, d.outputs, meta=[{}])
    with pytest.raises(FeedbackError, match="unknown query kind"):
        store.add_query("vote", d.inputs, d.outputs)
    with pytest.raises(FeedbackError, match="right-hand"):
        store.add_query("pair", d.inputs, d.outputs)
    with pytest.raises(FeedbackError, match="pair queries"):
        store.add_query("single", d.inputs, d.outputs, others=d.others)
    with pytest.raises(FeedbackError, match="labels_needed"):
        store.add_query("single", d.inputs, d.outputs, labels_needed=0)
    with pytest.raises(UnknownIdError):
        store.create_query("single", [1, 2, 999])
    with pytest.raises(FeedbackError, match="pair"):
        store.create_query("pair", [1, 2])
    assert store.queries() == [] and store.progress().pending_items == 0


def test_create_query_from_stored_samples(store: FeedbackStore, digits) -> None:
    d = digits.take(0, 4)
    ids = store.add_samples(d.inputs, d.outputs)
    qid = store.create_query("pair", [(ids[0], ids[1]), (ids[2], ids[3])], labels_needed=2, note="n")
    q = store.query(qid)
    assert (q.kind, q.status, q.size, q.labels_needed, q.note) == ("pair", "pending", 2, 2, "n")
    items = store.items(qid)
    assert [(i.sample_id, i.other_id) for i in items] == [(ids[0], ids[1]), (ids[2], ids[3])]
    assert store.item(items[1].id) == items[1]
    with pytest.raises(UnknownIdError):
        store.item(12345)
    with pytest.raises(UnknownIdError):
        store.query(12345)
    with pytest.raises(FeedbackError):
        store.queries(status="weird")


def test_blob_helpers_reject_wrong_sizes() -> None:
    with pytest.raises(FeedbackError):
        samples._array(b"\0" * 12, 2, 2)
    arr = np.arange(4, dtype=np.float32).reshape(2, 2) / 4
    assert np.array_equal(samples._array(samples._blob(torch.from_numpy(arr)), 2, 2), arr)
