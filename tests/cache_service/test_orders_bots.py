"""Order and bot RPCs: writes, reads, validation and user scoping (alice, bob, admin, internal)."""

from __future__ import annotations

import math

import grpc
import pytest

from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.seq import seq_key
from tests.infra.cache_calls import (
    ADMIN,
    ALICE,
    BOB,
    as_user,
    ids,
    read_events,
    read_until_live,
    rpc_error,
)
from tests.factories import BotFactory, OrderFactory

pytestmark = pytest.mark.cluster_too   # every redis_url test here runs on a Redis Cluster too (tests/conftest.py)


async def upsert_orders(stub, *orders) -> list[str]:
    return [(await stub.UpsertOrder(pb.UpsertOrderRequest(order=o))).seq for o in orders]


async def upsert_bots(stub, *bots) -> list[str]:
    return [(await stub.UpsertBot(pb.UpsertBotRequest(bot=b))).seq for b in bots]


# ---------------------------------------------------------------- orders

async def test_order_upsert_get_and_update(stub) -> None:
    order = OrderFactory(status="new")
    [seq1] = await upsert_orders(stub, order)
    order.status, order.filled = "partially_filled", 0.05
    [seq2] = await upsert_orders(stub, order)
    assert seq_key(seq2) > seq_key(seq1)
    got = await stub.GetOrder(pb.GetOrderRequest(order_id=order.order_id), metadata=ALICE)
    assert got == order


async def test_get_order_scoping(stub) -> None:
    order = OrderFactory(user_id="alice")
    await upsert_orders(stub, order)
    request = pb.GetOrderRequest(order_id=order.order_id)
    assert (await stub.GetOrder(request, metadata=ALICE)).order_id == order.order_id
    assert (await stub.GetOrder(request, metadata=ADMIN)).order_id == order.order_id
    assert (await stub.GetOrder(request)).order_id == order.order_id  # internal caller
    bobs = await rpc_error(stub.GetOrder(request, metadata=BOB))
    missing = await rpc_error(stub.GetOrder(pb.GetOrderRequest(order_id="ord-nope"), metadata=BOB))
    assert bobs.code() == missing.code() == grpc.StatusCode.NOT_FOUND
    assert bobs.details() == f"order {order.order_id!r} not found"  # no hint that it exists


async def test_scope_without_user_is_not_admin(stub) -> None:
    order = OrderFactory(user_id="alice")
    await upsert_orders(stub, order)
    error = await rpc_error(stub.GetOrder(pb.GetOrderRequest(order_id=order.order_id),
                                          metadata=as_user("bob", "trade readonly")))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_get_order_requires_an_id(stub) -> None:
    error = await rpc_error(stub.GetOrder(pb.GetOrderRequest()))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "order_id" in error.details()


@pytest.mark.parametrize(("override", "field"), [
    ({"order_id": ""}, "order_id"),
    ({"user_id": ""}, "user_id"),
    ({"exchange": ""}, "exchange"),
    ({"symbol": ""}, "symbol"),
    ({"side": "long"}, "side"),
    ({"order_type": "iceberg"}, "order_type"),
    ({"status": "done"}, "status"),
    ({"price": math.nan}, "price"),
    ({"amount": -1.0}, "amount"),
    ({"bot_id": "b\x00"}, "bot_id"),
])
async def test_upsert_order_rejects_bad_records(stub, override, field) -> None:
    error = await rpc_error(stub.UpsertOrder(pb.UpsertOrderRequest(order=OrderFactory(**override))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in error.details()
    assert list((await stub.ListOrders(pb.ListOrdersRequest())).orders) == []


async def test_owner_change_moves_the_order(stub) -> None:
    order = OrderFactory(user_id="alice")
    await upsert_orders(stub, order)
    order.user_id = "bob"
    await upsert_orders(stub, order)
    assert list((await stub.ListOrders(pb.ListOrdersRequest(), metadata=ALICE)).orders) == []
    assert ids((await stub.ListOrders(pb.ListOrdersRequest(), metadata=BOB)).orders, "order_id") == [order.order_id]
    error = await rpc_error(stub.GetOrder(pb.GetOrderRequest(order_id=order.order_id), metadata=ALICE))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_list_orders_scoping_and_filters(stub) -> None:
    alice = [OrderFactory(user_id="alice", updated_at=100.0 + i, status="open" if i % 2 else "filled",
                          symbol="BTC/USDT" if i < 3 else "ETH/USDT", bot_id="bot-1" if i == 0 else "")
             for i in range(5)]
    bob = [OrderFactory(user_id="bob", updated_at=200.0)]
    await upsert_orders(stub, *alice, *bob)

    own = (await stub.ListOrders(pb.ListOrdersRequest(), metadata=ALICE)).orders
    assert ids(own, "order_id") == [o.order_id for o in reversed(alice)]  # newest first
    assert {o.user_id for o in own} == {"alice"}
    assert ids((await stub.ListOrders(pb.ListOrdersRequest(), metadata=BOB)).orders, "user_id") == ["bob"]
    for caller in (ADMIN, None):
        everyone = (await stub.ListOrders(pb.ListOrdersRequest(), metadata=caller)).orders
        assert len(everyone) == 6
        just_bob = (await stub.ListOrders(pb.ListOrdersRequest(user_id="bob"), metadata=caller)).orders
        assert ids(just_bob, "user_id") == ["bob"]

    def listed(**kw):
        return stub.ListOrders(pb.ListOrdersRequest(**kw), metadata=ALICE)

    assert {o.status for o in (await listed(status="open")).orders} == {"open"}
    assert len((await listed(status="open")).orders) == 2
    assert {o.symbol for o in (await listed(symbol="ETH/USDT")).orders} == {"ETH/USDT"}
    assert ids((await listed(bot_id="bot-1")).orders, "order_id") == [alice[0].order_id]
    assert len((await listed(limit=2)).orders) == 2
    assert len((await listed(user_id="alice")).orders) == 5


async def test_list_orders_rejects_bad_requests(stub) -> None:
    for request, text in [(pb.ListOrdersRequest(limit=-1), "limit"), (pb.ListOrdersRequest(limit=1001), "limit"),
                          (pb.ListOrdersRequest(status="done"), "status")]:
        error = await rpc_error(stub.ListOrders(request, metadata=ALICE))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and text in error.details()
    error = await rpc_error(stub.ListOrders(pb.ListOrdersRequest(user_id="bob"), metadata=ALICE))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_list_orders_default_limit(stub) -> None:
    await upsert_orders(stub, *[OrderFactory(user_id="alice") for _ in range(120)])
    assert len((await stub.ListOrders(pb.ListOrdersRequest(), metadata=ALICE)).orders) == 100
    assert len((await stub.ListOrders(pb.ListOrdersRequest(limit=1000), metadata=ALICE)).orders) == 120


async def test_stream_orders_is_scoped_and_filtered(stub) -> None:
    alice_stream = stub.StreamOrders(pb.StreamOrdersRequest(), metadata=ALICE)
    bot_stream = stub.StreamOrders(pb.StreamOrdersRequest(bot_ids=["bot-7"]), metadata=ALICE)
    eth_stream = stub.StreamOrders(pb.StreamOrdersRequest(symbols=["ETH/USDT"]), metadata=ALICE)
    admin_stream = stub.StreamOrders(pb.StreamOrdersRequest(), metadata=ADMIN)
    bob_only = stub.StreamOrders(pb.StreamOrdersRequest(user_id="bob"))
    streams = [alice_stream, bot_stream, eth_stream, admin_stream, bob_only]
    for stream in streams:
        await read_until_live(stream)
    a1, b1, a2, a3 = (OrderFactory(user_id="alice"), OrderFactory(user_id="bob"),
                      OrderFactory(user_id="alice", bot_id="bot-7"), OrderFactory(user_id="alice", symbol="ETH/USDT"))
    seqs = await upsert_orders(stub, a1, b1, a2, a3)
    assert [e.order.order_id for e in await read_events(alice_stream, 3)] == [a1.order_id, a2.order_id, a3.order_id]
    assert [(e.seq, e.order.order_id) for e in await read_events(bot_stream, 1)] == [(seqs[2], a2.order_id)]
    assert [e.order.order_id for e in await read_events(eth_stream, 1)] == [a3.order_id]
    assert [e.seq for e in await read_events(admin_stream, 4)] == seqs
    assert [e.order.order_id for e in await read_events(bob_only, 1)] == [b1.order_id]
    # a marker written last proves the filtered streams skipped what they should
    marker = OrderFactory(user_id="alice", bot_id="bot-7", symbol="ETH/USDT")
    [marker_seq] = await upsert_orders(stub, marker)
    for stream in (alice_stream, bot_stream, eth_stream):
        [event] = await read_events(stream, 1)
        assert event.seq == marker_seq
    for stream in streams:
        stream.cancel()


async def test_stream_orders_other_user_is_refused(stub) -> None:
    stream = stub.StreamOrders(pb.StreamOrdersRequest(user_id="bob"), metadata=ALICE)
    error = await rpc_error(stream.read())
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


# ---------------------------------------------------------------- bots

async def test_bot_upsert_get_scoping(stub) -> None:
    bot = BotFactory(user_id="alice")
    await upsert_bots(stub, bot)
    request = pb.GetBotRequest(bot_id=bot.bot_id)
    assert await stub.GetBot(request, metadata=ALICE) == bot
    assert await stub.GetBot(request, metadata=ADMIN) == bot
    assert await stub.GetBot(request) == bot
    for call in (stub.GetBot(request, metadata=BOB), stub.GetBot(pb.GetBotRequest(bot_id="nope"))):
        assert (await rpc_error(call)).code() == grpc.StatusCode.NOT_FOUND
    assert (await rpc_error(stub.GetBot(pb.GetBotRequest()))).code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(("override", "field"), [
    ({"bot_id": ""}, "bot_id"), ({"user_id": ""}, "user_id"), ({"status": "sleeping"}, "status"),
    ({"pnl": math.inf}, "pnl"), ({"updated_at": -5.0}, "updated_at"),
])
async def test_upsert_bot_rejects_bad_records(stub, override, field) -> None:
    error = await rpc_error(stub.UpsertBot(pb.UpsertBotRequest(bot=BotFactory(**override))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and field in error.details()


async def test_list_bots_scoping(stub) -> None:
    bots = [BotFactory(user_id="alice"), BotFactory(user_id="alice"), BotFactory(user_id="bob")]
    await upsert_bots(stub, *bots)
    assert ids((await stub.ListBots(pb.ListBotsRequest(), metadata=ALICE)).bots, "bot_id") == [
        bots[0].bot_id, bots[1].bot_id]
    assert len((await stub.ListBots(pb.ListBotsRequest(), metadata=ADMIN)).bots) == 3
    assert ids((await stub.ListBots(pb.ListBotsRequest(user_id="bob"))).bots, "bot_id") == [bots[2].bot_id]
    error = await rpc_error(stub.ListBots(pb.ListBotsRequest(user_id="alice"), metadata=BOB))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_stream_bots_scoped_with_bot_filter(stub) -> None:
    mine = stub.StreamBots(pb.StreamBotsRequest(), metadata=ALICE)
    one = stub.StreamBots(pb.StreamBotsRequest(bot_ids=["bot-x"]), metadata=ALICE)
    for stream in (mine, one):
        await read_until_live(stream)
    b1, b2, b3 = BotFactory(user_id="bob"), BotFactory(user_id="alice"), BotFactory(user_id="alice", bot_id="bot-x")
    seqs = await upsert_bots(stub, b1, b2, b3)
    assert [(e.seq, e.bot.bot_id) for e in await read_events(mine, 2)] == [(seqs[1], b2.bot_id), (seqs[2], "bot-x")]
    assert [e.bot.bot_id for e in await read_events(one, 1)] == ["bot-x"]
    mine.cancel()
    one.cancel()
