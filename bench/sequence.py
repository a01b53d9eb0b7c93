"""Per-symbol sequence verification for one subscriber: gaps, duplicates, reordering.

The publisher numbers each symbol's ticks 1, 2, 3... (carried in the Ticker's ``volume``).
A subscriber that sees every tick sees each symbol's numbers in order without holes. Under
backpressure the bridge conflates tickers (latest per symbol wins), which also shows up here
as a hole; the harness separates the two using the bridge's own conflation counter.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SequenceChecker:
    """Tracks the last sequence seen per symbol and counts what breaks the order."""

    last: dict[str, int] = field(default_factory=dict)
    received: int = 0
    gaps: int = 0
    duplicates: int = 0
    reordered: int = 0

    def observe(self, symbol: str, seq: int) -> None:
        """Account for one update of ``symbol`` numbered ``seq``."""
        self.received += 1
        previous = self.last.get(symbol, 0)
        if seq == previous + 1:
            self.last[symbol] = seq
        elif seq > previous:
            self.gaps += seq - previous - 1
            self.last[symbol] = seq
        elif seq == previous:
            self.duplicates += 1
        else:
            self.reordered += 1

    def caught_up(self, final: dict[str, int]) -> bool:
        """True once the last sequence of every published symbol has arrived."""
        return all(self.last.get(symbol, 0) >= seq for symbol, seq in final.items())

    def missing_tail(self, final: dict[str, int]) -> int:
        """Updates never seen at the end of each symbol's run (lost after the last one seen)."""
        return sum(max(0, seq - self.last.get(symbol, 0)) for symbol, seq in final.items())
