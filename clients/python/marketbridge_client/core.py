"""The sans-I/O core: protocol state as plain objects, testable without a socket.

:class:`Session` is one client's protocol state across connections: request ids, the
subscriptions the caller asked for (keyed by what was asked, not by the server's ids, which
change with every connection), each one's last seq, its records and its book. The asyncio
layer (:mod:`marketbridge_client.client`) feeds it the frames it reads and carries out the
:class:`Event` s it returns. Nothing here reads a clock or a socket, so every rule of
docs/protocol.md §9 can be checked with literal frames.
"""

from __future__ import annotations

import json
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from marketbridge_client.book import ChecksumMismatch, OrderBook
from marketbridge_client.errors import ConnectionClosed, RequestError, close_error

PROTOCOL = 1
FEATURES = ("book", "trades", "candles", "heartbeat", "refresh")
HISTORY_KEPT = 1000            # trades / candles a subscription remembers (newest)

Frame = dict[str, Any]


def parse_seq(seq: str) -> tuple[int, int]:
    """``"<ms>-<n>"`` as numbers: seqs compare numerically, never as strings."""
    ms, _, n = seq.partition("-")
    return int(ms), int(n or 0)


def updates_of(frame: Frame) -> list[Frame]:
    """The updates a frame carries: itself for ``update``, its ``updates`` for ``batch``."""
    kind = frame.get("type")
    if kind == "update":
        return [frame]
    if kind == "batch":
        return list(frame.get("updates") or ())
    return []


@dataclass(frozen=True)
class CloseAdvice:
    """What to do after a close: reconnect or not, at once or after backoff, with a new token."""

    retry: bool
    immediate: bool
    renew_token: bool
    error: ConnectionClosed


_RETRYABLE_1008 = ("rate limit exceeded", "max connections per user")


def close_advice(code: int, reason: str, can_renew_token: bool) -> CloseAdvice:
    """docs/protocol.md §7 and §9 rule 4: reconnect with backoff after 1000, 1006, 1009, 1011,
    1013; at once after 1001; after 1008 only when the cause can change (a fresh token from a
    callback, a flood or a per-user cap that passes)."""
    error = close_error(code, reason)
    if code == 1008:
        lowered = reason.lower()
        if "token" in lowered or "authentication" in lowered:
            return CloseAdvice(can_renew_token, False, can_renew_token, error)
        return CloseAdvice(any(r in lowered for r in _RETRYABLE_1008), False, False, error)
    return CloseAdvice(True, code == 1001, False, error)


class Backoff:
    """Capped exponential backoff with jitter (0.5 s doubling to 15 s, times 0.5-1.5), so a
    restarted bridge is not hit by every client at the same instant."""

    def __init__(self, first_s: float = 0.5, cap_s: float = 15.0, jitter: float = 0.5,
                 rng: Callable[[], float] = random.random) -> None:
        self.first_s, self.cap_s, self.jitter, self.rng = first_s, cap_s, jitter, rng
        self.attempt = 0

    def next(self) -> float:
        base = min(self.cap_s, self.first_s * 2 ** self.attempt)
        self.attempt += 1
        return float(base * (1 - self.jitter + 2 * self.jitter * self.rng()))

    def reset(self) -> None:
        self.attempt = 0


class Liveness:
    """``?heartbeat_s``: the server sends some frame at least every ``heartbeat_s``, so
    ``misses`` heartbeats' worth of silence means the connection is dead even if TCP says
    nothing (a stalled network never closes anything)."""

    def __init__(self, heartbeat_s: float, misses: int = 3) -> None:
        self.limit_s = heartbeat_s * misses
        self.last = 0.0

    def seen(self, now: float) -> None:
        self.last = now

    def dead(self, now: float) -> bool:
        return now - self.last > self.limit_s

    def remaining(self, now: float) -> float:
        return max(0.0, self.limit_s - (now - self.last))


def _entity_key(channel: str) -> Callable[[Frame], Any]:
    """Records of a channel are replaced by key (an update is the whole record)."""
    keys: dict[str, Callable[[Frame], Any]] = {
        "tickers": lambda r: (r["exchange"], r["symbol"]),
        "orders": lambda r: r["order_id"],
        "bots": lambda r: r["bot_id"],
        "trades": lambda r: (r["exchange"], r["symbol"], r["trade_id"]),
        "candles": lambda r: (r["exchange"], r["symbol"], r["interval"], r["open_time"]),
    }
    return keys.get(channel, lambda r: json.dumps(r, sort_keys=True))


@dataclass(slots=True)      # not frozen: a frozen init costs a setattr call per field, per update
class Update:
    """One item of a subscription's iterator.

    ``kind``: ``snapshot`` (``data`` is the snapshot: a list, or the OrderBook), ``update``
    (``data`` the entity; for a book the OrderBook after the delta), ``interrupted`` /
    ``resumed`` (stream health: the data may be stale meanwhile) or ``resync`` (the state was
    found wrong and is being re-snapshotted; a ``snapshot`` follows).
    """

    kind: str
    channel: str
    action: str = ""
    seq: str | None = None
    data: Any = None
    result: Frame | None = None


class Subscription:
    """What the caller asked for and what it holds: survives reconnects (new server ids)."""

    def __init__(self, channel: str, params: Frame) -> None:
        self.channel = channel
        self.params = {k: v for k, v in params.items() if v is not None}
        self.key = json.dumps({"channel": channel, **self.params}, sort_keys=True)
        self.id: str | None = None
        self.last_seq: str | None = None
        self.needs_snapshot = True
        self.active = True
        self.stale = False
        self.resyncs = 0
        self.error: Exception | None = None
        self.retry_backoff = Backoff(0.5, 10.0)   # subscribes the upstream could not serve
        self.records: OrderedDict[Any, Frame] = OrderedDict()
        self._key_of = _entity_key(channel)
        self.book: OrderBook | None = None
        if channel == "book":
            self.book = OrderBook(str(params.get("exchange", "")), str(params.get("symbol", "")),
                                  int(params.get("depth") or 10))

    def subscribe_params(self) -> Frame:
        """The params of the next ``subscribe``: a resume from the last seq unless a snapshot is due."""
        params: Frame = {"channel": self.channel, **self.params}
        if self.last_seq is not None and not self.needs_snapshot:
            params["resume_from"] = self.last_seq
        return params

    def subscribed(self, result: Frame, resumed: bool) -> list[Update]:
        """A ``subscribe`` succeeded; raises ChecksumMismatch for a bad book snapshot. An empty
        list with ``needs_snapshot`` set means: re-snapshot (``recovered: false``)."""
        self.id = str(result["subscription_id"])
        self.stale = False
        self.retry_backoff.reset()
        if resumed and result.get("recovered") is False:
            self.mark_resync()
            return []
        if resumed:
            return [Update("resumed", self.channel, seq=self.last_seq)]
        self.needs_snapshot = False
        self.last_seq = result.get("seq") or self.last_seq
        snapshot = result.get("snapshot")
        if self.book is not None:
            self.book.load(snapshot if isinstance(snapshot, dict) else {})
            return [Update("snapshot", self.channel, seq=self.last_seq, data=self.book)]
        self.records.clear()
        for record in snapshot or ():
            self._keep(record)
        return [Update("snapshot", self.channel, seq=self.last_seq, data=list(snapshot or ()))]

    def updated(self, frame: Frame) -> Update:
        """Apply one update frame; raises ChecksumMismatch when a book copy went wrong."""
        result = frame.get("result") or {}
        self.last_seq = frame.get("seq") or self.last_seq
        if self.book is not None:
            self.book.apply(result)
            data: Any = self.book
        else:
            self._keep(result)
            data = result
        return Update("update", self.channel, str(frame.get("action", "")), self.last_seq, data, result)

    def mark_resync(self) -> None:
        """The state is wrong (gap, trimmed events, bad checksum): the next subscribe is a fresh one."""
        self.needs_snapshot = True
        self.id = None
        self.resyncs += 1

    def _keep(self, record: Frame) -> None:
        key = self._key_of(record)
        self.records[key] = record
        if self.channel in ("trades", "candles"):
            self.records.move_to_end(key)
            while len(self.records) > HISTORY_KEPT:
                self.records.popitem(last=False)


# ------------------------------------------------------------------ events for the I/O layer

@dataclass(frozen=True)
class Send:
    """Write this frame."""
    frame: Frame


@dataclass(frozen=True)
class Reply:
    """The reply to a caller's request (a ``response``, ``pong`` or ``error`` frame)."""
    request_id: int
    frame: Frame


@dataclass(slots=True)
class Deliver:
    """Give this item to the subscription's iterator."""
    subscription: Subscription
    update: Update


@dataclass(frozen=True)
class SubscribeFailed:
    """A subscribe was refused; ``retry``: try again after a backoff (upstream down or slow)."""
    subscription: Subscription
    error: RequestError
    retry: bool


@dataclass(frozen=True)
class TokenExpiring:
    expires_at: float | None


Event = Send | Reply | Deliver | SubscribeFailed | TokenExpiring


@dataclass
class _PendingSubscribe:
    subscription: Subscription
    resumed: bool


@dataclass
class Session:
    """Protocol state across connections. ``connected`` on each welcome, ``receive`` per frame."""

    subscriptions: list[Subscription] = field(default_factory=list)
    welcome: Frame | None = None
    _by_id: dict[str, Subscription] = field(default_factory=dict)
    _pending: dict[int, _PendingSubscribe] = field(default_factory=dict)
    _next_id: int = 0

    # -------------------------------------------------------------- requests
    def request(self, action: str, params: Frame | None = None) -> tuple[int, Frame]:
        """A request frame with a fresh ``request_id`` (replies are matched by it)."""
        self._next_id += 1
        frame: Frame = {"action": action, "request_id": self._next_id}
        if params:
            frame["params"] = {k: v for k, v in params.items() if v is not None}
        return self._next_id, frame

    def subscribe_frame(self, sub: Subscription) -> Frame:
        """The ``subscribe`` for ``sub`` on this connection (a resume when it holds a seq)."""
        params = sub.subscribe_params()
        request_id, frame = self.request("subscribe", params)
        self._pending[request_id] = _PendingSubscribe(sub, "resume_from" in params)
        return frame

    def add(self, sub: Subscription) -> list[Event]:
        """Register a new subscription; subscribe now if connected."""
        self.subscriptions.append(sub)
        return [Send(self.subscribe_frame(sub))] if self.welcome is not None else []

    def remove(self, sub: Subscription) -> list[Event]:
        """Forget ``sub``; unsubscribe its server side if it has one."""
        sub.active = False
        if sub in self.subscriptions:
            self.subscriptions.remove(sub)
        return self._forget(sub.id)

    # -------------------------------------------------------------- connection lifecycle
    def connected(self, welcome: Frame) -> list[Event]:
        """A welcome: every subscription is (re)established, resuming from its last seq."""
        self.welcome = welcome
        self._by_id.clear()
        self._pending.clear()
        events: list[Event] = []
        for sub in self.subscriptions:
            sub.id = None
            events.append(Send(self.subscribe_frame(sub)))
        return events

    def disconnected(self) -> None:
        self.welcome = None
        self._by_id.clear()
        self._pending.clear()

    @property
    def limits(self) -> Frame:
        return dict((self.welcome or {}).get("limits") or {})

    # -------------------------------------------------------------- frames
    def receive(self, frame: Frame) -> list[Event]:
        """One server frame in; what to do about it out. Unknown types are ignored (§2)."""
        kind = frame.get("type")
        if kind == "batch" or kind == "update":
            events: list[Event] = []
            for update in updates_of(frame):
                events += self._update(update)
            return events
        if kind in ("response", "pong", "error"):
            return self._reply(frame)
        if kind == "stream_status":
            return self._status(frame)
        if kind == "token_expiring":
            return [TokenExpiring(frame.get("expires_at"))]
        return []

    def _update(self, frame: Frame) -> list[Event]:
        sub = self._by_id.get(str(frame.get("subscription_id")))
        if sub is None:
            return []        # an old id (unsubscribed or replaced): ignored, as §4 says
        try:
            return [Deliver(sub, sub.updated(frame))]
        except ChecksumMismatch:
            return self._resync(sub)

    def _reply(self, frame: Frame) -> list[Event]:
        request_id = frame.get("request_id")
        if not isinstance(request_id, int):
            return []
        pending = self._pending.pop(request_id, None)
        if pending is None:
            return [Reply(request_id, frame)]
        return self._subscribed(pending, frame)

    def _subscribed(self, pending: _PendingSubscribe, frame: Frame) -> list[Event]:
        sub = pending.subscription
        if not frame.get("success"):
            error = RequestError.from_frame(frame)
            return [SubscribeFailed(sub, error, error.retryable)] if sub.active else []
        result = frame.get("result") or {}
        if not sub.active:
            return self._forget(str(result.get("subscription_id")))
        self._by_id[str(result["subscription_id"])] = sub
        try:
            items = sub.subscribed(result, pending.resumed)
        except ChecksumMismatch:
            return self._resync(sub)
        if sub.needs_snapshot:           # resumed with recovered: false
            return self._resync(sub, already_marked=True, old_id=str(result["subscription_id"]))
        return [Deliver(sub, item) for item in items]

    def _status(self, frame: Frame) -> list[Event]:
        sub = self._by_id.get(str(frame.get("subscription_id")))
        if sub is None:
            return []
        status = str(frame.get("status"))
        sub.stale = status == "interrupted"
        events: list[Event] = [Deliver(sub, Update(status, sub.channel, seq=sub.last_seq))]
        if status == "resumed" and frame.get("recovered") is False:
            events += self._resync(sub)     # a gap: events were lost
        return events

    def _resync(self, sub: Subscription, already_marked: bool = False,
                old_id: str | None = None) -> list[Event]:
        """Re-snapshot: unsubscribe, then subscribe without ``resume_from``; frames still
        arriving for the old id are ignored."""
        old_id = old_id or sub.id
        if not already_marked:
            sub.mark_resync()
        events = self._forget(old_id)
        events.append(Deliver(sub, Update("resync", sub.channel, seq=sub.last_seq)))
        if self.welcome is not None:
            events.append(Send(self.subscribe_frame(sub)))
        return events

    def _forget(self, subscription_id: str | None) -> list[Event]:
        """Drop a server subscription of this connection (replaced, re-snapshotted or removed)."""
        if subscription_id is None:
            return []
        self._by_id.pop(subscription_id, None)
        if self.welcome is None:
            return []
        _, frame = self.request("unsubscribe", {"subscription_id": subscription_id})
        return [Send(frame)]
