"""Change feed: one shared Redis Stream reader per stream key, fanned out to subscribers.

Why shared: a thousand bridge streams on BTC/USDT must cost Redis one XREAD, not a thousand.
A reader starts with its first subscriber and stops when its last one leaves. It reads from
its last id, so when Redis goes away it backs off, reconnects and continues exactly where it
stopped: no event is lost or repeated across a Redis restart, and subscribers' gRPC streams
stay open meanwhile.

Resume without gap or duplicate: a subscriber attaches to the live fan-out FIRST (its queue
buffers everything after the reader's position at that moment, its ``start_id``), then
replays ``(resume_from, start_id]`` with XRANGE, then drains its queue. If the stream was
trimmed past ``resume_from`` (XINFO ``max-deleted-entry-id``), a Gap comes first.

A subscriber that falls ``queue_limit`` events behind is ended (Overflow), never skipped:
the client resumes from the last seq it got.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from cache_service.errors import ResourceExhausted, Unavailable
from cache_service.metrics import Metrics
from cache_service.pinned import PinnedConnection
from cache_service.validation import format_seq, parse_seq

log = logging.getLogger(__name__)

READ_COUNT = 1000
BATCH_MAX = 1000  # entries per batch handed to a subscriber
READ_BLOCK_MS = 1000
REPLAY_PAGE = 500
BACKOFF_START_S = 0.05
BACKOFF_CAP_S = 2.0

Fields = dict[bytes, bytes]
Match = Callable[[Fields], bool]


@dataclass(slots=True)
class Entry:
    """One stream entry: its id (the seq), the id as a comparable pair, its fields.

    Built for every entry read (hot path): slots and no frozen-dataclass setattr detour.
    """

    id: str
    key: tuple[int, int]
    fields: Fields

    @property
    def data(self) -> bytes:
        return self.fields[b"d"]


@dataclass(frozen=True)
class Gap:
    """Events after ``requested`` were trimmed; ``first_retained`` is the oldest kept ("" if none)."""

    requested: str
    first_retained: str


@dataclass(frozen=True)
class Live:
    """Replay is over; ``seq`` is the last id known when the subscriber attached."""

    seq: str


FeedItem = Entry | Gap | Live


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entries(rows: Iterable[tuple[bytes, Fields]]) -> list[Entry]:
    """Entries from XREAD/XRANGE rows. Redis ids are well-formed: no regex needed here."""
    entries = []
    for raw_id, fields in rows:
        entry_id = raw_id.decode()
        ms, _, n = entry_id.partition("-")
        entries.append(Entry(entry_id, (int(ms), int(n)), fields))
    return entries


def _pairs(flat: list[bytes]) -> Fields:
    """``[field, value, field, value, ...]`` (a raw XREAD entry) as a dict, without slicing."""
    values = iter(flat)
    return dict(zip(values, values))


def match_all(fields: Fields) -> bool:
    """The filter of a subscriber that wants every event."""
    return True


def field_filter(**wanted: Collection[str] | str) -> Match:
    """Match entries whose field ``name`` is in the given values (empty/"" = any value)."""
    checks: list[tuple[bytes, frozenset[bytes]]] = []
    for name, values in wanted.items():
        if isinstance(values, str):
            values = [values] if values else []
        if values:
            checks.append((name.encode(), frozenset(v.encode() for v in values)))
    if not checks:
        return match_all
    return lambda fields: all(fields.get(name) in allowed for name, allowed in checks)


class Overflow(Exception):
    """The subscriber's queue is full: it cannot keep up."""


@dataclass(eq=False)
class Subscription:
    """One subscriber's place in a reader's fan-out: a filter and a bounded backlog.

    The reader hands over everything one XREAD returned at once, and the subscriber takes
    everything pending at once: one wake-up per burst, not one per event.
    """

    match: Match
    limit: int
    start_id: str | None = None
    pending: deque[Entry] = field(default_factory=deque)
    error: Exception | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, entries: list[Entry]) -> None:
        """Called by the reader with each batch it read; never blocks the reader.

        More than ``limit`` pending entries ends the subscription (those that fit stay
        deliverable, so the subscriber can resume right after the last one it got).
        """
        if self.error is not None:
            return
        match = self.match
        wanted = entries if match is match_all else [e for e in entries if match(e.fields)]
        if not wanted:
            return
        room = self.limit - len(self.pending)
        if len(wanted) > room:
            self.pending.extend(wanted[:max(0, room)])
            self.fail(Overflow())
            return
        self.pending.extend(wanted)
        self.wake.set()

    def fail(self, error: Exception) -> None:
        """End this subscription: once the pending entries are taken, ``take`` raises ``error``."""
        if self.error is None:
            self.error = error
            self.wake.set()

    async def take(self, most: int) -> list[Entry]:
        """Up to ``most`` pending entries, waiting for at least one (or raising the error)."""
        while not self.pending:
            if self.error is not None:
                raise self.error
            self.wake.clear()
            await self.wake.wait()
        return self.take_ready(most)

    def take_ready(self, most: int) -> list[Entry]:
        """Up to ``most`` pending entries without waiting (maybe none)."""
        pending = self.pending
        if len(pending) <= most:
            self.pending = deque()
            return list(pending)
        return [pending.popleft() for _ in range(most)]


class Backoff:
    """Exponential backoff with jitter, capped, reset after a success."""

    def __init__(self, start: float = BACKOFF_START_S, cap: float = BACKOFF_CAP_S) -> None:
        self.start, self.cap, self.current = start, cap, start

    def next(self) -> float:
        delay = self.current
        self.current = min(self.cap, self.current * 2)
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.current = self.start


class StreamReader:
    """The single XREAD loop of one stream key in this process."""

    def __init__(self, redis: aioredis.Redis, key: str, channel: str) -> None:
        self.redis = redis
        self.key = key
        self.channel = channel
        self.subscribers: set[Subscription] = set()
        self.last_id: str | None = None
        self.ready = asyncio.Event()
        self.connected = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"reader:{self.key}")

    async def stop(self, timeout: float = 5.0) -> None:
        """Cancel the loop and wait for it, but never hang a caller on a stuck cancellation."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.wait({self.task}, timeout=timeout)

    def attach(self, sub: Subscription) -> None:
        if self.last_id is not None:
            sub.start_id = self.last_id
        self.subscribers.add(sub)

    async def _position(self) -> None:
        rows = await self.redis.xrevrange(self.key, count=1)
        self.last_id = _text(rows[0][0]) if rows else "0-0"
        for sub in self.subscribers:
            sub.start_id = self.last_id
        self.ready.set()

    async def _run(self) -> None:
        """XREAD BLOCK in a loop on a held connection (see cache_service.pinned), from the
        last id, through any outage."""
        async with PinnedConnection(self.redis) as conn:
            await self._read_forever(conn)

    async def _read_forever(self, conn: PinnedConnection) -> None:
        backoff = Backoff()
        while True:
            try:
                if self.last_id is None:
                    await self._position()
                (response,) = await conn.execute(
                    ("XREAD", "COUNT", READ_COUNT, "BLOCK", READ_BLOCK_MS, "STREAMS", self.key, self.last_id))
            except (RedisError, OSError) as exc:
                delay = backoff.next()
                if self.connected:
                    log.warning("stream reader %s lost Redis (%s); retrying", self.key, exc)
                self.connected = False
                await asyncio.sleep(delay)
                continue
            if not self.connected:
                log.info("stream reader %s reading from %s", self.key, self.last_id)
            self.connected = True
            backoff.reset()
            for _stream, rows in response or ():
                self._fan_out(rows)

    def _fan_out(self, rows: list[list[Any]]) -> None:
        """Hand one XREAD reply's entries (raw: ``[id, [field, value, ...]]``) to everyone."""
        entries = _entries((raw_id, _pairs(flat)) for raw_id, flat in rows)
        if entries:
            self.last_id = entries[-1].id
            for sub in tuple(self.subscribers):
                sub.offer(entries)


class ChangeFeed:
    """Shared readers for every stream key, and the subscribe-replay-live protocol."""

    def __init__(self, redis: aioredis.Redis, metrics: Metrics, queue_limit: int, timeout: float) -> None:
        self.redis = redis
        self.metrics = metrics
        self.queue_limit = queue_limit
        self.timeout = timeout
        self.readers: dict[str, StreamReader] = {}
        self._subscriptions: set[Subscription] = set()
        self._closed = False

    @property
    def reader_count(self) -> int:
        return len(self.readers)

    async def _attach(self, key: str, channel: str, match: Match) -> tuple[StreamReader, Subscription]:
        if self._closed:
            raise Unavailable("server is shutting down")
        reader = self.readers.get(key)
        if reader is None:
            reader = self.readers[key] = StreamReader(self.redis, key, channel)
            reader.start()
        sub = Subscription(match=match, limit=self.queue_limit)
        reader.attach(sub)
        self._subscriptions.add(sub)
        self.metrics.stream_subscribers.labels(channel).inc()
        return reader, sub

    async def _detach(self, reader: StreamReader, sub: Subscription) -> None:
        self._subscriptions.discard(sub)
        reader.subscribers.discard(sub)
        self.metrics.stream_subscribers.labels(reader.channel).dec()
        if not reader.subscribers and self.readers.get(reader.key) is reader:
            del self.readers[reader.key]
            await reader.stop()

    async def _gap(self, key: str, requested: tuple[int, int], resume_from: str) -> Gap | None:
        """A Gap if events after ``requested`` may be gone; when unsure, say so (safe side).

        Trimming (MAXLEN) removes the oldest entries; XDEL raises ``max-deleted-entry-id``; a
        Redis that lost its data (restart without persistence, failover to a lagging replica)
        has a last id below, or no stream at all behind, an id the client already saw.
        """
        try:
            info = await self.redis.xinfo_stream(key)
        except ResponseError:  # no such key
            return Gap(resume_from, "") if requested > (0, 0) else None
        info = {_text(k): v for k, v in info.items()}
        first = info.get("first-entry")
        first_id = _text(first[0]) if first else ""
        if info.get("last-generated-id") is not None and parse_seq(_text(info["last-generated-id"])) < requested:
            return Gap(resume_from, first_id)
        deleted = info.get("max-deleted-entry-id")
        if deleted is not None and requested < parse_seq(_text(deleted)):
            return Gap(resume_from, first_id)
        added, length = info.get("entries-added"), info.get("length", 0)
        trimmed_any = added is None or int(added) > int(length)  # Redis < 7 cannot tell
        before_first = bool(first_id) and requested < parse_seq(first_id)
        return Gap(resume_from, first_id) if trimmed_any and before_first else None

    async def _replay(self, key: str, after: str, until: str,
                      match: Match) -> AsyncIterator[list[Entry]]:
        """The retained entries in ``(after, until]`` that match, a page (one XRANGE) at a time."""
        cursor = after
        while parse_seq(cursor) < parse_seq(until):
            rows = await self.redis.xrange(key, min=f"({cursor}", max=until, count=REPLAY_PAGE)
            if not rows:
                return
            page = _entries(rows)
            cursor = page[-1].id
            wanted = page if match is match_all else [e for e in page if match(e.fields)]
            if wanted:
                yield wanted
            if len(rows) < REPLAY_PAGE:
                return

    async def _start_id(self, reader: StreamReader, sub: Subscription) -> str:
        try:
            await asyncio.wait_for(reader.ready.wait(), self.timeout)
        except TimeoutError:
            raise Unavailable(f"Redis did not answer within {self.timeout:g}s") from None
        assert sub.start_id is not None
        return sub.start_id

    async def follow_batches(self, key: str, channel: str, match: Match, resume_from: str = "",
                             most: int = BATCH_MAX) -> AsyncGenerator[list[FeedItem], None]:
        """Yield (Gap?) replayed Entries, one Live, then live Entries until cancelled, in lists.

        Each list holds what was ready when it was yielded: replayed pages joined up to
        ``most`` items; the rest of the replay with Live and whatever live entries were already
        pending; then everything the reader delivered since the last list. At most ``most``
        items, never empty; nothing live waits to fill a list.

        Raises Unavailable when Redis cannot be reached to set up the subscription (after
        that, outages are ridden out), ResourceExhausted when the subscriber falls behind.
        """
        requested = parse_seq(resume_from) if resume_from else None
        reader, sub = await self._attach(key, channel, match)
        try:
            start_id = await self._start_id(reader, sub)
            last = parse_seq(start_id)
            ready: list[FeedItem] = []
            if requested is not None:
                try:
                    gap = await self._gap(key, requested, format_seq(requested))
                    if gap is not None:
                        ready.append(gap)
                    async for page in self._replay(key, format_seq(requested), start_id, match):
                        ready += page
                        while len(ready) >= most:
                            yield ready[:most]
                            ready = ready[most:]
                except RedisError as exc:
                    raise Unavailable(f"Redis unavailable during replay: {exc}") from None
                last = max(last, requested)
            ready.append(Live(start_id))
            delivered = start_id
            while True:
                if not ready:
                    try:
                        entries = await sub.take(most)
                    except Overflow:
                        raise ResourceExhausted(
                            f"subscriber fell more than {self.queue_limit} events behind; "
                            f"resume_from {delivered}"
                        ) from None
                else:  # something to send already: add what is pending, without waiting
                    entries = sub.take_ready(most - len(ready)) if len(ready) < most else []
                if entries and entries[0].key <= last:  # replayed already (attached before it ended)
                    entries = [e for e in entries if e.key > last]
                if entries:
                    last = entries[-1].key
                    delivered = entries[-1].id
                    ready += entries
                if ready:
                    yield ready
                    ready = []
        finally:
            await self._detach(reader, sub)

    async def follow(self, key: str, channel: str, match: Match,
                     resume_from: str = "") -> AsyncGenerator[FeedItem, None]:
        """``follow_batches``, one item at a time."""
        async with aclosing(self.follow_batches(key, channel, match, resume_from)) as batches:
            async for batch in batches:
                for item in batch:
                    yield item

    async def close(self) -> None:
        """End every subscription (clients reconnect elsewhere) and stop the readers."""
        self._closed = True
        for sub in tuple(self._subscriptions):
            sub.fail(Unavailable("server is shutting down"))
        for reader in tuple(self.readers.values()):
            await reader.stop()
        self.readers.clear()
