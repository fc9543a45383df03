"""The labelling page for people, served from a background thread while labels are collected.

:func:`label_server` serves the page for the duration of a ``with`` block; :func:`open_in_browser` opens
it where there is a desktop. Collecting labels in rounds (:func:`~hfrl.experiments.labels.collect_labels`)
and preparing a reward model (:func:`~hfrl.experiments.reward.prepare_reward`) moved to
:mod:`hfrl.experiments`, which joins the feedback and the rewards packages; their names are still
importable from here.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfrl.feedback.errors import FeedbackError

if TYPE_CHECKING:  # the server pulls in FastAPI: imported by label_server when it runs
    from hfrl.feedback.server import LabelServer

_MOVED = {
    **dict.fromkeys(
        ("CollectedLabels", "LabelRound", "SELECTIONS", "collect_labels", "round_sizes"),
        "hfrl.experiments.labels",
    ),
    **dict.fromkeys(
        ("LabelPool", "RewardInfo", "make_label_pool", "prepare_reward"), "hfrl.experiments.reward"
    ),
}
"""Names that moved to :mod:`hfrl.experiments` and the module each lives in now: still importable from here,
imported on first use (so that importing the feedback package imports no reward model)."""


def open_in_browser(url: str) -> bool:
    """Open ``url`` in a desktop browser where there is a desktop; returns whether it tried.

    On a headless machine :mod:`webbrowser` would pick a text browser inside this terminal, so nothing is
    opened unless a display is available (macOS and Windows always have one).
    """
    if not (
        sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False
    import webbrowser

    try:
        return bool(webbrowser.open(url, new=2))
    except Exception:  # noqa: BLE001 - a browser that fails to start must not stop the run
        return False


@contextlib.contextmanager
def label_server(
    db: str | Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    token: str | None = None,
    open_browser: bool = True,
    announce: Callable[[str], None] = print,
    start_timeout: float = 30.0,
) -> Iterator[LabelServer]:
    """Serve the labelling page from a background thread for the duration of a ``with`` block.

    Args:
        db: The feedback database.
        host: Address to bind (beyond loopback a token is required and generated).
        port: Port (0 picks a free one).
        token: Token for non-loopback addresses.
        open_browser: Try :func:`open_in_browser` once the page is up.
        announce: Where the URL is printed.
        start_timeout: Seconds to wait for the server to accept connections.

    Yields:
        The running :class:`~hfrl.feedback.server.LabelServer` (``url`` is the page).

    Raises:
        FeedbackError: for an unusable address or a server that does not start.
    """
    from hfrl.feedback.server import prepare_server

    server = prepare_server(db, host, port, token=token, announce=announce)
    thread = threading.Thread(target=server.run, name="hfrl-label-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        server.stop()
        thread.join(timeout=5)
        raise FeedbackError(f"the labelling server on {host}:{port} did not start")
    if open_browser and open_in_browser(server.url):
        announce(f"opened {server.url} in a browser")
    try:
        yield server
    finally:
        server.stop()
        thread.join(timeout=10)


def __getattr__(name: str) -> Any:
    """A name that moved to :mod:`hfrl.experiments`, imported on first use."""
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["label_server", "open_in_browser"]
