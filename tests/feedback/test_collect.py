"""The label server thread, and the names that moved to hfrl.experiments."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from hfrl.feedback.collect import label_server


def test_label_server_serves_from_a_thread_and_stops(tmp_path) -> None:
    lines: list[str] = []
    with label_server(tmp_path / "s.sqlite", port=0, open_browser=False, announce=lines.append) as server:
        response = httpx.get(server.url + "api/health", timeout=10)
        assert response.status_code == 200 and response.json()["status"] == "ok"
    assert any(server.url in line for line in lines)
    with pytest.raises(httpx.TransportError):
        httpx.get(server.url + "api/health", timeout=2)


def test_the_feedback_package_imports_no_reward_model() -> None:
    code = (
        "import sys, hfrl.feedback, hfrl.feedback.collect, hfrl.feedback.server; "
        "print(sorted(m for m in sys.modules if m.startswith(('hfrl.rewards', 'hfrl.experiments'))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_moved_names_are_still_importable_from_here() -> None:
    from hfrl.experiments import labels, reward
    from hfrl.feedback.collect import CollectedLabels, collect_labels, prepare_reward

    assert collect_labels is labels.collect_labels and CollectedLabels is labels.CollectedLabels
    assert prepare_reward is reward.prepare_reward
