from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from hfrl.feedback import FeedbackQueue, FeedbackStore, FeedbackTimeoutError, LabelInput, simulate
from hfrl.feedback.simulate import answer_batch
from hfrl.feedback.store import FeedbackError, UnknownIdError


def test_enqueue_poll_and_wait_for_a_person(store: FeedbackStore, digits) -> None:
    queue = FeedbackQueue(store, poll_interval=0.01)
    d = digits.take(0, 6)
    qid = queue.enqueue(d.inputs, d.outputs, clean=d.clean, classes=d.classes, round=2, checkpoint="g.ckpt")
    assert queue.status(qid) == "pending" and queue.poll(qid) is None
    with pytest.raises(FeedbackTimeoutError) as info:
        queue.wait(qid, timeout=0.05)
    assert isinstance(info.value, TimeoutError)

    def person() -> None:
        time.sleep(0.1)
        batch = store.next_batch("alice")
        store.submit_labels(
            "alice", [LabelInput(i.id, "good" if i.position % 2 else "bad") for i in batch.items]
        )

    t = threading.Thread(target=person)
    t.start()
    result = queue.wait(qid, timeout=10)
    t.join()
    assert result.done and result.labels == ["bad", "good"] * 3
    assert result.values.tolist() == [0.0, 1.0] * 3 and len(result.sample_ids) == 6
    assert queue.poll(qid) is not None
    assert store.sample(result.sample_ids[0]).round == 2


def test_pairs_hero_cancel_and_unknown(store: FeedbackStore, digits) -> None:
    queue = FeedbackQueue(store)
    d = digits.take(0, 3)
    qp = queue.enqueue_pairs(d.inputs, d.outputs, d.others, clean=d.clean)
    qh = queue.enqueue(d.inputs, d.outputs, kind="hero")
    with pytest.raises(FeedbackError, match="enqueue_pairs"):
        queue.enqueue(d.inputs, d.outputs, kind="pair")
    store.submit_labels("a", [LabelInput(i.id, w) for i, w in zip(store.items(qp), ["left", "right", "tie"])])
    pr = queue.wait(qp, timeout=1)
    assert pr.labels == ["left", "right", "tie"] and pr.values.tolist() == [1.0, 0.0, 0.5]
    items = store.items(qh)
    store.submit_labels("a", [LabelInput(i.id, "good", best=i.position == 1) for i in items])
    assert queue.wait(qh, timeout=1).best == 1
    qc = queue.enqueue(d.inputs, d.outputs)
    queue.cancel(qc)
    with pytest.raises(FeedbackError, match="cancelled"):
        queue.wait(qc, timeout=1)
    assert queue.result(qc).query.status == "cancelled"
    with pytest.raises(UnknownIdError):
        queue.poll(999)
    with pytest.raises(FeedbackError):
        FeedbackQueue(store, poll_interval=0)


def test_queue_opens_and_closes_its_own_store(tmp_path: Path, digits) -> None:
    d = digits.take(0, 2)
    with FeedbackQueue(tmp_path / "fb.sqlite") as queue:
        qid = queue.enqueue(d.inputs, d.outputs)
    with pytest.raises(FeedbackError, match="closed"):
        queue.status(qid)
    with FeedbackStore(tmp_path / "fb.sqlite") as s:
        assert s.query(qid).size == 2


def test_simulate_answers_every_kind_through_the_store(
    store: FeedbackStore, digits, untrained_labeler
) -> None:
    queue = FeedbackQueue(store, poll_interval=0.01)
    d = digits.take(0, 20)
    q_single = queue.enqueue(d.inputs, d.outputs, clean=d.clean, classes=d.classes)
    q_hero = queue.enqueue(d.inputs[:5], d.outputs[:5], clean=d.clean[:5], classes=d.classes[:5], kind="hero")
    q_pair = queue.enqueue_pairs(
        d.inputs[:4], d.outputs[:4], d.others[:4], clean=d.clean[:4], classes=d.classes[:4]
    )
    q_people = queue.enqueue(d.inputs[:3], d.outputs[:3])  # no clean images: left for people
    report = simulate(store, untrained_labeler, batch_size=8)
    assert report.labels == 29 and report.batches == 5
    for qid in (q_single, q_hero, q_pair):
        result = queue.wait(qid, timeout=1)
        assert all(set(item.votes) == {"synthetic-test"} for item in result.items)
    assert queue.result(q_hero).best is not None or all(w == "skip" for w in queue.result(q_hero).labels)
    assert all(w in ("left", "right", "tie") for w in queue.result(q_pair).labels)
    assert queue.status(q_people) == "pending"
    assert all(lab.response_ms is not None and lab.response_ms >= 0 for lab in store.labels())


def test_simulated_answers_match_the_labeler(store: FeedbackStore, digits, untrained_labeler) -> None:
    d = digits.take(0, 8)
    qid = store.add_query("single", d.inputs, d.outputs, clean=d.clean, classes=d.classes)
    batch = store.next_batch("synthetic-test", require_clean=True)
    answers = answer_batch(store, untrained_labeler, batch)
    expected = untrained_labeler.is_good(d.outputs, d.clean, d.classes)
    assert [a.value == "good" for a in answers] == expected.tolist()
    assert [a.item_id for a in answers] == [i.id for i in store.items(qid)]


def test_simulate_follows_an_online_trainer(store: FeedbackStore, digits, untrained_labeler) -> None:
    stop = threading.Event()
    reports = []
    worker = threading.Thread(
        target=lambda: reports.append(
            simulate(store, untrained_labeler, follow=True, poll_interval=0.01, stop=stop)
        )
    )
    worker.start()
    queue = FeedbackQueue(store, poll_interval=0.01)
    try:
        for r in range(3):
            d = digits.take(4 * r, 4 * r + 4)
            qid = queue.enqueue(d.inputs, d.outputs, clean=d.clean, classes=d.classes, kind="hero", round=r)
            result = queue.wait(qid, timeout=20)
            assert len(result.items) == 4
    finally:
        stop.set()
        worker.join(10)
    assert reports and reports[0].labels == 12
    capped = simulate(store, untrained_labeler, max_labels=1)
    assert capped.labels == 0  # nothing pending any more
    d = digits.take(0, 5)
    store.add_query("single", d.inputs, d.outputs, clean=d.clean)
    assert simulate(store, untrained_labeler, max_labels=2).labels == 2
    assert simulate(store, untrained_labeler, timeout=0).labels == 0
    assert torch.is_tensor(store.rating_tensors().targets)
