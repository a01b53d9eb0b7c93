"""An L2 order book as a client keeps it: snapshot, deltas, truncation, checksum.

A copy of the server's rules (docs/protocol.md §10.3), not an import of them: the client
installs on its own, without the server package (marketbridge/market/ holds the server's
version; tests check both against the same worked example).
"""

from __future__ import annotations

import zlib
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

Level = tuple[str, str]
CHECKSUM_LEVELS = 10


class ChecksumMismatch(Exception):
    """The copy no longer matches the server's: the client re-subscribes for a fresh snapshot."""


def _strip(text: str) -> str:
    """``"0.00100000"`` -> ``"100000"``: Kraken's rule, applied to the strings as sent."""
    return text.replace(".", "").lstrip("0")


def checksum(bids: Sequence[Level], asks: Sequence[Level]) -> int:
    """CRC32 over the top 10 asks then the top 10 bids (best first), unsigned 32-bit."""
    text = "".join(_strip(p) + _strip(q) for p, q in asks[:CHECKSUM_LEVELS])
    text += "".join(_strip(p) + _strip(q) for p, q in bids[:CHECKSUM_LEVELS])
    return zlib.crc32(text.encode("ascii")) & 0xFFFFFFFF


def _decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation as error:
        raise ValueError(f"not a decimal string: {text!r}") from error


class Side:
    """One side's levels keyed by decimal price (``"1.0"`` and ``"1.00"`` are one level),
    kept sorted best first so the top and truncation cost no sort per update."""

    def __init__(self, descending: bool) -> None:
        self._sign = -1 if descending else 1
        self._keys: list[Decimal] = []         # signed prices, ascending = best first
        self._levels: dict[Decimal, Level] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def set(self, price: str, qty: str) -> None:
        """Set a level; a zero qty (any zero decimal) removes it."""
        key = _decimal(price) * self._sign
        present = key in self._levels
        if _decimal(qty) == 0:
            if present:
                del self._levels[key]
                del self._keys[bisect_left(self._keys, key)]
            return
        if not present:
            self._keys.insert(bisect_left(self._keys, key), key)
        self._levels[key] = (price, qty)

    def replace(self, levels: Iterable[Sequence[str]]) -> None:
        self._keys, self._levels = [], {}
        for price, qty in levels:
            self.set(price, qty)

    def top(self, depth: int) -> list[Level]:
        return [self._levels[key] for key in self._keys[:depth]]

    def truncate(self, depth: int) -> None:
        for key in self._keys[depth:]:
            del self._levels[key]
        del self._keys[depth:]


class OrderBook:
    """A client's copy of one book at one depth, verified against every update's checksum."""

    def __init__(self, exchange: str, symbol: str, depth: int) -> None:
        self.exchange, self.symbol, self.depth = exchange, symbol, depth
        self.bids = Side(descending=True)
        self.asks = Side(descending=False)
        self.time = 0.0
        self.stale = False
        self.stale_reason = ""

    def load(self, book: dict[str, Any]) -> None:
        """Replace the copy with a snapshot (a subscribe result's, or a ``snapshot: true`` update)."""
        self.bids.replace(book.get("bids") or [])
        self.asks.replace(book.get("asks") or [])
        self._truncate()
        self.time = float(book.get("time") or 0.0)
        self.stale, self.stale_reason = bool(book.get("stale", False)), ""
        expected = book.get("checksum")
        if expected is not None and (self.bids or self.asks) and self.checksum() != expected:
            raise ChecksumMismatch(f"snapshot checksum {self.checksum()} != {expected}")

    def apply(self, update: dict[str, Any]) -> None:
        """Apply one ``book_update`` result (delta, snapshot or stale mark); ChecksumMismatch
        when the copy went wrong."""
        if update.get("stale"):
            self.stale, self.stale_reason = True, str(update.get("reason", ""))
            return
        if update.get("snapshot"):
            self.load(update)
            return
        for price, qty in update.get("bids") or ():
            self.bids.set(price, qty)
        for price, qty in update.get("asks") or ():
            self.asks.set(price, qty)
        self._truncate()
        self.time = float(update.get("time") or self.time)
        found = self.checksum()
        if found != update.get("checksum"):
            raise ChecksumMismatch(f"checksum {found} != {update.get('checksum')}")

    def checksum(self) -> int:
        return checksum(self.bids.top(CHECKSUM_LEVELS), self.asks.top(CHECKSUM_LEVELS))

    def levels(self) -> tuple[list[Level], list[Level]]:
        """(bids, asks), best first, as strings: what to display and to compare."""
        return self.bids.top(self.depth), self.asks.top(self.depth)

    def best_bid(self) -> Level | None:
        top = self.bids.top(1)
        return top[0] if top else None

    def best_ask(self) -> Level | None:
        top = self.asks.top(1)
        return top[0] if top else None

    def _truncate(self) -> None:
        self.bids.truncate(self.depth)
        self.asks.truncate(self.depth)
