"""The ticks the load publishers send: per-symbol sequence in ``volume``, send time in ``time``.

The Ticker fields pass through the cache service and the bridge unchanged, so a subscriber
reads the symbol's sequence number and the publisher's wall-clock send time straight from the
update it receives (every process runs on the same host, so the clocks agree).
"""

from __future__ import annotations

from typing import Any

BASELINE_SUBSCRIPTION = "baseline"


def symbol_names(count: int) -> list[str]:
    """``count`` distinct symbols, "S000/USDT", "S001/USDT", ..."""
    return [f"S{i:03d}/USDT" for i in range(count)]


def ticker_fields(exchange: str, symbol: str, seq: int, sent_at: float) -> dict[str, Any]:
    """A Ticker (proto/cache/v1/cache.proto fields) numbered ``seq`` for its symbol, stamped ``sent_at``."""
    price = 100.0 + (seq % 1000) * 0.01
    return {
        "exchange": exchange,
        "symbol": symbol,
        "price": price,
        "bid": price - 0.01,
        "ask": price + 0.01,
        "last": price,
        "volume": float(seq),
        "change_24h": 0.5,
        "time": sent_at,
    }


def baseline_frame(fields: dict[str, Any]) -> dict[str, Any]:
    """The bridge's ``ticker_update`` frame shape, which the baseline relays verbatim."""
    return {
        "type": "update",
        "action": "ticker_update",
        "subscription_id": BASELINE_SUBSCRIPTION,
        "seq": str(int(fields["volume"])),
        "result": fields,
    }


class SequenceCounter:
    """Hands out 1, 2, 3... per symbol and remembers the last number given to each."""

    def __init__(self, symbols: list[str]) -> None:
        self.symbols = symbols
        self.last: dict[str, int] = {s: 0 for s in symbols}
        self._index = 0

    def next(self) -> tuple[str, int]:
        """The next (symbol, seq), cycling through the symbols in order."""
        symbol = self.symbols[self._index % len(self.symbols)]
        self._index += 1
        seq = self.last[symbol] + 1
        self.last[symbol] = seq
        return symbol, seq

    def final(self) -> dict[str, int]:
        """Last seq per symbol that was actually handed out (symbols never used are left out)."""
        return {s: n for s, n in self.last.items() if n}
