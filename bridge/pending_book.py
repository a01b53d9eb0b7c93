"""A queued book update that a newer one can merge into, for a client that is behind.

Book updates are never dropped (docs/protocol.md §6, SPEC §9.3), but a client that falls
behind must not get a backlog of every delta either. Its queue merges them instead: the
pending update of a subscription and the new one become one update that names every price
either named, the newer qty winning, with the newer checksum
(:func:`marketbridge.market.merge.merge` says why that is the same book). The merged update
takes the newer one's seq (a client resuming from it has seen both) and keeps the older one's
event time (what the latency histogram should see).

Only updates merge. A replacing snapshot or a stale mark is a barrier: an update after it is
never merged into an update before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bridge.codec import dumps, update_tail
from marketbridge.market.merge import BookUpdate, merge


@dataclass(frozen=True, slots=True)
class BookDelta:
    """The part of a book event a merge needs: its JSON fields beside the levels, and the levels."""

    base: dict[str, Any]     # exchange, symbol, time
    update: BookUpdate


@dataclass(frozen=True, slots=True)
class PendingBook:
    """One subscription's queued book update (possibly several merged)."""

    prefix: str              # the subscription's frame prefix
    seq: str
    delta: BookDelta

    def then(self, newer: PendingBook) -> PendingBook:
        """This update followed by ``newer``, as one."""
        merged = merge([self.delta.update, newer.delta.update])
        return PendingBook(newer.prefix, newer.seq, BookDelta(newer.delta.base, merged))

    def frame(self) -> str:
        update = self.delta.update
        result = {**self.delta.base, "bids": [list(level) for level in update.bids],
                  "asks": [list(level) for level in update.asks], "checksum": update.checksum}
        return self.prefix + update_tail(self.seq, dumps(result))
