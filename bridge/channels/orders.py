"""Orders: one user's order history, never conflated (every state change matters)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf.message import Message

from bridge.channels.base import SNAPSHOT_LIMIT, Channel, filter_values
from marketbridge.api.v1 import cache_pb2 as pb

if TYPE_CHECKING:
    from bridge.protocol import SubscribeParams
    from bridge.subscriptions import Subscription, TopicKey


def stream_request(topic: TopicKey, sub: Subscription | None, resume_from: str) -> Message:
    return pb.StreamOrdersRequest(symbols=filter_values(sub, "symbols"),
                                  bot_ids=filter_values(sub, "bot_ids"), resume_from=resume_from)


def list_request(sub: Subscription, params: SubscribeParams) -> Message:
    """``ListOrders`` filters by one symbol and one bot at most: with more, the snapshot asks
    for all and the subscription's own filters pick."""
    bot_ids = filter_values(sub, "bot_ids")
    symbols = filter_values(sub, "symbols")
    return pb.ListOrdersRequest(limit=SNAPSHOT_LIMIT,
                                symbol=symbols[0] if len(symbols) == 1 else "",
                                bot_id=bot_ids[0] if len(bot_ids) == 1 else "")


CHANNEL = Channel(
    name="orders", alias="stream_orders", update_action="order_update",
    filters=("symbols", "bot_ids"), private=True, conflates=False,
    stream_method="StreamOrders", entity_field="order", stream_request=stream_request,
    keys=lambda o: (o.symbol, o.bot_id), list_method="ListOrders", list_request=list_request,
    list_field="orders",
)
