"""Redis health monitor: PING about once a second, reflected in gRPC health and metrics.

Kubernetes' gRPC probe and the bridge's readiness both read the health service, so a replica
that cannot reach Redis is taken out of rotation while it keeps retrying.

The monitor has a Redis client of its own whose socket timeout IS the probe timeout: a probe
ends by itself and is never cancelled mid-command (cancelling redis-py while it connects can
leave the task stuck), and stopping waits for the current probe instead of cancelling it.

On a Redis Cluster the probe PINGs every primary (the nodes that take writes): Redis is up
when every slot's owner answers. A replica that is down does not make it NOT_SERVING. Any
``RedisClusterException`` of the cluster client (no ``RedisError``: "slots not covered", nodes
that disagree on the slot map) counts as down too, so the probe never escapes: one that did
failed the service's start, or ended the monitor with its last status. The client turns "no
seed node answers" into a ConnectionError itself (cache_service/redis_url.py ``_Cluster``).
"""

from __future__ import annotations

import asyncio
import logging
import os

from redis.asyncio.cluster import RedisCluster
from grpc_health.v1 import health, health_pb2
from redis.exceptions import RedisClusterException, RedisError

from cache_service.metrics import Metrics
from cache_service.redis_url import RedisClient
from marketbridge.service import SERVICE_NAME

log = logging.getLogger(__name__)

HEALTH_NAMES = ("", SERVICE_NAME)
# SERVING for as long as the process runs, whatever Redis does: for a liveness probe, so a
# Redis outage takes replicas out of rotation (readiness) without restarting them all.
LIVENESS_NAME = "liveness"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def describe_failure(exc: BaseException) -> str:
    """Why Redis did not answer, in words an operator acts on: the OS's reason when a socket
    error is behind it ("Connection refused", "No route to host"), else the client's message."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return f"{os.strerror(seen.errno)}: {exc}"
        seen = seen.__cause__ or seen.__context__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class RedisMonitor:
    """Owns the SERVING/NOT_SERVING state of the service."""

    def __init__(self, redis: RedisClient, servicer: health.aio.HealthServicer, metrics: Metrics,
                 interval: float = 1.0, timeout: float = 1.0, where: str = "Redis") -> None:
        self.redis = redis
        self.where = where   # how logs name this Redis (its URL, password masked)
        self.cause = ""      # why the last check failed
        self.servicer = servicer
        self.metrics = metrics
        self.interval = interval
        self.timeout = timeout
        self.up: bool | None = None
        self.task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def check(self) -> bool:
        """One PING, bounded by ``timeout``; updates state, gauge and counter."""
        try:
            if isinstance(self.redis, RedisCluster):
                ok = bool(await self.redis.ping(target_nodes=RedisCluster.PRIMARIES))
            else:
                ok = bool(await self.redis.ping())
            self.cause = "" if ok else "no PONG"
        except (RedisError, RedisClusterException, OSError) as exc:
            ok = False
            self.cause = describe_failure(exc)
        await self._set(ok)
        return ok

    async def _set(self, up: bool) -> None:
        if up == self.up:
            return
        if up and self.up is False:
            self.metrics.redis_reconnects.inc()
            log.info("Redis at %s is back", self.where)
        elif not up:
            log.warning("Redis at %s is not answering (%s): reporting NOT_SERVING", self.where,
                        self.cause)
        self.up = up
        self.metrics.redis_up.set(1 if up else 0)
        await self.set_status(SERVING if up else NOT_SERVING)

    async def set_status(self, status: int) -> None:
        for name in HEALTH_NAMES:
            await self.servicer.set(name, status)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            await self.check()
            try:
                await asyncio.wait_for(self._stopping.wait(), self.interval)
            except TimeoutError:
                pass

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="redis-monitor")

    async def report_alive(self) -> None:
        """Mark the process alive (``liveness``); only shutdown turns it off."""
        await self.servicer.set(LIVENESS_NAME, SERVING)

    async def stop(self) -> None:
        """Stop probing and report NOT_SERVING (we are going away)."""
        self._stopping.set()
        if self.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.task), self.timeout + 1.0)
            except TimeoutError:  # pragma: no cover - the probe's own timeout ends it first
                self.task.cancel()
        await self.servicer.enter_graceful_shutdown()
