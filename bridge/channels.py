"""What differs between the three channels: the gRPC methods, requests and entity fields.

One table instead of three copies of the stream and snapshot code; adding a channel means
adding a row here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from bridge.codec import entity_json, update_tail
from bridge.events import Event, seq_key
from bridge.subscriptions import Subscription, TopicKey
from marketbridge.api.v1 import cache_pb2 as pb

SNAPSHOT_LIMIT = 1000


@dataclass(frozen=True)
class Channel:
    """How to stream, snapshot and filter one channel."""

    name: str
    stream_method: str
    entity_field: str                                  # oneof member holding the entity
    stream_request: Callable[[TopicKey, Subscription | None, str], Message]
    keys: Callable[[Any], tuple[str, str]]              # entity -> (symbol, bot_id) for filters
    list_method: str
    list_request: Callable[[Subscription], Message]
    list_field: str
    batch_method: str | None = None                    # many events per message, if offered

    def event(self, seq: str, entity: Message) -> Event:
        """Decode and encode an entity once; every subscriber shares the result."""
        result = entity_json(entity)
        symbol, bot_id = self.keys(entity)
        return Event(seq, seq_key(seq), symbol, bot_id, update_tail(seq, result), result)


def _filters(sub: Subscription | None, name: str) -> list[str]:
    if sub is None:
        return []
    values = getattr(sub, name)
    return sorted(values) if values is not None else []


def _ticker_stream(topic: TopicKey, sub: Subscription | None, resume_from: str) -> Message:
    return pb.StreamTickersRequest(exchange=topic[1], symbols=_filters(sub, "symbols"),
                                   resume_from=resume_from)


def _order_stream(topic: TopicKey, sub: Subscription | None, resume_from: str) -> Message:
    return pb.StreamOrdersRequest(symbols=_filters(sub, "symbols"),
                                  bot_ids=_filters(sub, "bot_ids"), resume_from=resume_from)


def _bot_stream(topic: TopicKey, sub: Subscription | None, resume_from: str) -> Message:
    return pb.StreamBotsRequest(bot_ids=_filters(sub, "bot_ids"), resume_from=resume_from)


def _ticker_list(sub: Subscription) -> Message:
    return pb.ListTickersRequest(exchange=sub.topic[1], symbols=_filters(sub, "symbols"))


def _order_list(sub: Subscription) -> Message:
    bot_ids = _filters(sub, "bot_ids")
    symbols = _filters(sub, "symbols")
    return pb.ListOrdersRequest(limit=SNAPSHOT_LIMIT,
                                symbol=symbols[0] if len(symbols) == 1 else "",
                                bot_id=bot_ids[0] if len(bot_ids) == 1 else "")


def _bot_list(sub: Subscription) -> Message:
    return pb.ListBotsRequest()


CHANNELS: dict[str, Channel] = {
    "tickers": Channel("tickers", "StreamTickers", "ticker", _ticker_stream,
                       lambda t: (t.symbol, ""), "ListTickers", _ticker_list, "tickers",
                       batch_method="StreamTickerBatches"),
    "orders": Channel("orders", "StreamOrders", "order", _order_stream,
                      lambda o: (o.symbol, o.bot_id), "ListOrders", _order_list, "orders"),
    "bots": Channel("bots", "StreamBots", "bot", _bot_stream,
                    lambda b: ("", b.bot_id), "ListBots", _bot_list, "bots"),
}
