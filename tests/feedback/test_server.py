from __future__ import annotations

import base64
import io
import socket
import typing
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from hfrl.feedback import FeedbackStore
from hfrl.feedback.api import KindName, LabelWord
from hfrl.feedback.guard import SESSION_HEADER, TOKEN_COOKIE
from hfrl.feedback.images import png_data_url
from hfrl.feedback.labels import ALL_VALUES, KINDS
from hfrl.feedback.server import bind_socket, create_app, is_loopback, page_url
from hfrl.feedback.store import SCHEMA_VERSION, FeedbackError, LabelInput


@pytest.fixture()
def client(store: FeedbackStore) -> Iterator[TestClient]:
    with TestClient(create_app(store)) as c:
        yield c


@pytest.fixture()
def queries(store: FeedbackStore, digits) -> dict[str, int]:
    d = digits.take(0, 20)
    return {
        "single": store.add_query("single", d.inputs, d.outputs, clean=d.clean, classes=d.classes),
        "hero": store.add_query("hero", d.inputs[:6], d.outputs[:6], clean=d.clean[:6]),
        "pair": store.add_query("pair", d.inputs[:4], d.outputs[:4], others=d.others[:4], clean=d.clean[:4]),
    }


def decode(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def test_api_literals_match_the_label_module() -> None:
    assert set(typing.get_args(LabelWord)) == set(ALL_VALUES)
    assert set(typing.get_args(KindName)) == set(KINDS)


def test_page_static_files_health_and_openapi(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"] and "app.js" in page.text
    for name, kind in [("app.js", "javascript"), ("style.css", "text/css")]:
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
    assert client.get("/static/nope.js").status_code == 404
    assert client.get("/static/../store.py").status_code == 404
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["schema_version"] == SCHEMA_VERSION
    assert health["token_required"] is False
    schema = client.get("/openapi.json").json()
    assert {"/api/session", "/api/next", "/api/labels", "/api/renew", "/api/undo", "/api/progress",
            "/api/queries/{query_id}"} <= set(schema["paths"])  # fmt: skip
    assert client.get("/docs").status_code == 404  # no CDN assets: the machine may be offline


def as_labeler(client: TestClient, name: str, **headers: str) -> dict[str, str]:
    """Claim ``name`` and return the headers that act as it."""
    r = client.post("/api/session", json={"labeler": name}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["labeler"] == name and len(r.json()["session"]) >= 32
    return {**headers, SESSION_HEADER: r.json()["session"]}


def test_next_serves_pages_by_id_without_clean_images(
    client: TestClient, store: FeedbackStore, queries, digits
) -> None:
    alice, bob, carol = (as_labeler(client, n) for n in ("alice", "bob", "carol"))
    first = client.get("/api/next", params={"kind": "single", "limit": 5}, headers=alice).json()
    assert first["kind"] == "single" and len(first["items"]) == 5
    item = first["items"][0]
    assert set(item) == {"id", "query_id", "position", "input", "output", "left", "right"}
    assert item["left"] is None and item["query_id"] == queries["single"]
    expected = (np.clip(digits.outputs[0, 0].numpy(), 0, 1) * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(decode(item["output"]), expected)
    # Another labeler gets different items: the first page is leased to alice.
    second = client.get("/api/next", params={"kind": "single", "limit": 5}, headers=bob).json()
    assert {i["id"] for i in second["items"]}.isdisjoint({i["id"] for i in first["items"]})
    clean_png = png_data_url(digits.clean[0, 0].numpy())
    body = client.get("/api/next", headers=alice).text
    assert clean_png not in body and "clean" not in body
    pair = client.get("/api/next", params={"kind": "pair"}, headers=alice).json()
    assert pair["kind"] == "pair" and pair["items"][0]["output"] is None and pair["items"][0]["right"]
    hero = client.get("/api/next", params={"kind": "hero"}, headers=alice).json()
    assert hero["kind"] == "hero" and len(hero["items"]) == 6
    # The hero batch (1 label needed) is leased to alice: nobody else is asked for it meanwhile.
    nothing = client.get("/api/next", params={"kind": "hero"}, headers=carol)
    assert nothing.status_code == 200 and nothing.json()["items"] == []


def test_generated_samples_come_without_input_and_the_note_with_the_batch(
    client: TestClient, store: FeedbackStore, digits
) -> None:
    alice = as_labeler(client, "alice")
    d = digits.take(0, 4)
    note = "good = a clear 7"
    store.add_query("hero", d.outputs, d.outputs, note=note)  # generated: the sample is its own input
    hero = client.get("/api/next", headers=alice).json()
    assert hero["note"] == note and all(it["input"] is None and it["output"] for it in hero["items"])
    store.add_query("pair", d.outputs[:2], d.outputs[:2], others=d.others[:2])
    store.add_query("single", d.inputs, d.outputs, note="round 1")
    store.add_query("single", d.inputs, d.outputs, note="round 2")
    pair = client.get("/api/next", params={"kind": "pair"}, headers=alice).json()
    assert pair["note"] is None and all(it["input"] is None and it["left"] for it in pair["items"])
    single = client.get("/api/next", params={"kind": "single", "limit": 8}, headers=alice).json()
    assert single["note"] is None  # two queries, two notes: none is the batch's
    assert all(it["input"] for it in single["items"])


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 65}, {"limit": "ten"}, {"kind": "triple"}],
)
def test_next_rejects_bad_parameters(client: TestClient, params: dict) -> None:
    assert client.get("/api/next", params=params, headers=as_labeler(client, "a")).status_code == 422


@pytest.mark.parametrize("name", ["", "x" * 65, "bad name", "../etc", 7, None, True])
def test_session_rejects_bad_names(client: TestClient, name: object) -> None:
    assert client.post("/api/session", json={"labeler": name}).status_code == 422


def test_labelling_needs_a_session_the_server_issued(
    client: TestClient, store: FeedbackStore, queries
) -> None:
    item = store.items(queries["single"])[0].id
    body = {"labels": [{"item_id": item, "value": "good"}]}
    for headers in ({}, {SESSION_HEADER: "made-up"}, {SESSION_HEADER: ""}):
        assert client.get("/api/next", headers=headers).status_code == 401
        assert client.post("/api/labels", json=body, headers=headers).status_code == 401
        assert client.post("/api/undo", headers=headers).status_code == 401
        assert client.post("/api/renew", headers=headers).status_code == 401
    # The old way of saying who one is, a labeler field, is not accepted at all.
    assert client.get("/api/next", params={"labeler": "a"}).status_code == 401
    alice = as_labeler(client, "alice")
    assert client.post("/api/labels", json={**body, "labeler": "alice"}, headers=alice).status_code == 422
    assert store.labels(include_retracted=True) == []
    assert client.get("/api/session", headers=alice).json()["labeler"] == "alice"


def test_a_client_cannot_act_for_another_labeler(client: TestClient, store: FeedbackStore, queries) -> None:
    bob = as_labeler(client, "bob")
    items = store.items(queries["single"])
    r = client.post("/api/labels", json={"labels": [{"item_id": items[0].id, "value": "good"}]}, headers=bob)
    assert r.status_code == 200
    # Mallory claims bob's name: refused, the name is taken.
    taken = client.post("/api/session", json={"labeler": "bob"})
    assert taken.status_code == 409 and "taken" in taken.json()["detail"]
    mallory = as_labeler(client, "mallory")
    # Claiming bob in the body of an undo or a label is refused, and never reaches bob's labels.
    assert client.post("/api/undo", json={"labeler": "bob"}, headers=mallory).status_code == 422
    claim = {"labeler": "bob", "labels": [{"item_id": items[1].id, "value": "bad"}]}
    assert client.post("/api/labels", json=claim, headers=mallory).status_code == 422
    # Mallory's own undo acts for mallory only.
    assert client.post("/api/undo", headers=mallory).json() == {"undone": None}
    assert [(lab.labeler, lab.value, lab.retracted) for lab in store.labels(include_retracted=True)] == [
        ("bob", "good", None)
    ]
    # A name that already has labels in the store (the synthetic labeler, an import) cannot be claimed.
    store.submit_labels("synthetic", [LabelInput(items[2].id, "bad")])
    assert client.post("/api/session", json={"labeler": "synthetic"}).status_code == 409
    # Bob's session survives a restart of the server: it is in the store, not in the process.
    with TestClient(create_app(store)) as again:
        assert again.post("/api/undo", headers=bob).json()["undone"]["labeler"] == "bob"


def test_submit_undo_progress_and_query_status(client: TestClient, store: FeedbackStore, queries) -> None:
    alice, bob = as_labeler(client, "alice"), as_labeler(client, "bob")
    items = client.get("/api/next", params={"kind": "single", "limit": 3}, headers=alice).json()["items"]
    body = {
        "labels": [
            {"item_id": items[0]["id"], "value": "good", "response_ms": 812.5},
            {"item_id": items[1]["id"], "value": "bad"},
            {"item_id": items[2]["id"], "value": "skip", "best": False},
        ],
    }
    r = client.post("/api/labels", json=body, headers=alice)
    assert r.status_code == 200
    ack = r.json()
    assert ack["acknowledged"] == 3 and ack["completed_queries"] == []
    assert store.label_ids() == set(ack["label_ids"])
    assert [(lab.labeler, lab.value, lab.response_ms) for lab in store.labels()] == [
        ("alice", "good", 812.5),
        ("alice", "bad", None),
        ("alice", "skip", None),
    ]
    assert store.leases() == {}  # answered: the labels count now, not the leases
    progress = client.get("/api/progress", params={"labeler": "alice"}).json()
    assert progress["labelled"] == 3 and progress["labels_total"] == 3 and progress["pending_items"] == 27
    assert client.get("/api/progress").json()["labelled"] == 3
    status = client.get(f"/api/queries/{queries['single']}").json()
    assert status == {"id": queries["single"], "kind": "single", "status": "pending", "size": 20,
                      "labels_needed": 1, "answered_items": 3}  # fmt: skip
    # Bob's undo never touches Alice's labels.
    assert client.post("/api/undo", headers=bob).json() == {"undone": None}
    undone = client.post("/api/undo", headers=alice).json()["undone"]
    assert undone["item_id"] == items[2]["id"] and undone["value"] == "skip" and undone["labeler"] == "alice"
    assert len(store.labels()) == 2
    # Completing a query is reported.
    hero = store.items(queries["hero"])
    r = client.post(
        "/api/labels",
        json={"labels": [{"item_id": i.id, "value": "good", "best": i.position == 0} for i in hero]},
        headers=bob,
    )
    assert r.json()["completed_queries"] == [queries["hero"]]
    assert client.get(f"/api/queries/{queries['hero']}").json()["status"] == "done"


def test_submit_rejects_bad_bodies(client: TestClient, store: FeedbackStore, queries) -> None:
    a = as_labeler(client, "a")
    single = store.items(queries["single"])[0].id
    pair = store.items(queries["pair"])[0].id
    ok = {"item_id": single, "value": "good"}
    bad_bodies = [
        None,
        [],
        {},
        {"labels": []},
        {"labels": [ok] * 257},
        {"labels": [ok], "extra": 1},
        {"labels": [{**ok, "path": "/etc/passwd"}]},
        {"labels": [{"item_id": single, "value": "great"}]},
        {"labels": [{"item_id": single}]},
        {"labels": [{"item_id": -1, "value": "good"}]},
        {"labels": [{"item_id": "one", "value": "good"}]},
        # Strict types: no coercion of a boolean, a string or a float into an item id.
        {"labels": [{"item_id": True, "value": "good"}]},
        {"labels": [{"item_id": str(single), "value": "good"}]},
        {"labels": [{"item_id": float(single), "value": "good"}]},
        {"labels": [{**ok, "best": "false"}]},
        {"labels": [{**ok, "best": 0}]},
        {"labels": [{**ok, "response_ms": "5"}]},
        {"labels": [{**ok, "response_ms": -5}]},
        {"labels": [{**ok, "response_ms": 1e300}]},
        {"labels": [ok, ok]},
        {"labels": [{"item_id": pair, "value": "good"}]},
        {"labels": [{"item_id": single, "value": "left"}]},
        {"labels": [{**ok, "best": True}]},
    ]
    for body in bad_bodies:
        r = client.post("/api/labels", json=body, headers=a)
        assert r.status_code == 422, (body, r.text)
    assert (
        client.post(
            "/api/labels", content=b"{not json", headers={**a, "content-type": "application/json"}
        ).status_code
        == 422
    )
    assert client.post("/api/labels", content=b'{"labels": [{"item_id": 1, "value": "good", "response_ms": NaN}]}',
                       headers={**a, "content-type": "application/json"}).status_code == 422  # fmt: skip
    unknown = client.post("/api/labels", json={"labels": [ok, {"item_id": 9999, "value": "good"}]}, headers=a)
    assert unknown.status_code == 404 and "9999" in unknown.json()["detail"]
    store.cancel_query(queries["pair"])
    assert (
        client.post(
            "/api/labels", json={"labels": [{"item_id": pair, "value": "left"}]}, headers=a
        ).status_code
        == 409
    )
    for body in ({"labeler": ""}, {"labeler": "a"}, {"more": 1}, []):
        assert client.post("/api/undo", json=body, headers=a).status_code == 422
    assert client.get("/api/queries/999").status_code == 404
    assert client.get("/api/queries/abc").status_code == 422
    assert client.get("/api/progress", params={"labeler": "no spaces"}).status_code == 422
    assert store.labels(include_retracted=True) == []  # nothing got in
    # A float response time and an integer one are both fine.
    for ms in (12, 12.5):
        r = client.post("/api/labels", json={"labels": [{**ok, "response_ms": ms}]}, headers=a)
        assert r.status_code == 200


def test_page_cannot_be_framed_and_runs_only_its_own_script(client: TestClient) -> None:
    for path in ("/", "/static/app.js", "/api/health", "/api/next"):
        r = client.get(path)
        csp = r.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, path
        assert "unsafe-inline" not in csp and r.headers["x-frame-options"] == "DENY", path
        assert r.headers["x-content-type-options"] == "nosniff"
    # The page itself has no inline script or style that such a policy would block.
    page = client.get("/").text
    assert "<script>" not in page and "style=" not in page and "onclick" not in page


def test_request_size_is_limited(store: FeedbackStore, queries) -> None:
    with TestClient(create_app(store, max_body_bytes=1000)) as c:
        a = as_labeler(c, "a")
        big = {"labels": [{"item_id": 1, "value": "good"}] * 40}
        r = c.post("/api/labels", json=big, headers=a)
        assert r.status_code == 413

        def chunks() -> Iterator[bytes]:
            yield b'{"labels": ['
            for _ in range(100):
                yield b'{"item_id": 1, "value": "good"},'

        assert (
            c.post(
                "/api/labels", content=chunks(), headers={**a, "content-type": "application/json"}
            ).status_code
            == 413
        )
        assert c.post("/api/labels", content=b"{}", headers={**a, "content-length": "nope"}).status_code in (
            400,
            413,
        )
        ok = c.post("/api/labels", json={"labels": [{"item_id": 1, "value": "good"}]}, headers=a)
        assert ok.status_code == 200


def test_token_is_required_on_every_request(store: FeedbackStore, queries) -> None:
    token = "s3cret-token"
    with TestClient(create_app(store, token=token)) as c:
        routes = [("GET", "/"), ("GET", "/static/app.js"), ("GET", "/openapi.json"), ("GET", "/api/health"),
                  ("GET", "/api/next"), ("GET", "/api/progress"), ("GET", "/api/queries/1"),
                  ("POST", "/api/labels"), ("POST", "/api/undo"), ("POST", "/api/session"),
                  ("POST", "/api/renew")]  # fmt: skip
        for method, path in routes:
            r = c.request(method, path)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
            r = c.request(method, path, headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401, path
        auth = {"Authorization": f"Bearer {token}"}
        assert c.get("/api/health", headers=auth).json()["token_required"] is True
        # The server token and the labeler session work together: one says "may use this server",
        # the other "is this labeler".
        auth = as_labeler(c, "a", **auth)
        body = {"labels": [{"item_id": 1, "value": "good"}]}
        assert c.post("/api/labels", json=body, headers=auth).status_code == 200
        # The printed URL carries the token; the page then gets a cookie so its own files load.
        page = c.get(f"/?token={token}")
        assert page.status_code == 200 and TOKEN_COOKIE in page.headers["set-cookie"]
        assert "HttpOnly" in page.headers["set-cookie"] and "SameSite=Strict" in page.headers["set-cookie"]
        assert c.get("/static/app.js").status_code == 200  # cookie sent by the client
        # ...but a cookie alone never authorises a change (another site's form could send it).
        session = {SESSION_HEADER: auth[SESSION_HEADER]}
        assert c.post("/api/labels", json=body, headers=session).status_code == 401
        assert c.post(f"/api/labels?token={token}", json=body, headers=session).status_code == 401
    assert len(store.labels()) == 1


def test_host_header_is_checked_when_asked(store: FeedbackStore) -> None:
    app = create_app(store, allowed_hosts=["127.0.0.1", "localhost", "::1"])
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        assert c.get("/api/health").status_code == 200
        assert c.get("/api/health", headers={"host": "localhost:8765"}).status_code == 200
        assert c.get("/api/health", headers={"host": "[::1]:8765"}).status_code == 200
        assert c.get("/api/health", headers={"host": "evil.example:8765"}).status_code == 400


def test_serving_helpers() -> None:
    assert (
        is_loopback("127.0.0.1")
        and is_loopback("localhost")
        and is_loopback("::1")
        and is_loopback("127.0.0.2")
    )
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    assert page_url("127.0.0.1", 8765) == "http://127.0.0.1:8765/"
    assert page_url("::1", 80, "t") == "http://[::1]:80/?token=t"
    sock = bind_socket("127.0.0.1", 0)
    # asyncio sets TCP_NODELAY only on sockets that say TCP; without it keep-alive replies wait 40 ms.
    assert sock.proto == socket.IPPROTO_TCP
    try:
        with pytest.raises(FeedbackError, match="cannot listen"):
            bind_socket("127.0.0.1", sock.getsockname()[1])
    finally:
        sock.close()
    with pytest.raises(FeedbackError, match="cannot listen"):
        bind_socket("no-such-host.invalid", 0)


def test_app_owning_its_store_closes_it(tmp_path: Path) -> None:
    app = create_app(tmp_path / "fb.sqlite")
    with TestClient(app) as c:
        assert c.get("/api/progress").json()["labels_total"] == 0
    with pytest.raises(FeedbackError, match="closed"):
        app.state.store.progress()


def test_the_page_serves_colour_samples_as_rgb_pngs(client: TestClient, store: FeedbackStore) -> None:
    from tests.conftest import shapes_dataset

    images, _ = shapes_dataset(4, 3, 12, 20)
    clean = images.astype(np.float32) / 255
    outputs = np.clip(clean + 0.1 * np.random.default_rng(0).standard_normal(clean.shape), 0, 1).astype(
        np.float32
    )
    store.add_query("single", clean, outputs, clean=clean)
    page = client.get(
        "/api/next", params={"kind": "single", "limit": 4}, headers=as_labeler(client, "alice")
    ).json()
    assert len(page["items"]) == 4
    shown = np.stack([decode(item["output"]) for item in page["items"]])  # (4, H, W, 3) RGB PNGs
    expected = (np.clip(outputs, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)
    assert shown.shape == (4, 12, 20, 3)
    assert sorted(map(bytes, shown)) == sorted(map(bytes, expected))  # the same images, in colour
    assert not np.array_equal(shown[..., 0], shown[..., 1])
