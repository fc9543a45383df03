"""Run directories: where every CLI run and trainer writes its config, logs, checkpoints and results."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any


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
    path.mkdir(parents=True, exist_ok=True)
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
    """Write ``obj`` as indented JSON (via :func:`to_jsonable`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(obj), indent=2) + "\n")
    return path


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
