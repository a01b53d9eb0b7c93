"""Build, start and stop the gRPC server: CacheService + health + reflection (+ TLS/mTLS).

``CacheServer`` can be started and stopped repeatedly on the same port (tests restart it);
``serve`` runs it until SIGTERM/SIGINT and then drains: health goes NOT_SERVING, open change
streams end with UNAVAILABLE (clients resume on another replica), in-flight unary calls get
``shutdown_grace`` seconds to finish.
"""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import signal
import socket
from collections.abc import Awaitable
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cache_service.book_store import BookStore
from cache_service.books import BookKeeper
from cache_service.canary import CanaryWriter, writer_name
from cache_service.periodic import Periodic
from cache_service.changefeed import ChangeFeed
from cache_service.config import CacheConfig
from cache_service.health import RedisMonitor
from cache_service.interceptor import MetricsInterceptor, UserMetadataInterceptor
from cache_service.metrics import Metrics
from cache_service.order_retention import OrderRetention
from marketbridge.api.v1 import cache_pb2_grpc
from marketbridge.service import SERVICE_NAME
from cache_service.redis_url import RedisClient, connect
from cache_service.servicer import CacheServicer
from cache_service.store import Store
from cache_service.trade_store import TradeStore
from cache_service.trades import TradeDesk

log = logging.getLogger(__name__)

GRPC_OPTIONS = [
    ("grpc.so_reuseport", 0),  # a second server on a busy port must fail, not share it
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
]


MONITOR_TIMEOUT_S = 1.0
STOP_STEP_S = 10.0   # how long one step of stop() may take beyond the grace period
CANDLE_CLOCK_S = 1.0


class StartupError(RuntimeError):
    """The server cannot start (port taken, unreadable certificate); one-line message."""


def server_credentials(config: CacheConfig) -> grpc.ServerCredentials | None:
    """TLS credentials, requiring client certificates when a client CA is configured."""
    if not config.tls_enabled:
        return None
    assert config.tls_cert_file and config.tls_key_file
    cert = Path(config.tls_cert_file).read_bytes()
    key = Path(config.tls_key_file).read_bytes()
    ca = Path(config.tls_client_ca_file).read_bytes() if config.tls_client_ca_file else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


class CacheServer:
    """One running instance of the service; ``start``/``stop`` may be called repeatedly."""

    def __init__(self, config: CacheConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.port: int = config.port
        self.redis: RedisClient | None = None
        self._monitor_redis: RedisClient | None = None
        self.feed: ChangeFeed | None = None
        self.monitor: RedisMonitor | None = None
        self._server: grpc.aio.Server | None = None
        self.order_retention: OrderRetention | None = None
        self.trades: TradeDesk | None = None
        self._candle_clock: Periodic | None = None
        self._canary: Periodic | None = None

    def _check_port_free(self) -> None:
        """Fail before building anything if the port is taken (grpc's own bind error is
        cryptic, and a half-built aio server lingers until garbage collection)."""
        if not self.port:
            return
        with socket.socket(socket.AF_INET6 if ":" in self.config.host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.config.host, self.port))
            except OSError as exc:
                raise StartupError(f"cannot listen on {self.config.host}:{self.port}: {exc.strerror}") from None

    async def start(self) -> None:
        config = self.config
        self._check_port_free()
        self.redis = connect(config.redis_target, config.redis_timeout)
        store = Store(self.redis, config.stream_maxlen, config.min_replica_acks or 0,
                      config.replica_ack_timeout_ms, unconfirmed=self.metrics.replica_acks_missing.inc)
        self.feed = ChangeFeed(self.redis, self.metrics, config.subscriber_queue, config.redis_timeout,
                               config.feed_policy)
        health_servicer = health.aio.HealthServicer()
        self._monitor_redis = connect(config.redis_target, MONITOR_TIMEOUT_S)
        self.monitor = RedisMonitor(self._monitor_redis, health_servicer, self.metrics,
                                    timeout=MONITOR_TIMEOUT_S, where=config.redis_target.shown)
        server = grpc.aio.server(interceptors=self._interceptors(), options=GRPC_OPTIONS)
        self.trades = TradeDesk(TradeStore(store, config.trade_retention), self.metrics, config.candle_retention)
        books = BookKeeper(BookStore(store), self.metrics)
        cache_pb2_grpc.add_CacheServiceServicer_to_server(
            CacheServicer(store, self.feed, self.metrics, config.redis_timeout, books, self.trades), server)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        names = (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
        address = f"{config.host}:{self.port}"
        try:
            credentials = server_credentials(config)
            if credentials is None:
                self.port = server.add_insecure_port(address)
            else:
                self.port = server.add_secure_port(address, credentials)
        except (RuntimeError, OSError) as exc:
            await server.stop(None)
            await self.redis.aclose()
            self.redis = None
            raise StartupError(f"cannot listen on {address}: {exc}") from None
        await self.monitor.report_alive()
        await self.monitor.check()
        await server.start()
        self._server = server
        self.monitor.start()
        self.order_retention = OrderRetention(store, config.terminal_order_retention_s).start()
        # closes candles whose interval ended without a later trade (cache_service.trades)
        self._candle_clock = Periodic("candle-clock", self._close_due_candles, CANDLE_CLOCK_S)
        self._candle_clock.start()
        canary = CanaryWriter(self.redis, writer_name(self.port), config.canary_s)
        self._canary = Periodic("canary", canary.step, config.canary_s)
        self._canary.start()
        try:
            self.metrics.serve(config.host, config.metrics_port)
        except OSError as exc:
            await self.stop(0)
            raise StartupError(f"cannot serve metrics on port {config.metrics_port}: {exc}") from None
        log.info("%s listening on %s (tls=%s, user metadata from %s, metrics port %s)", SERVICE_NAME, address,
                 config.tls_enabled, ", ".join(config.user_metadata_peers) or config.user_metadata_from,
                 config.metrics_port or "off")

    def _interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """Metrics first (outermost: they count refusals too), then the user-metadata gate,
        which ``any`` mode does without (docs/cache_service.md, "Trust model")."""
        policy = self.config.user_metadata_policy
        gate = [UserMetadataInterceptor(policy, self.metrics)] if policy.checks_peers else []
        return [MetricsInterceptor(self.metrics), *gate]

    async def _close_due_candles(self) -> None:
        assert self.trades is not None
        await self.trades.close_due()

    async def stop(self, grace: float | None = None) -> None:
        """Drain and stop: NOT_SERVING, end streams, let unary calls finish within ``grace``.

        Each step is bounded (``STOP_STEP_S`` past ``grace``): a step that hangs is logged as
        an error, with the stacks of the tasks still running, and the stop goes on, so a
        stuck part can neither keep the process from exiting nor hide what stuck."""
        grace = self.config.shutdown_grace if grace is None else grace
        if self.monitor is not None:
            await self._step("health monitor", self.monitor.stop())
        if self.order_retention is not None:
            await self._step("order retention", self.order_retention.stop())
        if self._candle_clock is not None:
            await self._step("candle clock", self._candle_clock.stop())
            self._candle_clock = None
        if self._canary is not None:
            await self._step("canary", self._canary.stop())
            self._canary = None
        if self.feed is not None:
            await self._step("change feed", self.feed.close())
        if self._server is not None:
            await self._step("gRPC server", self._server.stop(grace), grace)
            self._server = None
        if self.redis is not None:
            await self._step("Redis client", self.redis.aclose())
            self.redis = None
        if self._monitor_redis is not None:
            await self._step("monitor's Redis client", self._monitor_redis.aclose())
            self._monitor_redis = None
        self.metrics.close()

    @staticmethod
    async def _step(name: str, step: Awaitable[object], grace: float = 0.0) -> None:
        try:
            async with asyncio.timeout(grace + STOP_STEP_S):
                await step
        except TimeoutError:
            stacks = io.StringIO()
            for task in asyncio.all_tasks():
                task.print_stack(limit=8, file=stacks)
            log.error("stopping the %s took over %g s; going on. Tasks still running:\n%s",
                      name, grace + STOP_STEP_S, stacks.getvalue())


async def serve(config: CacheConfig) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    server = CacheServer(config)
    await server.start()
    # Startup's objects (modules, protobuf descriptors, the server) live as long as the
    # process: frozen, full collections skip them. Unfrozen, each one walked them all and
    # stalled every stream for about 20 ms under load (docs/benchmarks.md, "Garbage collection").
    gc.freeze()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("shutting down (grace %ss)", config.shutdown_grace)
    await server.stop()
    log.info("stopped")
