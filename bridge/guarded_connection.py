"""The asyncio side of the handshake bounds (bridge/handshake_guard.py): a server connection
that takes a handshake slot at accept, measures its request head before ``websockets`` parses
it, and reports how its handshake ended.

``websockets`` builds every connection itself (``create_connection=`` is a class, called with
its own arguments), so the bridge's :class:`Handshakes` reaches its connections as an attribute
of a subclass made for it (:meth:`Handshakes.connection_class`).

- Turned away at accept (``busy``): the 503 is written before anything is read and the socket
  closed; ``websockets`` never learns of the connection (no task, no handler, no log record),
  so a flood beyond the bound costs an accept, a write and a close each.
- Request head too large: 431 and a half-close; further bytes are read and dropped (not left
  unread, which would turn the close into a reset that can lose the 431 on its way) until the
  client closes or the handshake's deadline ends it. The slot is held until then: a refused
  connection is still a socket, and the bound is on sockets.
- Timed out: at its :func:`~bridge.handshake_guard.drop_at` deadline the handshake is given
  up and the socket aborted (``websockets`` then sees a handshake that did not open, and logs
  nothing); ``websockets``' ``open_timeout``, the same timeout from a moment later, is the
  backstop, and a cancellation by it is counted as a timeout too.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, ClassVar, cast

from websockets.protocol import State

from bridge.config import BridgeConfig
from bridge.handshake_guard import (BUSY, BUSY_RESPONSE, HEADER_TOO_LARGE,
                                    HEADER_TOO_LARGE_RESPONSE, REASONS, TIMEOUT, HandshakeGuard,
                                    RequestHead, RequestLimits, drop_at)
from bridge.metrics import BridgeMetrics
from bridge.wsconnection import BatchingConnection
from marketbridge.log_throttle import Throttle

log = logging.getLogger("bridge.handshakes")
LOG_INTERVAL_S = 10.0   # at most one line per reason this often (marketbridge.log_throttle.Throttle)


class Handshakes:
    """One bridge's handshake bounds: the guard, the head limits, the counters and the log."""

    def __init__(self, config: BridgeConfig, metrics: BridgeMetrics) -> None:
        self.guard = HandshakeGuard(config.max_handshakes)
        self.limits = RequestLimits(config.max_header_bytes)
        self.timeout_s = config.handshake_timeout_s
        self.throttle = Throttle(LOG_INTERVAL_S)
        self.rejected = {reason: metrics.handshakes_rejected_total.labels(reason)
                         for reason in REASONS}   # every series shown from the start, at 0
        metrics.handshakes_in_progress.set_function(lambda: self.guard.in_progress)
        self.lines = {
            BUSY: (logging.WARNING, "handshakes refused (busy: %d in progress, the "
                   "--max-handshakes bound): %d since the last such line", config.max_handshakes),
            HEADER_TOO_LARGE: (logging.INFO, "handshakes refused (header_too_large: a request "
                               "head over --max-header-bytes %d or a line or header-count limit): "
                               "%d since the last such line", config.max_header_bytes),
            TIMEOUT: (logging.INFO, "handshakes dropped (timeout: not complete within "
                      "--handshake-timeout-s %g): %d since the last such line", self.timeout_s),
        }

    def refused(self, reason: str) -> None:
        """Count one refused or dropped handshake; log it unless a line for its reason went out
        less than ``LOG_INTERVAL_S`` ago (that line's successor will carry it)."""
        self.rejected[reason].inc()
        count = self.throttle.note(reason, time.monotonic())
        if count:
            level, message, bound = self.lines[reason]
            log.log(level, message, bound, count)

    def connection_class(self) -> type[GuardedConnection]:
        """A :class:`GuardedConnection` class bound to these handshakes, for ``serve``."""
        return type("GuardedConnection", (GuardedConnection,), {"handshakes": self})


class GuardedConnection(BatchingConnection):
    """A :class:`BatchingConnection` whose handshake is bounded by :attr:`handshakes`."""

    handshakes: ClassVar[Handshakes]
    __slots__ = ("_slot", "_turned_away", "_dropping", "_head", "_accepted_at", "_deadline")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slot = False            # holds one of the guard's slots
        self._turned_away = False     # refused at accept: websockets never saw this connection
        self._dropping = False        # refused: what the client sends now is read and dropped
        self._head: RequestHead | None = None   # the request head being measured, until complete
        self._accepted_at = 0.0
        self._deadline = 0.0          # loop time the handshake is dropped at if not complete
        super().__init__(*args, **kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self.handshakes.guard.admit():
            self._turned_away = self._dropping = True
            self.handshakes.refused(BUSY)
            tcp = cast(asyncio.Transport, transport)
            tcp.write(BUSY_RESPONSE)
            tcp.close()
            return
        self._slot = True
        self._head = RequestHead(self.handshakes.limits)
        self._accepted_at = asyncio.get_running_loop().time()
        self._deadline = drop_at(self._accepted_at, self.handshakes.timeout_s, random.random())
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._dropping:
            return
        head = self._head
        if head is not None:
            if head.feed(data):
                return self._refuse_head()
            if head.complete:
                self._head = None
        super().data_received(data)

    def _refuse_head(self) -> None:
        self._dropping, self._head = True, None
        self.handshakes.refused(HEADER_TOO_LARGE)
        self.transport.write(HEADER_TOO_LARGE_RESPONSE)
        if self.transport.can_write_eof():
            self.transport.write_eof()

    def eof_received(self) -> None:
        if not self._turned_away:
            super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._turned_away:
            return
        self._release()
        super().connection_lost(exc)

    async def handshake(self, *args: Any, **kwargs: Any) -> None:
        """``websockets``' handshake within this connection's deadline, then the slot back.

        At the deadline it returns without the connection open: ``websockets`` aborts the
        socket and returns, as for a refused handshake, with nothing logged."""
        try:
            async with asyncio.timeout_at(self._deadline):
                await super().handshake(*args, **kwargs)
        except TimeoutError:
            if self.protocol.state is not State.OPEN:   # not opened at the last moment
                self._timed_out()
        except asyncio.CancelledError:   # websockets' open_timeout (or the server stopping)
            if asyncio.get_running_loop().time() - self._accepted_at >= self.handshakes.timeout_s:
                self._timed_out()
            raise
        finally:
            self._release()

    def _timed_out(self) -> None:
        if not self._dropping:   # a refused head was counted as such
            self.handshakes.refused(TIMEOUT)
        self._dropping = True
        self.transport.abort()

    def _release(self) -> None:
        if self._slot:
            self._slot = False
            self.handshakes.guard.release()
