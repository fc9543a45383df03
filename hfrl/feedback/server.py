"""The labelling page: a FastAPI app over the feedback store, served by uvicorn.

Routes (all JSON except the page itself; the OpenAPI schema is at ``/openapi.json``):

* ``GET /`` and ``/static/*``: the page (plain HTML, JS and CSS shipped in the package).
* ``GET /api/health``: liveness and schema version.
* ``POST /api/session``: claim a labeler name; the answer carries the session token for that name.
* ``GET /api/session``: the labeler a session belongs to.
* ``GET /api/next``: the next items for the session's labeler, leased to it, with PNG data URLs.
* ``POST /api/labels``: answers; the response comes after the transaction is on disk.
* ``POST /api/renew``: keep the session's leases alive (the page calls it while open).
* ``POST /api/undo``: retract the session's labeler's own last label.
* ``GET /api/progress``: counts and the labeler's rate.
* ``GET /api/queries/{id}``: status of one query.

Labeler identity is issued by the server, never claimed by a client: ``POST /api/session`` gives the
first claimant of a name a secret token (only its hash is stored, in the feedback store, so it survives
restarts), and every labelling request carries it in the ``X-Hfrl-Session`` header. Labels, leases and
undo act for that labeler only; a request body has no labeler field. A name already in use, by another
session or by labels in the store, is refused.

Items are leased (:meth:`FeedbackStore.lease_batch`): an item needing ``n`` labels is handed to at most
``n`` labelers at once; a lease lapses ``lease_seconds`` after the labeler's last renewal.

Clients name items by id only; clean reference images are never served. Request bodies are validated with
strict types (``true`` or ``"7"`` is not an item id; unknown fields rejected) and limited in size. Every
response carries a Content-Security-Policy (own scripts only, ``frame-ancestors 'none'``) and
``X-Frame-Options: DENY``, so another site cannot frame the page. Bound to loopback the server needs no token but only
answers requests addressed to a loopback host name (so another web site cannot reach it through DNS
rebinding); bound to any other address every request must carry the token, as
``Authorization: Bearer TOKEN`` (or, for ``GET`` only, a ``token`` query parameter or the cookie the page
sets, so the page's own files load).

``hfrl label serve`` stops gracefully on SIGTERM or SIGINT: requests in flight finish, the store is
closed (its log checkpointed into the database), and the process exits 0.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import secrets
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from hfrl import __version__
from hfrl.feedback.api import (
    BatchOut,
    ErrorOut,
    HealthOut,
    ItemOut,
    KindName,
    LabelerId,
    LabelOut,
    ProgressOut,
    QueryOut,
    RenewOut,
    SessionIn,
    SessionOut,
    SubmitIn,
    SubmitOut,
    UndoIn,
    UndoOut,
)
from hfrl.feedback.engine import resolve_db_path
from hfrl.feedback.errors import (
    FeedbackError,
    NameTakenError,
    QueryClosedError,
    StoreBusyError,
    UnknownIdError,
)
from hfrl.feedback.guard import (
    DEFAULT_HOST,
    DEFAULT_MAX_BODY,
    DEFAULT_PORT,
    LOOPBACK_NAMES,
    SESSION_HEADER,
    STATIC_DIR,
    GuardMiddleware,
)
from hfrl.feedback.images import PngCache
from hfrl.feedback.labelling import DEFAULT_LEASE_SECONDS
from hfrl.feedback.labels import PAIR
from hfrl.feedback.records import LabelInput
from hfrl.feedback.schema import SCHEMA_VERSION
from hfrl.feedback.store import FeedbackStore


class _SessionError(Exception):
    """A labelling request without a valid labeler session (answered 401)."""


def _session_labeler(
    request: Request,
    session: Annotated[
        str | None, Header(alias=SESSION_HEADER, description="Session token from POST /api/session.")
    ] = None,
) -> str:
    """The labeler a request acts for: the one its session token was issued to."""
    if not session:
        raise _SessionError(
            f"no labeler session: claim a name with POST /api/session, then send {SESSION_HEADER}"
        )
    state = request.app.state
    with state.sessions_lock:
        name = state.sessions.get(session)
    if name is None:
        name = state.store.session_labeler(session)
        if name is None:
            raise _SessionError("unknown labeler session; claim a name again")
        with state.sessions_lock:
            state.sessions[session] = name
    return name


Labeler = Annotated[str, Depends(_session_labeler)]
"""The labeler of the request's session (a 401 without one)."""


# ------------------------------------------------------------------------------------------------- app

_ERRORS: dict[int, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "Unknown id."},
    401: {"model": ErrorOut, "description": "No labeler session, or an unknown one."},
    409: {"model": ErrorOut, "description": "The query was cancelled, or the labeler name is taken."},
    422: {"model": ErrorOut, "description": "Invalid request."},
    503: {"model": ErrorOut, "description": "The database stayed locked by another process; retry."},
}


def create_app(
    store: FeedbackStore | str | Path,
    *,
    token: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    page_size: int = 16,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    close_store: bool | None = None,
) -> FastAPI:
    """The labelling app.

    Args:
        store: A :class:`FeedbackStore`, or the path of its database (opened here, closed at shutdown).
        token: When given, every request must carry it.
        allowed_hosts: Host names accepted in the ``Host`` header (``None``: any). :func:`serve` passes
            the loopback names when bound to loopback.
        max_body_bytes: Largest request body accepted (default 256 KiB).
        page_size: Items per page by default (16).
        lease_seconds: How long items handed to a labeler stay leased to it without a renewal.
        close_store: Close the store at shutdown (default: only when opened here).

    Returns:
        A FastAPI app; run it with uvicorn, or test it with ``fastapi.testclient.TestClient``.
    """
    owns = not isinstance(store, FeedbackStore)
    db = FeedbackStore(store) if owns else store  # type: ignore[arg-type]
    closes = owns if close_store is None else close_store
    pngs = PngCache(db)
    sessions: dict[str, str] = {}  # token -> labeler; a token never changes owner
    sessions_lock = threading.Lock()

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        yield
        if closes:
            db.close()

    app = FastAPI(
        title="hfrl labelling",
        version=__version__,
        description="Label generator outputs for hfrl. Items are referred to by id only.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.store = db
    app.state.sessions = sessions
    app.state.sessions_lock = sessions_lock

    @app.exception_handler(_SessionError)
    async def session_error(_: Request, exc: _SessionError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=401)

    @app.exception_handler(FeedbackError)
    async def feedback_error(_: Request, exc: FeedbackError) -> JSONResponse:
        if isinstance(exc, UnknownIdError):
            status = 404
        elif isinstance(exc, (QueryClosedError, NameTakenError)):
            status = 409
        elif isinstance(exc, StoreBusyError):
            status = 503
        else:
            status = 422
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes the offending input, which fails to encode for NaN or infinity
        # (a 500 instead of a 422) and reflects whatever a client sent; the location and reason suffice.
        errors = [
            {
                "loc": [str(part) for part in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/health", response_model=HealthOut, tags=["status"])
    def health() -> HealthOut:
        """Liveness check."""
        return HealthOut(
            status="ok", version=__version__, schema_version=SCHEMA_VERSION, token_required=bool(token)
        )

    @app.post("/api/session", response_model=SessionOut, responses=_ERRORS, tags=["labelling"])
    def new_session(body: SessionIn) -> SessionOut:
        """Claim a labeler name: the first claimant gets the session token; a taken name is a 409."""
        token = db.create_session(body.labeler)
        with sessions_lock:
            sessions[token] = body.labeler
        return SessionOut(labeler=body.labeler, session=token, lease_seconds=lease_seconds)

    @app.get("/api/session", response_model=SessionOut, responses=_ERRORS, tags=["labelling"])
    def which_session(labeler: Labeler) -> SessionOut:
        """The labeler this request's session belongs to."""
        return SessionOut(labeler=labeler, lease_seconds=lease_seconds)

    @app.get("/api/next", response_model=BatchOut, responses=_ERRORS, tags=["labelling"])
    def next_items(
        labeler: Labeler,
        limit: Annotated[int, Query(ge=1, le=64, description="Most items (single and pair).")] = page_size,
        kind: Annotated[KindName | None, Query(description="Only this kind of query.")] = None,
    ) -> BatchOut:
        """The next items for this session's labeler, leased to it: a page of one kind, or a hero batch."""
        batch = db.lease_batch(labeler, limit=limit, kind=kind, seconds=lease_seconds)
        items = list(batch.items)
        inputs = pngs.get([it.sample_id for it in items], "input")
        outputs = pngs.get([it.sample_id for it in items], "output")  # the left ones of pairs
        # A generated sample (HERO, censoring) is stored as its own input: show it once.
        inputs = [None if x == y else x for x, y in zip(inputs, outputs)]
        if batch.kind == PAIR:
            rights = pngs.get([it.other_id for it in items], "output")  # type: ignore[misc]
            out = [
                ItemOut(id=it.id, query_id=it.query_id, position=it.position, input=x, left=lft, right=rgt)
                for it, x, lft, rgt in zip(items, inputs, outputs, rights)
            ]
        else:
            out = [
                ItemOut(id=it.id, query_id=it.query_id, position=it.position, input=x, output=y)
                for it, x, y in zip(items, inputs, outputs)
            ]
        notes = {db.query(qid).note for qid in {it.query_id for it in items}}
        note = notes.pop() if len(notes) == 1 else None
        return BatchOut(kind=batch.kind, items=out, note=note)  # type: ignore[arg-type]

    @app.post("/api/labels", response_model=SubmitOut, responses=_ERRORS, tags=["labelling"])
    def submit(body: SubmitIn, labeler: Labeler) -> SubmitOut:
        """Store the session labeler's answers in one transaction; a 200 response means they are on disk."""
        result = db.submit_labels(
            labeler,
            [LabelInput(e.item_id, e.value, e.best, e.response_ms) for e in body.labels],
        )
        return SubmitOut(
            acknowledged=len(result.label_ids),
            label_ids=list(result.label_ids),
            completed_queries=list(result.completed),
        )

    @app.post("/api/renew", response_model=RenewOut, responses=_ERRORS, tags=["labelling"])
    def renew(labeler: Labeler) -> RenewOut:
        """Keep the items leased to this session's labeler from lapsing (the page calls it while open)."""
        return RenewOut(renewed=db.renew_leases(labeler, lease_seconds))

    @app.post("/api/undo", response_model=UndoOut, responses=_ERRORS, tags=["labelling"])
    def undo(labeler: Labeler, body: UndoIn | None = None) -> UndoOut:
        """Retract the session labeler's most recent label (never another labeler's)."""
        label = db.undo(labeler)
        if label is None:
            return UndoOut(undone=None)
        return UndoOut(
            undone=LabelOut(
                id=label.id, item_id=label.item_id, labeler=label.labeler, value=label.value, best=label.best
            )
        )

    @app.get("/api/progress", response_model=ProgressOut, responses=_ERRORS, tags=["status"])
    def progress(
        labeler: Annotated[LabelerId | None, Query(description="Whose labels and rate to count.")] = None,
    ) -> ProgressOut:
        """Labelled, pending, and labels per minute."""
        p = db.progress(labeler)
        return ProgressOut(**{name: getattr(p, name) for name in ProgressOut.model_fields})

    @app.get("/api/queries/{query_id}", response_model=QueryOut, responses=_ERRORS, tags=["status"])
    def query_status(
        query_id: Annotated[int, PathParam(ge=1, le=2**53, description="Query id.")],
    ) -> QueryOut:
        """Status of one query."""
        result = db.query_result(query_id)
        q = result.query
        return QueryOut(
            id=q.id,
            kind=q.kind,  # type: ignore[arg-type]
            status=q.status,  # type: ignore[arg-type]
            size=q.size,
            labels_needed=q.labels_needed,
            answered_items=sum(1 for item in result.items if item.votes),
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(
        GuardMiddleware, token=token, allowed_hosts=allowed_hosts, max_body_bytes=max_body_bytes
    )
    return app


# ----------------------------------------------------------------------------------------------- serve


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0 picks a free one).

    Raises:
        FeedbackError: when the address cannot be used.
    """
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise FeedbackError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    family, _, _, _, address = infos[0]
    # proto must be IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on accepted sockets whose proto says
    # TCP, and without it Nagle's algorithm meets delayed ACKs and every keep-alive response waits 40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(512)
    except OSError as exc:
        sock.close()
        raise FeedbackError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.set_inheritable(True)
    return sock


def page_url(host: str, port: int, token: str | None = None) -> str:
    """The URL to open in a browser."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/" + (f"?token={token}" if token else "")


class LabelServer:
    """A labelling server bound and ready: :meth:`run` serves until interrupted or :meth:`stop`.

    Made by :func:`prepare_server`.

    Attributes:
        url: The URL people open (with the token, when one is required).
        token: The token every request must carry, or ``None``.
        store: The feedback store it serves (closed when :meth:`run` returns).
    """

    def __init__(
        self, server: Any, sock: socket.socket, store: FeedbackStore, url: str, token: str | None
    ) -> None:
        self.server = server
        self.sock = sock
        self.store = store
        self.url = url
        self.token = token

    def run(self) -> None:
        """Serve until SIGINT/SIGTERM or :meth:`stop`; then close the socket and the store."""
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.sock.close()
            self.store.close()

    def stop(self) -> None:
        """Ask a running server to finish (from another thread)."""
        self.server.should_exit = True

    @property
    def started(self) -> bool:
        """Whether the server accepts connections."""
        return bool(self.server.started)


def prepare_server(
    db: str | Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    page_size: int = 16,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    log_level: str = "warning",
    announce: Callable[[str], None] = print,
) -> LabelServer:
    """Open the store, bind the address and announce the URL; :meth:`LabelServer.run` then serves.

    Args:
        db: The feedback database (created when missing).
        host: Address to bind (default loopback). Any other address requires a token.
        port: TCP port (0 picks a free one).
        token: Token every request must carry; generated (and announced once) when binding beyond
            loopback without one.
        max_body_bytes: Largest request body accepted.
        page_size: Items per page.
        lease_seconds: How long handed-out items stay leased to a labeler without a renewal.
        log_level: uvicorn's log level.
        announce: Where the URL (and so a generated token) is printed.

    Raises:
        FeedbackError: for an unusable database or address.
    """
    import uvicorn

    if not is_loopback(host) and not token:
        token = secrets.token_urlsafe(24)
    store = FeedbackStore(resolve_db_path(db))
    try:
        sock = bind_socket(host, port)
    except FeedbackError:
        store.close()
        raise
    url = page_url(host, sock.getsockname()[1], token)
    allowed = [*LOOPBACK_NAMES] if is_loopback(host) else None
    app = create_app(
        store,
        token=token,
        allowed_hosts=allowed,
        max_body_bytes=max_body_bytes,
        page_size=page_size,
        lease_seconds=lease_seconds,
        close_store=True,  # closed at shutdown, whatever stops the server
    )
    state = "new, empty feedback database" if store.created else "feedback database"
    announce(f"{state}: {store.path}")
    announce(f"labelling page: {url}  (Ctrl-C to stop)")
    if token and not is_loopback(host):
        announce("every request needs the token in the URL above (or 'Authorization: Bearer TOKEN')")
    config = uvicorn.Config(
        app, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=3
    )
    return LabelServer(_graceful_server(config), sock, store, url, token)


def _graceful_server(config: Any) -> Any:
    """A uvicorn server that stops on SIGINT/SIGTERM and then returns normally.

    uvicorn (0.29 and later) raises a captured signal again once it has shut down, which kills the
    process with the default handler before the caller can close the feedback store; this one only
    restores the previous handlers, so :meth:`LabelServer.run` closes the store and the CLI exits 0.
    """
    import uvicorn

    class GracefulServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            sigs = [signal.SIGINT, signal.SIGTERM]
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in sigs}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return GracefulServer(config)


def serve(
    db: str | Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    page_size: int = 16,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    log_level: str = "warning",
    announce: Callable[[str], None] = print,
) -> None:
    """Serve the labelling page until interrupted (``hfrl label serve``); see :func:`prepare_server`.

    Raises:
        FeedbackError: for an unusable database or address.
    """
    server = prepare_server(
        db, host, port, token=token, max_body_bytes=max_body_bytes, page_size=page_size,
        lease_seconds=lease_seconds, log_level=log_level, announce=announce,
    )  # fmt: skip
    # Everything allocated so far (torch, the app) lives as long as this process: keeping it out of the
    # garbage collector's full passes keeps those pauses (tens of ms) out of request latencies.
    gc.collect()
    gc.freeze()
    server.run()
    announce(f"stopped; feedback database closed: {server.store.path}")
