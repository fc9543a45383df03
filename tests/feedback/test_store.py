from __future__ import annotations

import hashlib
import math
import os
import sqlite3
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hfrl.errors import DataError, HfrlError
from hfrl.feedback import labels as L
from hfrl.feedback import store as store_module
from hfrl.feedback.store import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    FeedbackDataset,
    FeedbackError,
    FeedbackStore,
    LabelInput,
    QueryClosedError,
    UnknownIdError,
    default_db_path,
)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def single_query(store: FeedbackStore, digits, n: int = 4, **kw) -> int:
    d = digits.take(0, n)
    return store.add_query("single", d.inputs, d.outputs, clean=d.clean, classes=d.classes, **kw)


# ----------------------------------------------------------------------------------------- labels.py


def test_label_numbers_live_in_one_place() -> None:
    assert L.rating_value("good") == 1.0 and L.rating_value("bad") == 0.0 and L.rating_value("skip") is None
    assert [L.preference_value(w) for w in ("left", "right", "tie")] == [1.0, 0.0, 0.5]
    assert L.values_for("pair") == ("left", "right", "tie") and L.values_for("hero") == (
        "good",
        "bad",
        "skip",
    )
    assert L.flip_preference("left") == "right" and L.flip_preference("tie") == "tie"
    for bad in (
        lambda: L.rating_value("left"),
        lambda: L.preference_value("good"),
        lambda: L.values_for("x"),
    ):
        with pytest.raises(ValueError):
            bad()
    # The judges and the store spell the words the same way.
    from hfrl import judges

    assert (judges.GOOD, judges.BAD, judges.SKIP, judges.LEFT, judges.RIGHT, judges.TIE) == L.ALL_VALUES


# ------------------------------------------------------------------------------------- file handling


def test_new_store_is_wal_with_schema_and_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "fb.sqlite"
    with FeedbackStore(path) as s:
        assert s.created and s.schema_version == SCHEMA_VERSION
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    with FeedbackStore(path) as s:
        assert not s.created
        # Foreign keys are enforced on the store's own connections.
        with pytest.raises(FeedbackError, match="rejected"):
            s._write(
                lambda c: c.execute(
                    "INSERT INTO items (uid, query_id, position, sample_id) VALUES ('x', 99, 0, 99)"
                )
            )
    assert default_db_path(tmp_path) == tmp_path / "feedback.sqlite"


def test_newer_schema_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "fb.sqlite"
    FeedbackStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    before, files = sha(path), sorted(os.listdir(tmp_path))
    with pytest.raises(FeedbackError, match="newer hfrl") as info:
        FeedbackStore(path)
    assert isinstance(info.value, HfrlError) and "\n" not in str(info.value)
    assert sha(path) == before and sorted(os.listdir(tmp_path)) == files


@pytest.mark.parametrize(
    "content, match",
    [
        (b"this is not a database at all" * 10, "not an SQLite database"),
        (b"SQLite format 3\x00" + b"\xff" * 4000, "corrupt"),
    ],
)
def test_corrupt_files_are_refused_and_left_untouched(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "fb.sqlite"
    path.write_bytes(content)
    with pytest.raises(FeedbackError, match=match):
        FeedbackStore(path)
    assert path.read_bytes() == content
    assert sorted(os.listdir(tmp_path)) == ["fb.sqlite"]


def test_truncated_store_is_refused(tmp_path: Path, digits) -> None:
    path = tmp_path / "fb.sqlite"
    with FeedbackStore(path) as s:
        single_query(s, digits, 16)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    before = sha(path)
    with pytest.raises(FeedbackError, match="corrupt"):
        FeedbackStore(path)
    assert sha(path) == before


def test_other_programs_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    before = sha(path)
    with pytest.raises(FeedbackError, match="not an hfrl feedback store"):
        FeedbackStore(path)
    assert sha(path) == before


def test_empty_file_missing_file_and_directory(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    for readonly in (False, True):  # a zero-byte file is never turned into a database
        with pytest.raises(FeedbackError, match="empty file") as info:
            FeedbackStore(empty, readonly=readonly)
        assert "\n" not in str(info.value)
    assert empty.stat().st_size == 0 and sorted(os.listdir(tmp_path)) == ["empty.sqlite"]
    with pytest.raises(FeedbackError, match="no feedback database"):
        FeedbackStore(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()
    with FeedbackStore(tmp_path) as in_run_dir:  # a run directory means its feedback.sqlite
        assert in_run_dir.path == tmp_path / "feedback.sqlite"


def test_migrations_run_in_order_and_keep_data(
    tmp_path: Path, digits, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "fb.sqlite"
    with FeedbackStore(path) as s:
        qid = single_query(s, digits)
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setattr(
        store_module,
        "MIGRATIONS",
        [*store_module.MIGRATIONS, "ALTER TABLE queries ADD COLUMN priority INTEGER"],
    )
    with FeedbackStore(path) as s:
        assert s.schema_version == SCHEMA_VERSION + 1
        assert s.query(qid).size == 4
        cols = [r[1] for r in s._reader().execute("PRAGMA table_info(queries)")]
        assert "priority" in cols


def test_closed_store_raises(tmp_path: Path) -> None:
    s = FeedbackStore(tmp_path / "fb.sqlite")
    s.close()
    s.close()
    with pytest.raises(FeedbackError, match="closed"):
        s.progress()
    with pytest.raises(FeedbackError, match="closed"):
        s.undo("a")


# --------------------------------------------------------------------------------- samples, queries


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


# --------------------------------------------------------------------------------------- labelling


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


def test_concurrent_submits_share_commits_and_lose_nothing(store: FeedbackStore, digits) -> None:
    qid = single_query(store, digits, 40, labels_needed=8)
    items = store.items(qid)
    acked: list[int] = []
    errors: list[Exception] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        for item in items:
            try:
                ids = store.submit_labels(
                    f"w{k}", [LabelInput(item.id, "good" if k % 2 else "bad")]
                ).label_ids
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)
                continue
            with lock:
                acked.extend(ids)
        # A bad submission in the same group commit fails alone.
        with pytest.raises(UnknownIdError):
            store.submit_labels(f"w{k}", [LabelInput(10**9, "good")])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(acked) == 320 and set(acked) == store.label_ids()
    assert store.query_status(qid) == "done"


# ------------------------------------------------------------------------------------------ archives


def test_archive_round_trip_and_merge_is_idempotent(tmp_path: Path, store: FeedbackStore, digits) -> None:
    qs = single_query(store, digits, 4)
    d = digits.take(4, 6)
    qp = store.add_query("pair", d.inputs, d.outputs, others=d.others, clean=d.clean)
    store.submit_labels("a", [LabelInput(i.id, "good") for i in store.items(qs)])
    store.submit_labels("a", [LabelInput(i.id, "left") for i in store.items(qp)])
    store.undo("a")
    archive = store.export_archive(tmp_path / "out" / "fb.zip")
    assert zipfile.ZipFile(archive).namelist()[0] == "manifest.json"
    with FeedbackStore(tmp_path / "other.sqlite") as other:
        summary = other.import_archive(archive)
        assert (summary.samples, summary.queries, summary.items, summary.labels) == (8, 2, 6, 6)
        again = other.import_archive(archive)
        assert (again.samples, again.labels, again.skipped) == (0, 0, 22)
        assert torch.equal(other.rating_tensors().outputs, store.rating_tensors().outputs)
        assert torch.equal(other.clean_images([1, 2]), store.clean_images([1, 2]))
        assert (
            [q.status for q in other.queries()] == [q.status for q in store.queries()] == ["done", "pending"]
        )
        assert len(other.labels(include_retracted=True)) == 6 and len(other.labels()) == 5
    no_clean = store.export_archive(tmp_path / "nc.zip", include_clean=False)
    with FeedbackStore(tmp_path / "third.sqlite") as third:
        third.import_archive(no_clean)
        assert not third.sample(1).has_clean


def test_bad_archives_are_refused_and_change_nothing(tmp_path: Path, store: FeedbackStore, digits) -> None:
    single_query(store, digits, 2)
    good = store.export_archive(tmp_path / "good.zip")
    with FeedbackStore(tmp_path / "target.sqlite") as target:
        single_query(target, digits, 3)
        before = target.label_ids(), [q.id for q in target.queries()]
        tampered = tmp_path / "tampered.zip"
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(tampered, "w") as dst:
            for name in src.namelist():
                data = src.read(name)
                dst.writestr(name, data[:-8] + b"\0" * 8 if name == "samples.parquet" else data)
        not_zip = tmp_path / "not.zip"
        not_zip.write_bytes(b"nope")
        newer = tmp_path / "newer.zip"
        with zipfile.ZipFile(newer, "w") as z:
            z.writestr("manifest.json", '{"format": "hfrl-feedback-archive", "format_version": 99}')
        for path, match in [
            (tampered, "checksum"),
            (not_zip, "corrupt"),
            (newer, "newer"),
            (tmp_path / "x.zip", "no such"),
        ]:
            with pytest.raises(FeedbackError, match=match):
                target.import_archive(path)
        assert (target.label_ids(), [q.id for q in target.queries()]) == before
        assert len(target.rating_summaries()) == 0 and target.progress().pending_items == 3


def test_blob_helpers_reject_wrong_sizes() -> None:
    with pytest.raises(FeedbackError):
        store_module._array(b"\0" * 12, 2, 2)
    arr = np.arange(4, dtype=np.float32).reshape(2, 2) / 4
    assert np.array_equal(store_module._array(store_module._blob(torch.from_numpy(arr)), 2, 2), arr)
