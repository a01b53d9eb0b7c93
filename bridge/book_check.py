"""The bridge's self-check of a book topic: its own copy, verified against every update.

The cache service computes each update and its checksum; the bridge relays them. To know that
what it relays is right (SPEC §9.5: ``bridge_book_checksum_failures_total``, which must stay 0),
each book topic keeps a client's copy of the book at its depth
(:class:`marketbridge.market.client_book.ClientBook`), applies every event to it exactly as a
client would, and compares. A mismatch is logged and counted, and the copy waits for the next
snapshot; the update still goes out, so clients detect it too and re-subscribe. The check costs
one apply per update per topic, never per client.
"""

from __future__ import annotations

import logging

from google.protobuf.message import Message

from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.market.book import InvalidBook
from marketbridge.market.client_book import ChecksumMismatch, ClientBook
from marketbridge.market.merge import BookUpdate

log = logging.getLogger("bridge.book_check")


class BookCheck:
    """A book topic's copy; :meth:`verify` says whether an event kept it right."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.copy: ClientBook | None = None   # None: no snapshot yet (or after a stale mark)

    def verify(self, message: Message) -> bool:
        """Apply ``message`` (Book, BookUpdate or BookStale); False when a checksum failed."""
        if isinstance(message, pb.Book):
            self.copy = ClientBook(self.depth)
            try:
                self.copy.load(_levels(message.bids), _levels(message.asks))
            except InvalidBook:
                return self._failed(message, "snapshot levels are malformed")
            return self.copy.checksum() == message.checksum or self._failed(message, "snapshot")
        if isinstance(message, pb.BookStale) or self.copy is None:
            self.copy = None
            return True
        assert isinstance(message, pb.BookUpdate)
        try:
            self.copy.apply(BookUpdate(_levels(message.bids), _levels(message.asks), message.checksum))
        except (ChecksumMismatch, InvalidBook) as exc:
            return self._failed(message, str(exc))
        return True

    def _failed(self, message: Message, why: str) -> bool:
        log.error("book %s %s: the bridge's copy fails the checksum (%s); waiting for a snapshot",
                  getattr(message, "symbol", "?"), getattr(message, "sequence", "?"), why)
        self.copy = None
        return False


def _levels(levels: object) -> tuple[tuple[str, str], ...]:
    return tuple((level.price, level.qty) for level in levels)  # type: ignore[attr-defined]
