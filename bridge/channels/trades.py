"""Trades: public history, one topic per exchange, never dropped and never merged.

A trade is an event, not state: a client that falls too far behind is closed 1013 ``slow
consumer`` and resumes with ``resume_from`` (like orders), never handed a conflated tape.
The snapshot is the recent trades (``limit``, default 50), newest last, read at a seq: the
held events it already holds are dropped, so none is sent twice. Upstream it reads
``StreamTradeBatches`` (a burst of trades per gRPC message), as tickers do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf.message import Message

from bridge.channels.base import Channel, filter_values
from marketbridge.api.v1 import cache_pb2 as pb

if TYPE_CHECKING:
    from bridge.protocol import SubscribeParams
    from bridge.subscriptions import Subscription, TopicKey

SNAPSHOT_TRADES = 50


def stream_request(topic: TopicKey, sub: Subscription | None, resume_from: str) -> Message:
    return pb.StreamTradesRequest(exchange=topic[1], symbols=filter_values(sub, "symbols"),
                                  resume_from=resume_from)


def list_request(sub: Subscription, params: SubscribeParams) -> Message:
    return pb.ListTradesRequest(exchange=sub.topic[1], symbols=filter_values(sub, "symbols"),
                                limit=params.limit or SNAPSHOT_TRADES)


CHANNEL = Channel(
    name="trades", alias="stream_trades", update_action="trade_update",
    filters=("exchange", "symbols", "limit"), private=False, conflates=False,
    stream_method="StreamTrades", entity_field="trade", stream_request=stream_request,
    keys=lambda t: (t.symbol, ""), list_method="ListTrades", list_request=list_request,
    list_field="trades", batch_method="StreamTradeBatches",
)
