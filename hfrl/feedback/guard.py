"""The labelling server's guard: its constants, security headers, and the middleware that checks host, origin, size and the page token."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

STATIC_DIR = Path(__file__).with_name("static")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_MAX_BODY = 256 * 1024
"""Largest request body accepted, in bytes (a page of labels is about 2 KB)."""
MAX_LABELS_PER_REQUEST = 256
TOKEN_COOKIE = "hfrl_token"
SESSION_HEADER = "X-Hfrl-Session"
"""Header carrying the labeler's session token (issued by ``POST /api/session``)."""
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
"""Sent with every response: only the page's own script and styles run, and no site may frame it."""


def _json_response(
    status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> tuple[dict, dict]:
    body = json.dumps({"detail": detail}).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
    }
    return start, {"type": "http.response.body", "body": body}


def _with_headers(send: Callable, headers: Sequence[tuple[bytes, bytes]]) -> Callable:
    """``send`` adding ``headers`` to the response start."""

    async def send_with_headers(message: dict) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *headers]}
        await send(message)

    return send_with_headers


async def _reject(
    send: Callable, status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    start, body = _json_response(status, detail, [*headers, *SECURITY_HEADERS])
    await send(start)
    await send(body)


def _host_name(host_header: str) -> str:
    """Host name of a ``Host`` header without the port (IPv6 literals unbracketed)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class GuardMiddleware:
    """Host check, token check and body-size limit, as plain ASGI so every route pays little for them.

    Args:
        app: The wrapped ASGI app.
        token: Required token, or ``None``.
        allowed_hosts: Host names accepted in the ``Host`` header, or ``None`` for any.
        max_body_bytes: Largest request body accepted.
    """

    def __init__(
        self, app: Any, token: str | None, allowed_hosts: Sequence[str] | None, max_body_bytes: int
    ) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.allowed_hosts = None if allowed_hosts is None else {h.lower().strip("[]") for h in allowed_hosts}
        self.max_body = int(max_body_bytes)

    def _token_ok(self, scope: dict, headers: dict[bytes, bytes]) -> tuple[bool, bool]:
        """``(ok, from_query)``."""
        assert self.token is not None
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer " and hmac.compare_digest(auth[7:].strip(), self.token):
            return True, False
        # Cookies and query strings are only trusted for reads: a form on another site can send a cookie
        # with a POST, but cannot set an Authorization header.
        if scope["method"] in ("GET", "HEAD"):
            from urllib.parse import parse_qs

            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            for value in query.get("token", []):
                if hmac.compare_digest(value.encode(), self.token):
                    return True, True
            for part in headers.get(b"cookie", b"").split(b";"):
                name, _, value = part.strip().partition(b"=")
                if name == TOKEN_COOKIE.encode() and hmac.compare_digest(value, self.token):
                    return True, False
        return False, False

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """Check the request, then hand it to the app (with its body already read and size-checked)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.allowed_hosts is not None:
            host = _host_name(headers.get(b"host", b"").decode("latin-1"))
            if host not in self.allowed_hosts:
                await _reject(send, 400, "invalid host header")
                return
        from_query = False
        if self.token is not None:
            ok, from_query = self._token_ok(scope, headers)
            if not ok:
                await _reject(send, 401, "missing or wrong token", [(b"www-authenticate", b"Bearer")])
                return
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_body
            except ValueError:
                await _reject(send, 400, "invalid content-length")
                return
            if too_big:
                await _reject(send, 413, f"request body larger than {self.max_body} bytes")
                return
        if scope["method"] not in ("GET", "HEAD"):
            body = bytearray()
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                if len(body) > self.max_body:
                    await _reject(send, 413, f"request body larger than {self.max_body} bytes")
                    return
                if not message.get("more_body", False):
                    break
            replayed = False

            async def replay() -> dict:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": bytes(body), "more_body": False}
                return await receive()

            receive = replay
        extra = list(SECURITY_HEADERS)
        if from_query and self.token is not None:
            cookie = f"{TOKEN_COOKIE}={self.token.decode()}; HttpOnly; SameSite=Strict; Path=/".encode()
            extra.append((b"set-cookie", cookie))
        await self.app(scope, receive, _with_headers(send, extra))
