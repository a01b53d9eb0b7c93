"""What a channel is: everything the bridge does differently for one kind of stream.

The rest of the bridge (protocol, actions, fan-out, sessions) is channel-blind: it asks the
:class:`Channel` of a subscription which parameters it takes, which topic it shares, how to
open its upstream stream and snapshot, how to filter, frame and conflate its events. So adding
a channel is one module that builds a :class:`Channel` plus a row in :mod:`bridge.channels`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from google.protobuf.message import Message

from bridge.auth import Identity
from bridge.codec import dumps, entity_to_dict, update_tail
from bridge.errors import NOT_FOUND, BridgeError
from bridge.events import Event, seq_key

if TYPE_CHECKING:
    from bridge.protocol import SubscribeParams
    from bridge.subscriptions import Subscription, TopicKey

SNAPSHOT_LIMIT = 1000
ALL_USERS = "*"   # the topic of a private channel that every admin shares

UnaryCall = Callable[[str, Message], Awaitable[Any]]
Encode = Callable[[Message], Any]


class SelfCheck(Protocol):
    """A topic's check of the events it relays (books: bridge.book_check); False = failed."""

    def verify(self, message: Message) -> bool: ...


def visible(identity: Identity, entity: Message) -> bool:
    """A user sees only their own orders and bots (admins see all); checked even though the
    service scopes by metadata too, so a mistake on either side cannot leak another user's data."""
    return identity.is_admin or getattr(entity, "user_id", identity.user_id) == identity.user_id


def filter_values(sub: Subscription | None, name: str) -> list[str]:
    """A subscription's filter as a stream or list request wants it (sorted; [] for none)."""
    if sub is None:
        return []
    values = getattr(sub, name)
    return sorted(values) if values is not None else []


@dataclass(frozen=True)
class Channel:
    """How to subscribe to, stream, snapshot, filter, frame and conflate one channel.

    ``private`` channels carry one user's entities: their topic is per user (or one for all
    admins) and their stream runs as that user. Public ones share a topic per exchange, plus
    the ``topic_params`` that name one upstream stream (a book's symbol and depth, a candle
    series' symbol and interval). ``conflates``: a queued update may be replaced by a newer
    one of the same symbol for a client that is behind (state, not history: tickers), or merged
    with it when the channel gives a ``delta`` for both (books; :mod:`bridge.pending_book`);
    docs/protocol.md §6.

    The snapshot is the ``list_method``'s reply: its ``list_field``, filtered, or (no
    ``list_field``) the reply itself (a book). A reply with a ``seq`` says where it was read;
    the set-up then drops the held events it already holds (:mod:`bridge.subscribe`).
    """

    name: str
    alias: str                                         # the ``stream_<name>`` action
    update_action: str                                 # the ``action`` of its update frames
    filters: tuple[str, ...]                           # subscribe params besides the common ones
    private: bool
    conflates: bool
    stream_method: str
    entity_field: str                                  # oneof member holding the entity
    stream_request: Callable[[TopicKey, Subscription | None, str], Message]
    keys: Callable[[Any], tuple[str, str]]              # entity -> (symbol, bot_id) for filters
    list_method: str
    list_request: Callable[[Subscription, SubscribeParams], Message]
    list_field: str
    batch_method: str | None = None                    # many events per message, if offered
    topic_params: tuple[str, ...] = ()                 # SubscribeParams naming the stream
    more_fields: tuple[str, ...] = ()                  # other oneof members that are updates
    encode: Encode = entity_to_dict                    # entity -> its JSON value
    delta: Callable[[Message], Any] | None = None       # entity -> what a queue merges (books)
    self_check: Callable[[TopicKey], SelfCheck] | None = None   # a topic's check of its events
    empty: Callable[[Subscription], Any] | None = None  # the snapshot when the state is NOT_FOUND

    @property
    def entity_fields(self) -> frozenset[str]:
        return frozenset((self.entity_field, *self.more_fields))

    @property
    def requires_exchange(self) -> bool:
        return "exchange" in self.filters

    def event(self, seq: str, entity: Message) -> Event:
        """Decode and encode an entity once; every subscriber shares the result."""
        result = dumps(self.encode(entity))
        symbol, bot_id = self.keys(entity)
        merge = self.delta(entity) if self.delta is not None else None
        return Event(seq, seq_key(seq), symbol, bot_id, update_tail(seq, result), result, merge)

    def topic(self, params: SubscribeParams, identity: Identity) -> TopicKey:
        """Public channels share a topic per exchange; private ones per user, or one for all
        admins (:data:`ALL_USERS`)."""
        if not self.private:
            assert params.exchange is not None
            return (self.name, params.exchange, *(str(getattr(params, p)) for p in self.topic_params))
        return (self.name, ALL_USERS if identity.is_admin else identity.user_id)

    def stream_identity(self, topic: TopicKey, identity: Identity) -> Identity:
        """Who a topic's stream runs as: the (first) subscriber, the topic's user, or an admin
        for the all-users topic."""
        if not self.private:
            return identity
        if topic[1] == ALL_USERS:
            return Identity(identity.user_id, frozenset({"admin"}))
        return Identity(topic[1])

    async def snapshot(self, call: UnaryCall, sub: Subscription, identity: Identity,
                       params: SubscribeParams) -> tuple[Any, str | None]:
        """Current state for a new subscription, through the same filters as its updates, and
        the seq it was read at (None when the reply does not say)."""
        try:
            reply = await call(self.list_method, self.list_request(sub, params))
        except BridgeError as exc:
            if exc.code != NOT_FOUND or self.empty is None:
                raise
            return self.empty(sub), None   # a book nobody published yet: its first snapshot comes as an update
        seq = getattr(reply, "seq", "") or None
        if not self.list_field:
            return self.encode(reply), seq
        result = []
        for entity in getattr(reply, self.list_field):
            symbol, bot_id = self.keys(entity)
            if sub.accepts(symbol, bot_id) and visible(identity, entity):
                result.append(self.encode(entity))
        return result, seq
