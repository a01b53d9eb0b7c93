"""Per-connection subscription bookkeeping: ids, filters, where each stands in its stream."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from bridge.codec import update_prefix
from bridge.errors import NOT_FOUND, SUBSCRIPTION_LIMIT, BridgeError
from bridge.events import Event
from bridge.protocol import SubscribeParams

UPDATE_ACTIONS = {"tickers": "ticker_update", "orders": "order_update", "bots": "bot_update"}
TopicKey = tuple[str, str]


@dataclass(eq=False, slots=True)
class Subscription:
    """One subscription of one connection.

    ``held`` buffers matching events while the subscription is being set up (snapshot or
    catch-up in flight) so nothing is lost and nothing reaches the client before its
    ``subscribe`` response; it is None once events flow straight to the client.
    """

    id: str
    channel: str
    topic: TopicKey
    symbols: frozenset[str] | None
    bot_ids: frozenset[str] | None
    prefix: str
    last_seq: str | None = None
    last_key: tuple[int, int] = (0, 0)
    held: list[Event] | None = field(default_factory=list)
    # Resuming: the catch-up stream reads the same events as the topic, so when ``held`` would
    # overflow it is emptied and the catch-up stream keeps going past its live point until it
    # has delivered ``dropped_key`` (the newest discarded event) itself.
    catching_up: bool = False
    dropped_key: tuple[int, int] = (0, 0)

    def matches(self, event: Event) -> bool:
        """Whether the client's filters let this event through."""
        return self.accepts(event.symbol, event.bot_id)

    def accepts(self, symbol: str, bot_id: str) -> bool:
        if self.symbols is not None and symbol not in self.symbols:
            return False
        return self.bot_ids is None or bot_id in self.bot_ids

    def conflation_key(self, event: Event) -> tuple[str, str] | None:
        """Ticker updates of one symbol replace each other in a backlog; others never do."""
        return (self.id, event.symbol) if self.channel == "tickers" else None

    def frame(self, event: Event) -> str:
        return self.prefix + event.tail

    def hold(self, event: Event, limit: int) -> bool:
        """Hold an event during setup; False when ``limit`` is reached and nothing can make up
        for a discarded event (no catch-up stream), i.e. the client must be closed."""
        assert self.held is not None
        if len(self.held) < limit:
            self.held.append(event)
            return True
        if not self.catching_up:
            return False
        self.held.clear()
        self.dropped_key = event.key
        return True

    def caught_up(self) -> bool:
        """Whether every event discarded from ``held`` has been delivered by the catch-up."""
        return self.last_key >= self.dropped_key

    def delivered(self, event: Event) -> None:
        self.last_seq = event.seq
        self.last_key = event.key


def topic_for(params: SubscribeParams, user_id: str, is_admin: bool) -> TopicKey:
    """Tickers share a topic per exchange; orders/bots per user, or one for all admins ("*")."""
    if params.channel == "tickers":
        assert params.exchange is not None
        return ("tickers", params.exchange)
    return (params.channel, "*" if is_admin else user_id)


class SubscriptionBook:
    """The subscriptions of one connection, capped at ``max_subscriptions``."""

    def __init__(self, max_subscriptions: int) -> None:
        self.max_subscriptions = max_subscriptions
        self._by_id: dict[str, Subscription] = {}
        self._counter = 0

    def add(self, params: SubscribeParams, topic: TopicKey) -> Subscription:
        if len(self._by_id) >= self.max_subscriptions:
            raise BridgeError(SUBSCRIPTION_LIMIT,
                              f"at most {self.max_subscriptions} subscriptions per connection")
        self._counter += 1
        sub_id = f"{params.channel}-{self._counter}"
        sub = Subscription(
            id=sub_id, channel=params.channel, topic=topic,
            symbols=frozenset(params.symbols) if params.symbols is not None else None,
            bot_ids=frozenset(params.bot_ids) if params.bot_ids is not None else None,
            prefix=update_prefix(UPDATE_ACTIONS[params.channel], sub_id),
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
