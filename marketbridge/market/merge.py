"""Book updates for one subscription depth, and merging them for a client that is behind.

**Update for a depth.** A client holds the book cut to its depth and truncates its copy after
each update (docs/market_data.md). When a level inside that depth goes, the best level beyond it moves
in, and the client has never seen it. So the server does not forward the raw delta: for each
depth it sends the diff of ``cut(depth)`` before and after the delta (:func:`diff` defines
it): every level that is new or whose strings changed is sent, every price that left the cut
(removed, or pushed out by a better one) is sent with qty ``"0"``. Applying that to a copy
equal to the old cut gives exactly the new cut, so the checksum of the new cut verifies.
(Kraken does not send the "pushed out" removals and lets clients truncate; sending them costs
a few bytes and makes the copy right even for a client that forgets to truncate.) The service
computes the same update from the delta itself (``Ladder.cut_update``), without the cuts;
tests hold the two equal.

**Merge.** Book updates are never dropped (§9.3); for a client that is behind, pending
updates are merged per side and price, the latest qty winning (:func:`merge`). Why this gives
the same book: every price the merged update names ends with the value its last update gave
it, which is its value in the newest cut (or removal, if it left the cut); every price it does
not name was untouched by all of them, so it is in the old and the new cut alike, with the
same strings. The copy therefore equals the newest cut, and the newest update's checksum is
the right one to send with the merge.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from marketbridge.market.book import BookView
from marketbridge.market.checksum import checksum
from marketbridge.market.ladder import REMOVED, Level


@dataclass(frozen=True, slots=True)
class BookUpdate:
    """Changed levels (qty ``"0"`` removes) and the checksum of the book after them."""

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]
    checksum: int

    def __bool__(self) -> bool:
        return bool(self.bids or self.asks)


def diff_side(before: Sequence[Level], after: Sequence[Level]) -> tuple[Level, ...]:
    """Levels of ``after`` not in ``before``, and removals of the prices that left.

    Compares the string pairs (an unchanged level is the same tuple), and parses decimals only
    for the few that differ: a price that is still there under a new spelling or qty is sent
    once with its new strings, not also removed.
    """
    old, new = set(before), set(after)
    changed = [level for level in after if level not in old]
    left = [level for level in before if level not in new]
    if not left:
        return tuple(changed)
    still = {Decimal(price) for price, _ in changed}
    return tuple([(price, REMOVED) for price, _ in left if Decimal(price) not in still]
                 + changed)


def diff(before: BookView, after: BookView) -> BookUpdate:
    """The update that turns a copy equal to ``before`` into ``after`` (both one depth's cut).

    Empty (falsy) when the delta changed nothing inside this depth: nothing to send.
    """
    return BookUpdate(diff_side(before.bids, after.bids), diff_side(before.asks, after.asks),
                      checksum(after.bids, after.asks))


def _merge_side(sides: Iterable[tuple[Level, ...]]) -> tuple[Level, ...]:
    latest: dict[Decimal, Level] = {}
    for levels in sides:
        for level in levels:
            latest[Decimal(level[0])] = level
    return tuple(latest.values())


def merge(updates: Sequence[BookUpdate]) -> BookUpdate:
    """One update equal to applying ``updates`` in turn; carries the last one's checksum."""
    if not updates:
        raise ValueError("nothing to merge")
    return BookUpdate(_merge_side(u.bids for u in updates), _merge_side(u.asks for u in updates),
                      updates[-1].checksum)
