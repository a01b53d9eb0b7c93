"""The one gRPC channel to ``cache.v1.CacheService``: unary calls, streams, upstream health.

One channel per process (HTTP/2 multiplexes every call and stream over it); ``dns:///`` targets
resolve to every address of a headless Service and calls are spread round-robin. Unary calls are
fail-fast with a deadline (docs/reliability.md: during an outage they fail with UNAVAILABLE at once, they
never hang); identical concurrent reads of public data share one call (bridge/single_flight.py).
A health poller keeps :attr:`Upstream.serving` current for ``/readyz``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bridge.auth import Identity
from bridge.config import BridgeConfig, ConfigError
from bridge.errors import from_grpc
from bridge.metrics import BridgeMetrics
from bridge.single_flight import SingleFlight
from marketbridge.api.v1 import cache_pb2_grpc
from marketbridge.channel import open_channel
from marketbridge.metadata import SCOPE_HEADER, USER_HEADER
from marketbridge.service import SERVICE_NAME

log = logging.getLogger("bridge.upstream")

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})),
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
]
HEALTH_INTERVAL_S = 1.0
HEALTH_RETRY_S = 0.25
# Calls whose answer is the same whoever asks (tickers are public): concurrent identical ones
# share one upstream call. Orders and bots are scoped to the caller and are never shared.
SHARED_READS = frozenset({"GetTicker", "ListTickers"})
HEALTH_FAILURES = 3   # consecutive failed checks (about 3 s) before /readyz goes 503


def metadata_for(identity: Identity | None) -> tuple[tuple[str, str], ...]:
    """Caller identity in metadata (proto/cache/v1/cache.proto); None is an internal caller and sees everything."""
    if identity is None:
        return ()
    return ((USER_HEADER, identity.user_id), (SCOPE_HEADER, identity.scope_header))


def _read(path: str | None, flag: str) -> bytes | None:
    if not path:
        return None
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: {exc.strerror or exc}") from None


def make_channel(config: BridgeConfig) -> grpc.aio.Channel:
    """Plain, TLS or mTLS channel per the ``--grpc-tls-*`` flags."""
    ca = _read(config.grpc_tls_ca_file, "--grpc-tls-ca-file")
    cert = _read(config.grpc_tls_cert_file, "--grpc-tls-cert-file")
    key = _read(config.grpc_tls_key_file, "--grpc-tls-key-file")
    return open_channel(config.grpc_target, CHANNEL_OPTIONS, ca=ca, cert=cert, key=key)


class HealthTracker:
    """Readiness from health checks: not serving after ``failures`` consecutive failed checks,
    serving again on the first SERVING.

    One slow check (a busy machine, a GC pause in the service) must not pull the bridge out of
    its Service: a flapping readiness probe drops and re-adds every endpoint for nothing.
    Before the first SERVING the upstream counts as not serving.
    """

    def __init__(self, failures: int = HEALTH_FAILURES) -> None:
        self.failures = failures
        self.failed = 0
        self.serving = False

    def record(self, ok: bool) -> bool:
        """Take one check's outcome; returns whether the upstream now counts as serving."""
        if ok:
            self.failed = 0
            self.serving = True
        else:
            self.failed += 1
            if self.failed >= self.failures:
                self.serving = False
        return self.serving


class Upstream:
    """Calls to the cache service with deadlines, metrics and error mapping."""

    def __init__(self, config: BridgeConfig, metrics: BridgeMetrics) -> None:
        self.deadline = config.grpc_deadline
        self.metrics = metrics
        self.target = config.grpc_target
        self.channel = make_channel(config)
        self.checked = False   # whether a health check has had its outcome yet
        self.stub = cache_pb2_grpc.CacheServiceStub(self.channel)
        self.health = HealthTracker()
        self.shared_reads: SingleFlight[Any] = SingleFlight()
        self._health_task: asyncio.Task[None] | None = None

    def count(self, method: str, code: grpc.StatusCode) -> None:
        self.metrics.grpc_requests_total.labels(method, code.name).inc()

    async def unary(self, method: str, request: Any, identity: Identity | None) -> Any:
        """Call ``method``; failures raise :class:`bridge.errors.BridgeError` with the protocol's code (docs/protocol.md).
        A public read joins an identical one in flight; the answer is shared, not copied, so
        callers must not modify it."""
        if method in SHARED_READS:
            key = (method, request.SerializeToString(deterministic=True))
            return await self.shared_reads.run(key, lambda: self._call(method, request, identity))
        return await self._call(method, request, identity)

    async def _call(self, method: str, request: Any, identity: Identity | None) -> Any:
        try:
            response = await getattr(self.stub, method)(
                request, timeout=self.deadline, metadata=metadata_for(identity))
        except grpc.aio.AioRpcError as exc:
            self.count(method, exc.code())
            raise from_grpc(exc.code(), exc.details()) from None
        self.count(method, grpc.StatusCode.OK)
        return response

    def stream(self, method: str, request: Any, identity: Identity | None) -> Any:
        """Open a server stream (no deadline: it lives as long as its topic)."""
        return getattr(self.stub, method)(request, metadata=metadata_for(identity))

    def start(self) -> None:
        self._health_task = asyncio.create_task(self._watch_health(), name="upstream-health")

    async def _watch_health(self) -> None:
        """Poll the service's health (grpc.health.v1 Check) for ``/readyz``.

        Polling rather than Watch: one cheap call a second is plenty for a readiness probe and
        works with any health implementation behind any load balancer.
        """
        stub = health_pb2_grpc.HealthStub(self.channel)
        request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        serving = health_pb2.HealthCheckResponse.SERVING
        while True:
            try:
                reply = await stub.Check(request, timeout=min(self.deadline, HEALTH_INTERVAL_S))
                ok = reply.status == serving
            except grpc.aio.AioRpcError as exc:
                log.debug("health check failed: %s", exc.code().name)
                if not self.checked:
                    # At start-up an unreachable upstream must not be silent: say where it is.
                    log.warning("the cache service at %s does not answer (%s): not ready until it "
                                "does (/readyz 503)", self.target, exc.code().name)
                ok = False
            self.checked = True
            self._record(ok)
            await asyncio.sleep(HEALTH_INTERVAL_S if self.serving else HEALTH_RETRY_S)

    @property
    def serving(self) -> bool:
        return self.health.serving

    def _record(self, ok: bool) -> None:
        was = self.health.serving
        if self.health.record(ok) != was:
            log.info("upstream %s", "SERVING" if self.health.serving else "not serving")

    async def close(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            await asyncio.gather(self._health_task, return_exceptions=True)
        await self.channel.close()
