"""The feedback store's SQLite file: opening, checking, migrating, and the threads that read and write it.

One SQLite file (standard library ``sqlite3``) in WAL mode with foreign keys on. Its schema version is
``PRAGMA user_version`` and its ``PRAGMA application_id`` marks it as an hfrl feedback store; older
schemas are migrated on open (:data:`~hfrl.feedback.schema.MIGRATIONS`), while a file written by a newer
hfrl, a corrupt file or another program's database is refused with a one-line :class:`FeedbackError`
and is never written to (it is inspected through a read-only connection first, :func:`inspect_database`).

Reading never writes: opening a healthy store of the current schema takes no write lock, and a store
opened with ``readonly=True`` reads through SQLite ``mode=ro`` connections, immutable while no other
process has the file open, so not a byte of the file or its folder changes, even in a read-only folder.
An empty (zero-byte) file is refused, never initialised.

Writes go through one writer thread per store that commits whatever writes are waiting in one
transaction (group commit), each inside its own savepoint. Commits use ``synchronous=FULL``: when a write
method returns, the transaction is on disk, which is what lets the labelling server acknowledge a label.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from hfrl.feedback.errors import FeedbackError, ReadOnlyError, StoreBusyError
from hfrl.feedback.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

DEFAULT_DB_NAME = "feedback.sqlite"
"""File name of the feedback store inside a run directory."""
DB_SUFFIXES = (".sqlite", ".sqlite3", ".db")
"""Suffixes that make ``--db`` name a database file rather than a run directory."""
CHECKPOINT_INTERVAL = 0.5
"""Seconds between background WAL checkpoints."""

_SQLITE_MAGIC = b"SQLite format 3\x00"
T = TypeVar("T")
E = TypeVar("E", bound="StoreEngine")


@dataclass
class _Job:
    """A write waiting for the writer thread, and the future its caller waits on."""

    fn: Callable[[sqlite3.Connection], Any]
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


# ----------------------------------------------------------------------------------------- inspection


def default_db_path(run_dir: str | Path) -> Path:
    """The feedback store of a run directory: ``RUN_DIR/feedback.sqlite``."""
    return Path(run_dir) / DEFAULT_DB_NAME


def _wal_path(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _ro_uri(path: Path, immutable: bool | None = None) -> str:
    """A read-only SQLite URI for ``path``.

    Without a write-ahead log (no process has the database open) there is nothing newer than the main
    file, so it is read as immutable: no locks and no -wal/-shm files created next to it, which also
    works in a read-only folder. With a log (a writer is live, or crashed) it is read through the log.
    """
    uri = path.resolve().as_uri() + "?mode=ro"
    if immutable is None:
        immutable = not _wal_path(path).exists()
    if immutable:
        uri += "&immutable=1"
    return uri


def resolve_db_path(db: str | Path) -> Path:
    """The one meaning of ``--db``: a ``.sqlite``/``.db`` file, or a run directory holding ``feedback.sqlite``.

    An existing directory, a path ending in a path separator, or a path without a ``.sqlite``/``.db``
    suffix that does not exist as a file names a run directory; anything else names the file itself.

    Args:
        db: What the user gave.

    Returns:
        The database file.
    """
    text = str(db)
    path = Path(db)
    if path.is_dir() or text.endswith(("/", "\\")):
        return default_db_path(path)
    if path.exists() or path.suffix.lower() in DB_SUFFIXES:
        return path
    return default_db_path(path)


def inspect_database(path: str | Path) -> int:
    """Check an existing file through a read-only connection and return its schema version.

    Args:
        path: The database file.

    Returns:
        The schema version (0 for an empty SQLite database, to be initialised).

    Raises:
        FeedbackError: for an empty (zero-byte) file, a file that is not SQLite, is corrupt, belongs to
            another program, or was written by a newer hfrl. The file is not modified.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            header = fh.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise FeedbackError(f"{path}: cannot read the feedback database ({exc.strerror})") from None
    if size == 0:
        # Never silently turned into a database: an empty file is what a failed copy or a crash of
        # something else leaves, and `label status` must not make a store out of it.
        raise FeedbackError(f"{path}: an empty file, not a feedback database; left untouched")
    if header != _SQLITE_MAGIC:
        raise FeedbackError(
            f"{path}: not an SQLite database (corrupt or another kind of file); left untouched"
        )
    try:
        conn = sqlite3.connect(_ro_uri(path), uri=True)
    except sqlite3.Error as exc:
        raise FeedbackError(f"{path}: cannot open the feedback database read-only ({exc})") from None
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id != APPLICATION_ID:
            if tables == 0:
                return 0
            raise FeedbackError(f"{path}: an SQLite database, but not an hfrl feedback store; left untouched")
        if version > SCHEMA_VERSION:
            raise FeedbackError(
                f"{path}: written by a newer hfrl (feedback schema {version}; this hfrl reads up to "
                f"{SCHEMA_VERSION}); upgrade hfrl to use it. The file was left untouched"
            )
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise FeedbackError(f"{path}: the feedback database is corrupt ({problems[0]}); left untouched")
        return int(version)
    except sqlite3.DatabaseError as exc:
        raise FeedbackError(f"{path}: the feedback database is corrupt ({exc}); left untouched") from None
    finally:
        conn.close()


def _is_wal(path: Path) -> bool:
    """Whether the file's header says WAL mode (bytes 18-19 are 2), read without opening it in SQLite."""
    try:
        with path.open("rb") as fh:
            header = fh.read(20)
    except OSError:
        return False
    return len(header) == 20 and header[18] == 2 and header[19] == 2


def _split_sql(script: str) -> list[str]:
    """The statements of a migration script (no statement holds a ``;`` of its own)."""
    return [s.strip() for s in script.split(";") if s.strip()]


# -------------------------------------------------------------------------------------------- engine


class StoreEngine:
    """Connections, transactions and the writer thread of one feedback store file.

    The base of :class:`~hfrl.feedback.store.FeedbackStore` (see its arguments); the mixins that make up the
    store's methods read with :meth:`_read` (one snapshot) or :meth:`_reader` (a single statement) and
    write with :meth:`_write`.
    """

    def __init__(
        self, path: str | Path, *, create: bool = True, readonly: bool = False, busy_timeout: float = 30.0
    ) -> None:
        self.path = resolve_db_path(path)
        self.readonly = bool(readonly)
        self.busy_timeout = float(busy_timeout)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        self._closed = False
        self._immutable = False  # reading an immutable file (read-only, while nobody has it open)
        self._opened_state: tuple[bool, int, int] | None = None
        exists = self.path.is_file()
        if not exists and (not create or self.readonly):
            raise FeedbackError(f"{self.path}: no feedback database there")
        version = inspect_database(self.path) if exists else 0
        self.created = not exists or version == 0
        if self.readonly:
            if version == 0:
                raise FeedbackError(f"{self.path}: an empty SQLite database, not a feedback store yet")
            self._version = version
            return
        if not exists:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if version != SCHEMA_VERSION or not _is_wal(self.path):
            self._initialise(version)
        self._version = SCHEMA_VERSION

    # -- connections

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            return self._connect_readonly()
        try:
            conn = sqlite3.connect(
                str(self.path), timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise FeedbackError(f"{self.path}: cannot open the feedback database ({exc})") from None
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        # FULL makes each commit reach the disk before the writer reports success: a label is durable
        # when the server acknowledges it, even across a power cut, not just a process kill.
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        """A ``mode=ro`` connection: immutable while no write-ahead log exists (see :func:`_ro_uri`)."""
        with self._lock:
            state = self._file_state()
            immutable = not state[0]
            if immutable and not self._immutable:
                self._immutable, self._opened_state = True, state
        try:
            conn = sqlite3.connect(
                _ro_uri(self.path, immutable),
                uri=True,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            raise FeedbackError(f"{self.path}: cannot open the feedback database read-only ({exc})") from None
        return conn

    def _file_state(self) -> tuple[bool, int, int]:
        """What tells an immutable reader that a writer appeared: a log, or a changed main file."""
        try:
            st = self.path.stat()
        except OSError:
            return (True, -1, -1)
        return (_wal_path(self.path).exists(), st.st_size, st.st_mtime_ns)

    def _reopen_readers(self) -> None:
        """Drop this store's immutable connections; the next read opens ones that read through the log."""
        with self._lock:
            readers, self._readers = self._readers, []
            self._immutable, self._opened_state = False, None
            self._local = threading.local()
        for conn in readers:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _initialise(self, version: int) -> None:
        conn = self._connect()
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have migrated while we waited for the lock.
                current = conn.execute("PRAGMA user_version").fetchone()[0]
                if current > SCHEMA_VERSION:
                    raise FeedbackError(f"{self.path}: written by a newer hfrl (feedback schema {current})")
                for step in range(current, SCHEMA_VERSION):
                    for statement in _split_sql(MIGRATIONS[step]):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {step + 1}")
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise FeedbackError(f"{self.path}: cannot initialise the feedback database ({exc})") from None
        finally:
            conn.close()

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise FeedbackError(f"{self.path}: the feedback store is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._lock:
                self._readers.append(conn)
        return conn

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` inside one read transaction, so it sees a single snapshot.

        A read-only store reads an immutable file while no writer has it open; if one appeared during
        the read (a log now exists, or the file changed), the read is done again through the log.
        """
        if self.readonly and self._immutable and self._file_state() != self._opened_state:
            self._reopen_readers()  # a writer came since: read through its log from now on
        conn = self._reader()
        if conn.in_transaction:  # already inside a snapshot on this thread
            return fn(conn)
        guard = self.readonly and self._immutable
        failed = False
        try:
            conn.execute("BEGIN")
            try:
                result = fn(conn)
            finally:
                conn.execute("COMMIT")
        except sqlite3.DatabaseError:
            if not guard:
                raise
            failed = True
        if guard and (failed or self._file_state() != self._opened_state):
            self._reopen_readers()  # a writer appeared during the read: read again, through its log
            return self._read(fn)
        return result  # type: ignore[return-value]

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the writer thread inside a savepoint; returns once its transaction is on disk."""
        if self.readonly:
            raise ReadOnlyError(f"{self.path}: the feedback store was opened read-only")
        job = _Job(fn)
        with self._lock:
            # Checked and queued under the lock, so no job can land behind close()'s stop sentinel.
            if self._closed:
                raise FeedbackError(f"{self.path}: the feedback store is closed")
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_loop, name="hfrl-feedback-writer", daemon=True
                )
                self._writer.start()
                self._checkpointer = threading.Thread(
                    target=self._checkpoint_loop, name="hfrl-feedback-checkpoint", daemon=True
                )
                self._checkpointer.start()
            self._jobs.put(job)
        return job.future.result()

    def _write_loop(self) -> None:
        try:
            conn = self._connect()
            conn.execute("PRAGMA busy_timeout = 0")  # _begin retries itself, at a finer grain
            # The checkpointer thread copies the log into the database; a commit that did it itself would
            # keep its caller (a labeler waiting for an acknowledgement) waiting for megabytes of copying.
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        except (FeedbackError, sqlite3.Error) as exc:
            # Without a connection no write can succeed: fail every caller rather than leave them waiting.
            err = (
                exc if isinstance(exc, FeedbackError) else FeedbackError(f"{self.path}: cannot write ({exc})")
            )
            while (job := self._jobs.get()) is not None:
                job.future.set_exception(err)
            return
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                jobs, stop = [job], False
                while len(jobs) < 512:
                    try:
                        nxt = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    jobs.append(nxt)
                self._commit(conn, jobs)
                if stop:
                    return
        finally:
            conn.close()

    def _checkpoint_loop(self) -> None:
        """Copy committed log pages into the database file in the background (PASSIVE: never blocks writers)."""
        conn = self._connect()
        try:
            stopping = False
            while not stopping:
                stopping = self._stop_checkpoints.wait(CHECKPOINT_INTERVAL)
                with contextlib.suppress(sqlite3.Error):  # best effort: the next round tries again
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    def _begin(self, conn: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE``, retrying every millisecond or so while another process holds the lock.

        SQLite's own busy handler backs off to sleeps of 50-100 ms, far longer than the other writer
        (a trainer adding a chunk of samples) usually holds the lock.
        """
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.0005
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(2 * delay, 0.004)

    def _commit(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        """One transaction for all waiting jobs; a job that fails rolls back only its own savepoint."""
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            self._begin(conn)
        except sqlite3.OperationalError as exc:
            err = StoreBusyError(f"{self.path}: the feedback database is locked ({exc}); try again")
            for job in jobs:
                job.future.set_exception(err)
            return
        try:
            for job in jobs:
                conn.execute("SAVEPOINT job")
                try:
                    result = job.fn(conn)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    if isinstance(exc, sqlite3.IntegrityError):
                        exc = FeedbackError(f"rejected by the feedback database: {exc}")
                    outcomes.append((job, None, exc))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((job, result, None))
            conn.execute("COMMIT")
        except BaseException as exc:  # noqa: BLE001 - the writer thread must survive to serve the next job
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            err = FeedbackError(f"{self.path}: could not save to the feedback database ({exc})")
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(err)
            return
        for job, result, exc in outcomes:
            if exc is None:
                job.future.set_result(result)
            else:
                job.future.set_exception(exc)

    def close(self) -> None:
        """Finish pending writes and close every connection; further use raises :class:`FeedbackError`."""
        if self._closed:
            return
        with self._lock:
            self._closed = True
            writer, self._writer = self._writer, None
        if writer is not None:
            self._jobs.put(None)
            writer.join()
            self._stop_checkpoints.set()
            if self._checkpointer is not None:
                self._checkpointer.join()
        with self._lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()

    def __enter__(self: E) -> E:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    @property
    def schema_version(self) -> int:
        """The store's schema version."""
        return int(self._read(lambda conn: conn.execute("PRAGMA user_version").fetchone()[0]))
