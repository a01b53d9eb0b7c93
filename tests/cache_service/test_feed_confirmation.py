"""With ``--min-replica-acks`` N > 0 a stream delivers only entries N replicas hold (the
reader's SET of a key in the stream's slot + WAIT on its own connection): a write the primary applied but no replica
confirmed is never shown to a subscriber until a replica has it. Real primary and replica
processes (on a cluster: the orders shard's master and replica); the replica is frozen
(SIGSTOP, docker pause), so WAIT cannot confirm while the primary works."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from cache_service.redis_url import connect, parse_redis_url
from marketbridge.api.v1 import cache_pb2 as pb
from cache_service.store import ORDERS
from tests.infra.cache_calls import serving, read_until_live, rpc_error
from tests.factories import OrderFactory
from tests.infra.eventually import eventually
from tests.infra.redis_faults import ReplicatedRedis

pytestmark = pytest.mark.cluster_too   # every redis_url test here runs on a Redis Cluster too (tests/conftest.py)

TIMEOUT = 20.0


class Collector:
    """Everything a stream delivers, gathered by a task of its own (so the test can look at
    what arrived without cancelling a read)."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.orders: list[str] = []
        self.error: grpc.aio.AioRpcError | None = None
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._collect())

    async def _collect(self) -> None:
        try:
            while (event := await self.call.read()) is not grpc.aio.EOF:
                if event.WhichOneof("event") == "order":
                    self.orders.append(event.seq)
                    self.changed.set()
        except grpc.aio.AioRpcError as exc:
            self.error = exc
            self.changed.set()

    async def until(self, predicate: Any, timeout: float = TIMEOUT) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


async def newest_id(url: str) -> str:
    client = connect(parse_redis_url(url), 5.0)
    try:
        [(raw_id, _fields)] = await client.xrevrange(ORDERS.stream, count=1)
        return raw_id.decode()
    finally:
        await client.aclose()


async def test_an_unconfirmed_write_is_delivered_only_once_a_replica_has_it(
        replicated_redis: ReplicatedRedis) -> None:
    # 1 s for a replica's ack: the first write must be confirmed, and on a loaded machine a
    # container replica has missed 200 ms (the paused one costs the full second, once)
    async with serving(replicated_redis.url, min_replica_acks=1, replica_ack_timeout_ms=1000,
                       feed_stall_s=60) as (svc, stub):
        confirmed = (await stub.UpsertOrder(pb.UpsertOrderRequest(order=OrderFactory()), timeout=10)).seq
        call = stub.StreamOrders(pb.StreamOrdersRequest(resume_from="0"))
        assert [e.seq for e in await read_until_live(call)][:-1] == [confirmed]
        stream = Collector(call)
        reader = svc.server.feed.readers[ORDERS.stream]
        await asyncio.to_thread(replicated_redis.pause_replica, ORDERS.stream)
        try:
            error = await rpc_error(stub.UpsertOrder(pb.UpsertOrderRequest(order=OrderFactory()), timeout=10))
            assert "not confirmed by replicas" in (error.details() or "")
            assert svc.server.metrics.replica_acks_missing._value.get() == 1
            held = await newest_id(replicated_redis.url)      # the primary applied it all the same
            await eventually(lambda: reader.cursor == held)   # the reader has read it...
            assert reader.last_id == confirmed and [e.id for e in reader.unconfirmed] == [held]
            assert stream.orders == []                 # ...and shows it to nobody
            late = stub.StreamOrders(pb.StreamOrdersRequest(resume_from="0"))
            refused = await rpc_error(read_until_live(late))   # nor to a replay
            assert refused.code() is grpc.StatusCode.UNAVAILABLE
            assert "awaiting confirmation" in (refused.details() or "")
        finally:
            await asyncio.to_thread(replicated_redis.unpause_replica)
        await stream.until(lambda: stream.orders == [held])   # a replica has it now
        assert stream.error is None
        call.cancel()


async def test_replicas_that_do_not_confirm_for_the_stall_bound_end_the_stream(
        replicated_redis: ReplicatedRedis) -> None:
    async with serving(replicated_redis.url, min_replica_acks=1, replica_ack_timeout_ms=200,
                       feed_stall_s=1.0) as (svc, stub):
        call = stub.StreamOrders(pb.StreamOrdersRequest())
        await read_until_live(call)
        stream = Collector(call)
        await asyncio.to_thread(replicated_redis.pause_replica, ORDERS.stream)
        try:
            await rpc_error(stub.UpsertOrder(pb.UpsertOrderRequest(order=OrderFactory()), timeout=10))
            written = time.monotonic()
            await stream.until(lambda: stream.error is not None)
            assert time.monotonic() - written < 1.0 + 3.0
        finally:
            await asyncio.to_thread(replicated_redis.unpause_replica)
        assert stream.error is not None and stream.error.code() is grpc.StatusCode.UNAVAILABLE
        assert "not confirmed by 1 replica(s)" in (stream.error.details() or "")
        assert stream.orders == []
        assert svc.server.metrics.feed_interruptions.labels("unconfirmed")._value.get() == 1


async def test_confirmed_events_flow_in_order_under_writes(replicated_redis: ReplicatedRedis) -> None:
    async with serving(replicated_redis.url, min_replica_acks=1, replica_ack_timeout_ms=2000) as (svc, stub):
        call = stub.StreamOrders(pb.StreamOrdersRequest())
        await read_until_live(call)
        stream = Collector(call)
        seqs = [(await stub.UpsertOrder(pb.UpsertOrderRequest(order=OrderFactory()), timeout=10)).seq
                for _ in range(50)]
        await stream.until(lambda: len(stream.orders) >= 50)
        assert stream.orders == seqs
        call.cancel()
