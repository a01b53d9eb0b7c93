"""Terminal orders expire after ``--terminal-order-retention-s`` (cache_service/order_retention.py),
against real Redis: gone from the latest state, kept in the change feed; live orders and bots stay."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import redis.asyncio as aioredis

from cache_service.config import ConfigError, load_config
from cache_service.order_retention import OrderRetention, sweep_interval
from cache_service.redis_url import RedisClient, connect, parse_redis_url
from cache_service.store import BOTS, ORDERS, Store
from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.api.v1 import cache_pb2_grpc
from tests.factories import BotFactory, OrderFactory
from tests.infra.cache_calls import ALICE, rpc_error
from tests.infra.cache_service_runner import running_cache_service
from tests.infra.eventually import eventually

# every redis_url test here runs on a Redis Cluster too (tests/conftest.py)
pytestmark = [pytest.mark.timeout(60), pytest.mark.cluster_too]

EXPIRY = ORDERS.expiry_key
OWNERS = ORDERS.owner_key


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[RedisClient]:
    client = connect(parse_redis_url(redis_url), 5.0)
    yield client
    await client.aclose()


@pytest.fixture
def store(redis_client: RedisClient) -> Store:
    return Store(redis_client, stream_maxlen=1000)


async def test_terminal_orders_leave_the_state_after_the_retention_and_the_feed_keeps_them(
        redis_url: str, redis_client: RedisClient) -> None:
    done = [OrderFactory(user_id="alice", status=status) for status in ("filled", "canceled", "rejected")]
    live = OrderFactory(user_id="alice", status="open")
    bot = BotFactory(user_id="alice", status="stopped")
    async with running_cache_service(redis_url, terminal_order_retention_s=1.0) as svc:
        async with grpc.aio.insecure_channel(svc.target) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            for order in (*done, live):
                await stub.UpsertOrder(pb.UpsertOrderRequest(order=order), timeout=10)
            await stub.UpsertBot(pb.UpsertBotRequest(bot=bot), timeout=10)

            async def only_the_live_order_left() -> bool:
                reply = await stub.ListOrders(pb.ListOrdersRequest(user_id="alice"), metadata=ALICE, timeout=5)
                return {o.order_id for o in reply.orders} == {live.order_id}

            await eventually(only_the_live_order_left, timeout=20, interval=0.1)
            for order in done:
                error = await rpc_error(stub.GetOrder(pb.GetOrderRequest(order_id=order.order_id),
                                                      metadata=ALICE, timeout=5))
                assert error.code() == grpc.StatusCode.NOT_FOUND
            bots = await stub.ListBots(pb.ListBotsRequest(user_id="alice"), metadata=ALICE, timeout=5)
            assert [b.bot_id for b in bots.bots] == [bot.bot_id]  # bots never expire
    assert await redis_client.hkeys(OWNERS) == [live.order_id.encode()]
    assert await redis_client.zcard(EXPIRY) == 0
    assert await redis_client.xlen(ORDERS.stream) == 4  # the change feed keeps its own retention


async def test_only_terminal_orders_are_due_and_a_reopened_order_leaves_the_set(
        store: Store, redis_client: RedisClient) -> None:
    order = OrderFactory(status="filled")
    await store.upsert(ORDERS, order)
    assert await redis_client.zscore(EXPIRY, order.order_id) is not None
    order.status = "open"  # a correction: live again, so it must not expire
    await store.upsert(ORDERS, order)
    assert await redis_client.zscore(EXPIRY, order.order_id) is None
    await store.upsert(BOTS, BotFactory(status="stopped"))
    assert await store.expire(ORDERS, 0, 100) == 0
    assert await store.get(ORDERS, order.order_id) == order


async def test_an_order_younger_than_the_retention_stays(store: Store) -> None:
    order = OrderFactory(status="canceled")
    await store.upsert(ORDERS, order)
    assert await OrderRetention(store, 3600).sweep() == 0
    assert await store.get(ORDERS, order.order_id) == order


async def test_a_sweep_drops_every_due_order_in_batches_and_forgets_emptied_owners(
        store: Store, redis_client: RedisClient) -> None:
    bobs = [OrderFactory(user_id="bob", status="filled") for _ in range(5)]
    alices = OrderFactory(user_id="alice", status="open")
    for order in (*bobs, alices):
        await store.upsert(ORDERS, order)
    assert await store.expire(ORDERS, 0, 2) == 2  # one batch at a time
    assert await OrderRetention(store, 0.001).sweep() == 3
    assert await store.list(ORDERS, "bob") == []
    assert await redis_client.smembers(ORDERS.users_key) == {b"alice"}
    assert await store.list(ORDERS, "") == [alices]


def test_the_retention_setting() -> None:
    assert load_config([], {}).terminal_order_retention_s == 86400.0
    assert load_config([], {"CACHE_TERMINAL_ORDER_RETENTION_S": "0"}).terminal_order_retention_s == 0
    assert load_config(["--terminal-order-retention-s", "2.5"], {}).terminal_order_retention_s == 2.5
    with pytest.raises(ConfigError, match=r"^--terminal-order-retention-s: must be >= 0"):
        load_config(["--terminal-order-retention-s", "-1"], {})
    assert sweep_interval(1.0) == 0.25 and sweep_interval(86400) == 10.0 and sweep_interval(0.001) == 0.05


async def test_zero_keeps_terminal_orders_forever(store: Store) -> None:
    retention = OrderRetention(store, 0).start()
    assert not retention.periodic.running  # nothing to sweep
    await retention.stop()


async def test_the_sweep_outlives_a_redis_that_does_not_answer() -> None:
    """A sweep against a closed port fails quietly and the task keeps going (no Redis, so no
    cluster variant: what fails is the client's connect, the same for either topology)."""
    from devstack.ports import free_port

    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    retention = OrderRetention(Store(client, stream_maxlen=10), 0.2).start()
    try:
        await eventually(lambda: retention.failing, timeout=10, what="a failed sweep seen")
        assert retention.periodic.running
    finally:
        await retention.stop()
        await client.aclose()
