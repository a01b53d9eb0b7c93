"""Lanes: the subscriptions of a topic whose frames are byte-for-byte the same, built once.

Subscription ids are numbered per connection (``tickers-1``), so every client that subscribes
to the same exchange with the same filters and the same ``batch_ms`` is sent identical frames.
Profiles showed the bridge spending 7-12 us of CPU per update *per client* (filter, frame text,
queue entry, a batch built per client, one histogram observation per update), which capped one
process near 100,000 updates/s. A lane does that work once per lane instead: each event is
matched once, each flush is joined into JSON and framed as WebSocket bytes once, and every member
that keeps up gets the same bytes in one transport write.

A member that does not keep up at that moment (subscription still being set up, frames already
queued, socket buffer over its high-water mark, closing) takes the events one by one through its
own queue instead, where conflation and the slow-consumer rule apply exactly as before: sharing
changes what a client costs, never what it receives.

A plain lane (no ``batch_ms``) flushes after each upstream message; a batched one at the next
multiple of ``batch_ms`` on the event loop's clock (:func:`flush_time`: at most N ms after the
first update in a batch, docs/protocol.md). All batched lanes of one ``batch_ms`` flush together
(:class:`FlushGrid`): a member is visited once per window with the frames of every lane it is
in, so a client of 50 book topics costs one check and one socket write per window, not 50.
Events a
batched lane hands to a member one by one are due at once in that member's queue: they have
waited for their batch already.

A member whose delivery raises (a bug in one connection's state) must not take the lane, the
topic or the other members down with it: :func:`contain` logs it with its traceback, counts it
in ``bridge_fanout_failures_total`` and fails that member alone (:meth:`Member.fail`: its
subscription is detached and its client closed 1011). One ``try`` per member per flush, nothing
per event, so the shared path costs what it did.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bridge.codec import batch_frame
from bridge.events import Event
from bridge.metrics import BridgeMetrics, SentTally
from bridge.subscriptions import Subscription
from bridge.compression import FrameCodec

log = logging.getLogger("bridge.lanes")

LaneKey = tuple[str, frozenset[str] | None, frozenset[str] | None, int | None, FrameCodec | None]


class Member(Protocol):
    """What a lane needs from a connection."""

    batch_ms: int | None
    codec: FrameCodec | None   # how its shared frames are built; None: it takes none

    def deliver(self, sub: Subscription, event: Event) -> None: ...
    def write_shared(self, sub: Subscription, data: bytes, last: Event) -> bool: ...
    def write_shared_all(self, shares: Sequence[Share]) -> bool: ...
    def fail(self, sub: Subscription) -> None: ...


@dataclass(slots=True)
class Share:
    """One lane's flush for one of its members: the shared bytes, and the events they carry
    (delivered one by one instead if the member cannot take the bytes now)."""

    lane: Lane
    sub: Subscription
    data: bytes
    events: list[Event]


def contain(metrics: BridgeMetrics, member: Member, sub: Subscription, where: str) -> None:
    """Call from an ``except`` block around a call into one member: log the failure with its
    traceback, count it, and fail that member alone, so whoever called it carries on."""
    log.exception("fan-out: %s for subscription %s raised; closing that client 1011", where,
                  sub.id)
    metrics.fanout_failures_total.inc()
    try:
        member.fail(sub)
    except Exception:
        log.exception("fan-out: failing subscription %s raised too", sub.id)


def flush_time(now: float, batch_s: float) -> float:
    """The next multiple of ``batch_s`` after ``now`` (loop time): when a batched lane flushes.

    Every lane with one ``batch_ms`` flushes on the same grid, so the lanes of a client's many
    topics (50 books, say) fire in the same event-loop turn, and the connection joins their
    frames into one socket write (:meth:`bridge.wsconnection.BatchingConnection.write_frames`)
    instead of one per topic: a batch still waits at most ``batch_ms`` after its first update."""
    return (math.floor(now / batch_s) + 1) * batch_s


class FlushGrid:
    """The batched lanes of one ``batch_ms`` on one event loop, flushed together at each grid
    time (:func:`flush_time`).

    A client of 50 books is a member of 50 lanes (a book topic is one book). Flushed one by
    one, they made 50 ``write_shared`` calls per member per window, each checking the
    connection and its socket buffer anew: profiled, most of the bridge's CPU for such
    clients. Flushed together, each member gets one :meth:`Member.write_shared_all` per window
    with the frames of all its lanes."""

    def __init__(self, batch_s: float) -> None:
        self.batch_s = batch_s
        self.due: list[Lane] = []
        self.timer: asyncio.TimerHandle | None = None

    def add(self, lane: Lane) -> asyncio.TimerHandle:
        """Flush ``lane`` at the next grid time; the timer that will."""
        self.due.append(lane)
        if self.timer is None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_at(flush_time(loop.time(), self.batch_s), self.flush)
        return self.timer

    def discard(self, lane: Lane) -> None:
        if lane in self.due:
            self.due.remove(lane)

    def flush(self) -> None:
        """Flush every due lane: first gather each member's shares, then write them."""
        self.timer = None
        lanes, self.due = self.due, []
        shares: dict[Member, list[Share]] = {}
        tally = SentTally(lanes[0].metrics) if lanes else None
        for lane in lanes:
            lane.flush(shares, tally)
        sent: dict[Lane, tuple[list[Event], int]] = {}   # per lane: its flush, members written
        for member, items in shares.items():
            try:
                if member.write_shared_all(items):
                    for share in items:
                        count = sent.get(share.lane, (share.events, 0))[1]
                        sent[share.lane] = (share.events, count + 1)
                    continue
                for share in items:
                    share.lane.deliver(member, share.sub, share.events)
            except Exception:
                for share in items:
                    contain(share.lane.metrics, member, share.sub, "lane flush")
        for lane, (events, count) in sent.items():
            lane.record(events, count, tally)
        if tally is not None:
            tally.record()


_GRIDS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, FlushGrid]] = (
    weakref.WeakKeyDictionary())


def grid_of(batch_s: float) -> FlushGrid:
    """The running loop's grid of ``batch_s`` (a bridge process has one loop)."""
    grids = _GRIDS.setdefault(asyncio.get_running_loop(), {})
    grid = grids.get(batch_s)
    if grid is None:
        grid = grids[batch_s] = FlushGrid(batch_s)
    return grid


class LaneIndex:
    """A topic's lanes by the symbols their filters take, so that an event is offered only to
    the lanes that may want it (and those without a symbol filter), not to every lane of the
    topic: 5,000 clients each following their own 5 symbols of an exchange are 5,000 lanes of
    one topic, and a tick concerns about 50 of them."""

    def __init__(self) -> None:
        self.unfiltered: dict[Lane, None] = {}          # ordered sets
        self.by_symbol: dict[str, dict[Lane, None]] = {}

    def add(self, lane: Lane) -> None:
        if lane.symbols is None:
            self.unfiltered[lane] = None
            return
        for symbol in lane.symbols:
            self.by_symbol.setdefault(symbol, {})[lane] = None

    def remove(self, lane: Lane) -> None:
        if lane.symbols is None:
            self.unfiltered.pop(lane, None)
            return
        for symbol in lane.symbols:
            lanes = self.by_symbol.get(symbol)
            if lanes is not None:
                lanes.pop(lane, None)
                if not lanes:
                    del self.by_symbol[symbol]

    def lanes_for(self, symbol: str) -> list[Lane]:
        """The lanes an event of ``symbol`` may go to (each still applies its filters)."""
        filtered = self.by_symbol.get(symbol)
        return [*self.unfiltered, *filtered] if filtered else [*self.unfiltered]


def lane_key(sub: Subscription, batch_ms: int | None, codec: FrameCodec | None) -> LaneKey:
    """Everything a frame's bytes depend on: subscription id and action (the prefix), filters,
    whether updates go out one per frame or batched (and how often), and the connection's
    compression (:mod:`bridge.compression`)."""
    return (sub.prefix, sub.symbols, sub.bot_ids, batch_ms, codec)


class Lane:
    """Members whose frames are identical, and the events waiting for the next flush."""

    def __init__(self, sub: Subscription, batch_ms: int | None, metrics: BridgeMetrics,
                 codec: FrameCodec | None) -> None:
        self.key = lane_key(sub, batch_ms, codec)
        self.codec = codec
        self.prefix = sub.prefix
        self.symbols = sub.symbols
        self.bot_ids = sub.bot_ids
        self.batch_s = batch_ms / 1000.0 if batch_ms else None
        self.metrics = metrics
        self.members: dict[Subscription, Member] = {}
        self.pending: list[Event] = []
        self.timer: asyncio.TimerHandle | None = None   # this lane's flush is due (its grid's)

    @property
    def batched(self) -> bool:
        return self.batch_s is not None

    def offer(self, event: Event) -> None:
        """Keep an event of the topic if the lane's filters let it through."""
        if self.symbols is not None and event.symbol not in self.symbols:
            return
        if self.bot_ids is not None and event.bot_id not in self.bot_ids:
            return
        self.pending.append(event)
        if self.batch_s is not None and self.timer is None:
            self.timer = grid_of(self.batch_s).add(self)

    def flush(self, shares: dict[Member, list[Share]] | None = None,
              tally: SentTally | None = None) -> None:
        """Send what is pending: shared bytes to members keeping up, one by one to the rest.

        With ``shares`` (a :class:`FlushGrid`'s window) the shared bytes of each member that
        may take them are added there for the grid to write, instead of written here; with
        ``tally``, what is sent is counted there (:class:`bridge.metrics.SentTally`).

        A member that raises is contained (:func:`contain`); one whose shared frames cannot be
        built (logged and counted too) makes every member take the events one by one, so only
        the members that fail on them are closed."""
        self.timer = None
        events, self.pending = self.pending, []
        if not events or not self.members:
            return
        data = self._shared_bytes(events) if self.codec is not None else None
        first, last = events[0].key, events[-1]
        shared = 0
        for sub, member in list(self.members.items()):
            try:
                if data is not None and sub.last_key < first:
                    if shares is not None and sub.setup is None:
                        shares.setdefault(member, []).append(Share(self, sub, data, events))
                        continue
                    if shares is None and member.write_shared(sub, data, last):
                        shared += 1
                        continue
                self.deliver(member, sub, events)
            except Exception:
                contain(self.metrics, member, sub, "lane flush")
        self.record(events, shared, tally)

    def deliver(self, member: Member, sub: Subscription, events: list[Event]) -> None:
        """The events one by one, through the member's own queue."""
        for event in events:
            if event.key > sub.last_key:   # a resume's replay may have sent it already
                member.deliver(sub, event)

    def record(self, events: list[Event], shared: int, tally: SentTally | None = None) -> None:
        """Count a flush's shared frames, written to ``shared`` members (into ``tally``, or
        recorded now)."""
        if shared:
            kind, frames = ("batch", 1) if self.batched else ("update", len(events))
            times = [e.time_ms for e in events]
            if tally is None:
                self.metrics.record_sent(kind, frames * shared, times, shared)
            else:
                tally.add(kind, frames * shared, times, shared)

    def _shared_bytes(self, events: list[Event]) -> bytes | None:
        """:meth:`encode`, or None (logged, counted) when that raises."""
        try:
            return self.encode(events)
        except Exception:
            log.exception("fan-out: a lane of %s could not frame %d events (%s..%s)",
                          self.prefix, len(events), events[0].seq, events[-1].seq)
            self.metrics.fanout_failures_total.inc()
            return None

    def encode(self, events: list[Event]) -> bytes:
        """The WebSocket bytes of one flush: one batch frame, or one update frame per event,
        compressed once for every member when the lane's codec says so."""
        assert self.codec is not None
        updates = [self.prefix + event.tail for event in events]
        data, raw_size = self.codec.sized_frames([batch_frame(updates)] if self.batched else updates)
        if self.codec.window_bits is not None:
            self.metrics.compressed(raw_size, len(data))
        return data

    def close(self) -> None:
        """The last member left: pending events have nobody to go to."""
        if self.timer is not None and self.batch_s is not None:
            grid_of(self.batch_s).discard(self)
        self.timer = None
        self.pending.clear()
