"""Candles built from trades (docs/market_data.md): one series per interval, UTC-aligned.

A candle covers ``[open_time, open_time + interval)``, ``open_time`` a multiple of the
interval in unix seconds (unix time has no leap seconds, so a multiple of 86400 is midnight
UTC). ``open`` is the price of its earliest trade by trade ``time`` and ``close`` of its latest
(equal times: arrival order), so a late trade lands where its time says, not at the end;
``high``/``low`` are the extreme prices (the first string seen for an equal value), ``volume``
the sum of amounts, exact, written positionally.

**Late trades.** A trade whose interval is still retained updates that candle, even a closed
one (the update is sent again with ``closed: true``). Retention is a window of the last
``retention`` intervals ending at the newest candle: older candles are dropped, and a trade
older than the window is refused (counted in ``dropped_late``): its candle is gone, and
re-creating it would resurrect history clients were told is complete. Intervals without
trades have no candle (nothing to report; a client draws a gap or repeats the close).

**Closing.** A candle closes when a trade arrives in a later interval (every earlier one is
then final), or when the clock passes its end: the service calls :meth:`CandleSeries.close_due`
with the current time on a timer (e.g. every second), so a quiet market still gets its
``closed: true`` candle on time. Each candle is emitted closed exactly once by these two paths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from marketbridge.market.decimals import format_decimal
from marketbridge.market.trades import Trade

INTERVALS: dict[str, int] = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400,
                             "1d": 86400}
DEFAULT_RETENTION = 1000


class InvalidInterval(ValueError):
    """Unknown interval name (INVALID_ARGUMENT)."""


def interval_seconds(interval: str) -> int:
    """Length of ``interval`` in seconds, or InvalidInterval listing the known ones."""
    try:
        return INTERVALS[interval]
    except (KeyError, TypeError):
        raise InvalidInterval(f"interval must be one of {', '.join(INTERVALS)}, "
                              f"got {interval!r}") from None


@dataclass(frozen=True, slots=True)
class Candle:
    """A candle as clients see it."""

    interval: str
    open_time: int
    open: str
    high: str
    low: str
    close: str
    volume: str
    trades: int
    closed: bool


_Mark = tuple[float, int]   # (trade time, arrival number): orders trades inside a candle


class _Bar:
    """A candle being built: Decimal values beside the strings clients get."""

    def __init__(self, open_time: int, trade: Trade, mark: _Mark, closed: bool) -> None:
        self.open_time = open_time
        self.first = self.last = mark
        self.open = self.close = self.high = self.low = trade.price
        self.high_value = self.low_value = trade.price_value
        self.volume = trade.amount_value
        self.trades = 1
        self.closed = closed

    @classmethod
    def restored(cls, candle: Candle, first_time: float, last_time: float) -> _Bar:
        """A bar rebuilt from a stored candle and the times of its first and last trades.

        Their arrival numbers are lost; 0 keeps the order right: a later trade at the same time
        gets a higher number, so it becomes the close (arrived later) but not the open."""
        bar = cls.__new__(cls)
        bar.open_time = candle.open_time
        bar.first, bar.last = (first_time, 0), (last_time, 0)
        bar.open, bar.close, bar.high, bar.low = candle.open, candle.close, candle.high, candle.low
        bar.high_value, bar.low_value = Decimal(candle.high), Decimal(candle.low)
        bar.volume = Decimal(candle.volume)
        bar.trades = candle.trades
        bar.closed = candle.closed
        return bar

    def add(self, trade: Trade, mark: _Mark) -> None:
        if mark < self.first:
            self.first, self.open = mark, trade.price
        if mark > self.last:
            self.last, self.close = mark, trade.price
        if trade.price_value > self.high_value:
            self.high_value, self.high = trade.price_value, trade.price
        if trade.price_value < self.low_value:
            self.low_value, self.low = trade.price_value, trade.price
        self.volume += trade.amount_value
        self.trades += 1

    def candle(self, interval: str) -> Candle:
        return Candle(interval, self.open_time, self.open, self.high, self.low, self.close,
                      format_decimal(self.volume), self.trades, self.closed)


class CandleSeries:
    """Candles of one interval for one exchange+symbol, the last ``retention`` intervals."""

    def __init__(self, interval: str, retention: int = DEFAULT_RETENTION) -> None:
        if retention < 1:
            raise ValueError(f"retention must be at least 1, got {retention}")
        self.interval = interval
        self.seconds = interval_seconds(interval)
        self.retention = retention
        self.dropped_late = 0
        self._bars: dict[int, _Bar] = {}
        self._newest: int | None = None
        self._clock = -math.inf      # the last ``now`` given to close_due
        self._arrivals = 0
        self._dropped: list[int] = []  # open_times that left the window, until taken

    def add(self, trade: Trade) -> list[Candle]:
        """Add a trade; returns the candles it changed: any it closed, then its own."""
        touched = self._place(trade)
        candles = [self._bars[t].candle(self.interval) for t in touched]
        self._trim()
        return candles

    def touch(self, trade: Trade) -> list[int]:
        """:meth:`add` for a caller that wants only the open_times it changed (still retained):
        a store that writes each candle's last state per batch builds each Candle once
        (:meth:`candle_at`), not once per trade."""
        touched = self._place(trade)
        self._trim()
        return [t for t in touched if t in self._bars]

    def candle_at(self, open_time: int) -> Candle:
        """The retained candle that opened at ``open_time``, as it stands."""
        return self._bars[open_time].candle(self.interval)

    def _place(self, trade: Trade) -> list[int]:
        """Put a trade in its candle (closing earlier ones when it opens a later interval);
        the open_times changed: any it closed, then its own ([] for a trade beyond retention)."""
        open_time = int(trade.time // self.seconds) * self.seconds
        newest = self._newest
        if newest is not None and open_time <= newest - self.window:
            self.dropped_late += 1
            return []
        self._arrivals += 1
        mark = (trade.time, self._arrivals)
        changed = self._advance(open_time) if newest is None or open_time > newest else []
        bar = self._bars.get(open_time)
        if bar is None:
            later = newest is not None and open_time < newest
            closed = later or open_time + self.seconds <= self._clock
            bar = self._bars[open_time] = _Bar(open_time, trade, mark, closed)
        else:
            bar.add(trade, mark)
        return changed + [open_time]

    @property
    def window(self) -> int:
        """Seconds of history kept behind the newest candle's open_time."""
        return self.retention * self.seconds

    def _advance(self, open_time: int) -> list[int]:
        """A trade opened a later interval: close what was open (their open_times)."""
        closed = []
        for start, bar in self._bars.items():
            if not bar.closed:
                bar.closed = True
                closed.append(start)
        self._newest = open_time
        return closed

    def _trim(self) -> None:
        """Drop the candles that left the window behind the newest one."""
        if self._newest is None:
            return
        for old in [t for t in self._bars if t <= self._newest - self.window]:
            del self._bars[old]
            self._dropped.append(old)

    def take_dropped(self) -> list[int]:
        """The open_times of candles dropped from the window since the last call (a store
        deletes them too)."""
        dropped, self._dropped = self._dropped, []
        return dropped

    def marks(self, open_time: int) -> tuple[float, float]:
        """The times of the first and last trade of a retained candle (what a store keeps
        beside the candle so :meth:`restore` can order later trades right)."""
        bar = self._bars[open_time]
        return bar.first[0], bar.last[0]

    def restore(self, stored: list[tuple[Candle, float, float]]) -> None:
        """Load stored candles (each with its first and last trade times) into an empty series:
        what a restarted service does before adding new trades."""
        for candle, first_time, last_time in stored:
            self._bars[candle.open_time] = _Bar.restored(candle, first_time, last_time)
        if self._bars:
            self._newest = max(self._bars)

    def _close(self, bar: _Bar) -> Candle:
        bar.closed = True
        return bar.candle(self.interval)

    def close_due(self, now: float) -> list[Candle]:
        """Close candles whose interval ended by ``now``; the clock-tick path to ``closed``."""
        self._clock = max(self._clock, now)
        return [self._close(bar) for bar in self._bars.values()
                if not bar.closed and bar.open_time + self.seconds <= now]

    def candles(self, limit: int | None = None) -> list[Candle]:
        """Retained candles, oldest first (the last one may be open); the newest ``limit``."""
        ordered = [self._bars[t].candle(self.interval) for t in sorted(self._bars)]
        return ordered if limit is None else ordered[-limit:] if limit > 0 else []


class SymbolCandles:
    """Every interval's series for one exchange+symbol, fed the same trades."""

    def __init__(self, retention: int = DEFAULT_RETENTION) -> None:
        self.series = {name: CandleSeries(name, retention) for name in INTERVALS}

    def get(self, interval: str) -> CandleSeries:
        """The series of ``interval`` (InvalidInterval when unknown)."""
        interval_seconds(interval)
        return self.series[interval]

    def add(self, trade: Trade) -> list[Candle]:
        """Add to every interval; all candles changed."""
        return [c for series in self.series.values() for c in series.add(trade)]

    def touch(self, trade: Trade) -> list[tuple[str, int]]:
        """Add to every interval; the (interval, open_time) of each candle changed."""
        return [(name, t) for name, series in self.series.items() for t in series.touch(trade)]

    def close_due(self, now: float) -> list[Candle]:
        """Clock tick for every interval."""
        return [c for series in self.series.values() for c in series.close_due(now)]
