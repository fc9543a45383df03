"""The schema declared in :mod:`hfrl.feedback.schema` against the SQL and archive layout hfrl has always written.

The scripts and archive columns below are frozen copies of what schemas 1 and 2 were written as by hand:
files made by earlier versions must read the same, so these never change; a new schema version adds a
step to :data:`FROZEN_MIGRATIONS` instead.
"""

from __future__ import annotations

import sqlite3
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hfrl.feedback import FeedbackStore, LabelInput
from hfrl.feedback.schema import ARCHIVE_TABLES, MIGRATIONS, SCHEMA_VERSION, TABLES
from tests.feedback.conftest import single_query

FROZEN_MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE samples (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        height INTEGER NOT NULL CHECK (height > 0),
        width INTEGER NOT NULL CHECK (width > 0),
        input BLOB NOT NULL,
        output BLOB NOT NULL,
        clean BLOB,
        checkpoint TEXT,
        round INTEGER,
        domain TEXT,
        class INTEGER,
        meta TEXT NOT NULL DEFAULT '{}',
        created REAL NOT NULL
    );
    CREATE TABLE queries (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('single', 'pair', 'hero')),
        status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'cancelled')),
        labels_needed INTEGER NOT NULL DEFAULT 1 CHECK (labels_needed >= 1),
        note TEXT,
        created REAL NOT NULL,
        completed REAL
    );
    CREATE INDEX queries_status ON queries (status, id);
    CREATE TABLE items (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        query_id INTEGER NOT NULL REFERENCES queries (id),
        position INTEGER NOT NULL CHECK (position >= 0),
        sample_id INTEGER NOT NULL REFERENCES samples (id),
        other_id INTEGER REFERENCES samples (id),
        UNIQUE (query_id, position)
    );
    CREATE INDEX items_sample ON items (sample_id);
    CREATE TABLE labels (
        id INTEGER PRIMARY KEY,
        uid TEXT NOT NULL UNIQUE,
        item_id INTEGER NOT NULL REFERENCES items (id),
        labeler TEXT NOT NULL,
        value TEXT NOT NULL CHECK (value IN ('good', 'bad', 'skip', 'left', 'right', 'tie')),
        best INTEGER NOT NULL DEFAULT 0 CHECK (best IN (0, 1)),
        response_ms REAL,
        created REAL NOT NULL,
        retracted REAL
    );
    CREATE INDEX labels_item ON labels (item_id, labeler, id);
    CREATE INDEX labels_labeler ON labels (labeler, id);
    """,
    # 1 -> 2: labeler sessions issued by the server, and leases on the items handed out.
    """
    CREATE TABLE labelers (
        name TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        created REAL NOT NULL
    );
    CREATE TABLE leases (
        item_id INTEGER NOT NULL REFERENCES items (id),
        labeler TEXT NOT NULL,
        expires REAL NOT NULL,
        PRIMARY KEY (item_id, labeler)
    );
    CREATE INDEX leases_labeler ON leases (labeler);
    """,
]
"""The migration scripts of schemas 1 and 2 exactly as they were written by hand."""

FROZEN_ARCHIVE = {
    "samples": "uid:string height:int32 width:int32 input:binary output:binary clean:binary checkpoint:string "
    "round:int64 domain:string class:int64 meta:string created:double",
    "queries": "uid:string kind:string status:string labels_needed:int64 note:string created:double "
    "completed:double",
    "items": "uid:string query_uid:string position:int64 sample_uid:string other_uid:string",
    "labels": "uid:string item_uid:string labeler:string value:string best:int64 response_ms:double "
    "created:double retracted:double",
}
"""Columns and Arrow types of the tables of archive format 1."""


def describe(path: Path) -> dict[str, object]:
    """Everything SQLite knows about a database's schema: its ``sqlite_master`` and every table's details."""
    conn = sqlite3.connect(path)
    try:
        master = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name").fetchall()
        tables = [name for kind, name, _, _ in master if kind == "table"]
        return {
            "master": master,
            "tables": {
                t: [conn.execute(f"PRAGMA {p}({t})").fetchall() for p in ("table_xinfo", "foreign_key_list")]
                for t in tables
            },
            "indexes": {
                name: conn.execute(f"PRAGMA index_xinfo({name})").fetchall()
                for t in tables
                for _, name, *_ in conn.execute(f"PRAGMA index_list({t})")
            },
            "versions": [
                conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("user_version", "application_id")
            ],
        }
    finally:
        conn.close()


def frozen_store(path: Path, version: int) -> None:
    """A store of schema ``version`` made with the hand-written scripts, as an earlier hfrl made it."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    for step in range(version):
        conn.executescript(FROZEN_MIGRATIONS[step])
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("PRAGMA application_id = 1751544428")  # the bytes "hfrl"
    conn.commit()
    conn.close()


def test_migrations_are_the_frozen_scripts_statement_by_statement() -> None:
    assert len(MIGRATIONS) == SCHEMA_VERSION
    for derived, frozen in zip(MIGRATIONS, FROZEN_MIGRATIONS):
        split = [[s.strip() for s in script.split(";") if s.strip()] for script in (derived, frozen)]
        assert split[0] == split[1]


@pytest.mark.parametrize("old_version", [1, 2])
def test_new_and_migrated_stores_have_the_schema_of_the_frozen_scripts(
    tmp_path: Path, old_version: int
) -> None:
    frozen_store(tmp_path / "frozen.sqlite", SCHEMA_VERSION)
    FeedbackStore(tmp_path / "new.sqlite").close()
    frozen_store(tmp_path / "old.sqlite", old_version)
    FeedbackStore(tmp_path / "old.sqlite").close()  # migrated from old_version to the current schema
    expected = describe(tmp_path / "frozen.sqlite")
    assert describe(tmp_path / "new.sqlite") == expected
    assert describe(tmp_path / "old.sqlite") == expected


def test_declared_columns_agree_with_a_fresh_store(tmp_path: Path) -> None:
    FeedbackStore(tmp_path / "fb.sqlite").close()
    conn = sqlite3.connect(tmp_path / "fb.sqlite")
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")]
    assert names == list(TABLES)
    for table in TABLES.values():
        info = conn.execute(f"PRAGMA table_info({table.name})").fetchall()
        assert [(r[1], r[2], bool(r[3])) for r in info] == [
            (c.name, c.sql, c.not_null) for c in table.columns
        ]
        keys = {(r[3], r[2]) for r in conn.execute(f"PRAGMA foreign_key_list({table.name})")}
        assert keys == {(c.name, c.references) for c in table.columns if c.references}
        indexes = {
            r[1]: [c[2] for c in conn.execute(f"PRAGMA index_info({r[1]})")]
            for r in conn.execute(f"PRAGMA index_list({table.name})")
            if r[3] == "c"  # created by CREATE INDEX, not for a UNIQUE or PRIMARY KEY constraint
        }
        assert indexes == {i.name: list(i.columns) for i in table.indexes}
    conn.close()


def test_archives_have_the_frozen_layout(tmp_path: Path, store: FeedbackStore, digits) -> None:
    qid = single_query(store, digits, 2)
    store.submit_labels("a", [LabelInput(i.id, "good") for i in store.items(qid)])
    archive = store.export_archive(tmp_path / "fb.zip")
    with zipfile.ZipFile(archive) as zf:
        layout = {
            t.name: " ".join(f"{f.name}:{f.type}" for f in pq.read_schema(zf.open(f"{t.name}.parquet")))
            for t in ARCHIVE_TABLES
        }
    assert layout == FROZEN_ARCHIVE
