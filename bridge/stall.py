"""Stall detection for upstream streams: is a stream that stayed open still delivering?

A gRPC stream can stay open while nothing comes through it: a hung (SIGSTOPped, swapping)
cache service, a network that stops forwarding without resetting, a feed stuck on Redis. The
HTTP/2 keepalive only notices a dead *connection*, after 20 + 10 s, and never a stuck feed on a
live one. The service therefore sends a ``heartbeat`` event at least every second while a stream
is healthy and idle (proto/cache/v1/cache.proto, Conventions), and the bridge gives up on a
stream that has heard nothing, events or heartbeats, for ``--upstream-stall-s``.

Which streams are watched (:attr:`StallWatch.watching`):

- from the moment a stream is opened until its first message: any version of the service
  answers a stream request at once (replayed events, or ``live``), so a stream that cannot even
  say that is stuck whatever the version;
- after that, only a stream that carries heartbeats: one whose headers announce them
  (``marketbridge-heartbeat-s``, :mod:`marketbridge.metadata`), so it is watched before its
  first heartbeat could come, or one that has carried a heartbeat. A cache service that
  predates heartbeats never sends any, and its idle streams are healthy: tearing them down every few
  seconds would flood clients with ``interrupted``/``resumed``. The choice is per stream, not
  per process, so a rolling upgrade (or a rollback) with old and new replicas behind one
  ``dns:///`` target never misjudges a stream of the older kind. An unwatched stream that gets
  stuck is still ended by the channel's keepalive (about 30 s).

:class:`StallWatch` decides and does no I/O; :func:`stall_guard` drives it for the shared topic
streams with one timer per stream (not per event); the hot path only stores a timestamp per
gRPC message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class StreamStalled(Exception):
    """Raised out of :func:`stall_guard` when its stream heard nothing for too long."""

    @classmethod
    def of(cls, watch: StallWatch) -> StreamStalled:
        return cls(f"nothing received for {watch.stall_s:g} s")


class StallWatch:
    """The silence of one upstream stream, judged against a bound (sans-I/O).

    Times are the caller's monotonic clock (the event loop's). The reader stores the time of
    each message it finished handling in :attr:`last` (a plain attribute store, the only cost
    per message) and sets :attr:`beating` when the stream's headers announce heartbeats or one comes.
    """

    __slots__ = ("stall_s", "opened", "last", "beating")

    def __init__(self, stall_s: float, opened: float) -> None:
        self.stall_s = stall_s
        self.opened = opened
        self.last: float | None = None   # when the latest message was handled; None: none yet
        self.beating = False             # this stream carries heartbeats (announced, or one came)

    @property
    def watching(self) -> bool:
        """Whether silence means trouble: before the first message, or once heartbeats came."""
        return self.beating or self.last is None

    def due_in(self, now: float) -> float | None:
        """None when the stream is stalled at ``now``; else how long until it could be."""
        if not self.watching:
            return self.stall_s   # look again later: a heartbeat may have armed it by then
        since = self.opened if self.last is None else self.last
        remaining = since + self.stall_s - now
        return None if remaining <= 0 else remaining


@asynccontextmanager
async def stall_guard(watch: StallWatch) -> AsyncIterator[None]:
    """Run the block until it ends, or raise :class:`StreamStalled` once ``watch`` says so.

    One timer checks the watch when the stream could first be stalled and re-arms itself for
    the next such moment; a stall cancels the block through an ``asyncio.timeout`` (so a real
    cancellation of the task is never mistaken for a stall, nor the reverse). Use it around a
    block that only waits on the stream: time spent awaiting anything else would count as
    silence.
    """
    loop = asyncio.get_running_loop()
    handle: asyncio.TimerHandle | None = None
    try:
        async with asyncio.timeout(None) as deadline:
            def check() -> None:
                nonlocal handle
                now = loop.time()
                delay = watch.due_in(now)
                if delay is None:
                    deadline.reschedule(now)
                else:
                    handle = loop.call_later(delay, check)

            handle = loop.call_later(watch.due_in(loop.time()) or 0.0, check)
            try:
                yield
            finally:
                handle.cancel()
    except TimeoutError:
        if deadline.expired():
            raise StreamStalled.of(watch) from None
        raise
