"""An L2 order book fed by one publisher's snapshots and deltas (docs/market_data.md).

A snapshot replaces the book; a delta changes some levels and must carry the exchange
sequence number right after the last one. Anything else means we missed an update, so the
book no longer matches the exchange: the delta is refused (:class:`SnapshotNeeded`, which the
service answers FAILED_PRECONDITION) and the book stays *stale*, refusing every delta until
the next snapshot. Subscribers are told, never fed a book we know to be wrong.

A delta that would leave the book crossed (best bid >= best ask) is refused the same way: a
crossed book is impossible on a real exchange, so the publisher's view and ours diverged.
A refused delta never changes the levels (the book keeps its last good state for ``GetBook``
callers that accept a stale answer), it only marks the book stale.

Malformed input (bad decimals, negative quantities, a zero price) is a different thing: the
caller's message is wrong, not our state, so :class:`InvalidBook` (INVALID_ARGUMENT) leaves
the book exactly as it was, neither changed nor stale.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

from marketbridge.market.checksum import CHECKSUM_LEVELS, checksum
from marketbridge.market.decimals import DecimalError, parse_decimal, parse_positive, valid_decimal
from marketbridge.market.ladder import Ladder, Level, SideChange

DEPTHS = frozenset({10, 25, 100, 500})
CUT_DEPTHS = tuple(sorted(DEPTHS))
DEFAULT_DEPTH = 10
MAX_DEPTH = max(DEPTHS)
SNAPSHOT_NEEDED = "snapshot needed"


class InvalidBook(ValueError):
    """The message is malformed (INVALID_ARGUMENT); the book is unchanged."""


class SnapshotNeeded(Exception):
    """The book cannot take this delta (FAILED_PRECONDITION); it waits for a snapshot."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"{SNAPSHOT_NEEDED}: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class BookView:
    """The top of a book: levels best first, as decimal strings."""

    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


Change = tuple[Decimal, Level | None]   # a parsed level; None removes the price


def check_depth(depth: int) -> int:
    """``depth`` if it is one of the depths docs/market_data.md allows, else InvalidBook."""
    if depth not in DEPTHS:
        allowed = ", ".join(str(d) for d in sorted(DEPTHS))
        raise InvalidBook(f"depth must be one of {allowed}, got {depth!r}")
    return depth


def parse_levels(raw: Iterable[Sequence[object]], side: str, *, delta: bool) -> list[Change]:
    """Validate ``[price, qty]`` pairs; in a delta a zero qty removes the level.

    A snapshot lists the levels that exist, so a zero qty there is refused rather than
    silently dropped: it is a publisher bug we want to hear about.
    """
    changes: list[Change] = []
    for index, pair in enumerate(raw):
        if len(pair) != 2:
            raise InvalidBook(f"{side}[{index}] must be [price, qty], got {len(pair)} items")
        price_text, qty_text = pair
        price, qty = valid_decimal(price_text), valid_decimal(qty_text)
        if not price or qty is None:   # invalid (or a zero price): the full check says why
            price, qty = _parsed_level(price_text, qty_text, f"{side}[{index}]")
        if not qty and not delta:
            raise InvalidBook(f"{side}[{index}] qty is zero; a snapshot lists only existing levels")
        changes.append((price, (price_text, qty_text) if qty else None))  # type: ignore[arg-type]
    return changes


def _parsed_level(price_text: object, qty_text: object, where: str) -> tuple[Decimal, Decimal]:
    """A level's price and qty checked in full (the error names ``where``)."""
    try:
        return parse_positive(price_text, f"{where} price"), parse_decimal(qty_text, f"{where} qty")
    except DecimalError as exc:
        raise InvalidBook(str(exc)) from None


def present(changes: Iterable[Change]) -> Iterator[tuple[Decimal, Level]]:
    """The levels of ``changes`` that exist (a snapshot's, once validated)."""
    return ((price, level) for price, level in changes if level is not None)


class Book:
    """One exchange+symbol book; ``sequence`` is the exchange's number of the last update."""

    def __init__(self) -> None:
        self.bids = Ladder(descending=True)
        self.asks = Ladder(descending=False)
        self.sequence: int | None = None
        self.stale = True   # no snapshot yet: nothing to build deltas on
        # what the last delta did to each side (None after a snapshot: everything changed)
        self.last: tuple[SideChange, SideChange] | None = None
        self._checksum: int | None = None   # of the top 10 now; None: not computed yet

    def apply_snapshot(self, bids: Iterable[Sequence[object]],
                       asks: Iterable[Sequence[object]], sequence: int) -> None:
        """Replace the book; it is fresh again from ``sequence`` on."""
        bid_changes = parse_levels(bids, "bids", delta=False)
        ask_changes = parse_levels(asks, "asks", delta=False)
        if _crossed(_best(bid_changes, max), _best(ask_changes, min)):
            raise InvalidBook("snapshot is crossed (best bid >= best ask)")
        self.bids.replace(present(bid_changes))
        self.asks.replace(present(ask_changes))
        self.sequence = sequence
        self.stale = False
        self.last, self._checksum = None, None

    def apply_delta(self, bids: Iterable[Sequence[object]], asks: Iterable[Sequence[object]],
                    sequence: int) -> tuple[list[Change], list[Change]]:
        """Apply the changed levels, or refuse (SnapshotNeeded / InvalidBook) and change none.

        Returns the parsed changes (bids, asks), so a caller that stores the book writes
        exactly the prices this delta named without parsing them again."""
        bid_changes = parse_levels(bids, "bids", delta=True)
        ask_changes = parse_levels(asks, "asks", delta=True)
        self._check_sequence(sequence)
        bid_side = self.bids.apply(bid_changes, CUT_DEPTHS, MAX_DEPTH)
        ask_side = self.asks.apply(ask_changes, CUT_DEPTHS, MAX_DEPTH)
        if _crossed(self.bids.best(), self.asks.best()):
            self.bids.undo(bid_side)
            self.asks.undo(ask_side)
            self.stale = True
            raise SnapshotNeeded(f"delta {sequence} would cross the book")
        self.sequence = sequence
        self.last = (bid_side, ask_side)
        if min(bid_side.rank, ask_side.rank) < CHECKSUM_LEVELS:
            self._checksum = None
        return bid_changes, ask_changes

    def checksum(self) -> int:
        """The checksum of the top 10 a side, which every cut (depth >= 10) shares; computed
        once per change of the top, however many depths send it."""
        if self._checksum is None:
            self._checksum = checksum(self.bids.top(CHECKSUM_LEVELS), self.asks.top(CHECKSUM_LEVELS))
        return self._checksum

    def cut_update(self, depth: int) -> tuple[tuple[Level, ...], tuple[Level, ...]]:
        """What the last delta changed in the ``depth`` cut (bids, asks; both empty when
        nothing): the levels that turn a copy equal to the cut before it into the cut now."""
        if self.last is None:
            raise ValueError("no delta since the last snapshot: send the cut, not an update")
        bid_side, ask_side = self.last
        return self.bids.cut_update(bid_side, check_depth(depth)), self.asks.cut_update(ask_side, depth)

    def _check_sequence(self, sequence: int) -> None:
        if self.sequence is None:
            raise SnapshotNeeded("no snapshot yet")
        if self.stale:
            raise SnapshotNeeded(f"book is stale since sequence {self.sequence}")
        if sequence != self.sequence + 1:
            self.stale = True
            raise SnapshotNeeded(f"delta sequence {sequence} does not follow {self.sequence}")

    def cut(self, depth: int) -> BookView:
        """The best ``depth`` levels of each side (depth one of DEPTHS)."""
        check_depth(depth)
        return BookView(tuple(self.bids.top(depth)), tuple(self.asks.top(depth)))


def _best(changes: list[Change], pick: type[max] | type[min]) -> Decimal | None:
    prices = [price for price, level in changes if level is not None]
    return pick(prices) if prices else None


def _crossed(best_bid: Decimal | None, best_ask: Decimal | None) -> bool:
    return best_bid is not None and best_ask is not None and best_bid >= best_ask
