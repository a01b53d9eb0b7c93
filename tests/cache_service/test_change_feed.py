"""Change-feed guarantees: resume without gap or duplicate, gaps after trimming, one shared
Redis reader per stream, slow subscribers ended rather than silently skipped."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from cache_service.changefeed import ChangeFeed, Entry, Live, field_filter, match_all
from cache_service.errors import ResourceExhausted, Unavailable
from cache_service.metrics import Metrics
from cache_service.redis_url import connect, parse_redis_url
from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.seq import seq_key
from marketbridge.api.v1 import cache_pb2_grpc
from cache_service.store import ORDERS, Store
from tests.infra.cache_calls import ALICE, next_message, read_events, read_until_live, rpc_error
from tests.factories import BotFactory, OrderFactory, TickerFactory
from tests.infra.cache_service_runner import running_cache_service
from tests.infra.eventually import eventually

pytestmark = pytest.mark.cluster_too   # every redis_url test here runs on a Redis Cluster too (tests/conftest.py)


async def publish(stub, count: int, **fields) -> list[str]:
    return [(await stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory(**fields)))).seq
            for _ in range(count)]


async def test_resume_replays_after_the_given_seq_then_goes_live(stub) -> None:
    seqs = await publish(stub, 10)
    stream = stub.StreamTickers(pb.StreamTickersRequest(exchange="binance", resume_from=seqs[3]))
    events = await read_until_live(stream)
    assert [e.seq for e in events[:-1]] == seqs[4:]
    assert events[-1].WhichOneof("event") == "live" and events[-1].seq == seqs[-1]
    later = await publish(stub, 3)
    assert [e.seq for e in await read_events(stream, 3)] == later
    stream.cancel()


async def test_resume_while_writes_continue_has_no_gap_and_no_duplicate(svc, stub) -> None:
    first = await publish(stub, 50)
    writer = asyncio.create_task(publish(stub, 200))
    stream = stub.StreamTickers(pb.StreamTickersRequest(exchange="binance", resume_from=first[9]))
    written = await writer  # the subscription was set up while these were being written
    expected = first[10:] + written
    received: list[str] = []
    while len(received) < len(expected):
        event = await next_message(stream, 15)
        if event.WhichOneof("event") == "ticker":
            received.append(event.seq)
    stream.cancel()
    assert received == expected
    assert len(set(received)) == len(received)


async def test_resume_from_the_start_replays_everything_retained(stub) -> None:
    seqs = await publish(stub, 5)
    stream = stub.StreamTickers(pb.StreamTickersRequest(exchange="binance", resume_from="0-0"))
    events = await read_until_live(stream)
    stream.cancel()
    assert [e.seq for e in events[:-1]] == seqs


async def test_resume_with_symbol_filter_replays_only_matching(stub) -> None:
    btc = await publish(stub, 3, symbol="BTC/USDT")
    await publish(stub, 3, symbol="ETH/USDT")
    stream = stub.StreamTickers(pb.StreamTickersRequest(exchange="binance", symbols=["BTC/USDT"], resume_from="0"))
    events = await read_until_live(stream)
    stream.cancel()
    assert [e.seq for e in events[:-1]] == btc


async def test_resume_from_zero_on_an_empty_stream_goes_live(stub) -> None:
    stream = stub.StreamOrders(pb.StreamOrdersRequest(resume_from="0"), metadata=ALICE)
    [live] = await read_until_live(stream)
    stream.cancel()
    assert live.seq == "0-0"


async def test_resume_after_redis_lost_the_stream_reports_a_gap(stub, redis_url: str) -> None:
    seqs = [(await stub.UpsertOrder(pb.UpsertOrderRequest(order=OrderFactory()))).seq for _ in range(3)]
    client = connect(parse_redis_url(redis_url), 5.0)
    await client.flushall()  # as a Redis restarted without persistence would look
    await client.aclose()
    stream = stub.StreamOrders(pb.StreamOrdersRequest(resume_from=seqs[-1]), metadata=ALICE)
    gap, live = await read_until_live(stream)
    assert gap.gap.requested == seqs[-1] and gap.gap.first_retained == ""
    # the stream comes back with new writes; a seq from before is now "in the future"
    [new_seq] = [(await stub.UpsertOrder(pb.UpsertOrderRequest(order=OrderFactory()))).seq]
    assert [e.seq for e in await read_events(stream, 1)] == [new_seq]
    stream.cancel()
    again = stub.StreamOrders(pb.StreamOrdersRequest(resume_from=f"{seq_key(new_seq)[0] + 10**6}-0"))
    events = await read_until_live(again)
    again.cancel()
    assert [e.WhichOneof("event") for e in events] == ["gap", "live"]


@pytest.mark.parametrize("bad", ["abc", "1-2-3", "-1", "12-", "1.5"])
async def test_malformed_resume_from_is_invalid_argument(stub, bad) -> None:
    stream = stub.StreamBots(pb.StreamBotsRequest(resume_from=bad), metadata=ALICE)
    error = await rpc_error(stream.read())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "resume_from" in error.details()


async def test_resume_from_a_trimmed_seq_reports_a_gap_first(redis_url: str) -> None:
    async with running_cache_service(redis_url, stream_maxlen=10) as svc:
        async with grpc.aio.insecure_channel(svc.target) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            seqs = [(await stub.UpsertBot(pb.UpsertBotRequest(bot=BotFactory()))).seq for _ in range(400)]
            stream = stub.StreamBots(pb.StreamBotsRequest(resume_from=seqs[0]))
            events = await read_until_live(stream)
            stream.cancel()
    gap, replayed, live = events[0], events[1:-1], events[-1]
    assert gap.WhichOneof("event") == "gap"
    assert gap.gap.requested == seqs[0] and gap.seq == seqs[0]
    assert gap.gap.first_retained == replayed[0].seq
    assert 10 <= len(replayed) < 400  # MAXLEN ~ trims whole nodes: at least 10 kept
    assert [e.seq for e in replayed] == seqs[-len(replayed):]
    assert live.seq == seqs[-1]


async def test_two_subscribers_share_one_redis_reader(svc, stub, redis_url: str) -> None:
    feed = svc.server.feed
    client = connect(parse_redis_url(redis_url), 5.0)
    try:
        async def readers_in_redis() -> int:
            clients = await client.client_list()
            return sum(1 for c in clients if c.get("cmd") == "xread")

        streams = [stub.StreamTickers(pb.StreamTickersRequest(exchange="binance")) for _ in range(2)]
        for stream in streams:
            await read_until_live(stream)
        assert feed.reader_count == 1
        [seq] = await publish(stub, 1)
        for stream in streams:
            assert [e.seq for e in await read_events(stream, 1)] == [seq]
        assert await readers_in_redis() <= 1
        other = stub.StreamTickers(pb.StreamTickersRequest(exchange="kraken"))
        await read_until_live(other)
        assert feed.reader_count == 2
        for stream in (*streams, other):
            stream.cancel()
        await eventually(lambda: feed.reader_count == 0, 15, what="no reader left")
    finally:
        await client.aclose()


async def test_subscriber_gauge_counts_by_channel(svc, stub) -> None:
    gauge = svc.server.metrics.stream_subscribers
    stream = stub.StreamOrders(pb.StreamOrdersRequest(), metadata=ALICE)
    await read_until_live(stream)
    assert gauge.labels("orders")._value.get() == 1
    stream.cancel()
    await eventually(lambda: gauge.labels("orders")._value.get() == 0, 15, what="no orders subscriber")


async def test_slow_subscriber_is_ended_with_resource_exhausted(redis_url: str) -> None:
    client = connect(parse_redis_url(redis_url), 5.0)
    store = Store(client, 1000)
    feed = ChangeFeed(client, Metrics(), queue_limit=5, timeout=5)
    follow = feed.follow(ORDERS.stream, "orders", field_filter(u="alice"))
    try:
        assert isinstance(await asyncio.wait_for(anext(follow), 10), Live)
        seqs = [await store.upsert(ORDERS, OrderFactory(user_id="alice")) for _ in range(20)]
        reader = feed.readers[ORDERS.stream]
        await eventually(lambda: reader.last_id == seqs[-1], 15, what="the reader at the last seq")
        got = [await asyncio.wait_for(anext(follow), 10) for _ in range(5)]
        assert [e.id for e in got if isinstance(e, Entry)] == seqs[:5]
        with pytest.raises(ResourceExhausted, match=f"resume_from {seqs[4]}"):
            await asyncio.wait_for(anext(follow), 10)
    finally:
        await follow.aclose()
        await feed.close()
        await client.aclose()
    assert feed.reader_count == 0


async def test_slow_grpc_subscriber_gets_resource_exhausted(redis_url: str) -> None:
    async with running_cache_service(redis_url, subscriber_queue=3) as svc:
        async with grpc.aio.insecure_channel(svc.target) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            stream = stub.StreamBots(pb.StreamBotsRequest())
            await read_until_live(stream)
            big = "x" * 60_000  # a few hundred of these overflow every transport buffer
            for _ in range(300):
                await stub.UpsertBot(pb.UpsertBotRequest(bot=BotFactory(message=big)))
            seen = 0
            with pytest.raises(grpc.aio.AioRpcError) as info:
                while True:
                    event = await next_message(stream, 15)
                    assert event is not grpc.aio.EOF
                    seen += 1
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "resume_from" in info.value.details()
            assert seen < 300


async def test_feed_refuses_new_subscribers_after_close(redis_url: str) -> None:
    client = connect(parse_redis_url(redis_url), 5.0)
    feed = ChangeFeed(client, Metrics(), queue_limit=5, timeout=5)
    await feed.close()
    with pytest.raises(Unavailable):
        await anext(feed.follow(ORDERS.stream, "orders", field_filter()))
    await client.aclose()


async def test_seq_order_matches_redis_stream_order(stub) -> None:
    seqs = await publish(stub, 30)
    assert seqs == sorted(seqs, key=seq_key)


def test_field_filter() -> None:
    assert field_filter(u="", s=[]) is match_all
    match = field_filter(u="alice", s=["BTC/USDT"])
    assert match({b"u": b"alice", b"s": b"BTC/USDT"})
    assert not match({b"u": b"bob", b"s": b"BTC/USDT"})
    assert not match({b"u": b"alice"})
