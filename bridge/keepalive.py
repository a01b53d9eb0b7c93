"""WebSocket keepalive pings for every connection from one task, not one task per connection.

``websockets`` pings each connection every ``ping_interval`` from a task of its own, and fails
it with 1011 ``keepalive ping timeout`` when the pong is ``ping_timeout`` late. On an idle
connection that task (its coroutine, a sleep's coroutine, future and timer) was about 1.2 KB
of the connection's memory (docs/benchmarks.md, memory per connection). The bridge serves with
``ping_interval=None`` and runs this instead: every ``interval / TICKS`` seconds it pings the
next share of its connections, so each is pinged once per interval and 50,000 pings are spread
over the interval rather than sent in one loop turn, and it fails those whose pong is
``timeout`` late, as ``websockets`` would. The pong is ``websockets``' to match (its
``pong_waiters``, which also measure ``latency``); this only remembers which ping is awaited,
and only while it is.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Collection

from bridge.wsconnection import BatchingConnection

TICKS = 20   # slices of an interval: a connection's ping comes 0-1 slice late, its timeout too


class KeepAlive:
    """Pings ``connections()`` round after round, one round per ``interval`` seconds."""

    def __init__(self, connections: Callable[[], Collection[BatchingConnection]],
                 interval: float, timeout: float) -> None:
        self.connections = connections
        self.interval = interval
        self.timeout = timeout
        self._round: list[BatchingConnection] = []   # this round's connections not pinged yet
        self._share = 0                              # how many of them each slice pings
        self._awaited: dict[BatchingConnection, tuple[bytes, float]] = {}   # ping sent at

    async def run(self) -> None:
        """Forever (cancel it): one slice every ``interval / TICKS`` seconds."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval / TICKS)
            self.tick(loop.time())

    def tick(self, now: float) -> None:
        """One slice: settle the pings in flight, then ping this slice's share."""
        for ws, (data, sent) in list(self._awaited.items()):
            if data not in ws.pong_waiters:   # answered (or the connection ended)
                del self._awaited[ws]
            elif now - sent >= self.timeout:
                del self._awaited[ws]
                ws.fail_keepalive()
        if not self._round:
            self._round = list(self.connections())
            self._share = math.ceil(len(self._round) / TICKS)
        for _ in range(min(self._share, len(self._round))):
            ws = self._round.pop()
            if ws not in self._awaited:
                data = ws.keepalive_ping()
                if data is not None:
                    self._awaited[ws] = (data, now)
