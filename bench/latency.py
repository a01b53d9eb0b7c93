"""A mergeable latency histogram with 0.1 ms resolution.

Clients record up to a million samples per second across worker processes, so samples are
counted into fixed buckets (one list index per 0.1 ms, a few hundred nanoseconds per sample)
instead of being kept; histograms from several processes are merged by adding counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

RESOLUTION_S = 0.0001
BUCKETS = 50_000  # 0.1 ms .. 5 s; slower samples keep their exact value in ``overflow``
PERCENTILES = (50.0, 95.0, 99.0, 99.9)


@dataclass
class LatencyHistogram:
    """Counts of latencies in seconds, bucketed by 0.1 ms, with exact values above 5 s."""

    counts: list[int] = field(default_factory=lambda: [0] * BUCKETS)
    overflow: list[float] = field(default_factory=list)
    total: int = 0
    max_s: float = 0.0

    def record(self, seconds: float) -> None:
        """Count one sample (negative values, from clock rounding, count as zero)."""
        # Plain comparisons rather than max(): this runs once per update, a million times a second.
        index = int(seconds * 10_000.0)
        if index < BUCKETS:
            self.counts[index if index > 0 else 0] += 1  # noqa: FURB136
        else:
            self.overflow.append(seconds)
        self.total += 1
        if seconds > self.max_s:  # noqa: PLR1730
            self.max_s = seconds

    def merge(self, other: LatencyHistogram) -> None:
        """Add another histogram's samples to this one."""
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.overflow.extend(other.overflow)
        self.total += other.total
        self.max_s = max(self.max_s, other.max_s)

    def percentile(self, pct: float) -> float | None:
        """The latency (seconds, upper edge of its bucket) below which ``pct`` % of samples fall."""
        if self.total == 0:
            return None
        rank = max(1, round(self.total * pct / 100.0 + 0.4999))
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return min((index + 1) * RESOLUTION_S, self.max_s)
        ordered = sorted(self.overflow)
        return ordered[min(rank - seen, len(ordered)) - 1]

    def summary_ms(self) -> dict[str, float | int | None]:
        """p50/p95/p99/p99.9/max in milliseconds and the sample count, for the JSON report."""
        out: dict[str, float | int | None] = {"samples": self.total}
        for pct in PERCENTILES:
            value = self.percentile(pct)
            out[f"p{pct:g}_ms"] = None if value is None else round(value * 1000.0, 2)
        out["max_ms"] = round(self.max_s * 1000.0, 2) if self.total else None
        return out

    def to_wire(self) -> dict[str, object]:
        """A compact picklable form (non-zero buckets only) to send between processes."""
        sparse = {i: c for i, c in enumerate(self.counts) if c}
        return {"sparse": sparse, "overflow": self.overflow, "total": self.total, "max": self.max_s}

    @classmethod
    def from_wire(cls, wire: dict[str, object]) -> LatencyHistogram:
        """Rebuild a histogram sent by :meth:`to_wire`."""
        hist = cls()
        sparse = wire["sparse"]
        assert isinstance(sparse, dict)
        for index, count in sparse.items():
            hist.counts[int(index)] = int(count)
        overflow = wire["overflow"]
        assert isinstance(overflow, list)
        hist.overflow = [float(v) for v in overflow]
        hist.total = int(wire["total"])  # type: ignore[arg-type]
        hist.max_s = float(wire["max"])  # type: ignore[arg-type]
        return hist

    @classmethod
    def merged(cls, wires: Iterable[dict[str, object]]) -> LatencyHistogram:
        """One histogram of every worker's :meth:`to_wire` form."""
        hist = cls()
        for wire in wires:
            hist.merge(cls.from_wire(wire))
        return hist
