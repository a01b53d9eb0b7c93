"""What only a Redis Cluster can show (SPEC §9.4): keys of one unit share a slot, a batch over
several slots is split and answered in order, and the change feed's replica confirmation works
on the node that owns the stream. The tests of the
modules marked ``cluster_too`` cover everything else on the same session cluster."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from cache_service.book_store import book_key, book_stream, books_key
from cache_service.canary import CANARY_STREAM
from cache_service.slots import confirm_key, hash_tag, slot_groups, slot_of
from cache_service.store import BOTS, EXCHANGES, ORDERS, ticker_stream, tickers_key
from cache_service.trade_store import candle_stream, candles_key, trade_stream, trades_key
from marketbridge.api.v1 import cache_pb2 as pb
from tests.factories import OrderFactory, TickerFactory
from tests.infra.cache_calls import read_until_live, rpc_error, serving
from tests.infra.eventually import eventually
from tests.infra.redis_cluster import RedisClusterNodes

TIMEOUT = 20.0
UNITS = {
    "tickers": [tickers_key("binance"), ticker_stream("binance")],
    "trades": [trade_stream("binance"), trades_key("binance", "BTC/USDT"),
               candles_key("binance", "BTC/USDT", "1m"), candle_stream("binance")],
    "book": [book_key("binance", "BTC/USDT"), book_stream("binance", "BTC/USDT")],
    "orders": [ORDERS.owner_key, ORDERS.users_key, ORDERS.stream, ORDERS.expiry_key, ORDERS.records_prefix + "alice"],
    "bots": [BOTS.owner_key, BOTS.users_key, BOTS.stream, BOTS.records_prefix + "alice"],
}


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_every_key_of_a_unit_and_its_feed_confirmation_share_one_slot(unit: str) -> None:
    keys = UNITS[unit]
    assert all(k.startswith("cache:v1:{") for k in keys)
    slots = {slot_of(k) for k in [*keys, confirm_key(keys[0])]}
    assert len(slots) == 1, (unit, keys)


def test_units_are_apart_and_indexes_are_keys_of_their_own() -> None:
    assert slot_of(book_stream("binance", "BTC/USDT")) != slot_of(book_stream("binance", "ETH/USDT"))
    assert hash_tag(EXCHANGES) == EXCHANGES and hash_tag(books_key("binance")) == books_key("binance")
    assert hash_tag(CANARY_STREAM) == "canary"
    # a '}' in a name ends the tag early, but at the same place in every key of the unit
    assert slot_of(tickers_key("a}b")) == slot_of(ticker_stream("a}b"))


def test_slot_groups_keep_order_and_are_one_group_off_a_cluster() -> None:
    keys = [ticker_stream(e) for e in ("a", "b", "a", "c", "b")]
    assert slot_groups(keys, cluster=False) == [[0, 1, 2, 3, 4]]
    groups = slot_groups(keys, cluster=True)
    assert sorted(i for g in groups for i in g) == [0, 1, 2, 3, 4]
    assert all(g == sorted(g) for g in groups) and groups[0][:2] == [0, 2]
    assert slot_groups([], cluster=True) == slot_groups([], cluster=False) == []


async def test_a_batch_over_many_exchanges_is_split_per_slot_and_answered_in_order(
        redis_cluster: RedisClusterNodes) -> None:
    await asyncio.to_thread(redis_cluster.flush)
    exchanges = [f"ex{i}" for i in range(8)]
    assert len({redis_cluster.master_of(ticker_stream(e)) for e in exchanges}) > 1   # several shards
    tickers = [TickerFactory(exchange=exchanges[i % 8], symbol=f"S{i}") for i in range(40)]

    async def requests():
        yield pb.PublishTickerRequest(tickers=tickers)

    async with serving(redis_cluster.url) as (_svc, stub):
        reply = await stub.PublishTickers(requests(), timeout=TIMEOUT)
        assert reply.accepted == 40
        listed = await stub.ListTickers(pb.ListTickersRequest(), timeout=TIMEOUT)
        assert sorted((t.exchange, t.symbol) for t in listed.tickers) == sorted((t.exchange, t.symbol) for t in tickers)
        for exchange in exchanges:   # each exchange's feed holds its tickers in the batch's order
            call = stub.StreamTickers(pb.StreamTickersRequest(exchange=exchange, resume_from="0"))
            events = await read_until_live(call)
            assert [e.ticker.symbol for e in events if e.WhichOneof("event") == "ticker"] == [
                t.symbol for t in tickers if t.exchange == exchange]
            call.cancel()


async def test_an_unconfirmed_write_is_shown_only_once_the_shards_replica_has_it(
        redis_cluster: RedisClusterNodes) -> None:
    """The reader's confirmation (a SET in the stream's slot, then WAIT) on the node that owns
    the orders: with that shard's replica frozen, a refused write stays invisible; thawed, it
    is delivered."""
    await asyncio.to_thread(redis_cluster.flush)
    replica = redis_cluster.replica_of(ORDERS.stream)
    async with serving(redis_cluster.url, replica_ack_timeout_ms=1000, feed_stall_s=60) as (svc, stub):
        confirmed = (await stub.UpsertOrder(pb.UpsertOrderRequest(order=OrderFactory()), timeout=10)).seq
        call = stub.StreamOrders(pb.StreamOrdersRequest(resume_from="0"))
        assert [e.seq for e in await read_until_live(call)][:-1] == [confirmed]
        reader = svc.server.feed.readers[ORDERS.stream]
        await asyncio.to_thread(replica.pause)
        try:
            error = await rpc_error(stub.UpsertOrder(pb.UpsertOrderRequest(order=OrderFactory()), timeout=10))
            assert "not confirmed by replicas" in (error.details() or "")
            await eventually(lambda: len(reader.unconfirmed) == 1, 5, what="the reader holding the refused write")
            assert reader.last_id == confirmed
        finally:
            await asyncio.to_thread(replica.unpause)
        async with asyncio.timeout(TIMEOUT):   # a replica has it now: delivered
            event = await call.read()
            while event.WhichOneof("event") == "heartbeat":
                event = await call.read()
        assert event.WhichOneof("event") == "order" and event.seq == reader.last_id != confirmed
        call.cancel()
    await asyncio.to_thread(redis_cluster.wait_healthy)
