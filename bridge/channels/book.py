"""Order books: one topic per exchange, symbol and depth; updates carry the cut's checksum.

The cache service computes each depth's update once (the diff of that depth's cut, with the
checksum of the new cut: docs/market_data.md), so the bridge only relays: ``book_update``
frames whose ``bids``/``asks`` hold the changed levels as ``[price, qty]`` decimal strings.
Two more kinds travel as ``book_update`` too, so they keep their place among the updates:

- ``"snapshot": true``: the book was replaced (a publisher snapshot, or after a gap): replace
  your copy with ``bids``/``asks``;
- ``"stale": true`` (with ``reason``): the book no longer matches the exchange (the publisher
  missed an update); no update follows until a ``snapshot: true`` one.

Book updates are never dropped: for a client that is behind, its queue merges them
(:mod:`bridge.pending_book`), which yields the same book and a valid checksum. Upstream it
reads ``StreamBookBatches`` (every ready event of the book per gRPC message), as tickers do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

from bridge.book_check import BookCheck
from bridge.channels.base import Channel
from bridge.pending_book import BookDelta
from marketbridge.market.merge import BookUpdate
from marketbridge.api.v1 import cache_pb2 as pb

if TYPE_CHECKING:
    from bridge.protocol import SubscribeParams
    from bridge.subscriptions import Subscription, TopicKey


def _levels(levels: Any) -> list[list[str]]:
    return [[level.price, level.qty] for level in levels]


def encode(message: Message) -> dict[str, Any]:
    """The JSON value of a Book (snapshot), a BookUpdate or a BookStale."""
    if isinstance(message, pb.BookStale):
        return {"stale": True, "reason": message.reason, "sequence": message.sequence}
    result: dict[str, Any] = {
        "exchange": message.exchange, "symbol": message.symbol,  # type: ignore[attr-defined]
        "bids": _levels(message.bids), "asks": _levels(message.asks),  # type: ignore[attr-defined]
        "checksum": message.checksum, "time": message.time,  # type: ignore[attr-defined]
    }
    if isinstance(message, pb.Book):
        result["stale"] = message.stale
        result["depth"] = message.depth
    return result


def encode_update(message: Message) -> dict[str, Any]:
    """A stream event's JSON value: a replacing snapshot says so."""
    result = encode(message)
    if isinstance(message, pb.Book):
        result["snapshot"] = True
    return result


def delta(message: Message) -> BookDelta | None:
    """What a slow client's queue merges: only updates (a snapshot or stale mark is a barrier)."""
    if not isinstance(message, pb.BookUpdate):
        return None
    update = BookUpdate(tuple((level.price, level.qty) for level in message.bids),
                        tuple((level.price, level.qty) for level in message.asks), message.checksum)
    return BookDelta({"exchange": message.exchange, "symbol": message.symbol, "time": message.time}, update)


def empty(sub: Subscription) -> dict[str, Any]:
    """The snapshot of a book nobody has published yet: no levels (checksum of nothing: 0)."""
    return {"exchange": sub.topic[1], "symbol": sub.topic[2], "bids": [], "asks": [],
            "checksum": 0, "time": 0.0, "stale": False, "depth": int(sub.topic[3])}


def stream_request(topic: TopicKey, sub: Subscription | None, resume_from: str) -> Message:
    return pb.StreamBookRequest(exchange=topic[1], symbol=topic[2], depth=int(topic[3]),
                                resume_from=resume_from)


def list_request(sub: Subscription, params: SubscribeParams) -> Message:
    return pb.GetBookRequest(exchange=sub.topic[1], symbol=sub.topic[2], depth=int(sub.topic[3]))


CHANNEL = Channel(
    name="book", alias="stream_book", update_action="book_update",
    filters=("exchange", "symbol", "depth"), private=False, conflates=True,
    stream_method="StreamBook", entity_field="update", stream_request=stream_request,
    # one symbol per topic: no filter, and every event of a subscription shares one queue key,
    # so a snapshot or stale mark stays a barrier to merging (bridge.pending_book)
    keys=lambda _book: ("", ""), list_method="GetBook", list_request=list_request,
    list_field="", topic_params=("symbol", "depth"), more_fields=("snapshot", "stale"),
    encode=encode_update, delta=delta, self_check=lambda topic: BookCheck(int(topic[3])),
    empty=empty, batch_method="StreamBookBatches",
)
