"""Run-directory helpers: atomic writes, one-line JSON errors, cleanup of failed runs, CSV rows after a resume."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hfrl.errors import ConfigError
from hfrl.runs import (
    CSVLogger,
    atomic_write,
    cleanup_on_failure,
    make_run_dir,
    read_json_object,
    write_json,
    write_rows,
)


class Crash(BaseException):
    """Stands for the process dying."""


def test_a_write_stopped_before_its_rename_leaves_the_old_file_whole(tmp_path: Path, monkeypatch) -> None:
    path = write_json(tmp_path / "config.json", {"steps": 4})
    before = path.read_bytes()

    def crash(src, dst):  # noqa: ANN001, ANN202
        raise Crash(dst)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(Crash):
        write_json(path, {"steps": 8, "more": list(range(1000))})
    assert path.read_bytes() == before  # the old content, not an empty or half-written file
    monkeypatch.undo()
    atomic_write(path, lambda tmp: tmp.write_text("{}"))
    assert path.read_text() == "{}" and not path.with_name("config.json.tmp").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "not found"),
        ("", "empty"),
        ("  \n", "empty"),
        ("{oops", "not valid JSON"),
        ("[1]", "JSON object"),
    ],
)
def test_read_json_object_errors_are_one_line_naming_the_file(
    text: str | None, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "config.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        read_json_object(path, "run config")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_cleanup_on_failure_removes_only_empty_run_directories_it_made(tmp_path: Path) -> None:
    mine = tmp_path / "made" / "run"
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    with pytest.raises(ConfigError), cleanup_on_failure():
        make_run_dir(mine, "x")
        make_run_dir(theirs, "x")
        full = make_run_dir(tmp_path / "full", "x")
        (full / "log.txt").write_text("work")
        raise ConfigError("bad input")
    assert not (tmp_path / "made").exists()  # the folder and the parent it created
    assert theirs.is_dir() and (tmp_path / "full" / "log.txt").is_file()
    with cleanup_on_failure():  # success: nothing is removed
        ok = make_run_dir(tmp_path / "ok", "x")
    assert ok.is_dir()


def test_drop_after_removes_rows_past_a_step(tmp_path: Path) -> None:
    log = CSVLogger(tmp_path / "train.csv")
    for step in (1, 2, 3, 4):
        log.log({"step": step, "loss": step / 10})
    again = CSVLogger(tmp_path / "train.csv")
    again.drop_after(2)
    again.log({"step": 3, "loss": 0.0})
    rows = (tmp_path / "train.csv").read_text().splitlines()
    assert rows == ["step,loss", "1,0.1", "2,0.2", "3,0.0"]


def test_write_rows_takes_the_union_of_columns(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "r.csv", [{"a": 1.0}, {"a": 2.0, "b": float("nan")}, {"b": 3.0}])
    assert path.read_text().splitlines() == ["a,b", "1.0,", "2.0,", ",3.0"]
