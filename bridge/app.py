"""The bridge application: wiring, the WebSocket handler, start and graceful drain.

Authentication happens after the upgrade (docs/protocol.md: the client sees a 1008 close with a reason,
which a browser can read, rather than an HTTP 401 it cannot), then the connection caps, then
the :class:`bridge.session.Session` takes over.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
from websockets.asyncio.server import Server, ServerConnection, serve

from bridge.auth import Authenticator, AuthError, extract_token, query_params
from bridge.canary import CANARY_IDENTITY, CANARY_TOPIC, CHANNEL as CANARY_CHANNEL, CanaryFreshness
from bridge.compression import server_extensions
from bridge.config import BridgeConfig
from bridge.session import Session
from bridge.fanout import Fanout
from bridge.guarded_connection import Handshakes
from bridge.handshake_log import server_logger
from bridge.jwks_fetch import JwksClient
from bridge.keepalive import KeepAlive
from bridge.limits import SHUTDOWN_REASON, ConnectionRegistry
from bridge.metrics import BridgeMetrics
from bridge.origins import OriginPolicy
from bridge.protocol import parse_batch_ms, parse_heartbeat_s
from bridge.routes import Routes
from bridge.upstream import Upstream
from bridge.wsconnection import BatchingConnection
from marketbridge.seq import seq_time_ms

log = logging.getLogger("bridge")
CLOSE_STEP_S = 10.0   # how long each step of close() may take

CLOSE_TIMEOUT_S = 5.0
# Connections the kernel may hold completed but not yet accepted. asyncio's default is 100: a
# reconnect storm (every client of a restarted pod at once, or 10,000 connects from a load
# test) overflows it, the kernel drops the SYNs, and clients wait 1, 3, 7 s for their
# retransmissions. The kernel caps this at net.core.somaxconn (4096 on current kernels).
LISTEN_BACKLOG = 4096


def close_code_of(ws: ServerConnection) -> int:
    """The code that ended a connection: ours if we closed first (1009, 1013...), else the
    client's, 1006 when no close frame went either way."""
    protocol = ws.protocol
    if protocol.close_sent is not None and not protocol.close_rcvd_then_sent:
        return protocol.close_sent.code
    if protocol.close_rcvd is not None:
        return protocol.close_rcvd.code
    return 1006


class BridgeApp:
    """One bridge process's state: config, metrics, upstream, topics, connections."""

    def __init__(self, config: BridgeConfig) -> None:
        self.config = config
        self.metrics = BridgeMetrics()
        self.upstream = Upstream(config, self.metrics)
        self.fanout = Fanout(self.upstream, self.metrics, config.upstream_backoff_max,
                             ready_timeout=config.grpc_deadline,
                             stall_s=config.upstream_stall_s)
        self.registry = ConnectionRegistry(config.max_connections, config.max_connections_per_user)
        self.jwks = JwksClient(config, self.metrics.registry) if config.jwks_url else None
        self.authenticator = Authenticator(config, self.jwks)
        self.handshakes = Handshakes(config, self.metrics)
        self.sessions: set[Session] = set()
        self.draining = False
        self.server: Server | None = None
        self.canary: CanaryFreshness | None = None
        self._keepalive: asyncio.Task[None] | None = None
        self.metrics.ready.set_function(lambda: 0.0 if self.not_ready_reason() else 1.0)

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    def not_ready_reason(self) -> str | None:
        """Why ``/readyz`` says 503, or None when ready."""
        if self.draining:
            return "draining"
        if not self.upstream.serving:
            return "upstream not serving"
        if self.canary is not None:
            stale = self.canary.stale_reason(asyncio.get_running_loop().time())
            if stale is not None:
                return stale
        return self.jwks.not_ready_reason() if self.jwks is not None else None

    def ready_detail(self) -> str | None:
        """What a ready ``/readyz`` adds: a failing JWKS key server whose cached keys serve."""
        return self.jwks.detail() if self.jwks is not None else None

    async def start(self) -> None:
        self.upstream.start()
        if self.config.canary_s:
            self._follow_canary()
        if self.jwks is not None:
            await self.jwks.start()   # keys before the first client, bounded by --jwks-timeout-s
        self.server = await serve(
            self.handle, self.config.host, self.config.port,
            process_request=Routes(
                self.not_ready_reason, self.metrics.render,
                OriginPolicy.parse(self.config.allowed_origins),
                lambda outcome: self.metrics.connections_total.labels(outcome).inc(),
                ready_detail=self.ready_detail).process_request,
            max_size=self.config.max_frame_bytes, close_timeout=CLOSE_TIMEOUT_S,
            ping_interval=None,   # one KeepAlive task for all connections, below
            open_timeout=self.config.handshake_timeout_s, compression=None,
            extensions=server_extensions(self.config.compression),
            server_header="marketbridge", create_connection=self.handshakes.connection_class(),
            backlog=LISTEN_BACKLOG, logger=server_logger(),
        )
        keepalive = KeepAlive(lambda: [session.ws for session in self.sessions],
                              self.config.ping_interval, self.config.ping_timeout)
        self._keepalive = asyncio.create_task(keepalive.run(), name="keepalive")
        log.info("bridge listening on %s:%s (upstream %s, auth %s)", self.config.host, self.port,
                 self.config.grpc_target, self.config.auth)

    def _follow_canary(self) -> None:
        """Follow the canary stream (bridge/canary.py): its freshness gates ``/readyz`` and
        feeds ``bridge_canary_age_seconds`` (computed at each scrape, so it grows while stuck)."""
        loop = asyncio.get_running_loop()
        canary = self.canary = CanaryFreshness(self.config.canary_s, loop.time())
        self.fanout.follow(CANARY_CHANNEL, CANARY_TOPIC, CANARY_IDENTITY,
                           lambda seq: canary.arrived(loop.time(), seq_time_ms(seq)),
                           lambda code: self._canary_ended(canary, code))
        self.metrics.canary_age_seconds.set_function(lambda: canary.age_s(loop.time(), time.time()))

    @staticmethod
    def _canary_ended(canary: CanaryFreshness, code: grpc.StatusCode) -> None:
        """A cache service without ``StreamCanary`` (an older release, e.g. mid rolling
        upgrade) must not keep every new bridge out of rotation: readiness stops depending on
        the canary, with a warning, until a canary arrives again."""
        if code is grpc.StatusCode.UNIMPLEMENTED and not canary.not_offered:
            canary.not_offered = True
            log.warning("the cache service has no StreamCanary (an older version): /readyz does "
                        "not judge the pipe by the canary until one arrives")

    async def handle(self, ws: BatchingConnection) -> None:  # type: ignore[override]
        """One WebSocket connection, from authentication to the last frame."""
        try:
            session = await self._admit(ws)
            if session is None:
                return
            self.sessions.add(session)
            try:
                await session.run()
            finally:
                self.sessions.discard(session)
                self.registry.release(session.identity.user_id)
                self.metrics.active_connections.dec()
        finally:
            self.metrics.disconnects_total.labels(str(close_code_of(ws))).inc()

    async def _admit(self, ws: BatchingConnection) -> Session | None:
        """Authenticate and admit a connection: its session, or None once refused (closed).

        The handshake's request and response (headers, the token among them: about 3 KB) are
        emptied once read: an idle connection would otherwise keep them all its life (the
        request is also held by ``websockets``' parser, which reads the frames on from where
        it parsed it). ``ws.request`` stays set, emptied: None would tell ``websockets`` that
        the handshake has not arrived yet."""
        request = ws.request
        assert request is not None
        try:
            query = query_params(request.path)
            batch_ms = parse_batch_ms(query.get("batch_ms"), self.config.batch_limit_ms)
            heartbeat_s = parse_heartbeat_s(query.get("heartbeat_s"))
            identity = await self.authenticator.verify(extract_token(request.path, request.headers))
        except AuthError as exc:
            return await self._refuse(ws, "auth_failed", 1008, exc.reason)
        except ValueError as exc:
            return await self._refuse(ws, "invalid_request", 1008, str(exc))
        finally:
            request.path = ""
            request.headers.clear()
            ws.response = None
        if self.draining:
            return await self._refuse(ws, "draining", 1001, SHUTDOWN_REASON)
        refusal = self.registry.admit(identity.user_id)
        if refusal is not None:
            return await self._refuse(ws, "rejected", refusal.code, refusal.reason)
        self.metrics.connections_total.labels("accepted").inc()
        self.metrics.active_connections.inc()
        return Session(self, ws, identity, batch_ms, heartbeat_s)

    async def _refuse(self, ws: ServerConnection, outcome: str, code: int, reason: str) -> None:
        """Close a connection the bridge will not serve; logged with its reason (never the
        token) and counted, so a failed login is not just "connection open" in the log."""
        log.info("connection refused (%s): %d %s", outcome, code, reason)
        self.metrics.connections_total.labels(outcome).inc()
        await ws.close(code, reason)

    async def drain(self) -> None:
        """SIGTERM: fail readiness, stop accepting, close every client 1001, stop within grace."""
        self.draining = True
        log.info("draining %d connections", len(self.sessions))
        if self.server is not None:
            self.server.close(close_connections=False)
            for session in list(self.sessions):
                session.close_soon(1001, SHUTDOWN_REASON)
            try:
                async with asyncio.timeout(self.config.shutdown_grace):
                    await self.server.wait_closed()
            except TimeoutError:
                log.warning("grace period over with %d connections open", len(self.sessions))
        await self.close()

    async def close(self) -> None:
        """Release upstream resources (streams, channel); each step bounded by
        ``CLOSE_STEP_S``, a hung one logged (with the tasks still running) and passed, so a stuck
        part cannot keep the process from exiting."""
        if self.server is not None:
            self.server.close()
        if self._keepalive is not None:
            self._keepalive.cancel()
            await asyncio.gather(self._keepalive, return_exceptions=True)
        if self.jwks is not None:
            await self.jwks.close()
        for name, step in (("topics", self.fanout.close()), ("upstream channel", self.upstream.close())):
            try:
                async with asyncio.timeout(CLOSE_STEP_S):
                    await step
            except TimeoutError:
                running = "\n".join(repr(task) for task in asyncio.all_tasks())
                log.error("closing the %s took over %g s; going on. Tasks:\n%s", name, CLOSE_STEP_S, running)
