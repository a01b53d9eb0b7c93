"""Retry pacing: capped exponential backoff, the one policy every reconnect loop uses.

The bridge re-opens upstream streams and catch-up replays, the cache service re-reads Redis
after an error, the demo feed reconnects to the cache service: each waits before trying again,
doubling the wait up to a cap and starting over after a success. This object only computes
the delays (it never sleeps), so the loops stay thin and the arithmetic is tested once.
Optional jitter spreads many clients that failed together (one restarted service) so they do
not all come back in the same instant.
"""

from __future__ import annotations

import random

NO_JITTER = (1.0, 1.0)


class Backoff:
    """Delays ``first, 2*first, 4*first, ...`` capped at ``cap``; :meth:`reset` after a success.

    Each delay is multiplied by a factor drawn from ``jitter`` (``(low, high)``), and never
    exceeds ``cap`` once jittered.
    """

    def __init__(self, first: float, cap: float, jitter: tuple[float, float] = NO_JITTER,
                 rng: random.Random | None = None) -> None:
        self.first, self.cap, self.jitter = first, cap, jitter
        self._rng = rng or random.Random()
        self._next = first

    def delay(self) -> float:
        """The wait before the next attempt; the one after it doubles (up to the cap)."""
        base = self._next
        self._next = min(self.cap, self._next * 2)
        if self.jitter == NO_JITTER:
            return base
        return min(base * self._rng.uniform(*self.jitter), self.cap)

    def reset(self) -> None:
        """The last attempt succeeded: the next failure waits ``first`` again."""
        self._next = self.first
