"""End to end in a real headless Chromium: label pages by keyboard, submit, check the database.

Uses Debian's ``chromium`` driven by Playwright. Without the browser the tests skip, except under CI
(``CI`` set), where they fail: ``.ci/run`` installs the browser so that this test really runs there.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hfrl.feedback import FeedbackStore
from hfrl.feedback.server import bind_socket, create_app

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    for candidate in (os.environ.get("HFRL_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    message = "Debian's chromium is not installed (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must run the browser test")
    pytest.skip(message)


@pytest.fixture()
def browser() -> Iterator[object]:
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is not installed; CI must run the browser test")
        pytest.skip("playwright is not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield b
        b.close()


class LiveServer:
    """The real app on uvicorn, in a thread, on a free loopback port."""

    def __init__(self, store: FeedbackStore, token: str | None = None, lease_seconds: float = 60.0) -> None:
        import uvicorn

        self.sock = bind_socket("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        app = create_app(
            store, token=token, allowed_hosts=["127.0.0.1", "localhost", "::1"], lease_seconds=lease_seconds
        )
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture()
def live(store: FeedbackStore) -> Iterator[LiveServer]:
    server = LiveServer(store)
    yield server
    server.stop()


def test_label_pages_by_keyboard(browser, live: LiveServer, store: FeedbackStore, digits) -> None:
    d = digits.take(0, 16)
    q_single = store.add_query("single", d.inputs, d.outputs, clean=d.clean)
    # HERO asks about generated samples: no input (stored as the sample itself), and a note on what is good.
    note = "good = a clear <b>7</b>"
    q_hero = store.add_query("hero", d.outputs[:4], d.outputs[:4], note=note)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{live.url}/?labeler=kbd-tester")
    page.wait_for_selector(".tile.focused")
    assert page.locator(".tile").count() == 16 and page.inner_text("#mode") == "Good or bad?"
    assert page.locator(".tile figure.input").count() == 16

    # Marks advance the focus to the next unmarked item; hjkl and arrows move it; u undoes the last mark.
    keys = ["g", "b", "s", "1", "2", "g", "u", "b", "ArrowRight", "l", "h", "g"]
    for key in keys:
        page.keyboard.press(key)
    assert page.inner_text("#page-count") == "7 / 16 marked"
    page.keyboard.press("j")  # down one row: the focus moves by the number of columns
    assert page.locator(".tile.focused").get_attribute("data-index") != "7"
    page.keyboard.press("Home")  # ignored key: nothing happens
    for _ in range(9):
        page.keyboard.press("g")
    assert page.inner_text("#page-count") == "16 / 16 marked"
    page.keyboard.press("Enter")
    page.wait_for_selector(".grid[data-kind=hero]")
    assert "Saved 16 labels" in page.inner_text("#message")

    values = {lab.item_id: lab.value for lab in store.labels(query_id=q_single)}
    items = store.items(q_single)
    assert [values[i.id] for i in items[:7]] == ["good", "bad", "skip", "good", "bad", "bad", "good"]
    assert all(values[i.id] == "good" for i in items[7:])
    assert {lab.labeler for lab in store.labels()} == {"kbd-tester"}
    assert all(lab.response_ms is not None for lab in store.labels())
    assert store.query_status(q_single) == "done"

    # HERO page: mark the good ones, pick the best with x, submit.
    assert page.locator(".tile").count() == 4
    assert page.locator(".tile figure.input").count() == 0 and page.locator(".tile figure").count() == 4
    assert page.inner_text(".keys .note") == note  # shown as text, not markup
    for key in ["g", "b", "g", "ArrowLeft", "x", "ArrowRight", "b"]:
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    page.wait_for_selector("#empty:not([hidden])")
    result = store.query_result(q_hero)
    assert result.done and result.best == 2 and result.labels == ["good", "bad", "good", "bad"]
    # The progress counters follow.
    page.wait_for_function("document.getElementById('stat-mine').textContent === '20'")
    assert not errors


def test_token_protected_page_works_with_the_printed_url(browser, store: FeedbackStore, digits) -> None:
    d = digits.take(0, 3)
    qid = store.add_query("pair", d.inputs, d.outputs, others=d.others)
    server = LiveServer(store, token="tok-123")
    try:
        page = browser.new_page()
        denied = page.goto(f"{server.url}/")
        assert denied.status == 401
        page.goto(f"{server.url}/?token=tok-123&labeler=remote")
        page.wait_for_selector(".grid[data-kind=pair] .tile.focused")
        assert "token" not in page.url  # not left in the address bar or history
        page.click(".tile[data-index='0'] figure.choice >> nth=1")  # mouse: right output is better
        for key in ["a", "t"]:
            page.keyboard.press(key)
        page.click("#submit-btn")
        page.wait_for_selector("#empty:not([hidden])")
        assert store.query_result(qid).labels == ["right", "left", "tie"]
        # Undo with nothing left on the page retracts the last saved label, which comes back.
        page.keyboard.press("u")
        page.wait_for_selector(".tile")
        assert "Undid your saved label" in page.inner_text("#message")
        assert store.query_result(qid).labels == ["right", "left", None]
    finally:
        server.stop()


def test_the_page_labels_under_its_session_and_cannot_take_another_labelers_name(
    browser, live: LiveServer, store: FeedbackStore, digits
) -> None:
    d = digits.take(0, 4)
    qid = store.add_query("single", d.inputs, d.outputs, labels_needed=2)
    # The page keeps its session: a reload goes on as the same labeler.
    first = browser.new_context()
    page = first.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto(f"{live.url}/?labeler=ann")
    page.wait_for_selector(".tile.focused")
    page.keyboard.press("g")
    page.keyboard.press("Enter")
    page.wait_for_selector("#message:has-text('Saved 1 labels')")
    page.reload()
    page.wait_for_selector(".tile.focused")
    page.keyboard.press("b")
    page.keyboard.press("Enter")
    page.wait_for_selector("#message:has-text('Saved 1 labels')")
    assert [lab.labeler for lab in store.labels(query_id=qid)] == ["ann", "ann"]
    # Another browser cannot become ann: the name is taken, and nothing is labelled as ann from there.
    other = browser.new_context().new_page()
    other.goto(f"{live.url}/?labeler=ann")
    other.wait_for_selector("#message:has-text('taken')")
    assert other.locator(".tile").count() == 0
    other.keyboard.press("u")  # undo from there cannot reach ann's labels
    other.wait_for_timeout(300)
    assert len(store.labels(query_id=qid)) == 2
    # Choosing a free name there works, and its items are not the ones leased to ann's open page.
    other.fill("#labeler", "ben")
    other.press("#labeler", "Enter")
    other.wait_for_selector(".tile.focused")
    # The items on ann's open page are leased to ann (needing 2 labels, ben may have them too).
    ann_items = {
        int(page.locator(".tile").nth(k).get_attribute("data-id"))
        for k in range(page.locator(".tile").count())
    }
    assert ann_items and all("ann" in store.leases().get(i, {}) for i in ann_items)
    other.keyboard.press("g")
    other.keyboard.press("Enter")
    other.wait_for_selector("#message:has-text('Saved 1 labels')")
    assert {lab.labeler for lab in store.labels(query_id=qid)} == {"ann", "ben"}
    assert not errors
    first.close()


def test_an_open_page_keeps_its_items_and_a_closed_one_lets_them_go(
    browser, store: FeedbackStore, digits
) -> None:
    d = digits.take(0, 4)
    store.add_query("single", d.inputs, d.outputs)
    server = LiveServer(store, lease_seconds=1.0)
    try:
        page = browser.new_page()
        page.goto(f"{server.url}/?labeler=keeper")
        page.wait_for_selector(".tile.focused")
        page.wait_for_timeout(2500)  # 2.5 lease lengths: only the page's renewals keep the items
        assert store.lease_batch("other").items == ()
        page.close()  # the labeler leaves
        time.sleep(1.5)
        assert len(store.lease_batch("other")) == 4
    finally:
        server.stop()
