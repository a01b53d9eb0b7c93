"""Run the real cache service for tests: in-process (asyncio) or as a subprocess.

In-process::

    async with running_cache_service(redis_url, stream_maxlen=50) as svc:
        channel = grpc.aio.insecure_channel(svc.target)
        ...
        await svc.stop(); await svc.start()      # restart on the SAME port

Subprocess (for SIGTERM / process-restart tests)::

    proc = CacheServiceProcess(redis_url)
    proc.start(); proc.wait_ready(30); ...; proc.stop()   # SIGTERM; .kill() for SIGKILL
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cache_service.config import CacheConfig
from cache_service.server import CacheServer, StartupError
from tests.infra.eventually import eventually_sync
from devstack.ports import free_port


PORT_ATTEMPTS = 3


class InProcessCacheService:
    """The real CacheServer on 127.0.0.1 with fixed ports, restartable."""

    def __init__(self, config: CacheConfig) -> None:
        self.config = config
        self.server: CacheServer | None = None

    @property
    def port(self) -> int:
        return self.config.port

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.config.port}"

    @property
    def metrics_port(self) -> int:
        return self.config.metrics_port

    @property
    def running(self) -> bool:
        return self.server is not None

    async def start(self) -> None:
        """Start (again) on the same ports."""
        if self.server is None:
            server = CacheServer(self.config)
            await server.start()
            self.server = server

    async def stop(self, grace: float = 1.0) -> None:
        if self.server is not None:
            server, self.server = self.server, None
            await server.stop(grace)


@asynccontextmanager
async def running_cache_service(redis_url: str, **overrides: Any) -> AsyncIterator[InProcessCacheService]:
    """Start the service in this event loop; stop it on exit."""
    for attempt in range(PORT_ATTEMPTS):
        settings: dict[str, Any] = {"host": "127.0.0.1", "port": free_port(), "metrics_port": free_port(),
                                    "shutdown_grace": 1.0}
        settings.update(overrides)
        svc = InProcessCacheService(CacheConfig(redis_url=redis_url, **settings))
        try:
            await svc.start()
            break
        except StartupError:
            # another test process took the free port first; only retry ports we picked
            if "port" in overrides or "metrics_port" in overrides or attempt == PORT_ATTEMPTS - 1:
                raise
    try:
        yield svc
    finally:
        await svc.stop()


def health_status(target: str, timeout: float = 1.0, service: str = "",
                  credentials: grpc.ChannelCredentials | None = None) -> int | None:
    """The health status of ``service`` at ``target``, or None if it does not answer."""
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout).status
    except grpc.RpcError:
        return None
    finally:
        channel.close()


class CacheServiceProcess:
    """``python -m cache_service`` as a child process on a fixed port."""

    def __init__(self, redis_url: str, port: int | None = None, extra_args: Sequence[str] = (),
                 metrics_port: int | None = None, env: dict[str, str] | None = None) -> None:
        self.redis_url = redis_url
        self.port = port or free_port()
        self.metrics_port = metrics_port if metrics_port is not None else free_port()
        self.extra_args = list(extra_args)
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def args(self) -> list[str]:
        return [sys.executable, "-m", "cache_service", "--redis-url", self.redis_url,
                "--host", "127.0.0.1", "--port", str(self.port),
                "--metrics-port", str(self.metrics_port), *self.extra_args]

    def start(self) -> None:
        env = {**os.environ, **(self.env or {})}
        self.proc = subprocess.Popen(self.args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until health says SERVING; raise if the process died or time ran out."""
        def serving() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"cache_service exited early: {self.output()}")
            return health_status(self.target, timeout=1.0) == health_pb2.HealthCheckResponse.SERVING

        eventually_sync(serving, timeout, interval=0.05, what=f"cache_service at {self.target} SERVING")

    def output(self) -> str:
        """stderr of a finished process (for assertion messages)."""
        if self.proc is None or self.proc.poll() is None:
            return ""
        _out, err = self.proc.communicate(timeout=5)
        return (err or b"").decode(errors="replace")

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> int | None:
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=5)
        return proc.returncode

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait: graceful stop (coverage is written). Returns the exit status."""
        return self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL: a crash."""
        return self._signal_and_wait(signal.SIGKILL, 10.0)
