"""Shared upstream streams: one gRPC stream per topic per process, fanned out to subscribers.

A topic is opened by its first subscriber and cancelled when the last one leaves. Each event is
decoded and JSON-encoded once, then handed to the topic's lanes (:mod:`bridge.lanes`): groups of
subscriptions whose frames are identical, which frame it once for all of their members. Ticker
topics read ``StreamTickerBatches`` (many events per gRPC message; ``StreamTickers`` from a
service that predates it). When the upstream
stream breaks, the topic tells its subscribers ``interrupted`` at once and re-opens with
``resume_from`` = its last seq (with backoff); when the service has replayed what was missed it
says ``resumed`` (``recovered: false`` when the service reported a gap). Clients stay connected.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any, Protocol, cast

import grpc
from google.protobuf.message import Message

from bridge.auth import Identity
from bridge.channels import CHANNELS, Channel
from bridge.errors import UNAVAILABLE, BridgeError, from_grpc
from bridge.events import Event, seq_key
from bridge.lanes import Lane, LaneKey, Member, lane_key
from bridge.metrics import BridgeMetrics
from bridge.subscriptions import Subscription, TopicKey
from bridge.upstream import Upstream

log = logging.getLogger("bridge.fanout")

INITIAL_BACKOFF_S = 0.1
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


def topic_identity(topic: TopicKey, identity: Identity) -> Identity:
    """Who the topic's stream runs as: the user, or an admin for the all-users topic."""
    if topic[0] == "tickers":
        return identity
    if topic[1] == "*":
        return Identity(identity.user_id, frozenset({"admin"}))
    return Identity(topic[1])


class Topic:
    """One upstream stream and the subscriptions fed from it."""

    def __init__(self, key: TopicKey, identity: Identity, metrics: BridgeMetrics) -> None:
        self.key = key
        self.channel: Channel = CHANNELS[key[0]]
        self.identity = identity
        self.metrics = metrics
        self.lanes: dict[LaneKey, Lane] = {}
        self.lane_of: dict[Subscription, Lane] = {}   # every member's lane
        self.last_seq: str | None = None
        self.last_key: tuple[int, int] = (0, 0)
        self.live = asyncio.Event()
        # Set when the stream is refused for good before it ever went live (bad request).
        self.failed = asyncio.Event()
        self.failure: BridgeError | None = None
        self.interrupted = False
        self.task: asyncio.Task[None] | None = None

    def join(self, sub: Subscription, member: Subscriber) -> None:
        key = lane_key(sub, member.batch_ms)
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = Lane(sub, member.batch_ms, self.metrics)
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
        return True

    def dispatch(self, seq: str, entity: object) -> None:
        """Encode one event and hand it to every lane (each applies its filters)."""
        key = seq_key(seq)
        if key <= self.last_key:
            return   # already delivered before a resume
        event = self.channel.event(seq, entity)  # type: ignore[arg-type]
        self.last_seq, self.last_key = seq, key
        for lane in list(self.lanes.values()):
            lane.offer(event)

    def flush(self) -> None:
        """End of an upstream message: plain lanes send what it brought (batched lanes send on
        their own timers)."""
        for lane in list(self.lanes.values()):
            if not lane.batched:
                lane.flush()

    def notify(self, status: str, recovered: bool) -> None:
        for sub, lane in list(self.lane_of.items()):
            if sub.held is None:
                cast(Subscriber, lane.members[sub]).stream_status(sub, status, recovered)


class Fanout:
    """The topics of one bridge process."""

    def __init__(self, upstream: Upstream, metrics: BridgeMetrics, backoff_max: float,
                 ready_timeout: float) -> None:
        self.upstream = upstream
        self.metrics = metrics
        self.backoff_max = backoff_max
        self.ready_timeout = ready_timeout
        self.topics: dict[TopicKey, Topic] = {}
        self.batching = True   # False once the service said it has no batched streams

    async def attach(self, member: Subscriber, sub: Subscription, identity: Identity) -> Topic:
        """Join (or open) the subscription's topic and wait until its stream is live."""
        topic = self.topics.get(sub.topic)
        if topic is None:
            topic = self._open(sub.topic, topic_identity(sub.topic, identity))
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

    def _open(self, key: TopicKey, identity: Identity) -> Topic:
        topic = Topic(key, identity, self.metrics)
        self.topics[key] = topic
        topic.task = asyncio.create_task(self._run(topic), name=f"topic-{key[0]}-{key[1]}")
        self.metrics.upstream_streams.inc()
        return topic

    def _close(self, topic: Topic) -> None:
        del self.topics[topic.key]
        for lane in topic.lanes.values():
            lane.close()
        if topic.task is not None:
            topic.task.cancel()
        self.metrics.upstream_streams.dec()

    async def _run(self, topic: Topic) -> None:
        """Keep the topic's stream open for as long as the topic exists."""
        delay = INITIAL_BACKOFF_S
        while True:
            code, details = await self._stream_once(topic, topic.last_seq or "")
            if code is grpc.StatusCode.OK or topic.live.is_set():
                delay = INITIAL_BACKOFF_S
            topic.live.clear()
            if topic.last_seq is None and code in REFUSALS:
                topic.failure = from_grpc(code, details)
                topic.failed.set()
            if not topic.interrupted and topic.last_seq is not None:
                topic.interrupted = True
                log.warning("topic %s interrupted (%s); resuming after %s", topic.key, code.name,
                            topic.last_seq)
                topic.notify("interrupted", False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_max)

    async def _stream_once(self, topic: Topic, resume_from: str) -> tuple[grpc.StatusCode, str]:
        """Read one upstream stream until it ends; returns its status code and details."""
        channel = topic.channel
        request = channel.stream_request(topic.key, None, resume_from)
        gap = False
        try:
            async with aclosing(self._messages(channel, request, topic.identity)) as messages:
                async for events in messages:
                    for reply in events:
                        kind = reply.WhichOneof("event")
                        if kind == channel.entity_field:
                            topic.dispatch(reply.seq, getattr(reply, kind))
                        elif kind == "live":
                            self._went_live(topic, reply.seq, recovered=not gap)
                        elif kind == "gap":
                            gap = True
                    topic.flush()
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
        return grpc.StatusCode.OK, ""

    async def _messages(self, channel: Channel, request: Message,
                        identity: Identity) -> AsyncGenerator[Sequence[Any], None]:
        """The events of one upstream stream, one gRPC message's worth at a time; counts the call.

        A channel with a batched method (tickers) uses it: one message per burst of events
        instead of one per event, which is most of the cost of a fast stream on both ends. A
        service that predates it (UNIMPLEMENTED before any message, e.g. mid rolling upgrade)
        gets the one-event-per-message method, and this process stops asking it for batches.
        """
        batched = channel.batch_method is not None and self.batching
        method = channel.batch_method if batched and channel.batch_method else channel.stream_method
        call = self.upstream.stream(method, request, identity)
        received = False
        try:
            async for reply in call:
                received = True
                yield reply.events if batched else (reply,)
        except grpc.aio.AioRpcError as exc:
            self.upstream.count(method, exc.code())
            if not (batched and not received and exc.code() is grpc.StatusCode.UNIMPLEMENTED):
                raise
            log.warning("the cache service has no %s (an older version); using %s", method,
                        channel.stream_method)
            self.batching = False
        else:
            self.upstream.count(method, grpc.StatusCode.OK)
            return
        finally:
            call.cancel()
        async with aclosing(self._messages(channel, request, identity)) as messages:
            async for events in messages:
                yield events

    def _went_live(self, topic: Topic, seq: str, recovered: bool) -> None:
        if topic.last_seq is None:
            topic.last_seq = seq or REPLAY_ALL
            topic.last_key = seq_key(topic.last_seq)
        topic.live.set()
        if topic.interrupted:
            topic.interrupted = False
            log.info("topic %s resumed (recovered=%s)", topic.key, recovered)
            topic.notify("resumed", recovered)

    async def catch_up(self, sub: Subscription, identity: Identity,
                       resume_from: str) -> AsyncIterator[Event | GapMarker | LiveMarker]:
        """Replay a subscription's events after ``resume_from``, with its filters, then live.

        Runs as the client (its own scope), on a stream of its own; it yields :data:`LIVE` at
        the service's live point and carries on with live events, so the caller decides where
        to stop (usually at LIVE, later if it had to discard events held from the shared topic
        meanwhile) and merges with what the topic held.
        """
        channel = CHANNELS[sub.channel]
        request = channel.stream_request(sub.topic, sub, resume_from)
        try:
            async with aclosing(self._messages(channel, request, identity)) as messages:
                async for events in messages:
                    for reply in events:
                        kind = reply.WhichOneof("event")
                        if kind == channel.entity_field:
                            yield channel.event(reply.seq, getattr(reply, kind))
                        elif kind == "gap":
                            yield GAP
                        elif kind == "live":
                            yield LIVE
        except grpc.aio.AioRpcError as exc:
            raise from_grpc(exc.code(), exc.details()) from None

    async def close(self) -> None:
        tasks = [t.task for t in self.topics.values() if t.task is not None]
        for topic in list(self.topics.values()):
            self._close(topic)
        await asyncio.gather(*tasks, return_exceptions=True)
