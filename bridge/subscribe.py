"""A session's subscriptions, and the asyncio driver of their set-up (:mod:`bridge.setup`).

``subscribe`` attaches to the shared topic first, then fetches the snapshot and/or opens the
catch-up stream, then queues the response, then replays and releases what the topic held
meanwhile. Attaching first means no event written while the snapshot or replay is in flight is
lost; events are held (not sent) until the response is queued, and the merge drops any event
the replay already delivered (by seq), so the client sees no duplicates either. This is the
only module that starts, drives or ends a set-up; the session only holds events for a
subscription that :attr:`~bridge.subscriptions.Subscription.setup` says is not live yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.message import Message

from bridge.auth import Identity
from bridge.channels import ALIASES, CHANNELS, Channel
from bridge.errors import BridgeError
from bridge.events import Event, seq_key
from bridge.fanout import GAP, Fanout, GapMarker, LiveMarker, Subscriber
from bridge.lanes import contain
from bridge.metrics import BridgeMetrics
from bridge.protocol import Reply, Request, SubscribeParams, ok, subscribe_params
from bridge.subscriptions import Subscription, SubscriptionBook, TopicKey
from marketbridge.backoff import Backoff

ReplayItem = Event | GapMarker | LiveMarker
CATCH_UP_ATTEMPTS = 5
CATCH_UP_BACKOFF_S = 0.1
CATCH_UP_BACKOFF_MAX_S = 2.0


class Client(Subscriber, Protocol):
    """What a set-up needs from a session besides what the fan-out needs: who it is, where its
    replies and replayed events go, and whether it is closing (a replay then stops retrying)."""

    identity: Identity
    closing: tuple[int, str] | None

    async def call(self, method: str, request: Message) -> Any: ...
    def send(self, reply: Reply) -> None: ...
    def deliver_now(self, sub: Subscription, event: Event, bounded: bool = True,
                    conflate: bool = True, due: bool = False) -> None: ...
    async def writable(self) -> None: ...


@dataclass(eq=False, slots=True)
class Subscriptions:
    """One session's subscriptions: its book, their topics, their set-up and release.

    Slotted: one lives per connection (see :class:`bridge.dispatch.Dispatcher`)."""

    client: Client
    book: SubscriptionBook
    fanout: Fanout          # the topics they join
    metrics: BridgeMetrics

    def add(self, params: SubscribeParams, channel: Channel, topic: TopicKey) -> Subscription:
        sub = self.book.add(params, channel, topic)
        self.metrics.subscriptions.inc()
        return sub

    def forget(self, sub: Subscription) -> None:
        """Undo :meth:`add` (setting the subscription up failed, or delivering to it did)."""
        if self.book.get(sub.id) is sub:
            self.book.remove(sub.id)
            self.drop(sub)

    def drop(self, sub: Subscription) -> None:
        self.fanout.detach(sub)
        self.metrics.subscriptions.dec()
        sub.setup = None

    def unsubscribe(self, sub_id: str) -> None:
        self.drop(self.book.remove(sub_id))

    def close(self) -> None:
        """The connection ended: leave every topic."""
        for sub in self.book.clear():
            self.drop(sub)

    def release(self, sub: Subscription) -> None:
        """End set-up: send what the topic held meanwhile (minus what a replay sent), go live.

        Held events are never conflated: the client has not fallen behind, the set-up made them
        wait (and they are due at once: a batched lane already held them for its batch)."""
        setup, sub.setup = sub.setup, None
        if setup is None or self.book.get(sub.id) is not sub:
            return
        for event in setup.release(sub.last_key):
            self.client.deliver_now(sub, event, bounded=False, conflate=False, due=True)

    async def subscribe(self, request: Request) -> None:
        """Set a subscription up (see the module's docstring); the response is queued here.

        The result's ``seq`` is the point after which every event is delivered: a client that
        reconnects before its first update resumes from it.
        """
        alias = ALIASES.get(request.action)
        params = subscribe_params(request.params, alias.name if alias is not None else None)
        client, channel = self.client, CHANNELS[params.channel]
        sub = self.add(params, channel, channel.topic(params, client.identity))
        replay: AsyncIterator[ReplayItem] | None = None
        first: ReplayItem | None = None
        try:
            topic = await self.fanout.attach(client, sub, client.identity)
            start = params.resume_from or topic.last_seq
            if params.resume_from is not None:
                replay = self.fanout.catch_up(sub, client.identity, params.resume_from)
                first = await anext(replay, None)
            snapshot, read_at = (await channel.snapshot(client.call, sub, client.identity, params)
                                 if params.snapshot else ([], None))
            if read_at is not None and seq_key(read_at) > sub.last_key and params.resume_from is None:
                # the snapshot holds every held event up to where it was read: release drops them
                sub.last_seq, sub.last_key = read_at, seq_key(read_at)
                start = read_at if start is None or seq_key(read_at) > seq_key(start) else start
        except BaseException:
            self.forget(sub)
            if replay is not None:
                await replay.aclose()  # type: ignore[attr-defined]
            raise
        client.send(ok(request, {"subscription_id": sub.id, "channel": sub.channel,
                                 "snapshot": snapshot, "recovered": first is not GAP,
                                 "seq": start}))
        try:
            if replay is not None:
                await self._replay(sub, first, replay, params.resume_from or "")
            self.release(sub)
        except Exception:   # a delivery bug after the response went out: this client, 1011
            contain(self.metrics, client, sub, "replay")

    async def _replay(self, sub: Subscription, first: ReplayItem | None,
                      replay: AsyncIterator[ReplayItem], resume_from: str) -> None:
        """Deliver catch-up events, pacing on the client's backlog so a long replay cannot
        overflow.

        Replayed events are never conflated (docs/protocol.md §6): they queue behind the ``subscribe``
        response, and a client resuming after 4 missed updates of 2 symbols gets all 4.

        The replay ends at the service's live point, or later when live events held meanwhile
        had to be discarded (:meth:`bridge.setup.Setup.caught_up`); the held events after that
        are merged by :meth:`release`.

        A catch-up stream that breaks (the service ends streams that fall behind; a replica
        restarts) is re-opened from the last event delivered, a few times with backoff; only
        when that fails, or the service reports a gap on re-opening, is the client told
        ``recovered: false`` (``interrupted`` then ``resumed``) before going live.
        """
        client, setup = self.client, sub.setup
        assert setup is not None
        lost = False
        try:
            backoff = Backoff(CATCH_UP_BACKOFF_S, CATCH_UP_BACKOFF_MAX_S)
            for attempt in range(CATCH_UP_ATTEMPTS + 1):
                try:
                    # The response already told the client about a gap in ``first``.
                    pending = [first] if isinstance(first, Event | LiveMarker) else []
                    live = False
                    while (item := pending.pop() if pending
                           else await anext(replay, None)) is not None:
                        if isinstance(item, LiveMarker):
                            live = True
                        elif isinstance(item, GapMarker):
                            lost = True
                        elif sub.matches(item):
                            await client.writable()
                            client.deliver_now(sub, item, conflate=False)
                        if live and setup.caught_up(sub.last_key):
                            break
                    break
                except BridgeError:
                    if attempt == CATCH_UP_ATTEMPTS or client.closing is not None:
                        lost = True
                        break
                await replay.aclose()  # type: ignore[attr-defined]
                await asyncio.sleep(backoff.delay())
                replay = self.fanout.catch_up(sub, client.identity, sub.last_seq or resume_from)
                first = None
        finally:
            await replay.aclose()  # type: ignore[attr-defined]
        if lost:
            client.stream_status(sub, "interrupted", False)
            client.stream_status(sub, "resumed", False)
