"""SIGTERM stops `hfrl label serve` gracefully: the store is closed, and the process exits 0."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest

from hfrl.feedback import FeedbackStore
from hfrl.feedback.guard import SESSION_HEADER


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs SIGTERM")
def test_sigterm_closes_the_store_and_exits_0(tmp_path: Path, digits, serve_cli) -> None:
    db = tmp_path / "feedback.sqlite"
    with FeedbackStore(db) as store:
        d = digits.take(0, 8)
        store.add_query("single", d.inputs, d.outputs)
    server = serve_cli(db)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.headers[SESSION_HEADER] = client.post("/api/session", json={"labeler": "ann"}).json()[
            "session"
        ]
        batch = client.get("/api/next", params={"limit": 5}).json()
        r = client.post(
            "/api/labels", json={"labels": [{"item_id": it["id"], "value": "good"} for it in batch["items"]]}
        )
        assert r.status_code == 200
    assert (tmp_path / "feedback.sqlite-wal").exists()  # the live server's log
    os.kill(server.proc.pid, signal.SIGTERM)
    assert server.proc.wait(20) == 0
    out = "".join(server.lines)
    assert "stopped; feedback database closed" in out and "Traceback" not in out
    # Closed: the last connection checkpointed the log into the database and removed it.
    assert sorted(os.listdir(tmp_path)) == ["feedback.sqlite"]
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM labels WHERE labeler = 'ann'").fetchone()[0] == 5
    conn.close()
