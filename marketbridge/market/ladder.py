"""One side of an L2 book: levels keyed by decimal price, kept in best-first order.

Both the server's book and a client's copy are two ladders. The price keys stay in a sorted
list (bisect), so a delta costs a dict update plus, only when a level appears or goes, a
list insert/delete; a cut of the top N is a slice. Bids are stored under the negated price
so that "best first" is ascending order on both sides.

**What a delta did to a cut.** The service sends, for each subscription depth, the update that
turns the old cut into the new one. Diffing two cuts costs their length; a delta names one
to three prices. So :meth:`Ladder.apply` records a :class:`SideChange` (the old level of every
price it set, and where each depth's cut ended before), and :meth:`Ladder.cut_update` derives
a depth's update from it: the named prices whose place in the cut changed, plus the unnamed
levels that crossed the cut's end (pulled in when levels above went, pushed out by new ones).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

Level = tuple[str, str]   # (price, qty) as the publisher wrote them
REMOVED = "0"             # the qty that removes a level in an update


@dataclass(slots=True)
class SideChange:
    """One delta's effect on a side, enough to derive any depth's update after it.

    ``before``: each price the delta set (signed key), with its level before the delta (None:
    absent), in the order first named. ``rank``: the best rank a change happened at (levels
    better than it are untouched). ``bounds``: per depth asked for, the key of the cut's last
    level before the delta, or None when the side was shorter than the depth.
    """

    before: dict[Decimal, Level | None]
    rank: int
    bounds: dict[int, Decimal | None]
    whole: tuple[Level, ...] | None = None   # the update of every cut the side fits, once known


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

    def apply(self, changes: Iterable[tuple[Decimal, Level | None]], depths: Sequence[int],
              untouched: int) -> SideChange:
        """Set each change in order (a later change of a price wins); the record of it.

        ``depths``: the cuts whose updates will be asked for; ``untouched``: the rank reported
        when no change happened (beyond every cut)."""
        keys = self._keys
        bounds = {depth: keys[depth - 1] if len(keys) >= depth else None for depth in depths}
        before: dict[Decimal, Level | None] = {}
        rank = untouched
        for price, level in changes:
            key = price * self._sign
            if key not in before:
                before[key] = self._levels.get(key)
            rank = min(rank, self.set(price, level))
        return SideChange(before, rank, bounds)

    def undo(self, change: SideChange) -> None:
        """Put back every level ``change`` recorded (a refused delta)."""
        for key, level in change.before.items():
            self.set(key * self._sign, level)

    def cut_update(self, change: SideChange, depth: int) -> tuple[Level, ...]:
        """The levels that turn the ``depth`` cut before ``change`` into the cut now: the
        prices that left it with qty ``"0"`` (best first), then the new or changed levels
        (best first), each price once. Empty when the cut is as it was."""
        if change.rank >= depth:
            return ()
        old_end = change.bounds[depth]
        new_end = self._keys[depth - 1] if len(self._keys) >= depth else None
        if old_end is None and new_end is None:
            # the whole side fits this cut before and after: so it does every larger cut, and
            # they all get this one update (a book of 30 levels: depths 100 and 500 alike)
            if change.whole is None:
                change.whole = self._update(change, None, None)
            return change.whole
        return self._update(change, old_end, new_end)

    def _update(self, change: SideChange, old_end: Decimal | None,
                new_end: Decimal | None) -> tuple[Level, ...]:
        """:meth:`cut_update` for a cut that ended at ``old_end`` and ends at ``new_end``
        (None: past the side's last level)."""
        levels = self._levels
        left: list[tuple[Decimal, Level]] = []
        came: list[tuple[Decimal, Level]] = []
        for key, old in change.before.items():
            new = levels.get(key)
            was_in = old is not None and (old_end is None or key <= old_end)
            if new is not None and (new_end is None or key <= new_end):
                if not was_in or old != new:
                    came.append((key, new))
            elif was_in:
                left.append((key, (old[0], REMOVED)))  # type: ignore[index]
        if old_end != new_end:
            self._crossed(change, old_end, new_end, left, came)
        left.sort()
        came.sort()
        return tuple([level for _, level in left] + [level for _, level in came])

    def _crossed(self, change: SideChange, old_end: Decimal | None, new_end: Decimal | None,
                 left: list[tuple[Decimal, Level]], came: list[tuple[Decimal, Level]]) -> None:
        """Add the levels the delta did not name that crossed the cut's end: between the two
        ends, pulled in (the end moved out) or pushed out (it moved in)."""
        keys, levels, named = self._keys, self._levels, change.before
        if old_end is not None and (new_end is None or new_end > old_end):
            stop = len(keys) if new_end is None else bisect_right(keys, new_end)
            came += [(key, levels[key]) for key in keys[bisect_right(keys, old_end):stop]
                     if key not in named]
        elif new_end is not None:
            stop = len(keys) if old_end is None else bisect_right(keys, old_end)
            left += [(key, (levels[key][0], REMOVED)) for key in keys[bisect_right(keys, new_end):stop]
                     if key not in named]

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
