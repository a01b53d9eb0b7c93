"""Bots: one user's trading bots, never conflated."""

from __future__ import annotations

from typing import TYPE_CHECKING

from google.protobuf.message import Message

from bridge.channels.base import Channel, filter_values
from marketbridge.api.v1 import cache_pb2 as pb

if TYPE_CHECKING:
    from bridge.protocol import SubscribeParams
    from bridge.subscriptions import Subscription, TopicKey


def stream_request(topic: TopicKey, sub: Subscription | None, resume_from: str) -> Message:
    return pb.StreamBotsRequest(bot_ids=filter_values(sub, "bot_ids"), resume_from=resume_from)


def list_request(sub: Subscription, params: SubscribeParams) -> Message:
    return pb.ListBotsRequest()


CHANNEL = Channel(
    name="bots", alias="stream_bots", update_action="bot_update",
    filters=("bot_ids",), private=True, conflates=False,
    stream_method="StreamBots", entity_field="bot", stream_request=stream_request,
    keys=lambda b: ("", b.bot_id), list_method="ListBots", list_request=list_request,
    list_field="bots",
)
