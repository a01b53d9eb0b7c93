"""Candles: checked against a brute-force reference, late trades, closing, retention."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketbridge.market.candles import (
    INTERVALS,
    Candle,
    CandleSeries,
    InvalidInterval,
    SymbolCandles,
    interval_seconds,
)
from marketbridge.market.trades import Trade, parse_trade


def _trade(time: float, price: str = "100", amount: str = "1", n: int = 0) -> Trade:
    return parse_trade(f"t{n}", price, amount, "buy", time)


def _reference(trades: list[Trade], interval: str, retention: int) -> list[Candle]:
    """Candles by brute force: replay acceptance, group, sort each group by time."""
    seconds = INTERVALS[interval]
    accepted: list[tuple[int, int, Trade]] = []
    newest: int | None = None
    for arrival, trade in enumerate(trades):
        start = int(trade.time // seconds) * seconds
        if newest is not None and start <= newest - retention * seconds:
            continue
        newest = start if newest is None else max(newest, start)
        accepted.append((start, arrival, trade))
    assert newest is not None
    result = []
    for start in sorted({s for s, _, _ in accepted if s > newest - retention * seconds}):
        group = [(t.time, a, t) for s, a, t in accepted if s == start]
        by_time = [t for _, _, t in sorted(group, key=lambda g: (g[0], g[1]))]
        in_arrival = [t for _, _, t in sorted(group, key=lambda g: g[1])]
        high = max(in_arrival, key=lambda t: t.price_value)
        low = min(in_arrival, key=lambda t: t.price_value)
        volume = sum((t.amount_value for t in in_arrival), Decimal(0))
        result.append(Candle(interval, start, by_time[0].price, high.price, low.price,
                             by_time[-1].price, f"{volume:f}", len(group), start < newest))
    return result


trade_lists = st.lists(
    st.builds(_trade, st.integers(0, 4000).map(float) | st.floats(0, 4000),
              st.sampled_from(["100", "100.0", "99.5", "101", "0.001"]),
              st.sampled_from(["1", "0.5", "0.0000001", "2.25"])),
    min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(trades=trade_lists, interval=st.sampled_from(["1m", "5m", "15m"]),
       retention=st.integers(1, 8))
def test_matches_brute_force_reference(trades: list[Trade], interval: str,
                                       retention: int) -> None:
    series = CandleSeries(interval, retention)
    emitted_closed: list[int] = []
    for trade in trades:
        for candle in series.add(trade):
            if candle.closed and candle.open_time not in emitted_closed:
                emitted_closed.append(candle.open_time)
    expected = _reference(trades, interval, retention)
    assert series.candles() == expected
    assert [c.open_time for c in expected if c.closed] == sorted(
        t for t in emitted_closed if t in {c.open_time for c in expected})


def test_late_trade_updates_its_candle_and_can_become_open() -> None:
    series = CandleSeries("1m", retention=10)
    series.add(_trade(65, "10"))
    series.add(_trade(130, "20"))           # closes the 60 candle
    late = series.add(_trade(61, "5", "2"))
    assert late == [Candle("1m", 60, "5", "10", "5", "10", "3", 2, True)]


def test_new_interval_emits_previous_closed_then_new_open() -> None:
    series = CandleSeries("1m")
    series.add(_trade(10))
    changed = series.add(_trade(70, "101"))
    assert [(c.open_time, c.closed) for c in changed] == [(0, True), (60, False)]


def test_close_due_by_clock_once() -> None:
    series = CandleSeries("5m")
    series.add(_trade(301))
    assert series.close_due(599.9) == []
    assert [c.open_time for c in series.close_due(600)] == [300]
    assert series.close_due(700) == []
    assert series.add(_trade(302))[0].closed            # late trade, candle stays closed
    assert series.add(_trade(650)) == [Candle("5m", 600, "100", "100", "100", "100", "1", 1,
                                              False)]


def test_trade_in_gap_before_clock_is_closed_from_the_start() -> None:
    series = CandleSeries("1m")
    series.add(_trade(0))
    series.close_due(1000)
    assert series.add(_trade(500))[-1].closed


def test_retention_drops_old_candles_and_too_late_trades() -> None:
    series = CandleSeries("1m", retention=2)
    for t in (0, 60, 120):
        series.add(_trade(t))
    assert [c.open_time for c in series.candles()] == [60, 120]
    assert series.add(_trade(30)) == [] and series.dropped_late == 1
    assert [c.open_time for c in series.candles(limit=1)] == [120]
    assert series.candles(limit=0) == []


def test_candle_volume_is_exact_and_positional() -> None:
    series = CandleSeries("1m")
    for amount in ("0.1", "0.2", "0.0000001"):
        series.add(_trade(1, amount=amount))
    assert series.candles()[0].volume == "0.3000001"


def test_open_times_are_utc_aligned() -> None:
    candles = SymbolCandles(retention=5)
    changed = candles.add(_trade(1_700_000_000))
    assert {c.interval: c.open_time for c in changed} == {
        name: 1_700_000_000 // s * s for name, s in INTERVALS.items()}
    assert candles.get("1d").candles()[0].open_time % 86400 == 0
    assert len(candles.close_due(1_800_000_000)) == len(INTERVALS)


@pytest.mark.parametrize("interval", ["2m", "1M", "", None, "1H"])
def test_unknown_interval(interval: object) -> None:
    with pytest.raises(InvalidInterval,
                       match=f"interval must be one of 1m, 5m, 15m, 1h, 4h, 1d, got {interval!r}"):
        interval_seconds(interval)  # type: ignore[arg-type]
    with pytest.raises(InvalidInterval):
        SymbolCandles().get(interval)  # type: ignore[arg-type]


def test_retention_must_be_positive() -> None:
    with pytest.raises(ValueError, match="retention must be at least 1, got 0"):
        CandleSeries("1m", retention=0)
