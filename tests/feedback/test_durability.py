"""A label is durable once the server acknowledges it: SIGKILL the server mid-session and count."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest

from hfrl.feedback import FeedbackStore
from hfrl.feedback.guard import SESSION_HEADER


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_session_loses_no_acknowledged_label(tmp_path: Path, digits, serve_cli) -> None:
    db = tmp_path / "feedback.sqlite"
    with FeedbackStore(db) as store:
        for k in range(4):
            d = digits.take(16 * k, 16 * k + 16)
            store.add_query("single", d.inputs, d.outputs, labels_needed=4)
            store.add_query("pair", d.inputs, d.outputs, others=d.others, labels_needed=4)
    server = serve_cli(db)
    acknowledged: dict[int, tuple[str, int, str]] = {}
    lock = threading.Lock()
    stop = threading.Event()
    kill_after = 60  # acknowledged submissions before the kill

    def labeler(name: str, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            session = client.post("/api/session", json={"labeler": name}).json()["session"]
            client.headers[SESSION_HEADER] = session
            while not stop.is_set():
                try:
                    batch = client.get("/api/next", params={"limit": rng.randint(1, 8)}).json()
                    if not batch["items"]:
                        return
                    words = ("left", "right", "tie") if batch["kind"] == "pair" else ("good", "bad", "skip")
                    labels = [{"item_id": it["id"], "value": rng.choice(words)} for it in batch["items"]]
                    r = client.post("/api/labels", json={"labels": labels})
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 200:
                    with lock:
                        for label_id, sent in zip(r.json()["label_ids"], labels):
                            acknowledged[label_id] = (name, sent["item_id"], sent["value"])

    threads = [threading.Thread(target=labeler, args=(f"labeler-{k}", k)) for k in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < kill_after * 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(server.proc.pid, signal.SIGKILL)  # mid-session: the labelers are still submitting
    server.proc.wait(10)
    stop.set()
    for t in threads:
        t.join(15)
    assert len(acknowledged) >= kill_after, "the labelers did not get far enough before the kill"

    # Every acknowledged label is in the database, exactly as sent; the file is intact.
    with FeedbackStore(db, create=False) as store:
        stored = {
            lab.id: (lab.labeler, lab.item_id, lab.value) for lab in store.labels(include_retracted=True)
        }
    missing = {k: v for k, v in acknowledged.items() if stored.get(k) != v}
    assert not missing, (
        f"{len(missing)} of {len(acknowledged)} acknowledged labels lost: {list(missing.items())[:5]}"
    )
    assert len(stored) >= len(acknowledged)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()

    # A new server on the same file carries on where the old one stopped.
    server = serve_cli(db)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.headers[SESSION_HEADER] = client.post(
            "/api/session", json={"labeler": "after-restart"}
        ).json()["session"]
        batch = client.get("/api/next").json()
        assert batch["items"]
        value = "left" if batch["kind"] == "pair" else "good"
        r = client.post(
            "/api/labels", json={"labels": [{"item_id": batch["items"][0]["id"], "value": value}]}
        )
        assert r.status_code == 200
        assert client.get("/api/progress").json()["labels_total"] >= 1
