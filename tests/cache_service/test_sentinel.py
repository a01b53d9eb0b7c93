"""The service through a real Redis Sentinel (``redis+sentinel://``): one sentinel watching the
test Redis (both in containers under testcontainers). Failover itself is covered by the
resilience suite."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
import redis

from cache_service.store import ORDERS
from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.api.v1 import cache_pb2_grpc
from tests.infra.cache_calls import read_events, read_until_live
from tests.factories import OrderFactory
from tests.infra.cache_service_runner import running_cache_service
from tests.infra.redis_servers import RedisServer
from tests.infra.sentinel import MASTER_NAME, start_lone_sentinel


@pytest.fixture
def sentinel_port(redis_server: RedisServer, redis_url: str) -> Iterator[int]:
    """A sentinel (container, or process on the fallback) watching the session's Redis."""
    sentinel = start_lone_sentinel(redis_server.peer_address)
    try:
        yield sentinel.address[1]
    finally:
        sentinel.close()


async def test_reads_writes_and_streams_through_sentinel(redis_url: str, sentinel_port: int) -> None:
    url = f"redis+sentinel://127.0.0.1:{sentinel_port}/{MASTER_NAME}/0"
    async with running_cache_service(url, min_replica_acks=0) as svc:  # this Redis has no replica
        async with grpc.aio.insecure_channel(svc.target) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            stream = stub.StreamOrders(pb.StreamOrdersRequest())
            await read_until_live(stream)
            order = OrderFactory()
            seq = (await stub.UpsertOrder(pb.UpsertOrderRequest(order=order), timeout=10)).seq
            assert (await stub.GetOrder(pb.GetOrderRequest(order_id=order.order_id), timeout=10)) == order
            [event] = await read_events(stream, 1)
            assert event.seq == seq
            stream.cancel()
    direct = redis.Redis.from_url(redis_url)
    assert direct.hget(ORDERS.owner_key, order.order_id) == b"alice"
    direct.close()


async def test_sentinel_default_refuses_writes_no_replica_confirmed(redis_url: str, sentinel_port: int) -> None:
    """With Sentinel a write must reach a replica before it is acknowledged (default
    ``--min-replica-acks 1``): this Redis has none, so the write is refused, not acked."""
    url = f"redis+sentinel://127.0.0.1:{sentinel_port}/{MASTER_NAME}/0"
    async with running_cache_service(url, replica_ack_timeout_ms=50) as svc:
        async with grpc.aio.insecure_channel(svc.target) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.UpsertOrder(pb.UpsertOrderRequest(order=OrderFactory()), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "write not confirmed by replicas (0 of 1 within 50 ms)" in (err.value.details() or "")
