"""A real key server for JWKS tests: HTTP or HTTPS on 127.0.0.1, in a thread of the test.

It serves whatever document the test set last (a JWK Set, or any bytes: malformed documents
are the point of some tests) with the status the test chose, and counts the requests it
answered, so a test can tell how often the bridge fetched::

    with JwksServer() as server:
        server.publish(jwks(key))
        async with running_bridge(cache.target, jwks_url=server.url) as b: ...
        assert server.hits == 1

``stop()`` closes the listening socket (the key server is down: connection refused) and
``start()`` opens it again on the same port.
"""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.infra.certs import TlsFiles

PATH = "/.well-known/jwks.json"


class JwksServer:
    """One key server; ``tls`` (server cert and key) makes it HTTPS."""

    def __init__(self, tls: TlsFiles | None = None) -> None:
        self.tls = tls
        self.port = 0
        self.body = b'{"keys": []}'
        self.status = 200
        self.headers: dict[str, str] = {}
        self.hits = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{PATH}"

    def publish(self, document: dict[str, Any] | bytes, status: int = 200,
                headers: dict[str, str] | None = None) -> None:
        """Serve ``document`` (JSON-encoded unless bytes) with ``status`` (and ``headers``,
        e.g. a redirect's ``Location``) from now on."""
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        with self._lock:
            self.body, self.status, self.headers = body, status, dict(headers or {})

    def _answer(self) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.hits += 1
            return self.status, self.headers, self.body

    def start(self) -> JwksServer:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.tls.server_cert, self.tls.server_key)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"jwks-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listening socket: fetches now get connection refused."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(timeout=10)
        self._server = None

    def __enter__(self) -> JwksServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _handler(owner: JwksServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path != PATH:
                self.send_error(404)
                return
            status, headers, body = owner._answer()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
            """Quiet: the test asserts on hits, not on an access log in its output."""

    return Handler
