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


class PendingBook:
    """One subscription's queued book update, and the newer ones merged into it.

    The merge itself waits until the update is framed (:meth:`frame`, when the client's writer
    takes its queue): a client that is behind takes many updates of a book between two writes,
    and merging and framing at each of them cost more than the write (profiled: 30-40 % of a
    saturated bridge's CPU in ``merge``), where merging once costs one pass."""

    __slots__ = ("prefix", "seq", "delta", "_later")

    def __init__(self, prefix: str, seq: str, delta: BookDelta) -> None:
        self.prefix = prefix     # the subscription's frame prefix
        self.seq = seq
        self.delta = delta
        self._later: list[BookUpdate] = []   # newer updates, not merged into ``delta`` yet

    def then(self, newer: PendingBook) -> PendingBook:
        """This update followed by ``newer``, as one (this object, which ``newer`` joins)."""
        self._later.append(newer.delta.update)
        self._later += newer._later
        self.prefix, self.seq = newer.prefix, newer.seq
        self.delta = BookDelta(newer.delta.base, self.delta.update)
        return self

    @property
    def update(self) -> BookUpdate:
        """The merged update (merged now, once, if newer ones joined since)."""
        if self._later:
            self.delta = BookDelta(self.delta.base, merge([self.delta.update, *self._later]))
            self._later = []
        return self.delta.update

    def frame(self) -> str:
        update = self.update
        result = {**self.delta.base, "bids": [list(level) for level in update.bids],
                  "asks": [list(level) for level in update.asks], "checksum": update.checksum}
        return self.prefix + update_tail(self.seq, dumps(result))
