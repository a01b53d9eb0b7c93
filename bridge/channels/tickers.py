"""Tickers: public market state, one topic per exchange, conflated for a client that is behind.

It reads the batched stream (``StreamTickerBatches``, trades likewise): a fast ticker feed is most
of the bridge's traffic, and one gRPC message per burst instead of per event is most of its cost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf.message import Message

from bridge.channels.base import Channel, filter_values
from marketbridge.api.v1 import cache_pb2 as pb

if TYPE_CHECKING:
    from bridge.protocol import SubscribeParams
    from bridge.subscriptions import Subscription, TopicKey


def stream_request(topic: TopicKey, sub: Subscription | None, resume_from: str) -> Message:
    return pb.StreamTickersRequest(exchange=topic[1], symbols=filter_values(sub, "symbols"),
                                   resume_from=resume_from)


def list_request(sub: Subscription, params: SubscribeParams) -> Message:
    return pb.ListTickersRequest(exchange=sub.topic[1], symbols=filter_values(sub, "symbols"))


CHANNEL = Channel(
    name="tickers", alias="stream_tickers", update_action="ticker_update",
    filters=("exchange", "symbols"), private=False, conflates=True,
    stream_method="StreamTickers", entity_field="ticker", stream_request=stream_request,
    keys=lambda t: (t.symbol, ""), list_method="ListTickers", list_request=list_request,
    list_field="tickers", batch_method="StreamTickerBatches",
)
