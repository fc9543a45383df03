"""Reading never writes: read-only opening leaves every byte and the folder as they were."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hfrl.cli import main
from hfrl.feedback import FeedbackStore, LabelInput
from hfrl.feedback.store import SCHEMA_VERSION, FeedbackError, ReadOnlyError

from .conftest import CLI, REPO


def fingerprint(folder: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every file in ``folder``: any write, new file or removed file shows."""
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(folder.iterdir())
    }


@pytest.fixture()
def healthy(tmp_path: Path, digits) -> Path:
    """A closed store with queries and labels (no -wal/-shm left: nobody has it open)."""
    folder = tmp_path / "run"
    path = folder / "feedback.sqlite"
    with FeedbackStore(path) as s:
        d = digits.take(0, 8)
        q = s.add_query("single", d.inputs, d.outputs, clean=d.clean, classes=d.classes)
        s.add_query("pair", d.inputs[:4], d.outputs[:4], others=d.others[:4])
        items = s.items(q)
        s.submit_labels("alice", [LabelInput(items[0].id, "good"), LabelInput(items[1].id, "bad")])
    assert sorted(os.listdir(folder)) == ["feedback.sqlite"]
    return path


def read_everything(store: FeedbackStore) -> None:
    queries = store.queries()
    assert len(queries) == 2 and store.progress().labels_total == 2
    store.items(queries[0].id)
    store.query_result(queries[0].id)
    assert len(store.rating_tensors()) == 2 and len(store.labels()) == 2
    store.pair_summaries()
    store.next_batch("someone")
    assert store.leases() == {} and store.session_labeler("no-such-token") is None
    assert store.schema_version == SCHEMA_VERSION


def test_read_only_store_changes_no_byte_and_refuses_writes(healthy: Path, tmp_path: Path) -> None:
    before = fingerprint(healthy.parent)
    time.sleep(0.01)  # a write would move an mtime
    with FeedbackStore(healthy, readonly=True) as store:
        read_everything(store)
        store.export_archive(tmp_path / "out.zip")
        with pytest.raises(ReadOnlyError, match="read-only"):
            store.submit_labels("bob", [LabelInput(1, "good")])
        with pytest.raises(ReadOnlyError):
            store.lease_batch("bob")
        with pytest.raises(ReadOnlyError):
            store.create_session("bob")
    assert fingerprint(healthy.parent) == before
    with pytest.raises(FeedbackError, match="no feedback database"):
        FeedbackStore(tmp_path / "missing.sqlite", readonly=True)
    assert not (tmp_path / "missing.sqlite").exists()


def test_opening_a_healthy_store_for_writing_takes_no_write_lock(healthy: Path) -> None:
    before = fingerprint(healthy.parent)
    # Another process holds the write lock: an open that started a write transaction would wait and fail.
    other = sqlite3.connect(healthy, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        with FeedbackStore(healthy, busy_timeout=0.2) as store:
            assert store.progress().labels_total == 2
        assert time.monotonic() - started < 5
    finally:
        other.execute("ROLLBACK")
        other.close()
    # Opened and closed without a write: the database file is byte for byte the same.
    after = fingerprint(healthy.parent)
    assert after["feedback.sqlite"][0] == before["feedback.sqlite"][0]


def test_read_only_reader_sees_a_writer_that_appears(healthy: Path) -> None:
    with FeedbackStore(healthy, readonly=True) as reader:
        assert reader.progress().labels_total == 2  # immutable: nobody had the file open
        with FeedbackStore(healthy) as writer:
            q = writer.queries()[0].id
            writer.submit_labels("bob", [LabelInput(i.id, "good") for i in writer.items(q)])
            assert reader.progress().labels_total == 10  # now read through the live writer's log
        assert reader.progress().labels_total == 10


@pytest.mark.parametrize("content", [b"", b"not a database at all\n" * 20])
@pytest.mark.parametrize("action", ["status", "export", "serve", "simulate"])
def test_empty_or_foreign_files_are_refused_in_one_line(
    tmp_path: Path, content: bytes, action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "fb.sqlite"
    path.write_bytes(content)
    argv = {
        "status": ["label", "status", "--db", str(path)],
        "export": ["label", "export", "--db", str(path), "--out", str(tmp_path / "x" / "a.zip")],
        "serve": ["label", "serve", "--db", str(path), "--port", "0"],
        "simulate": ["label", "simulate", "--db", str(path), "--device", "cpu"],
    }[action]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("hfrl label: error:")
    assert ("empty file" if not content else "not an SQLite database") in err
    assert path.read_bytes() == content and sorted(os.listdir(tmp_path)) == ["fb.sqlite"]


def test_status_and_export_leave_the_database_and_its_folder_as_they_were(
    healthy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = fingerprint(healthy.parent)
    time.sleep(0.01)
    assert main(["label", "status", "--db", str(healthy)]) == 0
    assert "labels: 2 from 1 labelers" in capsys.readouterr().out
    assert main(["label", "status", "--db", str(healthy.parent)]) == 0  # the run directory: same file
    assert main(["label", "export", "--db", str(healthy), "--out", str(tmp_path / "fb.zip")]) == 0
    assert fingerprint(healthy.parent) == before


def _unprivileged() -> list[str] | None:
    """A command prefix that drops root's power to ignore file permissions, or ``None`` if none works."""
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    # In a new user namespace root keeps its uid but loses CAP_DAC_OVERRIDE over the host's files.
    probe = subprocess.run([unshare, "--user", "true"], capture_output=True)
    return [unshare, "--user"] if probe.returncode == 0 else None


@pytest.fixture()
def read_only_folder(healthy: Path) -> Iterator[Path]:
    folder = healthy.parent
    healthy.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        yield healthy
    finally:
        folder.chmod(0o755)
        healthy.chmod(0o644)


def test_status_reads_a_read_only_file_in_a_read_only_folder(read_only_folder: Path) -> None:
    prefix = _unprivileged()
    if prefix is None:
        pytest.skip("running as root without user namespaces: permissions cannot be enforced")
    before = fingerprint(read_only_folder.parent)
    run = subprocess.run(
        [*prefix, *CLI, "label", "status", "--db", str(read_only_folder)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "labels: 2 from 1 labelers" in run.stdout
    assert fingerprint(read_only_folder.parent) == before  # and no -wal/-shm appeared
    # The same command as a writer would have been refused: the permissions really bind.
    write = subprocess.run(
        [*prefix, "sh", "-c", f"echo x >> {read_only_folder}"], capture_output=True, text=True, timeout=30
    )
    assert write.returncode != 0


def test_reward_training_reads_the_store_read_only(healthy: Path, tmp_path: Path) -> None:
    from hfrl.rewards.fit import fit_reward_from_store  # what `hfrl reward train` runs
    from hfrl.rewards.training import RewardTrainingConfig

    before = fingerprint(healthy.parent)
    time.sleep(0.01)
    fit = fit_reward_from_store(
        healthy.parent, tmp_path / "reward", model="output", val_fraction=0.0,
        training=RewardTrainingConfig(steps=2, batch_size=2, seed=0), seed=0, device="cpu",
    )  # fmt: skip
    assert fit is not None and (tmp_path / "reward").is_dir()
    assert fingerprint(healthy.parent) == before


def test_an_older_store_is_read_as_it_is_and_migrated_only_by_a_writer(healthy: Path) -> None:
    conn = sqlite3.connect(healthy)  # make it a schema-1 store, as an older hfrl wrote it
    conn.executescript("DROP TABLE leases; DROP TABLE labelers; PRAGMA user_version = 1;")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = fingerprint(healthy.parent)
    time.sleep(0.01)
    with FeedbackStore(healthy, readonly=True) as store:
        assert store.schema_version == 1 and store.progress().labels_total == 2
        assert len(store.next_batch("someone")) == 6 and store.leases() == {}
    assert main(["label", "status", "--db", str(healthy)]) == 0
    assert fingerprint(healthy.parent) == before
    with FeedbackStore(healthy) as store:
        assert store.schema_version == SCHEMA_VERSION == 2
        assert len(store.lease_batch("someone")) == 6
