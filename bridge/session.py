"""One client connection: reading, writing, closing, and delivery between them.

Each message the client sends goes, as it is parsed, to the session's
:class:`bridge.dispatch.Dispatcher` (rate limit, parse, run the action in a task of its own);
the fan-out and the subscription set-up (:mod:`bridge.subscribe`) push updates into the
:class:`bridge.outbound.Outbound` queue; a writer task, running while that queue has frames,
drains it to the socket.
Everything that can go wrong with one client (bad frames, floods, a slow reader) stays with
that client.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed

from bridge.auth import TOKEN_EXPIRED, AuthError, Identity
from bridge.compression import codec_of
from bridge.dispatch import Dispatcher
from bridge.errors import FORBIDDEN, BridgeError
from bridge.events import Event
from bridge.limits import (
    IDLE_REASON,
    INTERNAL_ERROR_REASON,
    SLOW_CONSUMER_REASON,
    RateLimiter,
)
from bridge.outbound import Outbound, Outgoing, Push
from bridge.pending_book import PendingBook
from bridge.protocol import Reply, heartbeat_frame, stream_status_frame, token_expiring_frame, welcome_frame
from bridge.token_life import WARN, TokenLife
from bridge.subscribe import Subscriptions
from bridge.subscriptions import Subscription, SubscriptionBook
from bridge.wsconnection import BatchingConnection

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bridge.app import BridgeApp
    from bridge.lanes import Share

log = logging.getLogger("bridge.connection")

# How long a close we initiate (slow consumer, rate limit, shutdown) may wait for the closing
# handshake before the transport is aborted.
FORCED_CLOSE_TIMEOUT_S = 2.0


class Session:
    """State and loops of one authenticated WebSocket connection.

    What an idle connection does not use is not made for it (docs/benchmarks.md, memory per
    connection): the writer is a task only while there is something to write (it ends when the
    queue is empty and the next frame starts another), the event replays pace on exists only
    while one waits, and the attributes are slots, not a dict."""

    __slots__ = ("app", "ws", "identity", "id", "loop", "outbound", "subscriptions", "requests",
                 "closing", "close_task", "batch_ms", "codec", "heartbeat_s", "token",
                 "_token_timer", "direct", "_writer", "_woken", "_space", "_ended",
                 "_last_read", "_idle_timer")

    def __init__(self, app: BridgeApp, ws: BatchingConnection, identity: Identity,
                 batch_ms: int | None, heartbeat_s: int | None = None) -> None:
        config = app.config
        self.app = app
        self.ws = ws
        self.identity = identity
        self.id = uuid.uuid4().hex
        self.loop = asyncio.get_running_loop()
        self.outbound = Outbound(config.max_backlog, batch_ms)
        self.subscriptions = Subscriptions(self, SubscriptionBook(config.max_subscriptions),
                                           app.fanout, app.metrics)
        limiter = RateLimiter(config.rate_limit, config.rate_burst,
                              config.rate_limit_close_after, time.monotonic())
        self.requests = Dispatcher(self, limiter, config.rate_limit, app.metrics)
        self._writer: asyncio.Task[None] | None = None   # running while the queue has frames
        self._woken: asyncio.Future[None] | None = None  # the writer's wait for a batch's time
        self._space: asyncio.Event | None = None   # made by the first writable() that waits
        self._ended = False                        # run() is over: no writer starts again
        self._last_read = 0.0                      # loop time of the client's last message
        self._idle_timer: asyncio.TimerHandle | None = None   # --idle-timeout's check
        self.closing: tuple[int, str] | None = None
        self.close_task: asyncio.Task[None] | None = None
        self.batch_ms = batch_ms
        self.codec = codec_of(ws.protocol)   # how its shared frames are built (bridge.compression)
        self.heartbeat_s = heartbeat_s
        self.token = TokenLife(identity.expires_at, config.token_warning_s)
        self._token_timer: asyncio.TimerHandle | None = None
        # Plain mode writes an update straight to an idle socket; batches always queue.
        self.direct = batch_ms is None

    # ------------------------------------------------------------ lifecycle

    def limits(self) -> dict[str, Any]:
        c = self.app.config
        return {"max_subscriptions": c.max_subscriptions, "rate_limit": c.rate_limit,
                "rate_burst": c.rate_burst, "max_frame_bytes": c.max_frame_bytes,
                "idle_timeout": c.idle_timeout, "max_backlog": c.max_backlog,
                "batch_ms": self.batch_ms, "batch_max_ms": c.batch_limit_ms,
                "heartbeat_s": self.heartbeat_s}

    async def run(self) -> None:
        """Welcome the client, then serve it until either side closes."""
        self.ws.last_sent = time.monotonic()   # heartbeats count silence from the welcome on
        self.send(Reply(welcome_frame(self.id, self.limits()), "connection"))
        self._arm_token_clock()
        beats: list[asyncio.Task[None]] = []
        if self.heartbeat_s:
            beats.append(asyncio.create_task(self._heartbeats(self.heartbeat_s), name=f"heartbeat-{self.id}"))
        self._last_read = self.loop.time()
        self._idle_timer = self.loop.call_later(self.app.config.idle_timeout, self._idle_check)
        self.ws.read_with(self._received)
        try:
            # the client's messages come to _received; this waits for the TCP close only
            await self.ws.closed()
        finally:
            self._ended = True
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            writers = [self._writer] if self._writer is not None else []
            for task in (*writers, *beats):
                task.cancel()
            if self._token_timer is not None:
                self._token_timer.cancel()
            await asyncio.gather(*writers, *beats, *self.requests.cancel(), return_exceptions=True)
            self.subscriptions.close()
            if self.close_task is not None:
                await asyncio.gather(self.close_task, return_exceptions=True)

    def close_soon(self, code: int, reason: str) -> None:
        """Close from code that cannot wait (fan-out, limits); later calls are ignored."""
        if self.closing is not None:
            return
        self.closing = (code, reason)
        self.close_task = asyncio.create_task(self._close(code, reason), name=f"close-{self.id}")
        self._space_available()

    async def _close(self, code: int, reason: str) -> None:
        """Send the close frame, then abort the transport if the handshake is not done within
        :data:`FORCED_CLOSE_TIMEOUT_S`.

        A client that stopped reading has a full socket buffer: websockets' ``close`` would wait
        (in its flow control, before its own close timeout even starts) for a drain that never
        comes, holding the connection and its subscriptions. The close frame is already queued
        on the transport, so a client that reads again still sees the code; the metric counts
        the code we sent.
        """
        try:
            async with asyncio.timeout(FORCED_CLOSE_TIMEOUT_S):
                await self.ws.close(code, reason)
        except TimeoutError:
            log.info("session %s: no closing handshake within %.0f s after %d, aborting",
                     self.id, FORCED_CLOSE_TIMEOUT_S, code)
            self.ws.transport.abort()

    # ------------------------------------------------------------ reading

    def _received(self, message: str | bytes) -> None:
        """One message from the client (bridge.wsconnection.BatchingConnection.read_with): to
        the dispatcher, which never waits. A failure here is a bug: logged, and the client
        closed 1011, as a failing read loop was."""
        self._last_read = self.loop.time()
        try:
            self.requests.handle(message)
        except Exception:
            log.exception("session %s: handling a message failed; closing it 1011", self.id)
            self.close_soon(1011, INTERNAL_ERROR_REASON)

    def _idle_check(self) -> None:
        """``--idle-timeout``: close 1000 ``idle timeout`` after that long without a message
        from the client; one timer, pushed on when it finds a message came since."""
        self._idle_timer = None
        if self._ended or self.closing is not None:
            return
        left = self._last_read + self.app.config.idle_timeout - self.loop.time()
        if left > 0:
            self._idle_timer = self.loop.call_later(left, self._idle_check)
            return
        self.close_soon(1000, IDLE_REASON)

    async def call(self, method: str, request: Any) -> Any:
        """A unary upstream call as this client."""
        return await self.app.upstream.unary(method, request, self.identity)

    # ------------------------------------------------------------ delivery

    def fail(self, sub: Subscription) -> None:
        """Delivering ``sub``'s events to this client raised (a bug; the caller logged and
        counted it, :func:`bridge.lanes.contain`): detach the subscription at once, so its lane
        and topic stop calling into it, and close the client 1011 ``internal error`` (it
        reconnects and resumes from the last seq it got). Every other client carries on."""
        self.subscriptions.forget(sub)
        self.close_soon(1011, INTERNAL_ERROR_REASON)

    def deliver(self, sub: Subscription, event: Event) -> None:
        """Called by a lane's flush for each event a member not keeping up gets one by one.
        The lane already waited for its batch, so in batch mode the event is due at once (it
        must not wait for this queue's batch timer too: up to 2 x ``batch_ms``)."""
        if sub.setup is not None:
            if not sub.setup.hold(event, self.app.config.max_backlog):
                self.close_soon(1013, SLOW_CONSUMER_REASON)
            return
        self.deliver_now(sub, event, due=True)

    def deliver_now(self, sub: Subscription, event: Event, bounded: bool = True,
                    conflate: bool = True, due: bool = False) -> None:
        """Write or queue one update. ``bounded=False`` (held events released at the end of a
        set-up, at most ``--max-backlog`` of them) may take the queue past its limit;
        ``conflate=False`` (a replay, released events) keeps a ticker update from replacing a
        queued one; ``due`` (see :meth:`deliver`) flushes the pending batch with it."""
        if self.closing is not None:
            return
        frame = sub.frame(event)
        if self.direct and not self.outbound.entries and self.ws.send_now(frame):
            sub.delivered(event)
            self.app.metrics.record_sent("update", 1, (event.time_ms,))
            return
        key = sub.conflation_key(event) if conflate else None
        book = (PendingBook(sub.prefix, event.seq, event.merge)
                if key is not None and event.merge is not None else None)
        result = self.outbound.push_update(frame, event.time_ms, key, self.loop.time(), bounded,
                                           due, book)
        if result is Push.OVERFLOW:
            self.close_soon(1013, SLOW_CONSUMER_REASON)
            return
        if result is Push.CONFLATED:
            self.app.metrics.conflated_updates_total.inc()
        elif len(self.outbound) == 1:
            self._wake()
        sub.delivered(event)

    def write_shared(self, sub: Subscription, data: bytes, last: Event) -> bool:
        """Write a lane's frames (:mod:`bridge.lanes`) as they are, if this client keeps up:
        set up, nothing queued ahead of them (so frame order holds), room in the socket buffer.
        False sends the lane's events through :meth:`deliver` instead."""
        if (self.closing is not None or sub.setup is not None or len(self.outbound)
                or not self.ws.write_frames(data)):
            return False
        sub.delivered(last)
        return True

    def write_shared_all(self, shares: Sequence[Share]) -> bool:
        """:meth:`write_shared` for the flushes of several lanes at once (one batch window of a
        :class:`bridge.lanes.FlushGrid`): the connection is checked once and their frames go
        out in one write; all of them, or none (False: each lane's events go through
        :meth:`deliver`). The lanes have checked that each subscription is set up."""
        if self.closing is not None or len(self.outbound):
            return False
        data = shares[0].data if len(shares) == 1 else b"".join([share.data for share in shares])
        if not self.ws.write_frames(data, now=True):
            return False
        for share in shares:
            share.sub.delivered(share.events[-1])
        return True

    def stream_status(self, sub: Subscription, status: str, recovered: bool) -> None:
        self.send(Reply(stream_status_frame(sub.id, status, recovered), "stream_status"))

    def send(self, reply: Reply) -> None:
        if self.closing is not None:
            return
        if self.outbound.push_control(reply.frame, reply.kind) is Push.OVERFLOW:
            self.close_soon(1013, SLOW_CONSUMER_REASON)
            return
        self._wake()

    def _arm_token_clock(self) -> None:
        """Schedule the token's next step (bridge.token_life): the ``token_expiring`` warning,
        then the 1008 ``Token expired`` close. A loop timer, not a task per connection: most
        connections sit idle for the whole life of their token, and a task with its coroutine
        frame and wait future cost about 1.5 KiB each of them. A ``refresh`` re-arms it."""
        if self._token_timer is not None:
            self._token_timer.cancel()
            self._token_timer = None
        now = time.time()
        step = self.token.next(now)
        if step is None or self.closing is not None:
            return
        self._token_timer = self.loop.call_later(max(0.0, step[1] - now), self._token_due, step[0])

    def _token_due(self, kind: str) -> None:
        self._token_timer = None
        if self.closing is not None:
            return
        if kind == WARN:
            self.token.warned = True
            assert self.token.expires_at is not None
            self.send(Reply(token_expiring_frame(self.token.expires_at), "token_expiring"))
            self._arm_token_clock()
            return
        self.close_soon(1008, TOKEN_EXPIRED)

    async def refresh(self, token: str) -> float | None:
        """A ``refresh`` request's token: verified (a new JWKS ``kid`` may wait for a refetch),
        same user and scopes, the new ``exp``."""
        try:
            fresh = await self.app.authenticator.verify(token)
        except AuthError as exc:
            raise BridgeError(FORBIDDEN, f"refresh refused: {exc.reason}") from None
        expires_at = self.token.refreshed(self.identity, fresh)
        self._arm_token_clock()
        return expires_at

    async def _heartbeats(self, interval: int) -> None:
        """``?heartbeat_s``: a heartbeat frame whenever nothing was written for ``interval`` s,
        so a browser (which cannot see WebSocket pings) can tell a quiet stream from a dead one.
        Any write counts, shared lane writes included (the connection records the last one)."""
        while self.closing is None:
            idle = time.monotonic() - self.ws.last_sent
            if idle >= interval:
                self.send(Reply(heartbeat_frame(time.time()), "heartbeat"))
                idle = 0.0
            await asyncio.sleep(interval - idle)

    async def writable(self) -> None:
        """Wait until the backlog is at most half full (paces replays)."""
        while len(self.outbound) > self.app.config.max_backlog // 2 and self.closing is None:
            if self._space is None:
                self._space = asyncio.Event()
            self._space.clear()
            await self._space.wait()

    def _space_available(self) -> None:
        if self._space is not None:
            self._space.set()

    def _wake(self) -> None:
        """Something was queued: start the writer, or end its wait for a batch's time (a
        reply flushes the pending batch at once)."""
        if self._writer is None:
            if not self._ended:
                self._writer = asyncio.create_task(self._write_loop(), name=f"writer-{self.id}")
        elif self._woken is not None and not self._woken.done():
            self._woken.set_result(None)

    async def _write_loop(self) -> None:
        """Drain the outbound queue, then end (the next frame queued starts a new writer).

        A writer that raises (a bug, e.g. a frame that cannot be encoded) is logged, counted
        and closes this client 1011 instead of dying silently and leaving it connected with
        nothing more ever written. A closed connection just ends it: the reader sees the close."""
        try:
            await self._drain()
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("session %s: writing to the client failed; closing it 1011", self.id)
            self.app.metrics.fanout_failures_total.inc()
            self.close_soon(1011, INTERNAL_ERROR_REASON)
        finally:
            self._writer = None

    async def _drain(self) -> None:
        """Everything due goes out in one socket write; returns once the queue is empty (with
        no await between seeing it empty and the task ending, so no frame is left behind)."""
        while True:
            wait = self.outbound.wait_time(self.loop.time())
            if wait is None:
                return
            if wait > 0:
                woken = self._woken = self.loop.create_future()
                try:
                    async with asyncio.timeout(wait):
                        await woken
                except TimeoutError:
                    pass
                finally:
                    self._woken = None
                continue
            outgoing = self.outbound.take(self.loop.time())
            await self.ws.send_texts([out.frame for out in outgoing])
            self._count_sent(outgoing)
            del outgoing
            self._space_available()

    def _count_sent(self, outgoing: list[Outgoing]) -> None:
        record = self.app.metrics.record_sent
        for out in outgoing:
            record(out.kind, 1, out.event_ms)
