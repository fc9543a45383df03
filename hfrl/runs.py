"""Run directories: where every CLI run and trainer writes its config, logs, checkpoints and results."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hfrl.errors import ConfigError

_CREATED_RUN_DIRS: list[Path] = []
"""Folders :func:`make_run_dir` created in this process (parents first), for :func:`cleanup_on_failure`."""


def make_run_dir(out: str | Path | None, prefix: str, root: str | Path = "runs") -> Path:
    """Create and return a run directory.

    Args:
        out: An explicit directory (created if needed); when ``None``, ``ROOT/PREFIX-YYYYmmdd-HHMMSS``.
        prefix: Kind of run (``pretrain``, ``finetune``, ...).
        root: Parent folder of automatic run directories.
    """
    if out is not None:
        path = Path(out)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path(root) / f"{prefix}-{stamp}"
        n = 1
        while path.exists():
            n += 1
            path = Path(root) / f"{prefix}-{stamp}-{n}"
    new = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    _CREATED_RUN_DIRS.extend(reversed(new))
    return path


@contextlib.contextmanager
def cleanup_on_failure() -> Iterator[None]:
    """Run a command; if it raises, remove the run directories it created that are still empty.

    Only folders made by :func:`make_run_dir` inside the block are considered, deepest first, and only
    empty ones are removed: a folder the user made, or one holding any file, is never touched. The
    exception is re-raised.
    """
    start = len(_CREATED_RUN_DIRS)
    try:
        yield
    except BaseException:
        mine = _CREATED_RUN_DIRS[start:]
        del _CREATED_RUN_DIRS[start:]
        for path in reversed(mine):
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries to disk (so that a rename in it survives a power cut); no-op elsewhere."""
    if os.name != "posix":
        return
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Write a file so that readers see either its old content or the complete new one, never a part.

    ``write(tmp)`` writes the new content to ``PATH.tmp``; it is then flushed to disk (``fsync``) and
    renamed over ``path`` (``os.replace``, atomic on POSIX and Windows), and the folder is flushed. A
    process killed at any point leaves ``path`` as it was, or complete.

    Args:
        path: The file to (over)write; its folder is created.
        write: Writes the content to the temporary path it is given.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, tuples, paths and non-finite floats into JSON-friendly values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item") and callable(obj.item):
        return to_jsonable(obj.item())
    return obj


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (via :func:`to_jsonable`), atomically (see :func:`atomic_write`)."""
    text = json.dumps(to_jsonable(obj), indent=2) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_json_object(path: str | Path, what: str = "JSON file") -> dict[str, Any]:
    """Read a JSON file that must hold an object, with one-line errors naming the file.

    Args:
        path: The file.
        what: What the file is, for the message (``run config``, ...).

    Raises:
        ConfigError: for a missing, unreadable, empty or malformed file, or JSON that is not an object.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc})") from None
    if not text.strip():
        raise ConfigError(f"{path}: {what} is empty (a run killed while writing it?)")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: {what} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: {what} must be a JSON object, got {type(doc).__name__}")
    return doc


class CSVLogger:
    """Append rows of scalar metrics to a CSV file; columns are fixed by the first row written.

    Args:
        path: The CSV file (created with a header, or appended to when it exists with the same columns).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fields: list[str] | None = None
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open() as fh:
                self._fields = next(csv.reader(fh), None)

    def drop_after(self, step: int) -> None:
        """Remove, atomically, the rows whose ``step`` column is above ``step``.

        A run killed after its last checkpoint logged rows the resumed run logs again; this drops them.
        Rows without a readable ``step`` are kept.
        """
        if self._fields is None or "step" not in self._fields:
            return
        with self.path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        kept = [r for r in rows if not _number(r.get("step")) > step]
        if len(kept) == len(rows):
            return

        def write(tmp: Path) -> None:
            with tmp.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=self._fields or [], extrasaction="ignore")
                writer.writeheader()
                writer.writerows(kept)

        atomic_write(self.path, write)

    def log(self, row: dict[str, Any]) -> None:
        """Write one row; keys not in the header are ignored, missing keys are left empty."""
        new = self._fields is None
        if new:
            self._fields = list(row)
        with self.path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self._fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: to_jsonable(v) for k, v in row.items()})


def write_rows(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write a table of scalar metrics as CSV, whole and atomically (:func:`atomic_write`).

    For tables rewritten as they grow whose later rows gain columns (an online trainer's rounds: its update
    metrics start once there are labels to learn from): the columns are the union of the rows' keys in
    first-seen order, where :class:`CSVLogger` fixes them by the first row. Cells are written as
    :class:`CSVLogger` writes them: missing and non-finite values are empty.

    Args:
        path: The CSV file (replaced).
        rows: The table, one mapping of column to value per row.

    Returns:
        ``path``.
    """
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(columns))
            writer.writeheader()
            writer.writerows({k: to_jsonable(v) for k, v in row.items()} for row in rows)

    return atomic_write(path, write)


def _number(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("-inf")
