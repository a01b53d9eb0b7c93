"""Trade and candle RPCs against a real service and a real Redis; candles checked against a
reference computed from the same trades."""

from __future__ import annotations

import asyncio
import random
import time
from decimal import Decimal

import grpc
import pytest

from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.market.candles import INTERVALS
from marketbridge.seq import seq_key
from tests.factories import TradeFactory
from tests.infra.cache_calls import next_message, read_until_live, serving

pytestmark = pytest.mark.cluster_too   # every redis_url test here runs on a Redis Cluster too (tests/conftest.py)

TIMEOUT = 20.0
T0 = 1_700_000_040.0   # 13:34:00 UTC: a whole minute


async def publish(stub, *trades: pb.Trade, per_message: int = 50) -> pb.PublishTradesResponse:
    async def requests():
        for start in range(0, len(trades), per_message):
            yield pb.PublishTradesRequest(trades=trades[start:start + per_message])
    return await asyncio.wait_for(stub.PublishTrades(requests()), TIMEOUT)


def reference(trades: list[pb.Trade], interval: str) -> dict[int, tuple[str, str, str, str, Decimal, int]]:
    """open_time -> (open, high, low, close, volume, count), computed the obvious way."""
    seconds = INTERVALS[interval]
    groups: dict[int, list[tuple[float, int, pb.Trade]]] = {}
    for arrival, trade in enumerate(trades):
        groups.setdefault(int(trade.time // seconds) * seconds, []).append((trade.time, arrival, trade))
    result = {}
    for open_time, rows in groups.items():
        rows.sort(key=lambda row: (row[0], row[1]))
        prices = [Decimal(r[2].price) for r in rows]
        result[open_time] = (rows[0][2].price, str(max(prices)), str(min(prices)), rows[-1][2].price,
                             sum((Decimal(r[2].amount) for r in rows), Decimal(0)), len(rows))
    return result


async def test_list_trades_newest_last_per_symbol_and_limit(stub) -> None:
    trades = [TradeFactory(symbol=s, time=T0 + i) for i in range(30) for s in ("BTC/USDT", "ETH/USDT")]
    written = await publish(stub, *trades)
    assert written.accepted == 60
    btc = await stub.ListTrades(pb.ListTradesRequest(exchange="binance", symbols=["BTC/USDT"], limit=5))
    assert [t.trade_id for t in btc.trades] == [t.trade_id for t in trades if t.symbol == "BTC/USDT"][-5:]
    assert btc.seq == written.last_seq
    both = await stub.ListTrades(pb.ListTradesRequest(exchange="binance"))
    assert [t.trade_id for t in both.trades] == [t.trade_id for t in trades][-50:]


@pytest.mark.parametrize(("override", "words"), [
    ({"price": "1,5"}, "price"), ({"amount": "-1"}, "amount"), ({"amount": "0"}, "amount"),
    ({"side": "long"}, "side"), ({"trade_id": ""}, "trade_id"), ({"symbol": ""}, "symbol"),
])
async def test_bad_trades_are_invalid_argument_after_the_good_ones(stub, override, words) -> None:
    good = TradeFactory(time=T0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await publish(stub, good, TradeFactory(time=T0, **override), TradeFactory(time=T0))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in caught.value.details() and "trade #2" in caught.value.details()
    listed = await stub.ListTrades(pb.ListTradesRequest(exchange="binance"))
    assert [t.trade_id for t in listed.trades] == [good.trade_id]


async def test_unknown_interval_and_bad_limit_are_invalid_argument(stub) -> None:
    for call in (stub.ListCandles(pb.ListCandlesRequest(exchange="binance", symbol="BTC/USDT", interval="2m")),
                 stub.StreamCandles(pb.StreamCandlesRequest(exchange="binance", symbol="BTC/USDT",
                                                            interval="")).read(),
                 stub.ListTrades(pb.ListTradesRequest(exchange="binance", limit=5000))):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.wait_for(call, TIMEOUT)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_candles_match_a_reference_late_trades_included(stub) -> None:
    rng = random.Random(7)
    trades = []
    for n in range(400):
        when = T0 + rng.uniform(0, 1800)
        if n % 10 == 9:   # a late trade: its time in an earlier, still retained interval
            when -= 600
        trades.append(TradeFactory(time=round(when, 3), price=f"{rng.randint(49000, 51000)}.{rng.randint(0, 9)}",
                                   amount=f"0.{rng.randint(1, 999):03d}"))
    await publish(stub, *trades, per_message=37)
    for interval in ("1m", "5m", "15m", "1h"):
        got = await stub.ListCandles(pb.ListCandlesRequest(exchange="binance", symbol="BTC/USDT",
                                                           interval=interval, limit=1000))
        expected = reference(trades, interval)
        assert [c.open_time for c in got.candles] == sorted(expected)
        for candle in got.candles:
            o, h, low, c, volume, count = expected[candle.open_time]
            assert (candle.open, candle.high, candle.low, candle.close, candle.trades) == (o, h, low, c, count)
            assert Decimal(candle.volume) == volume
        assert all(c.closed for c in got.candles[:-1])


async def test_candle_stream_and_resume(stub) -> None:
    base = (time.time() // 60 + 10) * 60   # ten minutes ahead: the clock closes none of these
    stream = stub.StreamCandles(pb.StreamCandlesRequest(exchange="binance", symbol="BTC/USDT", interval="1m"))
    await read_until_live(stream)
    await publish(stub, TradeFactory(time=base + 1, price="10"), TradeFactory(time=base + 2, price="12"))
    first = await next_message(stream)
    assert first.candle.open_time == base and first.candle.close == "12" and not first.candle.closed
    await publish(stub, TradeFactory(time=base + 61, price="11"))
    closed, opened = await next_message(stream), await next_message(stream)
    assert (closed.candle.open_time, closed.candle.closed) == (base, True)
    assert (opened.candle.open_time, opened.candle.closed) == (base + 60, False)
    resumed = stub.StreamCandles(pb.StreamCandlesRequest(exchange="binance", symbol="BTC/USDT", interval="1m",
                                                         resume_from=first.seq))
    replay = await read_until_live(resumed)
    assert [e.candle.open_time for e in replay[:-1]] == [base, base + 60]
    stream.cancel()
    resumed.cancel()


async def test_a_quiet_market_gets_its_closed_candle_from_the_clock(stub) -> None:
    start = time.time()
    stream = stub.StreamCandles(pb.StreamCandlesRequest(exchange="binance", symbol="Q/USDT", interval="1m"))
    await read_until_live(stream)
    # a trade in the previous minute, so its candle is due at once (the clock ticks every second)
    await publish(stub, TradeFactory(symbol="Q/USDT", time=(start // 60 - 1) * 60 + 1))
    opened = await next_message(stream)
    assert not opened.candle.closed
    closed = await next_message(stream, timeout=TIMEOUT)
    assert closed.candle.closed and closed.candle.open_time == opened.candle.open_time
    stream.cancel()


async def test_trade_stream_filters_symbols_and_resumes(stub) -> None:
    stream = stub.StreamTrades(pb.StreamTradesRequest(exchange="binance", symbols=["ETH/USDT"]))
    await read_until_live(stream)
    written = await publish(stub, *[TradeFactory(symbol=s, time=T0) for s in ("BTC/USDT", "ETH/USDT") * 3])
    got = [await next_message(stream) for _ in range(3)]
    assert {e.trade.symbol for e in got} == {"ETH/USDT"}
    resumed = stub.StreamTrades(pb.StreamTradesRequest(exchange="binance", resume_from=got[0].seq))
    replay = await read_until_live(resumed)
    assert len(replay) == 5 and replay[-2].seq == written.last_seq   # 4 trades after it, then live
    stream.cancel()
    resumed.cancel()


async def test_trade_batches_carry_the_same_events_as_the_trade_stream(stub) -> None:
    """StreamTradeBatches: the events of StreamTrades, several per message, in order."""
    first = await publish(stub, TradeFactory(symbol="BTC/USDT", time=T0))
    written = await publish(stub, *[TradeFactory(symbol=s, time=T0) for s in ("BTC/USDT", "ETH/USDT") * 200],
                            per_message=400)
    request = pb.StreamTradesRequest(exchange="binance", symbols=["BTC/USDT"], resume_from=first.last_seq)
    stream = stub.StreamTrades(request)
    single = await read_until_live(stream)
    stream.cancel()
    batches = stub.StreamTradeBatches(request)
    messages = await read_until_live(batches)
    batches.cancel()
    batched = [event for message in messages for event in message.events]
    assert [e.trade.trade_id for e in batched] == [e.trade.trade_id for e in single]
    assert [e.seq for e in batched] == [e.seq for e in single]
    assert len(batched) == 201 and len(messages) < 5   # 200 BTC trades and live, in a few messages
    assert {e.trade.symbol for e in batched[:-1]} == {"BTC/USDT"}
    assert seq_key(batched[-2].seq) < seq_key(written.last_seq)   # the last one written is ETH


async def test_candles_survive_a_service_restart(redis_url) -> None:
    async with serving(redis_url) as (_service, stub):
        await publish(stub, TradeFactory(time=T0 + 5, price="10", amount="1"),
                      TradeFactory(time=T0 + 50, price="20", amount="1"))
    async with serving(redis_url) as (_service, stub):
        await publish(stub, TradeFactory(time=T0 + 50, price="15", amount="2"),   # same time: arrived later
                      TradeFactory(time=T0 + 1, price="5", amount="1"))            # earlier: the new open
        got = await stub.ListCandles(pb.ListCandlesRequest(exchange="binance", symbol="BTC/USDT", interval="1m"))
        (candle,) = got.candles
        assert (candle.open, candle.high, candle.low, candle.close) == ("5", "20", "5", "15")
        assert (candle.volume, candle.trades) == ("5", 4)


async def test_trade_retention_keeps_the_newest(redis_url) -> None:
    async with serving(redis_url, trade_retention=10) as (_service, stub):
        trades = [TradeFactory(time=T0 + i) for i in range(25)]
        await publish(stub, *trades)
        got = await stub.ListTrades(pb.ListTradesRequest(exchange="binance", symbols=["BTC/USDT"], limit=100))
        assert [t.trade_id for t in got.trades] == [t.trade_id for t in trades[-10:]]


async def test_a_trade_older_than_the_retained_candles_is_stored_and_counted(redis_url) -> None:
    async with serving(redis_url, candle_retention=2) as (service, stub):
        await publish(stub, TradeFactory(time=T0 + 3600, price="10"))
        old = TradeFactory(time=T0, price="99")   # an hour earlier: beyond 2 minutes of 1m candles
        await publish(stub, old)
        listed = await stub.ListTrades(pb.ListTradesRequest(exchange="binance"))
        assert old.trade_id in [t.trade_id for t in listed.trades]
        minute = await stub.ListCandles(pb.ListCandlesRequest(exchange="binance", symbol="BTC/USDT", interval="1m"))
        assert [c.open_time for c in minute.candles] == [T0 + 3600]
        late = service.server.metrics.candle_trades_late._value.get()
        assert late == 3   # 1m, 5m and 15m windows (2 intervals each) no longer hold it; 1h, 4h, 1d do


async def test_a_retried_trade_is_stored_and_counted_once(redis_url) -> None:
    """A publisher retries a call whose outcome it does not know (at-least-once): the trades
    it carries again keep their first seq, appear once, and the candles count them once,
    in the same process and after a restart."""
    trades = [TradeFactory(time=T0 + i, price="10", amount="1") for i in range(5)]
    async with serving(redis_url) as (service, stub):
        first = await publish(stub, *trades[:3])
        again = await publish(stub, *trades[:3], trades[3], trades[3], per_message=2)
        assert again.accepted == 5
        assert service.server.metrics.trades_duplicate._value.get() == 4
    async with serving(redis_url) as (_service, stub):
        retried = await publish(stub, trades[2], trades[4])
        listed = await stub.ListTrades(pb.ListTradesRequest(exchange="binance", limit=100))
        assert [t.trade_id for t in listed.trades] == [t.trade_id for t in trades]
        minute = await stub.ListCandles(pb.ListCandlesRequest(exchange="binance", symbol="BTC/USDT",
                                                              interval="1m"))
        assert [(c.trades, c.volume) for c in minute.candles] == [(5, "5")]
        assert seq_key(retried.last_seq) > seq_key(first.last_seq)   # trades[4] is new
