"""The system under test: a local stack started as subprocesses, or a deployed one by URL.

Locally every server runs as its own process on a free loopback port (redis-server,
``python -m cache_service``, ``python -m bridge``, and the pub/sub baseline), with logs in a
temporary directory, so its CPU time and memory can be read from outside. The bridge is
started with connection, per-user and rate limits raised above what the scenarios need: the
benchmark measures capacity, not policy (the defaults would turn the load into RATE_LIMITED).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.infra.ports import free_port
from tests.infra.redis_servers import ProcessRedis

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 40.0
BASELINE_CHANNEL = "bench:tickers"


class StackError(RuntimeError):
    """A server of the local stack did not start; the message carries its log's tail."""


@dataclass
class Endpoints:
    """Where the scenarios send their load, and which local processes to measure."""

    bridge_ws: str
    bridge_http: str | None
    grpc_target: str
    jwt_secret: str | None = None
    baseline_ws: str | None = None
    redis_url: str | None = None
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def local(self) -> bool:
        return bool(self.pids)


@dataclass
class StackOptions:
    """How to start the local stack."""

    jwt_secret: str = "bench-only-secret-not-for-production-use"
    bridge_loop: str = "asyncio"  # or "uvloop": the bridge runs under uvloop's event loop
    cache_loop: str = "asyncio"  # or "uvloop": the same for the cache service
    orjson: bool = True  # False: the bridge runs with orjson hidden (stdlib json)
    max_connections: int = 12_000
    with_baseline: bool = True
    batch_ms: int = 10  # the baseline's window for ?batch_ms clients
    log_level: str = "WARNING"


class ServerProcess:
    """One server subprocess with its log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: list[str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        """Raise with the log's tail if the process already exited."""
        if self.proc.poll() is not None:
            raise StackError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        if not self._log.closed:
            self._log.flush()
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM and wait (coverage and graceful drains need it), SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def _wait(name: str, check: object, server: ServerProcess | None) -> None:
    """Poll ``check()`` until it returns True, the process dies, or READY_TIMEOUT_S passes."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server is not None:
            server.check_alive()
        try:
            ready = bool(check())  # type: ignore[operator]
        except Exception:  # noqa: BLE001 - not ready yet; the loop is bounded
            ready = False
        if ready:
            return
        time.sleep(0.1)
    tail = server.log_tail() if server else ""
    raise StackError(f"{name} not ready after {READY_TIMEOUT_S:.0f}s: {tail}")


def http_ok(url: str) -> bool:
    """True if GET ``url`` answers 200 within a second."""
    with urllib.request.urlopen(url, timeout=1.0) as response:
        return bool(response.status == 200)


def grpc_serving(target: str) -> bool:
    """True if the gRPC health service at ``target`` reports SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def tcp_listening(port: int) -> bool:
    """True if something accepts TCP connections on 127.0.0.1:``port``."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=1.0):
        return True


def _redis_pid(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("server")["process_id"])
    finally:
        client.close()


class LocalStack:
    """Starts Redis, the cache service, the bridge and the baseline; ``close()`` stops them all."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.log_dir = Path(tempfile.mkdtemp(prefix="marketbridge-bench-"))
        self._stack = ExitStack()
        self.servers: dict[str, ServerProcess] = {}

    def _spawn(self, name: str, argv: list[str]) -> ServerProcess:
        server = ServerProcess(name, argv, self.log_dir)
        self.servers[name] = server
        self._stack.callback(server.stop)
        return server

    def start(self) -> Endpoints:
        """Start every server and wait until each is ready; raises StackError otherwise."""
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> Endpoints:
        redis_server = ProcessRedis(fsync="no", extra_args=["--appendonly", "no"])
        self._stack.callback(redis_server.close)
        grpc_port, metrics_port, bridge_port = free_port(), free_port(), free_port()
        target = f"127.0.0.1:{grpc_port}"
        cache = self._spawn(
            "cache_service",
            [
                *_launcher("cache_service", uvloop=self.options.cache_loop == "uvloop"),
                "--redis-url",
                redis_server.url,
                "--host",
                "127.0.0.1",
                "--port",
                str(grpc_port),
                "--metrics-port",
                str(metrics_port),
                "--log-level",
                self.options.log_level,
            ],
        )
        _wait("cache_service", lambda: grpc_serving(target), cache)
        bridge = self._spawn(
            "bridge",
            [
                *_launcher(
                    "bridge",
                    uvloop=self.options.bridge_loop == "uvloop",
                    orjson=self.options.orjson,
                ),
                "--grpc-target",
                target,
                "--host",
                "127.0.0.1",
                "--port",
                str(bridge_port),
                *self._bridge_flags(),
            ],
        )
        http = f"http://127.0.0.1:{bridge_port}"
        _wait("bridge", lambda: http_ok(f"{http}/readyz"), bridge)
        pids = {
            "redis": _redis_pid(redis_server.url),
            "cache_service": cache.pid,
            "bridge": bridge.pid,
        }
        endpoints = Endpoints(
            bridge_ws=f"ws://127.0.0.1:{bridge_port}/ws",
            bridge_http=http,
            grpc_target=target,
            jwt_secret=self.options.jwt_secret,
            redis_url=redis_server.url,
            pids=pids,
        )
        if self.options.with_baseline:
            base_port = free_port()
            baseline = self._spawn(
                "baseline",
                [
                    sys.executable,
                    "-m",
                    "bench.baseline_pubsub",
                    "--redis-url",
                    redis_server.url,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(base_port),
                    "--channel",
                    BASELINE_CHANNEL,
                    "--batch-ms",
                    str(self.options.batch_ms),
                ],
            )
            _wait("baseline", lambda: tcp_listening(base_port), baseline)
            endpoints.baseline_ws = f"ws://127.0.0.1:{base_port}/ws"
            pids["baseline"] = baseline.pid
        return endpoints

    def _bridge_flags(self) -> list[str]:
        big = "1000000"
        return [
            "--auth",
            "jwt",
            "--jwt-secret",
            self.options.jwt_secret,
            "--max-connections",
            str(self.options.max_connections),
            "--max-connections-per-user",
            big,
            "--max-subscriptions",
            "1000",
            "--rate-limit",
            big,
            "--rate-burst",
            big,
            "--shutdown-grace",
            "2",
            "--log-level",
            self.options.log_level,
        ]

    def close(self) -> None:
        """Stop every server (in reverse start order) and remove the logs."""
        self._stack.close()
        if not os.environ.get("BENCH_KEEP_LOGS"):
            shutil.rmtree(self.log_dir, ignore_errors=True)


def _launcher(module: str, uvloop: bool = False, orjson: bool = True) -> list[str]:
    """The command that runs a server module, through bench.launch when a runtime flag is set."""
    flags = [flag for flag, on in (("--uvloop", uvloop), ("--no-orjson", not orjson)) if on]
    if flags:
        return [sys.executable, "-m", "bench.launch", *flags, module]
    return [sys.executable, "-m", module]
