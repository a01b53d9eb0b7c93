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
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import redis

from devstack.ports import free_port
from devstack.probes import grpc_serving, http_ok, tcp_listening
from devstack.process import ServerProcess, StackError
from devstack.redis import ProcessRedis

__all__ = ["Endpoints", "LocalStack", "StackError", "StackOptions"]

READY_TIMEOUT_S = 40.0
BASELINE_CHANNEL = "bench:tickers"


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

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> ServerProcess:
        server = ServerProcess(name, argv, self.log_dir, env)
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
        cache.wait_ready(lambda: grpc_serving(target), READY_TIMEOUT_S)
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
            # The secret goes in the environment, not on the command line (ps shows that).
            env={**os.environ, "BRIDGE_JWT_SECRET": self.options.jwt_secret},
        )
        http = f"http://127.0.0.1:{bridge_port}"
        bridge.wait_ready(lambda: http_ok(f"{http}/readyz"), READY_TIMEOUT_S)
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
            baseline.wait_ready(lambda: tcp_listening(base_port), READY_TIMEOUT_S)
            endpoints.baseline_ws = f"ws://127.0.0.1:{base_port}/ws"
            pids["baseline"] = baseline.pid
        return endpoints

    def _bridge_flags(self) -> list[str]:
        big = "1000000"
        return [
            "--auth",
            "jwt",
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
