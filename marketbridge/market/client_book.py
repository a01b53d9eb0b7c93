"""A client's copy of a book at one depth, checked against every update's checksum.

What docs/market_data.md asks of a client, as a plain object: tests use it to prove that what the
server sends rebuilds the server's cut, probe clients use it to check a live bridge.
"""

from __future__ import annotations

from collections.abc import Sequence

from marketbridge.market.book import BookView, check_depth, parse_levels, present
from marketbridge.market.checksum import CHECKSUM_LEVELS, checksum
from marketbridge.market.ladder import Ladder, Level
from marketbridge.market.merge import BookUpdate


class ChecksumMismatch(Exception):
    """The copy no longer matches the server's: re-subscribe for a fresh snapshot."""


class ClientBook:
    """Levels as received, truncated to ``depth``."""

    def __init__(self, depth: int) -> None:
        self.depth = check_depth(depth)
        self.bids = Ladder(descending=True)
        self.asks = Ladder(descending=False)

    def load(self, bids: Sequence[Level], asks: Sequence[Level]) -> None:
        """Start from a snapshot."""
        self.bids.replace(present(parse_levels(bids, "bids", delta=False)))
        self.asks.replace(present(parse_levels(asks, "asks", delta=False)))
        self._truncate()

    def apply(self, update: BookUpdate) -> None:
        """Apply, truncate to depth, verify; ChecksumMismatch when the copy went wrong."""
        for ladder, levels, side in ((self.bids, update.bids, "bids"),
                                     (self.asks, update.asks, "asks")):
            for price, level in parse_levels(levels, side, delta=True):
                ladder.set(price, level)
        self._truncate()
        found = self.checksum()
        if found != update.checksum:
            raise ChecksumMismatch(f"checksum {found} != {update.checksum}")

    def checksum(self) -> int:
        """Checksum of the copy as it stands (of its top 10 a side: depth is never below 10,
        so that is the top of the cut; cutting all ``depth`` levels first was wasted work)."""
        return checksum(self.bids.top(CHECKSUM_LEVELS), self.asks.top(CHECKSUM_LEVELS))

    def view(self) -> BookView:
        """The copy as a BookView, to compare with the server's cut."""
        return BookView(tuple(self.bids.top(self.depth)), tuple(self.asks.top(self.depth)))

    def _truncate(self) -> None:
        self.bids.truncate(self.depth)
        self.asks.truncate(self.depth)
