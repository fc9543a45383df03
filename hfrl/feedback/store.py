"""The feedback store: every sample shown to labelers, every batch put to them, every label they gave.

One SQLite file (standard library ``sqlite3``) in WAL mode with foreign keys on. Its schema version is
``PRAGMA user_version`` and its ``PRAGMA application_id`` marks it as an hfrl feedback store; older
schemas are migrated on open, while a file written by a newer hfrl, a corrupt file or another program's
database is refused with a one-line :class:`FeedbackError` and is never written to (it is inspected
through a read-only connection first).

Tables:

* ``samples``: an output image beside the noisy input it came from, the generator checkpoint and round
  that produced it, domain/class metadata and the clean image, which only the synthetic labeler reads
  (:meth:`FeedbackStore.clean_images`; no HTTP route exposes it). Images are stored losslessly as
  ``float32`` bytes.
* ``queries``: batches put to labelers (``single``, ``pair`` or ``hero``), ``pending`` until each item has
  labels from ``labels_needed`` different labelers, then ``done``; or ``cancelled``.
* ``items``: the questions inside a query: one sample, or two for a pair.
* ``labels``: one row per answer: item, labeler id, word (see :mod:`hfrl.feedback.labels`), a best-of-batch
  mark, response time and timestamp. Rows are never updated except to mark them ``retracted`` by undo; a
  labeler's *current* label on an item is their latest unretracted one, so several labelers never
  overwrite each other and undo restores what was there before.
* ``labelers`` (schema 2): labeler names claimed through the labelling server, with the SHA-256 of the
  session token issued for each (:meth:`FeedbackStore.create_session`).
* ``leases`` (schema 2): items handed to a labeler and not yet answered, each until an expiry time
  (:meth:`FeedbackStore.lease_batch`); an item needing ``n`` labels is never handed to more than ``n``
  labelers at once, counting those who answered it and those holding a live lease.

Majority and agreement are computed when reading (:meth:`FeedbackStore.rating_summaries`,
:meth:`FeedbackStore.pair_summaries`, :meth:`FeedbackStore.rating_tensors`). Every row has a random
``uid`` so that :meth:`FeedbackStore.export_archive` / :meth:`FeedbackStore.import_archive` move feedback
between machines and merging the same archive twice adds nothing.

Reading never writes (a store opened ``readonly=True`` reads through SQLite ``mode=ro`` connections), and
every write is on disk when its method returns, committed by one writer thread per store (group commit):
see :mod:`hfrl.feedback.engine`.

The store is a package of focused modules, and this module puts them together:

* :mod:`hfrl.feedback.schema`: the tables, each column declared once (SQL, migrations, archive types).
* :mod:`hfrl.feedback.engine`: the file: checks, migrations, connections, the writer thread.
* :mod:`hfrl.feedback.records`: the records read and written; :mod:`hfrl.feedback.errors`: the errors.
* :mod:`hfrl.feedback.samples`, :mod:`hfrl.feedback.labelling`, :mod:`hfrl.feedback.summaries`: samples
  and queries, labelling, aggregation.
* :mod:`hfrl.feedback.tensors`: tensors for reward training; :mod:`hfrl.feedback.archive`: archives.

Every name these modules offer users is importable from here too, as it was when this was one file.
"""

from __future__ import annotations

from hfrl.feedback.archive import ARCHIVE_FORMAT, ARCHIVE_VERSION, ArchiveMixin, check_archive
from hfrl.feedback.engine import (
    CHECKPOINT_INTERVAL,
    DB_SUFFIXES,
    DEFAULT_DB_NAME,
    default_db_path,
    inspect_database,
    resolve_db_path,
)
from hfrl.feedback.errors import (
    FeedbackError,
    NameTakenError,
    QueryClosedError,
    ReadOnlyError,
    StoreBusyError,
    UnknownIdError,
)
from hfrl.feedback.labelling import DEFAULT_LEASE_SECONDS, MAX_LABELER_LENGTH, LabellingMixin
from hfrl.feedback.records import (
    Batch,
    ImportSummary,
    ItemRecord,
    ItemResult,
    LabelInput,
    LabelRecord,
    PairSummary,
    Progress,
    QueryRecord,
    QueryResult,
    RatingSummary,
    SampleRecord,
    SubmitResult,
)
from hfrl.feedback.samples import SAMPLE_CHUNK, STATUSES
from hfrl.feedback.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from hfrl.feedback.tensors import FeedbackDataset, HeroBatch, PairTensors, RatingTensors, TensorMixin

__all__ = [
    "APPLICATION_ID",
    "ARCHIVE_FORMAT",
    "ARCHIVE_VERSION",
    "CHECKPOINT_INTERVAL",
    "DB_SUFFIXES",
    "DEFAULT_DB_NAME",
    "DEFAULT_LEASE_SECONDS",
    "MAX_LABELER_LENGTH",
    "MIGRATIONS",
    "SAMPLE_CHUNK",
    "SCHEMA_VERSION",
    "STATUSES",
    "Batch",
    "FeedbackDataset",
    "FeedbackError",
    "FeedbackStore",
    "HeroBatch",
    "ImportSummary",
    "ItemRecord",
    "ItemResult",
    "LabelInput",
    "LabelRecord",
    "NameTakenError",
    "PairSummary",
    "PairTensors",
    "Progress",
    "QueryClosedError",
    "QueryRecord",
    "QueryResult",
    "RatingSummary",
    "RatingTensors",
    "ReadOnlyError",
    "SampleRecord",
    "StoreBusyError",
    "SubmitResult",
    "UnknownIdError",
    "check_archive",
    "default_db_path",
    "inspect_database",
    "resolve_db_path",
]


class FeedbackStore(TensorMixin, LabellingMixin, ArchiveMixin):
    """The SQLite feedback store (see the module docstring).

    Safe to share between threads; several processes may open the same file (a trainer enqueueing, the
    labelling server, the synthetic labeler).

    Opening a healthy store of the current schema writes nothing: the write lock is taken only by a
    migration, by creating a new store, and by the write methods. A store opened ``readonly`` uses
    SQLite read-only connections (URI ``mode=ro``) and never changes a byte of the file or its folder.

    Args:
        path: The database file, or a run directory (meaning ``RUN_DIR/feedback.sqlite``); see
            :func:`resolve_db_path`.
        create: Create the file (and its folder) when missing; otherwise a missing file is an error.
        readonly: Open read-only (implies ``create=False``); write methods raise :class:`ReadOnlyError`.
            A store of an older schema is read as it is, without migrating it.
        busy_timeout: Seconds to wait for another process's write lock before failing.

    Raises:
        FeedbackError: for a missing file (``create=False``), an empty or corrupt file, another program's
            database, or a database written by a newer hfrl; such files are left untouched.
    """
