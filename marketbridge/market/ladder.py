"""One side of an L2 book: levels keyed by decimal price, kept in best-first order.

Both the server's book and a client's copy are two ladders. The price keys stay in a sorted
list (bisect), so a delta costs a dict update plus, only when a level appears or goes, a
list insert/delete; a cut of the top N is a slice. Bids are stored under the negated price
so that "best first" is ascending order on both sides.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from decimal import Decimal

Level = tuple[str, str]   # (price, qty) as the publisher wrote them


class Ladder:
    """Levels of one side; ``descending`` for bids (best = highest price)."""

    def __init__(self, descending: bool) -> None:
        self._sign = -1 if descending else 1
        self._keys: list[Decimal] = []          # signed prices, ascending = best first
        self._levels: dict[Decimal, Level] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, price: Decimal) -> Level | None:
        """The level at ``price`` (by value), or None."""
        return self._levels.get(price * self._sign)

    def set(self, price: Decimal, level: Level | None) -> int:
        """Put ``level`` at ``price``; None removes the level (absent is fine).

        Returns the rank (0 = best) the change happened at: every level better than it is
        untouched, which lets a depth feed skip or shorten its diff.
        """
        key = price * self._sign
        rank = bisect_left(self._keys, key)
        if level is None:
            if self._levels.pop(key, None) is not None:
                del self._keys[rank]
            return rank
        if key not in self._levels:
            self._keys.insert(rank, key)
        self._levels[key] = level
        return rank

    def best(self) -> Decimal | None:
        """The best price, or None when the side is empty."""
        return self._keys[0] * self._sign if self._keys else None

    def top(self, depth: int) -> list[Level]:
        """The best ``depth`` levels, best first."""
        levels = self._levels
        return [levels[key] for key in self._keys[:depth]]

    def truncate(self, depth: int) -> None:
        """Drop every level beyond the best ``depth`` (a client copy after an update)."""
        for key in self._keys[depth:]:
            del self._levels[key]
        del self._keys[depth:]

    def replace(self, levels: Iterable[tuple[Decimal, Level]]) -> None:
        """Make the side hold exactly ``levels`` (a snapshot)."""
        self._levels = {price * self._sign: level for price, level in levels}
        self._keys = sorted(self._levels)
