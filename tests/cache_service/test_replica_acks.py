"""``--min-replica-acks``: a write is acknowledged (gets its seq) only once enough replicas have
it (``WAIT`` on the write's own connection); otherwise UNAVAILABLE. The failover itself is in
tests/resilience/test_failover_durability.py; here: a real primary and a real replica
(containers, or processes on the fallback), and the session Redis Cluster (a replica per shard)."""

from __future__ import annotations

import asyncio
import re

import grpc
import pytest

from cache_service.config import CacheConfig, ConfigError, load_config
from cache_service.store import ORDERS, tickers_key
from marketbridge.api.v1 import cache_pb2 as pb
from tests.infra.cache_calls import serving, rpc_error
from tests.factories import BotFactory, OrderFactory, TickerFactory
from tests.infra.redis_faults import ReplicatedRedis

pytestmark = pytest.mark.cluster_too   # every redis_url test here runs on a Redis Cluster too (tests/conftest.py)


def test_default_is_one_ack_with_sentinel_else_none() -> None:
    assert load_config([], {}).min_replica_acks == 0
    assert load_config(["--redis-url", "redis+sentinel://s1:26379/m"], {}).min_replica_acks == 1
    config = load_config(["--redis-url", "redis+sentinel://s1:26379/m"],
                         {"CACHE_MIN_REPLICA_ACKS": "0", "CACHE_REPLICA_ACK_TIMEOUT_MS": "250"})
    assert (config.min_replica_acks, config.replica_ack_timeout_ms) == (0, 250)
    assert load_config(["--min-replica-acks", "2"], {}).min_replica_acks == 2


@pytest.mark.parametrize("values", [{"min_replica_acks": -1}, {"replica_ack_timeout_ms": 0}])
def test_bad_replica_ack_settings_are_rejected(values) -> None:
    with pytest.raises(ConfigError, match="replica-ack"):
        CacheConfig(**values)


async def test_every_write_path_is_refused_without_enough_replicas(
        redis_url: str, redis_topology: str) -> None:
    """One ack more than there are replicas: a single Redis has none, a cluster shard one."""
    replicas = 0 if redis_topology == "single" else 1
    # a shard's replica that is slow to ack within 50 ms counts 0
    refused = re.compile(rf"write not confirmed by replicas \([0-{replicas}] of {replicas + 1} within 50 ms\)")
    async with serving(redis_url, min_replica_acks=replicas + 1, replica_ack_timeout_ms=50) as (svc, stub):
        calls = [stub.UpsertOrder(pb.UpsertOrderRequest(order=OrderFactory()), timeout=10),
                 stub.UpsertBot(pb.UpsertBotRequest(bot=BotFactory()), timeout=10),
                 stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory()), timeout=10)]
        stream = stub.PublishTickers(timeout=10)
        for _ in range(3):
            await stream.write(pb.PublishTickerRequest(ticker=TickerFactory()))
        await stream.done_writing()
        for call in [*calls, stream]:
            error = await rpc_error(call)
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert refused.search(error.details() or ""), error.details()


async def test_writes_confirmed_by_a_replica_are_acknowledged_and_on_it(
        replicated_redis: ReplicatedRedis) -> None:
    async with serving(replicated_redis.url, min_replica_acks=1, replica_ack_timeout_ms=5000) as (svc, stub):
        order = OrderFactory()
        await stub.UpsertOrder(pb.UpsertOrderRequest(order=order), timeout=10)
        stream = stub.PublishTickers(timeout=10)
        tickers = [TickerFactory(symbol=f"S{i}/USDT") for i in range(20)]
        for ticker in tickers:
            await stream.write(pb.PublishTickerRequest(ticker=ticker))
        await stream.done_writing()
        reply = await asyncio.wait_for(stream, 10)
        assert reply.accepted == len(tickers)
    # WAIT returned 1: the replica already had the write when the seq was sent back.
    # on a cluster each key's copy is on its own shard's replica
    orders, tickers_on = (replicated_redis.on_replica(ORDERS.owner_key),
                          replicated_redis.on_replica(tickers_key(tickers[0].exchange)))
    try:
        assert orders.hget(ORDERS.owner_key, order.order_id) == order.user_id.encode()
        assert tickers_on.hlen(tickers_key(tickers[0].exchange)) == len(tickers)
    finally:
        orders.close()
        tickers_on.close()
