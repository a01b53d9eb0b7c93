"""Per-connection subscription bookkeeping: ids, filters, where each stands in its stream."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bridge.codec import update_prefix
from bridge.errors import NOT_FOUND, SUBSCRIPTION_LIMIT, BridgeError
from bridge.events import Event
from bridge.protocol import SubscribeParams
from bridge.setup import Setup

if TYPE_CHECKING:
    from bridge.channels.base import Channel

TopicKey = tuple[str, ...]   # (channel, exchange or user, *the channel's topic params)


@dataclass(eq=False, slots=True)
class Subscription:
    """One subscription of one connection.

    ``setup`` holds matching events while the subscription is being set up (snapshot or
    catch-up in flight, :mod:`bridge.setup`) so nothing is lost and nothing reaches the client
    before its ``subscribe`` response; it is None once events flow straight to the client.
    """

    id: str
    channel: str
    topic: TopicKey
    symbols: frozenset[str] | None
    bot_ids: frozenset[str] | None
    prefix: str
    conflates: bool   # its channel's rule (:attr:`bridge.channels.base.Channel.conflates`)
    last_seq: str | None = None
    last_key: tuple[int, int] = (0, 0)
    setup: Setup | None = field(default_factory=Setup)

    def matches(self, event: Event) -> bool:
        """Whether the client's filters let this event through."""
        return self.accepts(event.symbol, event.bot_id)

    def accepts(self, symbol: str, bot_id: str) -> bool:
        if self.symbols is not None and symbol not in self.symbols:
            return False
        return self.bot_ids is None or bot_id in self.bot_ids

    def conflation_key(self, event: Event) -> tuple[str, str] | None:
        """In a conflating channel (tickers), updates of one symbol replace each other in a
        backlog; in the others they never do."""
        return (self.id, event.symbol) if self.conflates else None

    def frame(self, event: Event) -> str:
        return self.prefix + event.tail

    def delivered(self, event: Event) -> None:
        self.last_seq = event.seq
        self.last_key = event.key


class SubscriptionBook:
    """The subscriptions of one connection, capped at ``max_subscriptions``; slotted, as the
    session's other parts (one lives per connection)."""

    __slots__ = ("max_subscriptions", "_by_id", "_counter")

    def __init__(self, max_subscriptions: int) -> None:
        self.max_subscriptions = max_subscriptions
        self._by_id: dict[str, Subscription] = {}
        self._counter = 0

    def add(self, params: SubscribeParams, channel: Channel, topic: TopicKey) -> Subscription:
        if len(self._by_id) >= self.max_subscriptions:
            raise BridgeError(SUBSCRIPTION_LIMIT,
                              f"at most {self.max_subscriptions} subscriptions per connection")
        self._counter += 1
        sub_id = f"{params.channel}-{self._counter}"
        sub = Subscription(
            id=sub_id, channel=params.channel, topic=topic,
            symbols=frozenset(params.symbols) if params.symbols is not None else None,
            bot_ids=frozenset(params.bot_ids) if params.bot_ids is not None else None,
            prefix=update_prefix(channel.update_action, sub_id), conflates=channel.conflates,
            # A resume's catch-up stream will replay what holding has to discard.
            setup=Setup(catching_up=params.resume_from is not None),
        )
        self._by_id[sub_id] = sub
        return sub

    def remove(self, sub_id: str) -> Subscription:
        sub = self._by_id.pop(sub_id, None)
        if sub is None:
            raise BridgeError(NOT_FOUND, f"no subscription {sub_id!r} on this connection")
        return sub

    def get(self, sub_id: str) -> Subscription | None:
        return self._by_id.get(sub_id)

    def clear(self) -> list[Subscription]:
        subs = list(self._by_id.values())
        self._by_id.clear()
        return subs

    def __iter__(self) -> Iterator[Subscription]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)
