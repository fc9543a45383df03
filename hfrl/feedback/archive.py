"""Portable archives: the whole store as a zip of Parquet tables and a JSON manifest, and merging one in.

Rows refer to each other by ``uid`` in an archive (foreign keys become ``<name>_uid`` columns), so an
archive merges into any store, and merging the same archive twice adds nothing. The tables and their
columns come from :mod:`hfrl.feedback.schema` (:data:`~hfrl.feedback.schema.ARCHIVE_TABLES`).
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hfrl.feedback.engine import StoreEngine
from hfrl.feedback.errors import FeedbackError
from hfrl.feedback.labelling import refresh_status
from hfrl.feedback.labels import HERO, PAIR, PAIR_VALUES, RATING_VALUES
from hfrl.feedback.records import ImportSummary
from hfrl.feedback.schema import ARCHIVE_TABLES, SAMPLES, SCHEMA_VERSION, Table

ARCHIVE_FORMAT = "hfrl-feedback-archive"
ARCHIVE_VERSION = 1

_IMPORT_VALUES: dict[tuple[str, str], Callable[[Any], Any]] = {
    ("samples", "height"): int,
    ("samples", "width"): int,
    ("samples", "meta"): lambda meta: meta or "{}",
    ("labels", "best"): int,
}
"""How an archive's value becomes the stored one, where it is not stored as it is."""


class ArchiveMixin(StoreEngine):
    """The :class:`~hfrl.feedback.store.FeedbackStore` methods that export and import portable archives."""

    def export_archive(self, path: str | Path, *, include_clean: bool = True) -> Path:
        """Write the whole store to a portable archive: a zip of Parquet tables and a JSON manifest.

        Rows refer to each other by ``uid``, so the archive can be merged into any store with
        :meth:`import_archive`. Images stay exact ``float32`` bytes.

        Args:
            path: The ``.zip`` file to write (replaced atomically).
            include_clean: Also export clean reference images (needed to run the synthetic labeler there).

        Returns:
            ``path``.
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        left_out = {SAMPLES.name: ("clean",)} if not include_clean else {}

        def work(conn: sqlite3.Connection) -> dict[str, bytes]:
            blobs = {}
            for table in ARCHIVE_TABLES:
                rows = conn.execute(table.archive_select(null=left_out.get(table.name, ()))).fetchall()
                schema = pa.schema(
                    [(c.archive_name, getattr(pa, c.archive_type)()) for c in table.archive_columns]
                )
                columns = {name: [r[k] for r in rows] for k, name in enumerate(schema.names)}
                buf = io.BytesIO()
                pq.write_table(pa.table(columns, schema=schema), buf, compression="zstd")
                blobs[table.name] = buf.getvalue()
            return blobs

        blobs = self._read(work)
        manifest = {
            "format": ARCHIVE_FORMAT,
            "format_version": ARCHIVE_VERSION,
            "schema_version": SCHEMA_VERSION,
            "created": time.time(),
            "include_clean": include_clean,
            "tables": {
                name: {"file": f"{name}.parquet", "sha256": hashlib.sha256(b).hexdigest()}
                for name, b in blobs.items()
            },
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("manifest.json", json.dumps(manifest, indent=2))
            for name, b in blobs.items():
                zf.writestr(f"{name}.parquet", b)
        tmp.replace(path)
        return path

    def import_archive(self, path: str | Path) -> ImportSummary:
        """Merge an archive written by :meth:`export_archive` into this store, in one transaction.

        Rows already present (same ``uid``) are skipped, so importing twice adds nothing. Query
        statuses are recomputed from the merged labels.

        Raises:
            FeedbackError: for a missing, corrupt or newer archive; the store is then unchanged.
        """
        tables = _read_archive(Path(path))

        def work(conn: sqlite3.Connection) -> ImportSummary:
            return _merge(conn, tables, Path(path))

        return self._write(work)


def check_archive(path: str | Path) -> None:
    """Check that ``path`` is a readable feedback archive this hfrl can import.

    Raises:
        FeedbackError: for a missing, corrupt or newer archive.
    """
    _read_archive(Path(path))


def _read_archive(path: Path) -> dict[str, list[dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise FeedbackError(f"{path}: no such feedback archive")
    try:
        with zipfile.ZipFile(path) as zf:
            manifest = json.loads(zf.read("manifest.json"))
            if not isinstance(manifest, dict) or manifest.get("format") != ARCHIVE_FORMAT:
                raise FeedbackError(f"{path}: not an hfrl feedback archive")
            version = manifest.get("format_version")
            if not isinstance(version, int) or version > ARCHIVE_VERSION:
                raise FeedbackError(
                    f"{path}: archive format {version} is newer than this hfrl reads ({ARCHIVE_VERSION})"
                )
            tables = {}
            for name in (t.name for t in ARCHIVE_TABLES):
                entry = manifest["tables"][name]
                data = zf.read(entry["file"])
                if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                    raise FeedbackError(f"{path}: table {name} does not match its checksum (corrupt archive)")
                tables[name] = pq.read_table(io.BytesIO(data)).to_pylist()
            return tables
    except FeedbackError:
        raise
    except (zipfile.BadZipFile, KeyError, TypeError, ValueError, OSError, pa.ArrowException) as exc:
        raise FeedbackError(
            f"{path}: corrupt or incomplete feedback archive ({type(exc).__name__}: {exc})"
        ) from None


def _check_row(table: Table, row: dict[str, Any], path: Path) -> None:
    """Refuse an archive row that the database's own constraints would let through."""
    if table.name == "samples":
        h, w = int(row["height"]), int(row["width"])
        for col in ("input", "output", "clean"):
            if row[col] is not None and len(row[col]) != 4 * h * w:
                raise FeedbackError(f"{path}: sample {row['uid']} has a {col} image of the wrong size")
    elif table.name == "labels" and row["value"] not in RATING_VALUES + PAIR_VALUES:
        raise FeedbackError(f"{path}: label {row['uid']} has an unknown value {row['value']!r}")


def _merge(conn: sqlite3.Connection, tables: dict[str, list[dict[str, Any]]], path: Path) -> ImportSummary:
    """Insert the archive's rows that the store lacks, referred-to tables first, inside ``conn``'s transaction."""
    added = {t.name: 0 for t in ARCHIVE_TABLES}
    skipped = 0
    ids: dict[str, dict[str, int]] = {}  # table -> uid -> id in this store
    first_new_label = conn.execute("SELECT coalesce(max(id), 0) FROM labels").fetchone()[0]
    try:
        for table in ARCHIVE_TABLES:
            known = ids[table.name] = {
                uid: i
                for uid, i in conn.execute(f"SELECT uid, id FROM {table.name}")  # noqa: S608 - fixed names
            }
            sql = table.insert_sql()
            for r in tables[table.name]:
                if r["uid"] in known:
                    skipped += 1
                    continue
                _check_row(table, r, path)
                values = []
                for col in table.insert_columns:
                    value = r[col.archive_name]
                    if col.references is not None:
                        value = None if value is None and not col.not_null else ids[col.references][value]
                    elif (table.name, col.name) in _IMPORT_VALUES:
                        value = _IMPORT_VALUES[table.name, col.name](value)
                    values.append(value)
                known[r["uid"]] = int(conn.execute(sql, values).lastrowid)  # type: ignore[arg-type]
                added[table.name] += 1
        mismatched = conn.execute(
            f"SELECT count(*) FROM labels l JOIN items i ON i.id = l.item_id JOIN queries q ON q.id = i.query_id"
            f" WHERE l.id > ? AND ((q.kind = '{PAIR}') != (l.value IN {PAIR_VALUES}) OR (l.best = 1 AND q.kind != '{HERO}'))",
            (first_new_label,),
        ).fetchone()[0]
        bad_items = conn.execute(
            f"SELECT count(*) FROM items i JOIN queries q ON q.id = i.query_id"
            f" WHERE (q.kind = '{PAIR}') != (i.other_id IS NOT NULL)"
        ).fetchone()[0]
        if mismatched or bad_items:
            raise FeedbackError(
                f"{path}: the archive holds labels or items that do not fit their query's kind"
            )
    except KeyError as exc:
        raise FeedbackError(f"{path}: the archive refers to a missing row or column ({exc})") from None
    except sqlite3.IntegrityError as exc:
        raise FeedbackError(f"{path}: the archive holds invalid rows ({exc})") from None
    now = time.time()
    # New labels took ids above every earlier one: their queries are the ones whose status may change.
    qids = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT i.query_id FROM labels l JOIN items i ON i.id = l.item_id WHERE l.id > ?"
            " ORDER BY i.query_id",
            (first_new_label,),
        )
    ]
    for qid in qids:
        refresh_status(conn, qid, now)
    return ImportSummary(added["samples"], added["queries"], added["items"], added["labels"], skipped)
