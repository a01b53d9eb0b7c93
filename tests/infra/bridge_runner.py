"""Run the real bridge for tests: in-process (same event loop) or as a subprocess.

In-process::

    async with running_bridge(cache.target, max_subscriptions=3) as b:
        async with websockets.connect(b.ws_url(token)) as ws: ...
        b.app.metrics.value("bridge_active_connections")

Subprocess (SIGTERM tests)::

    proc = BridgeProcess(cache.target); proc.start(); ...; proc.terminate()
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

from bridge.config import BridgeConfig
from bridge.app import BridgeApp
from bridge.session import Session
from tests.infra.eventually import eventually_sync
from devstack.ports import free_port
from tests.infra.tokens import TEST_SECRET


def ws_url(port: int, token: str | None = None, path: str = "/ws", **query: Any) -> str:
    params = {**({"token": token} if token else {}), **{k: str(v) for k, v in query.items()}}
    return f"ws://127.0.0.1:{port}{path}" + (f"?{urlencode(params)}" if params else "")


class RunningBridge:
    """A started in-process bridge."""

    def __init__(self, app: BridgeApp) -> None:
        self.app = app

    @property
    def port(self) -> int:
        return self.app.port

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, token: str | None = None, path: str = "/ws", **query: Any) -> str:
        return ws_url(self.port, token, path, **query)

    def session(self, session_id: str) -> Session:
        """The server side of a connection, by the ``session_id`` of its welcome."""
        (session,) = [s for s in self.app.sessions if s.id == session_id]
        return session


@asynccontextmanager
async def running_bridge(target: str, **overrides: Any) -> AsyncIterator[RunningBridge]:
    """Start a bridge in this event loop against ``target``; drain and close it on exit."""
    settings: dict[str, Any] = {"grpc_target": target, "host": "127.0.0.1", "port": 0,
                                "jwt_secret": TEST_SECRET, "upstream_backoff_max": 0.5,
                                "shutdown_grace": 5.0}
    if overrides.get("auth") == "none" or overrides.get("jwt_public_key") or overrides.get("jwks_url"):
        settings.pop("jwt_secret")
    settings.update(overrides)
    app = BridgeApp(BridgeConfig(**settings))
    await app.start()
    try:
        yield RunningBridge(app)
    finally:
        await app.drain()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str, dict[str, str]]:
    """Status, body and headers of a GET (errors are answers too)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


class BridgeProcess:
    """``python -m bridge`` as a child process on a fixed port."""

    def __init__(self, target: str, extra_args: Sequence[str] = (), port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.target = target
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def args(self) -> list[str]:
        return [sys.executable, "-m", "bridge", "--grpc-target", self.target,
                "--host", "127.0.0.1", "--port", str(self.port), *self.extra_args]

    def ws_url(self, token: str | None = None, path: str = "/ws", **query: Any) -> str:
        return ws_url(self.port, token, path, **query)

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until ``/healthz`` answers."""
        env = {**os.environ, "BRIDGE_JWT_SECRET": TEST_SECRET, **(self.env or {})}
        self.proc = subprocess.Popen(self.args, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"bridge exited early: {self.output()}")
            return http_get(f"http://127.0.0.1:{self.port}/healthz", timeout=1.0)[0] == 200

        eventually_sync(up, timeout, interval=0.05, what=f"bridge on port {self.port} up",
                        ignore=(OSError,))

    def output(self) -> str:
        if self.proc is None or self.proc.poll() is None:
            return ""
        _out, err = self.proc.communicate(timeout=5)
        return (err or b"").decode(errors="replace")

    def terminate(self) -> None:
        """Send SIGTERM without waiting (the test watches the drain)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait for exit; SIGKILL if it does not."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=5)
        return proc.returncode
