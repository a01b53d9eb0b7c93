"""Candles: one topic per exchange, symbol and interval; built by the cache service from trades.

The upstream stream is per series (``StreamCandles`` takes one symbol and interval), so the
topic is too. Updates are never conflated here (SPEC §9.3 allows it per ``open_time``, but a
candle update is small and rare next to ticks, and never dropping is the simpler promise): a
client too far behind is closed 1013 and resumes. A ``closed: true`` candle is therefore
never lost. The snapshot is the last ``limit`` candles (default 100), oldest first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf.message import Message

from bridge.channels.base import Channel
from marketbridge.api.v1 import cache_pb2 as pb

if TYPE_CHECKING:
    from bridge.protocol import SubscribeParams
    from bridge.subscriptions import Subscription, TopicKey

SNAPSHOT_CANDLES = 100


def stream_request(topic: TopicKey, sub: Subscription | None, resume_from: str) -> Message:
    return pb.StreamCandlesRequest(exchange=topic[1], symbol=topic[2], interval=topic[3],
                                   resume_from=resume_from)


def list_request(sub: Subscription, params: SubscribeParams) -> Message:
    return pb.ListCandlesRequest(exchange=sub.topic[1], symbol=sub.topic[2], interval=sub.topic[3],
                                 limit=params.limit or SNAPSHOT_CANDLES)


CHANNEL = Channel(
    name="candles", alias="stream_candles", update_action="candle_update",
    filters=("exchange", "symbol", "interval", "limit"), private=False, conflates=False,
    stream_method="StreamCandles", entity_field="candle", stream_request=stream_request,
    keys=lambda c: (c.symbol, ""), list_method="ListCandles", list_request=list_request,
    list_field="candles", topic_params=("symbol", "interval"),
)
