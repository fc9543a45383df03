"""Portable archives (:mod:`hfrl.feedback.archive`): round trip, idempotent merge, bad archives refused."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from hfrl.feedback.store import (
    FeedbackError,
    FeedbackStore,
    LabelInput,
)
from tests.feedback.conftest import single_query


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
