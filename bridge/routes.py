"""Plain HTTP on the WebSocket port: probes, metrics and the live page.

websockets calls a :class:`Routes`' :meth:`Routes.process_request` before every handshake;
returning a response answers the request as HTTP, returning None lets ``/ws`` and
``/ws/<label>`` upgrade. The routes are given the two things they read (why the process is not
ready, the metrics page) rather than the application, so they know nothing of its wiring.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from bridge.metrics import CONTENT_TYPE
from bridge.origins import OriginPolicy

access_log = logging.getLogger("bridge.http")
STATIC_DIR = Path(__file__).parent / "static"
PLACEHOLDER = (b"<!doctype html><title>marketbridge</title><h1>marketbridge bridge</h1>"
               b"<p>The live page is not installed. WebSocket endpoint: <code>/ws</code>.</p>")


def is_websocket_path(path: str) -> bool:
    return path == "/ws" or path.startswith("/ws/")


def respond(connection: ServerConnection, status: int, body: bytes, content_type: str) -> Response:
    """A complete response (websockets adds Date, Connection and Content-Length for us)."""
    response = connection.respond(status, "")
    response.body = body
    del response.headers["Content-Length"]
    del response.headers["Content-Type"]
    response.headers["Content-Length"] = str(len(body))
    response.headers["Content-Type"] = content_type
    response.headers["Cache-Control"] = "no-store"
    return response


def text(connection: ServerConnection, status: int, message: str) -> Response:
    return respond(connection, status, (message + "\n").encode(), "text/plain; charset=utf-8")


def static_file(name: str, static_dir: Path = STATIC_DIR) -> tuple[bytes, str] | None:
    """A file of bridge/static by its URL name, never anything outside that directory."""
    root = static_dir.resolve()
    candidate = (root / name).resolve()
    if root not in candidate.parents or not candidate.is_file():
        return None
    content_type = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type.endswith("javascript"):
        content_type += "; charset=utf-8"
    return candidate.read_bytes(), content_type


@dataclass(frozen=True)
class Routes:
    """The HTTP answers of one bridge process."""

    not_ready_reason: Callable[[], str | None]   # None when ready (``/readyz`` says 200)
    render_metrics: Callable[[], bytes]          # the ``/metrics`` page
    origins: OriginPolicy = OriginPolicy(frozenset(), any_origin=True)
    refused: Callable[[str], None] = lambda _outcome: None   # counts a refused handshake
    # a note for a ready ``/readyz`` (still 200): e.g. a failing JWKS server, cached keys served
    ready_detail: Callable[[], str | None] = lambda: None

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = unquote(urlsplit(request.path).path)
        if is_websocket_path(path):
            origin = request.headers.get("Origin")
            if self.origins.allows(origin):
                return None
            # a page of another site holding a token: refused before the upgrade (SPEC §9.3)
            access_log.info("handshake refused: Origin %r is not in --allowed-origins", origin)
            self.refused("origin_refused")
            return text(connection, 403, "origin not allowed")
        response = self._answer(connection, path)
        # An access line, at DEBUG: probes and page loads are routine, not news (the websockets
        # server's own "connection rejected (200 OK)" record is dropped, bridge/handshake_log.py).
        access_log.debug("GET %s %d %s", path, response.status_code, response.reason_phrase)
        return response

    def _answer(self, connection: ServerConnection, path: str) -> Response:
        if path == "/healthz":
            return text(connection, 200, "ok")
        if path == "/readyz":
            problem = self.not_ready_reason()
            if problem:
                return text(connection, 503, problem)
            detail = self.ready_detail()
            return text(connection, 200, f"ready; {detail}" if detail else "ready")
        if path == "/metrics":
            return respond(connection, 200, self.render_metrics(), CONTENT_TYPE)
        found = static_file("index.html" if path == "/" else path.lstrip("/"))
        if found is not None:
            return respond(connection, 200, *found)
        if path in ("/", "/index.html"):
            return respond(connection, 200, PLACEHOLDER, "text/html; charset=utf-8")
        return text(connection, 404, "not found")
