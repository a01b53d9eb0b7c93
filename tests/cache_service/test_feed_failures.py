"""A failure inside the change feed is visible (logged, counted) and contained: only the
subscriber that failed ends (INTERNAL), the reader and the other subscribers go on; a reader
whose loop crashes leaves the feed and ends its subscribers UNAVAILABLE so they resume.
Real Redis; the failures are real objects that raise (a filter, a reader subclass, a poison
entry written to Redis), no mocks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc
import pytest

from cache_service.changefeed import ChangeFeed, Entry, Fields, Live, StreamReader, match_all
from cache_service.errors import Internal, Unavailable
from cache_service.metrics import Metrics
from cache_service.redis_url import RedisClient, connect, parse_redis_url
from marketbridge.api.v1 import cache_pb2 as pb
from cache_service.store import ORDERS, PREFIX, Store, ticker_stream
from tests.infra.cache_calls import ALICE, BOB, read_events, read_until_live, rpc_error
from tests.factories import OrderFactory

TIMEOUT = 15.0
POISON = b"POISON"

pytestmark = pytest.mark.cluster_too   # every redis_url test here runs on a Redis Cluster too (tests/conftest.py)


def fails_on_poison(fields: Fields) -> bool:
    """A subscriber filter with a bug: it raises on one kind of entry."""
    if fields.get(b"s") == POISON:
        raise ValueError("filter bug")
    return True


class CrashingReader(StreamReader):
    """A reader whose delivery step has a bug on one kind of entry."""

    def _fan_out(self, entries: list[Entry]) -> None:
        if any(e.fields.get(b"s") == POISON for e in entries):
            raise RuntimeError("reader bug")
        super()._fan_out(entries)


class CrashingFeed(ChangeFeed):
    reader_type = CrashingReader


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[RedisClient]:
    client = connect(parse_redis_url(redis_url), 5.0)
    yield client
    await client.aclose()


async def live_follower(feed: ChangeFeed, match=match_all):  # type: ignore[no-untyped-def]
    follow = feed.follow(ORDERS.stream, "orders", match)
    assert isinstance(await asyncio.wait_for(anext(follow), TIMEOUT), Live)
    return follow


async def next_entry(follow) -> Entry:  # type: ignore[no-untyped-def]
    while True:
        item = await asyncio.wait_for(anext(follow), TIMEOUT)
        if isinstance(item, Entry):
            return item


async def test_a_failing_subscriber_is_ended_alone_and_the_reader_goes_on(
        client: RedisClient, caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    feed = ChangeFeed(client, metrics, queue_limit=100, timeout=5)
    store = Store(client, 1000)
    buggy, healthy = await live_follower(feed, fails_on_poison), await live_follower(feed)
    try:
        reader = feed.readers[ORDERS.stream]
        good = await store.upsert(ORDERS, OrderFactory(symbol="BTC/USDT"))
        assert (await next_entry(buggy)).id == good
        assert (await next_entry(healthy)).id == good
        with caplog.at_level(logging.ERROR, logger="cache_service.changefeed"):
            bad = await store.upsert(ORDERS, OrderFactory(symbol=POISON.decode()))
            with pytest.raises(Internal, match="change feed failed for this stream"):
                await next_entry(buggy)
        assert any(r.exc_info and "filter bug" in str(r.exc_info[1]) for r in caplog.records)
        assert (await next_entry(healthy)).id == bad
        after = await store.upsert(ORDERS, OrderFactory())
        assert (await next_entry(healthy)).id == after
        assert feed.readers[ORDERS.stream] is reader and not reader.task.done()
        assert metrics.feed_failures.labels("subscriber")._value.get() == 1
    finally:
        await buggy.aclose()
        await healthy.aclose()
        await feed.close()


async def test_a_crashed_reader_leaves_and_ends_its_subscribers_unavailable(
        client: RedisClient, caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    feed = CrashingFeed(client, metrics, queue_limit=100, timeout=5)
    store = Store(client, 1000)
    followers = [await live_follower(feed) for _ in range(2)]
    try:
        with caplog.at_level(logging.ERROR, logger="cache_service.changefeed"):
            await store.upsert(ORDERS, OrderFactory(symbol=POISON.decode()))
            for follow in followers:
                with pytest.raises(Unavailable, match="change feed interrupted: stream reader failed"):
                    await next_entry(follow)
        assert any(r.exc_info and "reader bug" in str(r.exc_info[1]) for r in caplog.records)
        assert feed.reader_count == 0   # never left attached to a dead task
        assert metrics.feed_failures.labels("reader")._value.get() == 1
        assert metrics.feed_interruptions.labels("internal")._value.get() == 1
    finally:
        for follow in followers:
            await follow.aclose()
        await feed.close()


async def test_an_entry_that_cannot_be_encoded_ends_only_the_streams_that_get_it(
        svc, stub, redis_url: str) -> None:
    alice = stub.StreamOrders(pb.StreamOrdersRequest(), metadata=ALICE)
    bob = stub.StreamOrders(pb.StreamOrdersRequest(), metadata=BOB)
    tickers = stub.StreamTickers(pb.StreamTickersRequest(exchange="binance"))
    for call in (alice, bob, tickers):
        await read_until_live(call)
    raw = connect(parse_redis_url(redis_url), 5.0)
    try:   # entries some other writer left: bytes that are no Order, a ticker without data
        poison = (await raw.xadd(ORDERS.stream, {"d": b"\x0a\xff", "u": "alice", "b": "", "s": "X"})).decode()
        await raw.xadd(ticker_stream("binance"), {"s": "BTC/USDT"})
    finally:
        await raw.aclose()
    for call, seq in ((alice, poison), (tickers, "")):
        error = await rpc_error(read_events(call, 1))
        assert error.code() is grpc.StatusCode.INTERNAL
        assert "cannot be encoded" in (error.details() or "") and seq in (error.details() or "")
    order = OrderFactory(user_id="bob")
    seq = (await stub.UpsertOrder(pb.UpsertOrderRequest(order=order))).seq
    assert [e.seq for e in await read_events(bob, 1)] == [seq]   # the others go on
    assert svc.server.metrics.feed_failures.labels("stream")._value.get() == 2
    bob.cancel()


async def test_a_replayed_entry_that_cannot_be_encoded_ends_the_stream_internal(svc, stub, redis_url: str) -> None:
    raw = connect(parse_redis_url(redis_url), 5.0)
    try:
        await raw.xadd(ORDERS.stream, {"d": b"\x0a\xff", "u": "alice"})
    finally:
        await raw.aclose()
    error = await rpc_error(read_until_live(stub.StreamOrders(pb.StreamOrdersRequest(resume_from="0"))))
    assert error.code() is grpc.StatusCode.INTERNAL
    assert PREFIX not in (error.details() or "")   # names the event, not the layout
