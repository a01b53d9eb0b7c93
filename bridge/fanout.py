"""Shared upstream streams: one gRPC stream per topic per process, fanned out to subscribers.

A topic is opened by its first subscriber and cancelled when the last one leaves. Each event is
decoded and JSON-encoded once, then handed to the topic's lanes (:mod:`bridge.lanes`): groups of
subscriptions whose frames are identical, which frame it once for all of their members. Ticker,
trade and book topics read ``StreamTickerBatches`` / ``StreamTradeBatches`` /
``StreamBookBatches`` (many events per gRPC message; the one-event methods from a service that
predates them). When the upstream
stream breaks, the topic tells its subscribers ``interrupted`` at once and re-opens with
``resume_from`` = its last seq (with backoff); when the service has replayed what was missed it
says ``resumed`` (``recovered: false`` when the service reported a gap). Clients stay connected.

A stream that stays open but silent for ``--upstream-stall-s`` (no event, no heartbeat: a hung
service, a network that stopped forwarding) counts as broken too (:mod:`bridge.stall`). So does
an unexpected error while fanning a message out (a bug in building an event, a lane, a
subscriber): it is logged with its traceback, counted in ``bridge_topic_failures_total``, and the
topic resumes after the event it was handling, so one bad event cannot stop a topic for good.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import aclosing
from typing import Any, Protocol, cast

import grpc
from google.protobuf.message import Message

from bridge.auth import Identity
from bridge.channels import CHANNELS, Channel
from bridge.errors import UNAVAILABLE, BridgeError, from_grpc
from bridge.events import Event, seq_key
from bridge.lanes import Lane, LaneIndex, LaneKey, Member, contain, lane_key
from bridge.metrics import BridgeMetrics, SentTally
from bridge.stall import StallWatch, StreamStalled, stall_guard
from bridge.subscriptions import Subscription, TopicKey
from bridge.upstream import Upstream
from marketbridge.backoff import Backoff
from marketbridge.metadata import heartbeat_interval
from marketbridge.seq import seq_time_ms

log = logging.getLogger("bridge.fanout")

INITIAL_BACKOFF_S = 0.1
DEFAULT_STALL_S = 3.0   # --upstream-stall-s
FANOUT_FAILURE = grpc.StatusCode.INTERNAL   # what an error of our own ends a stream with
REPLAY_ALL = "0-0"   # resume point of a topic that went live on an empty stream
# Codes that will not change by retrying: subscribers waiting for the topic get the error.
REFUSALS = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
                      grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
                      grpc.StatusCode.UNIMPLEMENTED})


class Subscriber(Member, Protocol):
    """What the fan-out needs from a connection."""

    def stream_status(self, sub: Subscription, status: str, recovered: bool) -> None: ...


class GapMarker:
    """Yielded by :meth:`Fanout.catch_up` when events after ``resume_from`` were trimmed."""


class LiveMarker:
    """Yielded by :meth:`Fanout.catch_up` when the replay reached the service's live point."""


GAP = GapMarker()
LIVE = LiveMarker()


class Topic:
    """One upstream stream and the subscriptions fed from it."""

    def __init__(self, key: TopicKey, identity: Identity, metrics: BridgeMetrics,
                 channel: Channel) -> None:
        self.key = key
        self.channel = channel
        self.identity = identity
        self.metrics = metrics
        self.lanes: dict[LaneKey, Lane] = {}
        self.index = LaneIndex()   # the lanes by the symbols they take
        self.lane_of: dict[Subscription, Lane] = {}   # every member's lane
        self.last_seq: str | None = None
        self.last_key: tuple[int, int] = (0, 0)
        self.live = asyncio.Event()
        # Set when the stream is refused for good before it ever went live (bad request).
        self.failed = asyncio.Event()
        self.failure: BridgeError | None = None
        self.interrupted = False
        # An event may have missed some subscribers (a fan-out failure): the next resume is
        # not ``recovered`` even if the service replays everything after it.
        self.lost = False
        self.task: asyncio.Task[None] | None = None
        # a book topic's own copy, checking every update's checksum (bridge.book_check)
        self.check = channel.self_check(key) if channel.self_check is not None else None
        # an internal topic's listener (the canary, bridge.canary): told each new event's seq
        self.on_event: Callable[[str], None] | None = None
        # ... and told how each of its streams ended (the canary: UNIMPLEMENTED, an older service)
        self.on_status: Callable[[grpc.StatusCode], None] | None = None
        self.lag = metrics.upstream_lag_seconds.labels(channel.name)

    def join(self, sub: Subscription, member: Subscriber) -> None:
        key = lane_key(sub, member.batch_ms, member.codec)
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = Lane(sub, member.batch_ms, self.metrics, member.codec)
            self.index.add(lane)
        lane.members[sub] = member
        self.lane_of[sub] = lane

    def leave(self, sub: Subscription) -> bool:
        """Remove a subscription; False when it was not a member."""
        lane = self.lane_of.pop(sub, None)
        if lane is None:
            return False
        del lane.members[sub]
        if not lane.members:
            lane.close()
            del self.lanes[lane.key]
            self.index.remove(lane)
        return True

    def dispatch(self, seq: str, entity: object) -> None:
        """Encode one event and hand it to every lane (each applies its filters).

        The event counts as taken before it is encoded: if encoding or a lane fails on it, the
        topic resumes after it rather than replaying it into the same failure forever.
        """
        key = seq_key(seq)
        if key <= self.last_key:
            return   # already delivered before a resume
        self.last_seq, self.last_key = seq, key
        if self.on_event is not None:
            self.on_event(seq)
        if self.check is not None and not self.check.verify(entity):  # type: ignore[arg-type]
            self.metrics.book_checksum_failures_total.inc()
        event = self.channel.event(seq, entity)  # type: ignore[arg-type]
        for lane in self.index.lanes_for(event.symbol):
            lane.offer(event)

    def flush(self) -> None:
        """End of an upstream message: plain lanes send what it brought (batched lanes send on
        their own timers)."""
        plain = [lane for lane in self.lanes.values() if not lane.batched]
        if plain:
            tally = SentTally(self.metrics)   # one set of metric increments for all of them
            for lane in plain:
                lane.flush(tally=tally)
            tally.record()

    def notify(self, status: str, recovered: bool) -> None:
        """Tell every set-up subscription; one member that fails cannot keep it from the rest."""
        for sub, lane in list(self.lane_of.items()):
            if sub.setup is None:
                member = cast(Subscriber, lane.members[sub])
                try:
                    member.stream_status(sub, status, recovered)
                except Exception:
                    contain(self.metrics, member, sub, "stream_status")


class Fanout:
    """The topics of one bridge process."""

    def __init__(self, upstream: Upstream, metrics: BridgeMetrics, backoff_max: float,
                 ready_timeout: float, stall_s: float = DEFAULT_STALL_S) -> None:
        self.upstream = upstream
        self.metrics = metrics
        self.backoff_max = backoff_max
        self.ready_timeout = ready_timeout
        self.stall_s = stall_s
        self.channels: Mapping[str, Channel] = CHANNELS   # the table of bridge/channels/
        self.topics: dict[TopicKey, Topic] = {}
        # topics of the bridge's own (the canary): no subscriber, open until close()
        self.internal: dict[TopicKey, Topic] = {}
        self.unbatched: set[str] = set()   # batched methods the service said it does not have
        self.warned_rare_heartbeats = False

    async def attach(self, member: Subscriber, sub: Subscription, identity: Identity) -> Topic:
        """Join (or open) the subscription's topic and wait until its stream is live."""
        topic = self.topics.get(sub.topic)
        if topic is None:
            channel = self.channels[sub.topic[0]]
            topic = self._open(sub.topic, channel.stream_identity(sub.topic, identity))
        topic.join(sub, member)
        if not topic.live.is_set():
            waits = [asyncio.ensure_future(topic.live.wait()),
                     asyncio.ensure_future(topic.failed.wait())]
            try:
                await asyncio.wait(waits, timeout=self.ready_timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()
        if topic.live.is_set():
            return topic
        raise topic.failure or BridgeError(UNAVAILABLE, "Upstream stream unavailable, try again")

    def detach(self, sub: Subscription) -> None:
        """Leave the topic; the last one out cancels the upstream stream."""
        topic = self.topics.get(sub.topic)
        if topic is None or not topic.leave(sub):
            return
        if not topic.lane_of:
            self._close(topic)

    def follow(self, channel: Channel, key: TopicKey, identity: Identity,
               on_event: Callable[[str], None],
               on_status: Callable[[grpc.StatusCode], None] | None = None) -> Topic:
        """Open a topic of the bridge's own: no client can join it, ``on_event`` gets each new
        event's seq (``on_status`` each ended stream's status), and it is resumed and
        stall-watched like any topic until :meth:`close`. Not counted in
        ``bridge_upstream_streams`` (that gauge is the clients' topics)."""
        topic = Topic(key, identity, self.metrics, channel)
        topic.on_event = on_event
        topic.on_status = on_status
        self.internal[key] = topic
        self._start(topic, pause=0.0)
        return topic

    def _open(self, key: TopicKey, identity: Identity) -> Topic:
        topic = Topic(key, identity, self.metrics, self.channels[key[0]])
        self.topics[key] = topic
        self._start(topic, pause=0.0)
        self.metrics.upstream_streams.inc()
        return topic

    def _start(self, topic: Topic, pause: float) -> None:
        task = asyncio.create_task(self._run(topic, pause),
                                   name=f"topic-{topic.key[0]}-{topic.key[1]}")
        task.add_done_callback(lambda done: self._ended(topic, done))
        topic.task = task

    def _ended(self, topic: Topic, task: asyncio.Task[None]) -> None:
        """A topic's task only ends by being cancelled (its topic closed). If it ended any
        other way while its topic is still registered, its subscribers would silently get
        nothing more: say so, count it, and start it again (after a pause, so a task that
        keeps dying cannot spin)."""
        registered = self.topics.get(topic.key) is topic or self.internal.get(topic.key) is topic
        if task.cancelled() or not registered:
            return
        exc = task.exception()
        log.error("topic %s: its task ended (%r); restarting it", topic.key, exc, exc_info=exc)
        self.metrics.topic_failures_total.labels(topic.channel.name, "task").inc()
        self._broke(topic, FANOUT_FAILURE)
        self._start(topic, pause=self.backoff_max)

    def _close(self, topic: Topic) -> None:
        del self.topics[topic.key]
        for lane in topic.lanes.values():
            lane.close()
        if topic.task is not None:
            topic.task.cancel()
        self.metrics.upstream_streams.dec()

    async def _run(self, topic: Topic, pause: float) -> None:
        """Keep the topic's stream open for as long as the topic exists."""
        if pause:
            await asyncio.sleep(pause)
        backoff = Backoff(INITIAL_BACKOFF_S, self.backoff_max)
        while True:
            code, details = await self._stream_contained(topic)
            if topic.on_status is not None:
                topic.on_status(code)
            # A stream that went live starts the backoff again; a fan-out failure does not, so
            # a defect that fails every message is retried (and logged) at most every
            # ``backoff_max`` seconds, not ten times a second.
            if code is not FANOUT_FAILURE and (code is grpc.StatusCode.OK or topic.live.is_set()):
                backoff.reset()
            if topic.last_seq is None and code in REFUSALS:
                topic.failure = from_grpc(code, details)
                topic.failed.set()
            self._broke(topic, code)
            await asyncio.sleep(backoff.delay())

    def _broke(self, topic: Topic, code: grpc.StatusCode) -> None:
        """The topic's stream ended: tell its subscribers once, until it is live again."""
        topic.live.clear()
        if not topic.interrupted and topic.last_seq is not None:
            topic.interrupted = True
            log.warning("topic %s interrupted (%s); resuming after %s", topic.key, code.name,
                        topic.last_seq)
            topic.notify("interrupted", False)

    async def _stream_contained(self, topic: Topic) -> tuple[grpc.StatusCode, str]:
        """:meth:`_stream_once`, with a stall or any unexpected error turned into a status."""
        try:
            return await self._stream_once(topic, topic.last_seq or "")
        except StreamStalled as exc:
            log.warning("topic %s: %s; re-opening its stream", topic.key, exc)
            self.metrics.upstream_stalls_total.labels(topic.channel.name).inc()
            return grpc.StatusCode.DEADLINE_EXCEEDED, str(exc)
        except Exception:
            # A bug in fan-out code: the event being handled may have missed some subscribers.
            log.exception("topic %s: fanning out failed; resuming after %s", topic.key,
                          topic.last_seq)
            self.metrics.topic_failures_total.labels(topic.channel.name, "stream").inc()
            topic.lost = True
            return FANOUT_FAILURE, "fan-out failure"

    async def _stream_once(self, topic: Topic, resume_from: str) -> tuple[grpc.StatusCode, str]:
        """Read one upstream stream until it ends; returns its status code and details.

        Raises :class:`StreamStalled` when it went silent for ``stall_s`` (see
        :mod:`bridge.stall`); the only per-message cost of watching is storing a timestamp.
        """
        channel = topic.channel
        request = channel.stream_request(topic.key, None, resume_from)
        gap = False
        clock = asyncio.get_running_loop().time
        watch = StallWatch(self.stall_s, clock())
        try:
            async with stall_guard(watch), \
                    aclosing(self._messages(channel, request, topic.identity, watch)) as messages:
                async for events in messages:
                    oldest = ""
                    for reply in events:
                        kind = reply.WhichOneof("event")
                        if kind in channel.entity_fields:
                            if not oldest:
                                oldest = reply.seq
                            topic.dispatch(reply.seq, getattr(reply, kind))
                        elif kind == "live":
                            self._went_live(topic, reply.seq, recovered=not gap)
                        elif kind == "gap":
                            gap = True
                        elif kind == "heartbeat":
                            watch.beating = True
                    topic.flush()
                    watch.last = clock()
                    if oldest:   # one observation per message: its oldest event, the most delayed
                        topic.lag.observe(max(0.0, time.time() - seq_time_ms(oldest) / 1000.0))
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
        return grpc.StatusCode.OK, ""

    async def _messages(self, channel: Channel, request: Message, identity: Identity,
                        watch: StallWatch) -> AsyncGenerator[Sequence[Any], None]:
        """The events of one upstream stream, one gRPC message's worth at a time; counts the call.

        A channel with a batched method (tickers, trades, books) uses it: one message per burst of
        events instead of one per event, which is most of the cost of a fast stream on both
        ends. A service that predates it (UNIMPLEMENTED before any message, e.g. mid rolling
        upgrade) gets the one-event-per-message method, and this process stops asking it for
        that batched method (each method on its own: a service may have one and not the other).

        A stream whose headers say it carries heartbeats is watched from its first message on
        (``watch.beating``), not only from its first heartbeat: see :mod:`bridge.stall`.
        """
        batched = channel.batch_method is not None and channel.batch_method not in self.unbatched
        method = channel.batch_method if batched and channel.batch_method else channel.stream_method
        call = self.upstream.stream(method, request, identity)
        received = False
        try:
            async for reply in call:
                if not received:
                    received = True
                    self._arm(watch, heartbeat_interval(await call.initial_metadata()))
                yield reply.events if batched else (reply,)
        except grpc.aio.AioRpcError as exc:
            self.upstream.count(method, exc.code())
            if not (batched and not received and exc.code() is grpc.StatusCode.UNIMPLEMENTED):
                raise
            log.warning("the cache service has no %s (an older version); using %s", method,
                        channel.stream_method)
            self.unbatched.add(method)
        else:
            self.upstream.count(method, grpc.StatusCode.OK)
            return
        finally:
            call.cancel()
        async with aclosing(self._messages(channel, request, identity, watch)) as messages:
            async for events in messages:
                yield events

    def _arm(self, watch: StallWatch, heartbeat_s: float | None) -> None:
        """Watch a stream whose headers announce heartbeats; warn (once) when they are announced
        too rarely for ``--upstream-stall-s``: its idle streams would then be torn down."""
        if heartbeat_s is None:
            return
        watch.beating = True
        if heartbeat_s >= self.stall_s and not self.warned_rare_heartbeats:
            self.warned_rare_heartbeats = True
            log.warning("the cache service sends heartbeats every %g s, not within "
                        "--upstream-stall-s (%g s): idle streams will be re-opened; lower its "
                        "--stream-heartbeat-s or raise --upstream-stall-s", heartbeat_s, self.stall_s)

    def _went_live(self, topic: Topic, seq: str, recovered: bool) -> None:
        if topic.last_seq is None:
            topic.last_seq = seq or REPLAY_ALL
            topic.last_key = seq_key(topic.last_seq)
        topic.live.set()
        recovered = recovered and not topic.lost
        topic.lost = False
        if topic.interrupted:
            topic.interrupted = False
            topic.flush()   # what was replayed goes out before ``resumed``
            log.info("topic %s resumed (recovered=%s)", topic.key, recovered)
            topic.notify("resumed", recovered)

    async def catch_up(self, sub: Subscription, identity: Identity,
                       resume_from: str) -> AsyncIterator[Event | GapMarker | LiveMarker]:
        """Replay a subscription's events after ``resume_from``, with its filters, then live.

        Runs as the client (its own scope), on a stream of its own; it yields :data:`LIVE` at
        the service's live point and carries on with live events, so the caller decides where
        to stop (usually at LIVE, later if it had to discard events held from the shared topic
        meanwhile) and merges with what the topic held.

        Heartbeats are skipped (they carry no seq). A stream that goes silent for ``stall_s``
        (watched as a topic's stream is, :mod:`bridge.stall`) raises UNAVAILABLE like a broken
        one, so the caller's retry re-opens it; only the wait for the service counts, not the
        time the caller spends on what was yielded.
        """
        channel = self.channels[sub.channel]
        request = channel.stream_request(sub.topic, sub, resume_from)
        clock = asyncio.get_running_loop().time
        watch = StallWatch(self.stall_s, clock())
        try:
            async with aclosing(self._messages(channel, request, identity, watch)) as messages:
                while (events := await self._next_message(messages, watch, clock())) is not None:
                    for reply in events:
                        kind = reply.WhichOneof("event")
                        if kind in channel.entity_fields:
                            yield channel.event(reply.seq, getattr(reply, kind))
                        elif kind == "gap":
                            yield GAP
                        elif kind == "live":
                            yield LIVE
                        elif kind == "heartbeat":
                            watch.beating = True
                    watch.last = clock()
        except grpc.aio.AioRpcError as exc:
            raise from_grpc(exc.code(), exc.details()) from None
        except StreamStalled as exc:
            log.warning("catch-up stream of %s: %s", sub.id, exc)
            self.metrics.upstream_stalls_total.labels(channel.name).inc()
            raise from_grpc(grpc.StatusCode.UNAVAILABLE, None) from None

    @staticmethod
    async def _next_message(messages: AsyncGenerator[Sequence[Any], None], watch: StallWatch,
                            now: float) -> Sequence[Any] | None:
        """The next message of a catch-up stream (None at its end), within the watch's bound.

        A timeout per read rather than :func:`stall_guard`: the generator is suspended at each
        ``yield`` while its consumer works, and a guard spanning that would cancel the consumer.
        An unwatched stream (an older service's, once it answered) reads with no timer at all.
        """
        deadline = asyncio.timeout((watch.due_in(now) or 0.0) if watch.watching else None)
        try:
            async with deadline:
                return await anext(messages, None)
        except TimeoutError:
            if not deadline.expired():
                raise
            raise StreamStalled.of(watch) from None

    async def close(self) -> None:
        tasks = [t.task for t in (*self.topics.values(), *self.internal.values()) if t.task is not None]
        for topic in list(self.topics.values()):
            self._close(topic)
        for topic in self.internal.values():
            if topic.task is not None:
                topic.task.cancel()
        self.internal.clear()
        await asyncio.gather(*tasks, return_exceptions=True)
