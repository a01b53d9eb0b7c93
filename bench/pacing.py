"""Open-loop pacing: how many messages are due by a given moment at a target rate.

The publisher sends in small bursts every few milliseconds instead of sleeping per message
(asyncio timers are too coarse for 20,000 sleeps a second); falling behind is caught up in
the next burst, capped so a stall does not turn into an unbounded flood.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Pacer:
    """Tracks a schedule of ``rate`` messages per second for ``total`` messages from ``start``."""

    rate: float
    total: int
    start: float
    sent: int = 0
    max_burst: int = 2_000

    def due(self, now: float) -> int:
        """Messages to send now (0 when ahead of schedule or done)."""
        target = min(self.total, int((now - self.start) * self.rate))
        return max(0, min(target - self.sent, self.max_burst))

    def mark(self, count: int) -> None:
        """Record that ``count`` messages went out."""
        self.sent += count

    @property
    def done(self) -> bool:
        """True once every message was sent."""
        return self.sent >= self.total

    def next_wakeup(self, now: float) -> float:
        """Seconds to sleep until at least one more message is due (0 when already due)."""
        if self.done:
            return 0.0
        return max(0.0, self.start + (self.sent + 1) / self.rate - now)
