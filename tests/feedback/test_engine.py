"""The store's file (:mod:`hfrl.feedback.engine`): creating, refusing, migrating, closing, group commit."""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

import pytest

from hfrl.errors import HfrlError
from hfrl.feedback import engine
from hfrl.feedback.store import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    FeedbackError,
    FeedbackStore,
    LabelInput,
    UnknownIdError,
    default_db_path,
)
from tests.feedback.conftest import sha, single_query


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
    monkeypatch.setattr(engine, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setattr(
        engine,
        "MIGRATIONS",
        [*engine.MIGRATIONS, "ALTER TABLE queries ADD COLUMN priority INTEGER"],
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
