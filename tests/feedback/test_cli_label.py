from __future__ import annotations

import importlib.util
import os
import sqlite3
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch

from hfrl.checkpoint import save_checkpoint
from hfrl.classifiers import ClassifierConfig, DigitClassifier, classifier_config_dict
from hfrl.cli import main
from hfrl.feedback import FeedbackStore
from hfrl.feedback.server import prepare_server

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def db(tmp_path: Path, digits) -> Path:
    path = tmp_path / "feedback.sqlite"
    with FeedbackStore(path) as s:
        d = digits.take(0, 12)
        s.add_query("single", d.inputs, d.outputs, clean=d.clean, classes=d.classes)
        s.add_query(
            "pair", d.inputs[:4], d.outputs[:4], others=d.others[:4], clean=d.clean[:4], classes=d.classes[:4]
        )
        s.add_query("hero", d.inputs[:5], d.outputs[:5], clean=d.clean[:5], classes=d.classes[:5])
    return path


@pytest.fixture(scope="module")
def classifier_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        config = ClassifierConfig()
        model = DigitClassifier(config)
    path = tmp_path_factory.mktemp("ckpt") / "labeler"
    save_checkpoint(path, model, "classifier", classifier_config_dict(config))
    return path


@pytest.mark.parametrize("action", [[], ["serve"], ["simulate"], ["status"], ["export"], ["import"]])
def test_every_action_has_help(action: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["label", *action, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: hfrl label") and "--db" in out or not action


@pytest.mark.parametrize(
    "argv",
    [
        ["label"],
        ["label", "frobnicate"],
        ["label", "serve"],
        ["label", "serve", "--db", "x.sqlite", "--port", "70000"],
        ["label", "simulate", "--db", "/no/such/file.sqlite"],
        ["label", "simulate", "--db", "{db}", "--flip-rate", "2"],
        ["label", "simulate", "--db", "{db}", "--kind", "triple"],
        ["label", "export", "--db", "{db}"],
    ],
)
def test_usage_errors_are_one_line_with_exit_2(
    argv: list[str], db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([a.replace("{db}", str(db)) for a in argv])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err


def test_serve_refuses_a_newer_database_without_touching_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "newer.sqlite"
    FeedbackStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    before = path.read_bytes()
    assert main(["label", "serve", "--db", str(path), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hfrl label: error:") and "newer hfrl" in err and len(err.splitlines()) == 1
    assert path.read_bytes() == before


def test_serve_reports_a_busy_port(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hfrl.feedback.server import bind_socket

    sock = bind_socket("127.0.0.1", 0)
    try:
        code = main(
            ["label", "serve", "--db", str(tmp_path / "fb.sqlite"), "--port", str(sock.getsockname()[1])]
        )
    finally:
        sock.close()
    assert code == 2 and "cannot listen" in capsys.readouterr().err


def test_simulate_status_export_import(
    db: Path, tmp_path: Path, classifier_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["label", "status", "--db", str(db)]) == 0
    assert "3 pending" in capsys.readouterr().out
    argv = [
        "label",
        "simulate",
        "--db",
        str(db),
        "--labeler-checkpoint",
        str(classifier_checkpoint),
        "--device",
        "cpu",
    ]
    assert main([*argv, "--labeler-id", "robot", "--kind", "pair"]) == 0
    assert "robot: 4 labels" in capsys.readouterr().out
    assert (
        main([*argv, "--labeler-id", "robot", "--flip-rate", "0.1", "--skip-rate", "0.1", "--seed", "3"]) == 0
    )
    assert "robot: 17 labels in 2 batches" in capsys.readouterr().out
    with FeedbackStore(db, create=False) as s:
        assert {lab.labeler for lab in s.labels()} == {"robot"} and len(s.labels()) == 21
        assert all(q.status == "done" for q in s.queries())
    assert main(["label", "status", "--db", str(db)]) == 0
    assert "21 from 1 labelers" in capsys.readouterr().out
    archive = tmp_path / "fb.zip"
    assert main(["label", "export", "--db", str(db), "--out", str(archive)]) == 0
    other = tmp_path / "other" / "fb.sqlite"
    assert main(["label", "import", "--db", str(other), str(archive)]) == 0
    assert "21 labels" in capsys.readouterr().out.splitlines()[-1]
    with FeedbackStore(other, create=False) as s:
        assert len(s.labels()) == 21
    archive.write_bytes(b"garbage")
    assert main(["label", "import", "--db", str(other), str(archive)]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_simulate_without_a_usable_checkpoint_is_a_one_line_error(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert (
        main(["label", "simulate", "--db", str(db), "--labeler-checkpoint", str(bad), "--device", "cpu"]) == 2
    )
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_serve_beyond_loopback_requires_the_printed_token(tmp_path: Path) -> None:
    lines: list[str] = []
    server = prepare_server(tmp_path / "fb.sqlite", "0.0.0.0", 0, announce=lines.append)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        printed = "\n".join(lines)
        assert "new, empty feedback database" in printed and f"?token={server.token}" in printed
        assert server.token and len(server.token) >= 24
        port = server.sock.getsockname()[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.get("/api/health").status_code == 401
            assert client.get("/api/health", headers={"Authorization": "Bearer nope"}).status_code == 401
            ok = client.get("/api/health", headers={"Authorization": f"Bearer {server.token}"})
            assert ok.status_code == 200 and ok.json()["token_required"] is True
            # Beyond loopback any Host header is fine: the token is the protection.
            assert (
                client.get(
                    "/api/health", headers={"Authorization": f"Bearer {server.token}", "host": "lab.example"}
                ).status_code
                == 200
            )
    finally:
        server.stop()
        thread.join(10)
    assert not thread.is_alive()


def test_loopback_server_only_answers_loopback_host_names(tmp_path: Path) -> None:
    server = prepare_server(tmp_path / "fb.sqlite", "127.0.0.1", 0, announce=lambda line: None)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.token is None and server.url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/api/health").status_code == 200
            # A page on another site that resolves its own name to 127.0.0.1 (DNS rebinding) gets nothing.
            assert client.get("/api/health", headers={"host": "attacker.example"}).status_code == 400
    finally:
        server.stop()
        thread.join(10)


def test_bench_script_runs_briefly_and_loses_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("bench_feedback", REPO / "scripts" / "bench_feedback.py")
    bench = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "bench_feedback", bench)  # its dataclasses look themselves up there
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    out = tmp_path / "feedback.md"
    code = bench.main(["--seconds", "1.5", "--saturate-seconds", "0.5", "--labelers", "3", "--out", str(out)])
    text = out.read_text()
    assert code == 0 and "| acknowledged labels lost | 0 | 0 |" in text and "p99" in text


# ------------------------------------------------------------------------------------- --db everywhere


def test_db_means_the_same_in_every_action(
    tmp_path: Path, digits, classifier_checkpoint: Path, serve_cli, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "runs" / "X"  # a run directory that does not exist yet
    # serve makes RUN_DIR/feedback.sqlite, not a file named X
    server = serve_cli(run)
    server.stop()
    assert run.is_dir() and (run / "feedback.sqlite").is_file()
    with FeedbackStore(run) as s:  # the library reads the same path the same way
        assert s.path == run / "feedback.sqlite"
        d = digits.take(0, 4)
        s.add_query("single", d.inputs, d.outputs, clean=d.clean, classes=d.classes)
    for db in (str(run), str(run / "feedback.sqlite"), str(run) + "/"):
        assert main(["label", "status", "--db", db]) == 0
        assert "queries: 1" in capsys.readouterr().out
    sim = ["label", "simulate", "--db", str(run), "--labeler-checkpoint", str(classifier_checkpoint)]
    assert main([*sim, "--device", "cpu"]) == 0
    assert "4 labels" in capsys.readouterr().out
    archive = tmp_path / "fb.zip"
    assert main(["label", "export", "--db", str(run), "--out", str(archive)]) == 0
    other = tmp_path / "runs" / "Y"
    assert main(["label", "import", "--db", str(other), str(archive)]) == 0
    assert (other / "feedback.sqlite").is_file() and not (tmp_path / "runs" / "Y.sqlite").exists()
    capsys.readouterr()
    # A database file may have any name once it exists; a missing one is a one-line error, not a new file.
    plain = tmp_path / "fbstore"
    (run / "feedback.sqlite").rename(plain)
    assert main(["label", "status", "--db", str(plain)]) == 0
    for action in (["status"], ["export", "--out", str(tmp_path / "z.zip")], ["simulate", "--device", "cpu"]):
        with pytest.raises(SystemExit) as info:
            main(["label", action[0], "--db", str(run), *action[1:]])
        assert info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"no feedback database at {run / 'feedback.sqlite'}" in err
    assert sorted(os.listdir(run)) == []


@pytest.mark.parametrize("content", [b"garbage", b"PK\x03\x04 truncated zip"])
def test_failed_import_leaves_no_new_database(
    tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "bad.zip"
    archive.write_bytes(content)
    for db in (tmp_path / "new" / "deeper" / "fb.sqlite", tmp_path / "run-z"):
        assert main(["label", "import", "--db", str(db), str(archive)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "archive" in err
    assert sorted(os.listdir(tmp_path)) == ["bad.zip"]


def test_failed_merge_into_a_new_database_removes_it(
    db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from hfrl.feedback import archive as archive_module

    archive = tmp_path / "fb.zip"
    assert main(["label", "export", "--db", str(db), "--out", str(archive)]) == 0

    def failing_merge(*args: object) -> None:
        raise archive_module.FeedbackError("merge failed half-way")

    monkeypatch.setattr(archive_module, "_merge", failing_merge)
    target = tmp_path / "fresh" / "fb.sqlite"
    assert main(["label", "import", "--db", str(target), str(archive)]) == 2
    assert "merge failed" in capsys.readouterr().err
    assert not (tmp_path / "fresh").exists()
    # An existing database is never removed: the failed merge rolled back and the store is as it was.
    with FeedbackStore(db, readonly=True) as s:
        before = len(s.labels())
    assert main(["label", "import", "--db", str(db), str(archive)]) == 2
    with FeedbackStore(db, readonly=True) as s:
        assert len(s.labels()) == before


def test_label_commands_take_no_device_or_seed_except_simulate(capsys: pytest.CaptureFixture[str]) -> None:
    # The README says so: only simulate computes (a classifier) and draws random numbers.
    for action in ("serve", "status", "export", "import"):
        with pytest.raises(SystemExit):
            main(["label", action, "--help"])
        out = capsys.readouterr().out
        assert "--device" not in out and "--seed" not in out
    with pytest.raises(SystemExit):
        main(["label", "simulate", "--help"])
    out = capsys.readouterr().out
    assert "--device" in out and "--seed" in out


def test_simulate_labels_colour_samples_without_a_classifier(
    tmp_path: Path, classifier_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from tests.conftest import shapes_dataset

    images, _ = shapes_dataset(6, 3, 12, 20)
    clean = images.astype(np.float32) / 255
    outputs = np.concatenate([clean[:3], np.zeros_like(clean[3:])])  # three right, three blank
    db = tmp_path / "colour.sqlite"
    with FeedbackStore(db) as store:
        store.add_query("single", clean, outputs, clean=clean)
    assert main(["label", "simulate", "--db", str(db), "--device", "cpu"]) == 0
    assert "6 labels" in capsys.readouterr().out
    with FeedbackStore(db, create=False) as store:
        values = sorted(lab.value for lab in store.labels())
    assert values == ["bad"] * 3 + ["good"] * 3  # SSIM and correlation to the clean image
    digit = ["label", "simulate", "--db", str(db), "--labeler-checkpoint", str(classifier_checkpoint)]
    assert main([*digit, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "3x12x20" in err
