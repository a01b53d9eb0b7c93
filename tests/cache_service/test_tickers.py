"""Ticker RPCs against a real service and a real Redis."""

from __future__ import annotations

import math

import grpc
import pytest

from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.seq import seq_key
from tests.infra.cache_calls import read_events, read_until_live, rpc_error
from tests.factories import TickerFactory

pytestmark = pytest.mark.cluster_too   # every redis_url test here runs on a Redis Cluster too (tests/conftest.py)


async def test_publish_then_get_returns_the_latest(stub) -> None:
    first = await stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory(symbol="BTC/USDT", price=1.0)))
    second = await stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory(symbol="BTC/USDT", price=2.0)))
    assert seq_key(second.seq) > seq_key(first.seq)
    got = await stub.GetTicker(pb.GetTickerRequest(exchange="binance", symbol="BTC/USDT"))
    assert got.price == 2.0


async def test_get_unknown_ticker_is_not_found(stub) -> None:
    error = await rpc_error(stub.GetTicker(pb.GetTickerRequest(exchange="binance", symbol="NOPE/USDT")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "NOPE/USDT" in error.details()


@pytest.mark.parametrize("request_", [pb.GetTickerRequest(symbol="BTC/USDT"), pb.GetTickerRequest(exchange="binance")])
async def test_get_ticker_requires_exchange_and_symbol(stub, request_) -> None:
    error = await rpc_error(stub.GetTicker(request_))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "required" in error.details()


@pytest.mark.parametrize(("override", "field"), [
    ({"exchange": ""}, "exchange"),
    ({"symbol": ""}, "symbol"),
    ({"price": math.nan}, "price"),
    ({"bid": math.inf}, "bid"),
    ({"volume": -1.0}, "volume"),
    ({"symbol": "BTC\n/USDT"}, "symbol"),
    ({"symbol": "X" * 300}, "symbol"),
])
async def test_publish_rejects_bad_tickers_and_stores_nothing(stub, override, field) -> None:
    error = await rpc_error(stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory(**override))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error.details()
    listed = await stub.ListTickers(pb.ListTickersRequest())
    assert list(listed.tickers) == []


async def test_list_tickers_by_exchange_and_symbols(stub) -> None:
    for exchange in ("binance", "kraken"):
        for symbol in ("BTC/USDT", "ETH/USDT", "SOL/USDT"):
            await stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory(exchange=exchange, symbol=symbol)))
    everything = await stub.ListTickers(pb.ListTickersRequest())
    assert [(t.exchange, t.symbol) for t in everything.tickers] == sorted(
        (e, s) for e in ("binance", "kraken") for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT"))
    kraken = await stub.ListTickers(pb.ListTickersRequest(exchange="kraken"))
    assert {t.exchange for t in kraken.tickers} == {"kraken"} and len(kraken.tickers) == 3
    some = await stub.ListTickers(pb.ListTickersRequest(exchange="binance", symbols=["ETH/USDT", "DOGE/USDT"]))
    assert [t.symbol for t in some.tickers] == ["ETH/USDT"]
    some_everywhere = await stub.ListTickers(pb.ListTickersRequest(symbols=["SOL/USDT"]))
    assert [(t.exchange, t.symbol) for t in some_everywhere.tickers] == [("binance", "SOL/USDT"), ("kraken", "SOL/USDT")]


async def test_publish_tickers_bulk_counts_and_returns_the_last_seq(stub) -> None:
    tickers = [TickerFactory(symbol=f"S{i % 50}/USDT") for i in range(1200)]

    async def requests():
        for ticker in tickers:
            yield pb.PublishTickerRequest(ticker=ticker)

    result = await stub.PublishTickers(requests())
    assert result.accepted == 1200
    listed = await stub.ListTickers(pb.ListTickersRequest(exchange="binance"))
    assert len(listed.tickers) == 50
    latest = {t.symbol: t.price for t in tickers}
    assert {t.symbol: t.price for t in listed.tickers} == latest
    stream = stub.StreamTickers(pb.StreamTickersRequest(exchange="binance", resume_from="0"))
    replayed = await read_until_live(stream)
    stream.cancel()
    assert replayed[-2].seq == result.last_seq
    assert [e.ticker.price for e in replayed[:-1]] == [t.price for t in tickers]


async def test_publish_tickers_empty_stream(stub) -> None:
    async def nothing():
        return
        yield  # pragma: no cover

    result = await stub.PublishTickers(nothing())
    assert result.accepted == 0 and result.last_seq == ""


async def test_publish_tickers_stops_at_a_bad_ticker_keeping_the_good_ones(stub) -> None:
    good = [TickerFactory(symbol="BTC/USDT", price=float(i + 1)) for i in range(3)]

    async def requests():
        for ticker in good:
            yield pb.PublishTickerRequest(ticker=ticker)
        yield pb.PublishTickerRequest(ticker=TickerFactory(symbol="ETH/USDT", ask=math.nan))
        yield pb.PublishTickerRequest(ticker=TickerFactory(symbol="SOL/USDT"))

    error = await rpc_error(stub.PublishTickers(requests()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ticker #4" in error.details() and "ask" in error.details()
    assert "3 accepted" in error.details()
    latest = await stub.GetTicker(pb.GetTickerRequest(exchange="binance", symbol="BTC/USDT"))
    assert latest.price == 3.0
    missing = await rpc_error(stub.GetTicker(pb.GetTickerRequest(exchange="binance", symbol="SOL/USDT")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_stream_tickers_live_in_order_with_the_write_seq(stub) -> None:
    stream = stub.StreamTickers(pb.StreamTickersRequest(exchange="binance"))
    [live] = await read_until_live(stream)
    assert live.WhichOneof("event") == "live"
    written = []
    for i in range(20):
        result = await stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory(price=float(i))))
        written.append(result.seq)
    events = await read_events(stream, 20)
    stream.cancel()
    assert [e.seq for e in events] == written
    assert [e.ticker.price for e in events] == [float(i) for i in range(20)]
    assert all(seq_key(e.seq) > seq_key(live.seq) for e in events)


async def test_stream_tickers_filters_symbols_and_exchange(stub) -> None:
    stream = stub.StreamTickers(pb.StreamTickersRequest(exchange="binance", symbols=["ETH/USDT"]))
    await read_until_live(stream)
    await stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory(symbol="BTC/USDT")))
    await stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory(exchange="kraken", symbol="ETH/USDT")))
    wanted = await stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory(symbol="ETH/USDT")))
    [event] = await read_events(stream, 1)
    stream.cancel()
    assert event.seq == wanted.seq and event.ticker.symbol == "ETH/USDT" and event.ticker.exchange == "binance"


async def test_stream_tickers_requires_an_exchange(stub) -> None:
    stream = stub.StreamTickers(pb.StreamTickersRequest())
    error = await rpc_error(stream.read())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "exchange" in error.details()
