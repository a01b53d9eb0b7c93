"""Bulk ingest (many tickers per PublishTickers message) and StreamTickerBatches (many events
per stream message), against a real service and a real Redis."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc
import pytest

from cache_service import wire
from cache_service.changefeed import ChangeFeed, Entry, Live, Overflow, Subscription, field_filter
from cache_service.metrics import Metrics
from cache_service.redis_url import connect, parse_redis_url
from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.seq import seq_key
from marketbridge.api.v1 import cache_pb2_grpc
from cache_service.store import Store, ticker_stream
from tests.infra.cache_calls import EVENT_TIMEOUT, next_message, rpc_error
from tests.factories import OrderFactory, TickerFactory, TradeFactory
from tests.infra.cache_service_runner import running_cache_service

pytestmark = pytest.mark.cluster_too   # every redis_url test here runs on a Redis Cluster too (tests/conftest.py)


async def _messages(*requests: pb.PublishTickerRequest) -> AsyncIterator[pb.PublishTickerRequest]:
    for request in requests:
        yield request


def bulk(tickers: Sequence[pb.Ticker]) -> pb.PublishTickerRequest:
    return pb.PublishTickerRequest(tickers=list(tickers))


async def batches_until_live(call: Any, timeout: float = EVENT_TIMEOUT) -> tuple[int, list[pb.TickerEvent]]:
    """Messages read and their events, up to and including the message with `live`."""
    messages, events = 0, []
    while True:
        batch = await next_message(call, timeout)
        assert batch is not grpc.aio.EOF, "stream ended before live"
        assert len(batch.events) > 0, "an empty batch was sent"
        messages += 1
        events.extend(batch.events)
        if batch.events[-1].WhichOneof("event") == "live":
            return messages, events


async def ticker_events(call: Any, count: int, timeout: float = EVENT_TIMEOUT) -> tuple[int, list[pb.TickerEvent]]:
    """Messages read and their events until ``count`` ticker events arrived."""
    messages, events = 0, []
    while len(events) < count:
        batch = await next_message(call, timeout)
        assert batch is not grpc.aio.EOF, f"stream ended after {len(events)} events"
        messages += 1
        events.extend(batch.events)
    assert all(e.WhichOneof("event") == "ticker" for e in events)
    return messages, events


async def stream_seqs(stub: cache_pb2_grpc.CacheServiceStub, exchange: str = "binance") -> list[pb.TickerEvent]:
    """Every retained ticker event of an exchange (replayed from the start)."""
    call = stub.StreamTickerBatches(pb.StreamTickersRequest(exchange=exchange, resume_from="0"))
    _messages_read, events = await batches_until_live(call)
    call.cancel()
    return events[:-1]


# ------------------------------------------------------------------ bulk ingest


async def test_bulk_messages_are_written_in_order_with_the_stream_seqs(stub) -> None:
    sizes = (250, 1, 400, 37)
    tickers = [TickerFactory(symbol=f"S{i % 20}/USDT", price=float(i)) for i in range(sum(sizes))]
    requests, start = [], 0
    for size in sizes:
        requests.append(bulk(tickers[start:start + size]))
        start += size
    result = await stub.PublishTickers(_messages(*requests))
    assert result.accepted == len(tickers)
    events = await stream_seqs(stub)
    assert [e.ticker.price for e in events] == [t.price for t in tickers]
    assert [e.ticker for e in events] == tickers
    assert events[-1].seq == result.last_seq
    keys = [seq_key(e.seq) for e in events]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    listed = await stub.ListTickers(pb.ListTickersRequest(exchange="binance"))
    assert {t.symbol: t.price for t in listed.tickers} == {t.symbol: t.price for t in tickers}


async def test_ticker_and_tickers_in_one_message_write_ticker_first(stub) -> None:
    first = TickerFactory(symbol="BTC/USDT", price=1.0)
    rest = [TickerFactory(symbol="BTC/USDT", price=float(p)) for p in (2, 3)]
    result = await stub.PublishTickers(_messages(pb.PublishTickerRequest(ticker=first, tickers=rest),
                                                 pb.PublishTickerRequest(ticker=TickerFactory(price=4.0))))
    assert result.accepted == 4
    assert [e.ticker.price for e in await stream_seqs(stub)] == [1.0, 2.0, 3.0, 4.0]


async def test_bulk_tickers_of_several_exchanges_go_to_their_own_streams(stub) -> None:
    tickers = [TickerFactory(exchange=("binance", "kraken")[i % 2], price=float(i)) for i in range(10)]
    result = await stub.PublishTickers(_messages(bulk(tickers)))
    assert result.accepted == 10
    binance, kraken = await stream_seqs(stub, "binance"), await stream_seqs(stub, "kraken")
    assert [e.ticker.price for e in binance] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert [e.ticker.price for e in kraken] == [1.0, 3.0, 5.0, 7.0, 9.0]
    assert result.last_seq == kraken[-1].seq  # the last ticker's seq
    listed = (await stub.ListTickers(pb.ListTickersRequest())).tickers
    assert {(t.exchange, t.symbol, t.price) for t in listed} == {
        (t.exchange, t.symbol, max(u.price for u in tickers if (u.exchange, u.symbol) == (t.exchange, t.symbol)))
        for t in tickers}


async def test_bulk_symbols_of_any_length_and_script_round_trip(stub) -> None:
    symbols = ["BTC/USDT", "ÄPFEL/€", "X" * 256, "日本/円"]
    tickers = [TickerFactory(symbol=symbol, price=float(i)) for i, symbol in enumerate(symbols)]
    result = await stub.PublishTickers(_messages(bulk(tickers)))
    assert result.accepted == 4
    assert [e.ticker for e in await stream_seqs(stub)] == tickers
    for ticker in tickers:
        assert await stub.GetTicker(pb.GetTickerRequest(exchange="binance", symbol=ticker.symbol)) == ticker


async def test_empty_messages_add_nothing(stub) -> None:
    result = await stub.PublishTickers(_messages(pb.PublishTickerRequest(), pb.PublishTickerRequest()))
    assert result.accepted == 0 and result.last_seq == ""
    ticker = TickerFactory()
    result = await stub.PublishTickers(_messages(pb.PublishTickerRequest(), bulk([ticker]), pb.PublishTickerRequest()))
    assert result.accepted == 1
    assert [e.ticker for e in await stream_seqs(stub)] == [ticker]


async def test_a_bad_ticker_inside_a_bulk_message_keeps_the_good_ones_before_it(stub) -> None:
    good = [TickerFactory(symbol="BTC/USDT", price=float(i + 1)) for i in range(7)]
    bad = TickerFactory(symbol="ETH/USDT", bid=math.inf)
    after = TickerFactory(symbol="SOL/USDT")
    error = await rpc_error(stub.PublishTickers(_messages(
        bulk(good[:5]), pb.PublishTickerRequest(ticker=good[5], tickers=[good[6], bad, after]), bulk([after]))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ticker #8" in error.details() and "bid" in error.details()
    assert "7 accepted" in error.details()
    events = await stream_seqs(stub)
    assert [e.ticker for e in events] == good
    assert f"last_seq '{events[-1].seq}'" in error.details()
    missing = await rpc_error(stub.GetTicker(pb.GetTickerRequest(exchange="binance", symbol="SOL/USDT")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_a_bad_ticker_field_before_tickers_is_ticker_number_one_of_its_message(stub) -> None:
    error = await rpc_error(stub.PublishTickers(_messages(
        bulk([TickerFactory()]), pb.PublishTickerRequest(ticker=TickerFactory(exchange=""), tickers=[TickerFactory()]))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ticker #2" in error.details() and "exchange" in error.details() and "1 accepted" in error.details()


async def test_publish_ticker_refuses_tickers(stub) -> None:
    error = await rpc_error(stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory(),
                                                                       tickers=[TickerFactory()])))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "PublishTickers" in error.details()
    assert list((await stub.ListTickers(pb.ListTickersRequest())).tickers) == []


async def test_bulk_ingest_counts_published_events(svc, stub) -> None:
    counter = svc.server.metrics.events_published.labels("tickers")
    before = counter._value.get()
    await stub.PublishTickers(_messages(bulk([TickerFactory() for _ in range(120)])))
    assert counter._value.get() - before == 120


async def test_writes_survive_redis_forgetting_the_scripts(stub, redis_url: str) -> None:
    await stub.PublishTickers(_messages(bulk([TickerFactory(price=1.0)])))
    await stub.UpsertOrder(pb.UpsertOrderRequest(order=OrderFactory()))
    client = connect(parse_redis_url(redis_url), 5.0)
    await client.script_flush()  # as a restarted or failed-over Redis would be (every primary of a cluster)
    await client.aclose()
    result = await stub.PublishTickers(_messages(bulk([TickerFactory(price=2.0)])))
    assert result.accepted == 1
    order = await stub.UpsertOrder(pb.UpsertOrderRequest(order=OrderFactory()))
    assert seq_key(order.seq) > (0, 0)
    assert [e.ticker.price for e in await stream_seqs(stub)] == [1.0, 2.0]


# ------------------------------------------------------------------ StreamTickerBatches


async def test_live_batches_carry_every_event_with_its_write_seq(stub) -> None:
    call = stub.StreamTickerBatches(pb.StreamTickersRequest(exchange="binance"))
    messages, [live] = await batches_until_live(call)
    assert messages == 1 and live.WhichOneof("event") == "live"
    written = [(await stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory(price=float(i))))).seq
               for i in range(5)]
    _read, events = await ticker_events(call, 5)
    assert [e.seq for e in events] == written
    tickers = [TickerFactory(symbol=f"S{i % 7}/USDT", price=float(i)) for i in range(300)]
    result = await stub.PublishTickers(_messages(bulk(tickers)))
    messages, events = await ticker_events(call, 300)
    call.cancel()
    assert [e.ticker for e in events] == tickers and events[-1].seq == result.last_seq
    assert messages < 300  # written at once, so ready at once: several events per message
    assert all(seq_key(e.seq) > seq_key(live.seq) for e in events)


async def test_resume_replays_in_few_messages_then_goes_live(stub) -> None:
    tickers = [TickerFactory(price=float(i)) for i in range(1200)]
    await stub.PublishTickers(_messages(*(bulk(tickers[i:i + 100]) for i in range(0, 1200, 100))))
    all_events = await stream_seqs(stub)
    call = stub.StreamTickerBatches(pb.StreamTickersRequest(exchange="binance", resume_from="0"))
    messages, events = await batches_until_live(call)
    assert [e.ticker for e in events[:-1]] == tickers
    assert messages < 1200 / 100
    assert events[-1].WhichOneof("event") == "live" and events[-1].seq == all_events[-1].seq
    call.cancel()
    middle = all_events[699].seq
    call = stub.StreamTickerBatches(pb.StreamTickersRequest(exchange="binance", resume_from=middle))
    _messages_read, events = await batches_until_live(call)
    assert [e.seq for e in events[:-1]] == [e.seq for e in all_events[700:]]
    later = await stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory()))
    _read, [event] = await ticker_events(call, 1)
    call.cancel()
    assert event.seq == later.seq


async def test_resume_from_a_trimmed_seq_starts_with_a_gap(redis_url: str) -> None:
    async with running_cache_service(redis_url, stream_maxlen=10) as svc:
        async with grpc.aio.insecure_channel(svc.target) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            first = await stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory()))
            await stub.PublishTickers(_messages(*(bulk([TickerFactory() for _ in range(100)]) for _ in range(4))))
            call = stub.StreamTickerBatches(pb.StreamTickersRequest(exchange="binance", resume_from=first.seq))
            _messages_read, events = await batches_until_live(call)
            call.cancel()
    gap, replayed, live = events[0], events[1:-1], events[-1]
    assert gap.WhichOneof("event") == "gap" and gap.gap.requested == first.seq
    assert gap.gap.first_retained == replayed[0].seq
    assert 10 <= len(replayed) < 401
    assert live.seq == replayed[-1].seq


async def test_batches_filter_symbols_and_exchange(stub) -> None:
    await stub.PublishTickers(_messages(bulk([TickerFactory(symbol="BTC/USDT"), TickerFactory(symbol="ETH/USDT")])))
    call = stub.StreamTickerBatches(pb.StreamTickersRequest(exchange="binance", symbols=["ETH/USDT"], resume_from="0"))
    _messages_read, events = await batches_until_live(call)
    assert [e.ticker.symbol for e in events[:-1]] == ["ETH/USDT"]
    tickers = [TickerFactory(symbol="BTC/USDT"), TickerFactory(exchange="kraken", symbol="ETH/USDT"),
               TickerFactory(symbol="ETH/USDT", price=42.0)]
    await stub.PublishTickers(_messages(bulk(tickers)))
    _read, [event] = await ticker_events(call, 1)
    call.cancel()
    assert event.ticker == tickers[2]


async def test_a_subscriber_that_falls_behind_gets_resource_exhausted(redis_url: str) -> None:
    async with running_cache_service(redis_url, subscriber_queue=3) as svc:
        async with grpc.aio.insecure_channel(svc.target) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            call = stub.StreamTickerBatches(pb.StreamTickersRequest(exchange="binance"))
            await batches_until_live(call)
            # ten at once: more than the subscriber may have pending
            await stub.PublishTickers(_messages(bulk([TickerFactory() for _ in range(10)])))
            seen = []
            with pytest.raises(grpc.aio.AioRpcError) as info:
                while True:
                    batch = await next_message(call, EVENT_TIMEOUT)
                    assert batch is not grpc.aio.EOF
                    seen.extend(batch.events)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert len(seen) == 3  # what fitted is delivered, then the stream ends
            assert f"resume_from {seen[-1].seq}" in info.value.details()


@pytest.mark.parametrize(("request_", "field"), [
    (pb.StreamTickersRequest(), "exchange"),
    (pb.StreamTickersRequest(exchange="binance", resume_from="nope"), "resume_from"),
])
async def test_bad_batch_requests_are_invalid_argument(stub, request_, field) -> None:
    error = await rpc_error(stub.StreamTickerBatches(request_).read())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error.details()


async def test_batch_subscribers_are_counted_and_calls_recorded(svc, stub) -> None:
    gauge = svc.server.metrics.stream_subscribers.labels("tickers")
    call = stub.StreamTickerBatches(pb.StreamTickersRequest(exchange="binance"))
    await batches_until_live(call)
    assert gauge._value.get() == 1
    call.cancel()
    async with asyncio.timeout(15):
        while gauge._value.get() != 0:
            await asyncio.sleep(0.05)
    counted = svc.server.metrics.grpc_requests.labels("StreamTickerBatches", "CANCELLED")
    async with asyncio.timeout(15):
        while counted._value.get() != 1:
            await asyncio.sleep(0.05)


@pytest.mark.resilience
async def test_batch_stream_ends_unavailable_on_a_redis_restart_and_resumes(redis_fault) -> None:
    redis = redis_fault(ticker_stream("binance"))   # on a cluster: the shard of binance's tickers
    async with running_cache_service(redis.url, redis_timeout=1.0) as svc:
        async with grpc.aio.insecure_channel(svc.target) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            call = stub.StreamTickerBatches(pb.StreamTickersRequest(exchange="binance"))
            _messages_read, events = await batches_until_live(call)
            live_seq = events[-1].seq
            await asyncio.to_thread(redis.restart)
            error = await rpc_error(ticker_events(call, 1))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert "change feed interrupted" in (error.details() or "")
            async with asyncio.timeout(30):
                while True:  # the service's Redis client reconnects on the next call
                    try:
                        result = await stub.PublishTickers(_messages(bulk([TickerFactory() for _ in range(3)])))
                        break
                    except grpc.aio.AioRpcError as exc:
                        assert exc.code() == grpc.StatusCode.UNAVAILABLE
                        await asyncio.sleep(0.1)
                while True:  # resume from the live point, retrying while the feed refuses
                    call = stub.StreamTickerBatches(pb.StreamTickersRequest(exchange="binance", resume_from=live_seq))
                    try:
                        _messages_read, events = await batches_until_live(call)
                        break
                    except grpc.aio.AioRpcError as exc:
                        assert exc.code() == grpc.StatusCode.UNAVAILABLE
                        await asyncio.sleep(0.1)
            call.cancel()
            assert [e.WhichOneof("event") for e in events] == ["ticker"] * 3 + ["live"]
            assert events[2].seq == result.last_seq


# ------------------------------------------------------------------ wire framing


@pytest.mark.parametrize("symbol", ["BTC/USDT", "X" * 200])
def test_framed_events_equal_the_generated_serialization(symbol: str) -> None:
    ticker = TickerFactory(symbol=symbol)
    data = ticker.SerializeToString()
    framed = wire.entry_event("1700000000000-7", data)
    assert framed == pb.TickerEvent(seq="1700000000000-7", ticker=ticker).SerializeToString()
    gap = pb.TickerEvent(seq="1-0", gap=pb.StreamGap(requested="1-0")).SerializeToString()
    batch = wire.event_batch(pb.TickerEventBatch, [framed, gap] * 300)
    assert list(batch.events) == [pb.TickerEvent(seq="1700000000000-7", ticker=ticker),
                                  pb.TickerEvent.FromString(gap)] * 300


def test_a_stored_trade_frames_as_its_trade_event() -> None:
    trade = TradeFactory()
    framed = wire.entry_event("1700000000000-3", trade.SerializeToString())
    assert framed == pb.TradeEvent(seq="1700000000000-3", trade=trade).SerializeToString()
    batch = wire.event_batch(pb.TradeEventBatch, [framed] * 3)
    assert list(batch.events) == [pb.TradeEvent(seq="1700000000000-3", trade=trade)] * 3


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 2**21 + 5, 2**40])
def test_varint_matches_protobuf(value: int) -> None:
    message = pb.PublishTickersResponse(accepted=value)  # int64 field 1: key 0x08, then the varint
    assert message.SerializeToString() == (b"\x08" + wire.varint(value) if value else b"")


def test_large_events_use_long_lengths() -> None:
    big = b"\x0a" + wire.varint(20_000) + b"e" * 20_000  # a Ticker whose exchange is 20,000 bytes
    batch = wire.event_batch(pb.TickerEventBatch, [wire.entry_event("5-0", big)])
    assert batch.events[0].ticker.exchange == "e" * 20_000


# ------------------------------------------------------------------ the batched change feed


def _entries(count: int) -> list[Entry]:
    return [Entry(f"{n}-0", (n, 0), {b"d": b"", b"s": b"BTC/USDT"}) for n in range(1, count + 1)]


async def test_subscription_hands_over_bursts_and_ends_after_what_fitted() -> None:
    sub = Subscription(match=field_filter(s=["BTC/USDT"]), limit=5)
    sub.offer([Entry("9-0", (9, 0), {b"d": b"", b"s": b"ETH/USDT"})])  # filtered out: nothing pending
    assert sub.take_ready(10) == []
    sub.offer(_entries(4))
    assert [e.id for e in await sub.take(3)] == ["1-0", "2-0", "3-0"]
    assert [e.id for e in sub.take_ready(3)] == ["4-0"]
    sub.offer(_entries(7))  # two more than fit
    assert len(await sub.take(100)) == 5
    with pytest.raises(Overflow):
        await sub.take(100)
    sub.offer(_entries(1))  # ended: ignored
    assert sub.take_ready(10) == []


async def test_follow_batches_caps_each_batch(redis_url: str) -> None:
    client = connect(parse_redis_url(redis_url), 5.0)
    store = Store(client, 1000)
    feed = ChangeFeed(client, Metrics(), queue_limit=1000, timeout=5)
    seqs = await store.publish_tickers([TickerFactory() for _ in range(25)])
    batches = feed.follow_batches(ticker_stream("binance"), "tickers", field_filter(), "0", most=10)
    try:
        replayed = [await asyncio.wait_for(anext(batches), 10) for _ in range(3)]
        assert [len(b) for b in replayed] == [10, 10, 6]  # the last one ends with Live
        assert isinstance(replayed[-1][-1], Live) and replayed[-1][-1].seq == seqs[-1]
        assert [e.id for b in replayed for e in b if isinstance(e, Entry)] == seqs
        live = await store.publish_tickers([TickerFactory() for _ in range(15)])
        got: list[str] = []
        while len(got) < 15:
            batch = await asyncio.wait_for(anext(batches), 10)
            assert 0 < len(batch) <= 10
            got.extend(e.id for e in batch)
        assert got == live
    finally:
        await batches.aclose()
        await feed.close()
        await client.aclose()
