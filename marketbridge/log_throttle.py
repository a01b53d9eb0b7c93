"""A log line per reason at most every ``interval_s``, carrying how many events it stands for.

Both services log refusals that a misbehaving peer can cause at any rate (handshakes turned
away, requests that are not HTTP, user metadata from a peer not allowed to send it): one line
per event would let that peer flood the log, and dropping lines would hide how many there were.
So the first event of a reason is logged at once, the rest are counted, and the next line due
says how many it stands for. Sans-I/O: the caller passes its monotonic clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Throttle:
    """At most one log line per reason per ``interval_s``, each carrying how many events it
    stands for (itself and those held back since the last line)."""

    interval_s: float
    _held: dict[str, int] = field(default_factory=dict)
    _last: dict[str, float] = field(default_factory=dict)

    def note(self, reason: str, now: float) -> int:
        """Count one event at ``now`` (monotonic seconds): the count to log now, or 0 (not due)."""
        held = self._held.get(reason, 0) + 1
        last = self._last.get(reason)
        if last is not None and now - last < self.interval_s:
            self._held[reason] = held
            return 0
        self._held[reason], self._last[reason] = 0, now
        return held
