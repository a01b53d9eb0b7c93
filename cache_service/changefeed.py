"""Change feed: one shared Redis Stream reader per stream key, fanned out to subscribers.

A reader reads one key, so on a Redis Cluster it reads one slot, on the node that owns it
(cache_service.pinned routes by key): each shard's streams have readers of their own, and a
shard that fails over interrupts and resumes only its own streams.

Why shared: a thousand bridge streams on BTC/USDT must cost Redis one XREAD, not a thousand.
A reader starts with its first subscriber and stops when its last one leaves.

Resume without gap or duplicate: a subscriber attaches to the live fan-out FIRST (its queue
buffers everything after the reader's position at that moment, its ``start_id``), then
replays ``(resume_from, start_id]`` with XRANGE, then drains its queue. If the stream was
trimmed past ``resume_from`` (XINFO ``max-deleted-entry-id``), a Gap comes first.

A stream never sits silent while it cannot deliver (the contract in cache.proto): when its
reader cannot read Redis it ends every subscriber with Unavailable ("change feed
interrupted: ...") at once on a lost connection, after ``--feed-stall-s`` otherwise (a hung
Redis, error replies, replicas that do not confirm; a watchdog notices: see
cache_service.feed_health), and the client resumes from its last seq. While the reader is
healthy, a subscriber with nothing to send gets a Heartbeat every ``--stream-heartbeat-s``.

With replica acks on (``min_acks`` N > 0) only entries N replicas hold are delivered, like
Kafka's high watermark: an entry a failover could undo is never shown (StreamReader).

A subscriber that falls ``queue_limit`` events behind is ended (Overflow), never skipped:
the client resumes from the last seq it got. A subscriber whose filter fails is ended alone
(Internal); a reader that crashes interrupts its subscribers; both are logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Collection, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError, ResponseError

from cache_service.errors import Internal, ResourceExhausted, Unavailable
from cache_service.feed_health import INTERNAL, FeedPolicy, Interruption, ReaderHealth
from cache_service.metrics import Metrics
from cache_service.pinned import Command, PinnedConnection
from cache_service.redis_url import RedisClient
from cache_service.slots import confirm_key
from cache_service.validation import require_seq
from marketbridge.backoff import Backoff
from marketbridge.seq import format_seq, seq_key

log = logging.getLogger(__name__)

READ_COUNT = 1000
BATCH_MAX = 1000  # entries per batch handed to a subscriber
CONFIRM_TTL_MS = 60_000   # a reader's scratch key (slots.confirm_key) outlives its last use by this
REPLAY_PAGE = 500
BACKOFF_START_S = 0.05
BACKOFF_CAP_S = 2.0
BACKOFF_JITTER = (0.5, 1.0)

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


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Nothing to deliver, and the reader is healthy; ``server_time`` is unix seconds."""

    server_time: float


FeedItem = Entry | Gap | Live | Heartbeat


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entries(rows: Iterable[tuple[bytes, Fields]]) -> list[Entry]:
    """Entries from XREAD/XRANGE rows. Redis ids are well-formed: no regex needed here."""
    entries = []
    for raw_id, fields in rows:
        entry_id = raw_id.decode()
        entries.append(Entry(entry_id, seq_key(entry_id), fields))
    return entries


def _pairs(flat: list[bytes]) -> Fields:
    """``[field, value, field, value, ...]`` (a raw XREAD entry) as a dict, without slicing."""
    values = iter(flat)
    return dict(zip(values, values))


def _read_entries(response: list[list[Any]] | None) -> list[Entry]:
    """The entries of one single-stream XREAD reply (raw: ``[key, [[id, [f, v, ...]], ...]]``)."""
    if not response:
        return []
    ((_stream, rows),) = response
    return _entries((raw_id, _pairs(flat)) for raw_id, flat in rows)


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

    async def take(self, most: int, idle_s: float | None = None) -> list[Entry]:
        """Up to ``most`` pending entries, waiting for at least one (or raising the error);
        ``[]`` when nothing came within ``idle_s`` (one timer per wait, not per entry)."""
        while not self.pending:
            if self.error is not None:
                raise self.error
            self.wake.clear()
            if idle_s is None:
                await self.wake.wait()
                continue
            try:
                async with asyncio.timeout(idle_s):
                    await self.wake.wait()
            except TimeoutError:
                if not self.pending and self.error is None:
                    return []
        return self.take_ready(most)

    def take_ready(self, most: int) -> list[Entry]:
        """Up to ``most`` pending entries without waiting (maybe none)."""
        pending = self.pending
        if len(pending) <= most:
            self.pending = deque()
            return list(pending)
        return [pending.popleft() for _ in range(most)]


class StreamReader:
    """The single XREAD loop of one stream key in this process.

    ``last_id`` is the confirmed position: every entry up to it was handed to the subscribers
    (a new subscriber starts there). ``cursor`` is where the next XREAD starts; with replica
    acks on, the entries between the two are ``unconfirmed``: read, held, never delivered
    until ``WAIT`` says enough replicas have them. Any Redis error drops them and reading
    starts again from ``last_id`` (maybe on another primary after a failover).

    The reader lives until its last subscriber leaves or it is interrupted: then it ends every
    subscriber with Unavailable (they resume with ``resume_from``), calls ``on_end`` (the feed
    forgets it) and stops. It never rides an outage out in silence.
    """

    def __init__(self, redis: RedisClient, key: str, channel: str, policy: FeedPolicy,
                 metrics: Metrics, on_end: Callable[[StreamReader, Interruption], None]) -> None:
        self.redis = redis
        self.key = key
        self.channel = channel
        self.policy = policy
        self.metrics = metrics
        self.on_end = on_end
        self.subscribers: set[Subscription] = set()
        self.last_id: str | None = None
        self.cursor: str | None = None
        self.unconfirmed: list[Entry] = []
        self.health = ReaderHealth(policy, time.monotonic())
        self.interruption: Interruption | None = None
        self.task: asyncio.Task[None] | None = None
        self._confirm = (("SET", confirm_key(key), "", "PX", CONFIRM_TTL_MS),
                         ("WAIT", policy.min_acks, policy.ack_timeout_ms))

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

    def healthy(self, now: float) -> bool:
        """Reading and delivering (a subscriber may send a heartbeat)."""
        return self.interruption is None and self.last_id is not None and self.health.healthy(now)

    def interrupt(self, interruption: Interruption) -> None:
        """End every subscriber with Unavailable and leave the feed (idempotent).

        Entries already handed to a subscriber are still delivered before its error.
        """
        if self.interruption is not None:
            return
        self.interruption = interruption
        log.warning("change feed %s interrupted: %s; ending %d stream(s)", self.key,
                    interruption.cause, len(self.subscribers))
        self.metrics.feed_interruptions.labels(interruption.kind).inc()
        error = Unavailable(f"change feed interrupted: {interruption.cause}")
        for sub in tuple(self.subscribers):
            sub.fail(error)
        self.on_end(self, interruption)

    async def _run(self) -> None:
        """Read on a held connection (see cache_service.pinned) until interrupted or stopped."""
        try:
            async with PinnedConnection(self.redis, own=True) as conn:
                await self._read_until_interrupted(conn)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: say so loudly, and let every subscriber resume
            log.exception("change feed reader %s crashed", self.key)
            self.metrics.feed_failures.labels("reader").inc()
            self.interrupt(Interruption(INTERNAL, f"stream reader failed ({type(exc).__name__})"))

    async def _read_until_interrupted(self, conn: PinnedConnection) -> None:
        backoff = Backoff(BACKOFF_START_S, BACKOFF_CAP_S, jitter=BACKOFF_JITTER)
        while self.interruption is None:
            try:
                if self.last_id is None:
                    await self._position(conn)
                else:
                    await self._read(conn)
            except (RedisError, OSError) as exc:
                self.unconfirmed.clear()      # read again from the confirmed position
                self.cursor = self.last_id
                interruption = self.health.failed(exc)
                if interruption is not None:
                    self.interrupt(interruption)
                    return
                log.warning("change feed %s: %s; retrying", self.key, self.health.last_error)
                await asyncio.sleep(backoff.delay())  # the watchdog ends a retry that lasts too long
                continue
            backoff.reset()

    async def _confirmed(self, conn: PinnedConnection, *commands: Command) -> tuple[list[Any], bool]:
        """``commands``' replies, and whether ``min_acks`` replicas hold everything they saw.

        A SET of a scratch key in the stream's slot (so on its node, on a cluster) is
        replicated after every entry those commands returned, so it sets this connection's
        replication offset past them; the WAIT after it (same connection, same round trip)
        counts the replicas that reached that offset. (A PUBLISH did the same, but a cluster
        sends every PUBLISH to all its nodes over the bus: one per read, per reader.)
        """
        if not self.policy.min_acks:
            return await conn.execute(*commands, key=self.key), True
        *replies, _set, acked = await conn.execute(*commands, *self._confirm, key=self.key)
        return replies, int(acked) >= self.policy.min_acks

    async def _position(self, conn: PinnedConnection) -> None:
        """Start at the newest entry, once it is confirmed (so a replay up to it is too)."""
        (rows,), confirmed = await self._confirmed(conn, ("XREVRANGE", self.key, "+", "-", "COUNT", 1))
        if not confirmed:
            self.health.holding(1)
            return
        self.last_id = self.cursor = _text(rows[0][0]) if rows else "0-0"
        self.health.delivered(time.monotonic())
        for sub in self.subscribers:
            sub.start_id = self.last_id
            sub.wake.set()

    async def _read(self, conn: PinnedConnection) -> None:
        """One XREAD BLOCK from the cursor; hand over what is confirmed (all of it when N = 0)."""
        (response,) = await conn.execute(
            ("XREAD", "COUNT", READ_COUNT, "BLOCK", self.policy.block_ms, "STREAMS", self.key, self.cursor),
            key=self.key)
        entries = _read_entries(response)
        if not self.policy.min_acks:
            if entries:
                self._fan_out(entries)
            self.health.delivered(time.monotonic())
            return
        if entries:
            self.unconfirmed += entries
            self.cursor = entries[-1].id
        if self.unconfirmed:
            _replies, confirmed = await self._confirmed(conn)
            if not confirmed:
                self.health.holding(len(self.unconfirmed))
                return
            entries, self.unconfirmed = self.unconfirmed, []
            self._fan_out(entries)
        self.health.delivered(time.monotonic())

    def _fan_out(self, entries: list[Entry]) -> None:
        """Hand confirmed entries to everyone; a subscriber that fails is ended, alone."""
        self.last_id = self.cursor = entries[-1].id
        for sub in tuple(self.subscribers):
            try:
                sub.offer(entries)
            except Exception as exc:  # a bug in that subscriber's filter: end it, go on
                self._subscriber_failed(sub, exc)

    def _subscriber_failed(self, sub: Subscription, exc: Exception) -> None:
        log.exception("change feed %s: a subscriber failed on entries up to %s; ending its stream",
                      self.key, self.last_id, exc_info=exc)
        self.metrics.feed_failures.labels("subscriber").inc()
        self.subscribers.discard(sub)
        sub.fail(Internal(f"change feed failed for this stream ({type(exc).__name__}); "
                          f"resume_from the last seq received"))


class ChangeFeed:
    """Shared readers for every stream key, and the subscribe-replay-live protocol.

    Also the readers' watchdog (one task while any reader runs, waking every
    ``policy.watch_interval_s``; nothing per read): a reader that has not delivered for longer
    than ``policy.stall_s`` is interrupted. A key whose reader was interrupted less than
    ``stall_s`` ago refuses new subscribers at once (the outage is known; a new reader would
    only find it again, after up to ``stall_s`` of silence on a hung Redis).
    """

    reader_type: type[StreamReader] = StreamReader

    def __init__(self, redis: RedisClient, metrics: Metrics, queue_limit: int, timeout: float,
                 policy: FeedPolicy | None = None) -> None:
        self.redis = redis
        self.metrics = metrics
        self.queue_limit = queue_limit
        self.timeout = timeout
        self.policy = policy or FeedPolicy()
        self.readers: dict[str, StreamReader] = {}
        self.outages: dict[str, tuple[float, Interruption]] = {}
        self._subscriptions: set[Subscription] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def reader_count(self) -> int:
        return len(self.readers)

    def _refuse_during_outage(self, key: str) -> None:
        outage = self.outages.get(key)
        if outage is None:
            return
        at, interruption = outage
        if time.monotonic() - at < self.policy.stall_s:
            raise Unavailable(f"change feed interrupted: {interruption.cause}")
        del self.outages[key]

    def _reader_ended(self, reader: StreamReader, interruption: Interruption) -> None:
        """An interrupted reader leaves at once: nobody may attach to it any more."""
        if self.readers.get(reader.key) is reader:
            del self.readers[reader.key]
        self.outages[reader.key] = (time.monotonic(), interruption)

    async def _attach(self, key: str, channel: str, match: Match) -> tuple[StreamReader, Subscription]:
        if self._closed:
            raise Unavailable("server is shutting down")
        reader = self.readers.get(key)
        if reader is None:
            self._refuse_during_outage(key)
            reader = self.readers[key] = self.reader_type(
                self.redis, key, channel, self.policy, self.metrics, self._reader_ended)
            reader.start()
            self._watch()
        elif reader.last_id is not None and not reader.healthy(time.monotonic()):
            # not reading Redis right now: the watchdog will interrupt it unless it recovers
            raise Unavailable(f"change feed not reading Redis: {reader.health.trouble()}")
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

    def _watch(self) -> None:
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.create_task(self._watch_readers(), name="changefeed-watchdog")

    async def _watch_readers(self) -> None:
        """Interrupt every reader that has not delivered for longer than ``stall_s``."""
        while self.readers:
            await asyncio.sleep(self.policy.watch_interval_s)
            now = time.monotonic()
            for reader in tuple(self.readers.values()):
                interruption = reader.health.overdue(now)
                if interruption is not None:
                    reader.interrupt(interruption)
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
        if info.get("last-generated-id") is not None and seq_key(_text(info["last-generated-id"])) < requested:
            return Gap(resume_from, first_id)
        deleted = info.get("max-deleted-entry-id")
        if deleted is not None and requested < seq_key(_text(deleted)):
            return Gap(resume_from, first_id)
        added, length = info.get("entries-added"), info.get("length", 0)
        trimmed_any = added is None or int(added) > int(length)  # Redis < 7 cannot tell
        before_first = bool(first_id) and requested < seq_key(first_id)
        return Gap(resume_from, first_id) if trimmed_any and before_first else None

    async def _replay(self, key: str, after: str, until: str,
                      match: Match) -> AsyncIterator[list[Entry]]:
        """The retained entries in ``(after, until]`` that match, a page (one XRANGE) at a time."""
        cursor = after
        while seq_key(cursor) < seq_key(until):
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

    async def _start_id(self, sub: Subscription) -> str:
        """The reader's position when ``sub`` attached, once the reader has one; the reader
        (or its watchdog) fails ``sub`` with Unavailable if Redis cannot give one."""
        while sub.start_id is None:
            if sub.error is not None:
                raise sub.error
            sub.wake.clear()
            await sub.wake.wait()
        return sub.start_id

    async def follow_batches(self, key: str, channel: str, match: Match, resume_from: str = "",
                             most: int = BATCH_MAX) -> AsyncGenerator[list[FeedItem], None]:
        """Yield (Gap?) replayed Entries, one Live, then live Entries until cancelled, in lists.

        Each list holds what was ready when it was yielded: replayed pages joined up to
        ``most`` items; the rest of the replay with Live and whatever live entries were already
        pending; then everything the reader delivered since the last list. At most ``most``
        items, never empty; nothing live waits to fill a list.

        While live with nothing to send, a ``[Heartbeat]`` every ``policy.heartbeat_s``, but
        only while the reader is healthy (silence means trouble).

        Raises Unavailable when the change feed cannot read Redis (set-up, replay, or later:
        see the module doc), ResourceExhausted when the subscriber falls behind, Internal when
        its own filter failed.
        """
        requested = require_seq(resume_from) if resume_from else None
        reader, sub = await self._attach(key, channel, match)
        try:
            start_id = await self._start_id(sub)
            last = seq_key(start_id)
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
            idle_s = self.policy.heartbeat_s
            while True:
                if not ready:
                    try:
                        entries = await sub.take(most, idle_s)
                    except Overflow:
                        raise ResourceExhausted(
                            f"subscriber fell more than {self.queue_limit} events behind; "
                            f"resume_from {delivered}"
                        ) from None
                    if not entries:
                        if reader.healthy(time.monotonic()):
                            yield [Heartbeat(time.time())]
                        continue
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
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.wait({self._watchdog}, timeout=5.0)
