"""What a Sentinel failover does to writes the old primary acknowledged but never replicated.

Two ways in, both closed by ``--min-replica-acks`` (default 1 with Sentinel: the service runs
``WAIT 1 <timeout>`` after each write on the write's own connection and answers UNAVAILABLE
when no replica confirmed it; docs/reliability.md):

1. the replica lags (here: it is down) while the primary takes writes, then the primary dies
   and the replica is promoted. Before the fix 20 of 20 acknowledged writes were lost; now
   writes made while the replica is down are refused ("write not confirmed by replicas") and
   every acknowledged one (made while the replica was up) survives the promotion. A replica
   that was only frozen would not do: the kernel keeps buffering the replication stream for it.
2. a planned failover (``SENTINEL FAILOVER``) under load: the replica is promoted while the old
   primary is still up, and the cache service keeps writing to the old primary over the
   connections it already has until the sentinels turn that node into a replica, which then
   drops everything it took meanwhile (a short split brain; ~200 acknowledged writes lost per
   run before the fix). The promoted replica no longer confirms the old primary's writes, so
   they are refused rather than acknowledged: 0 acknowledged writes lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest
import redis

from cache_service.pb.v1 import cache_pb2 as pb
from cache_service.pb.v1 import cache_pb2_grpc
from tests.factories import OrderFactory
from tests.infra.sentinel import MASTER_NAME, SentinelTopology
from tests.resilience.stack import CacheReplica, running_stack

pytestmark = [pytest.mark.resilience, pytest.mark.timeout(180)]

WRITES = 20
CALL_TIMEOUT_S = 5.0


async def _upsert(stub: cache_pb2_grpc.CacheServiceStub, acked: dict[str, str], refused: list[str]) -> None:
    """One order write: its seq into ``acked``, or the refusal message into ``refused``."""
    order = OrderFactory()
    try:
        reply = await stub.UpsertOrder(pb.UpsertOrderRequest(order=order), timeout=CALL_TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        refused.append(f"{exc.code().name}: {exc.details()}")
        return
    acked[order.order_id] = reply.seq


async def test_acknowledged_writes_survive_failover_to_a_lagging_replica(
        sentinel_topology: SentinelTopology, report: Callable[[str, dict[str, Any]], None]) -> None:
    cache = CacheReplica(sentinel_topology.sentinel_url)
    await asyncio.to_thread(cache.start)
    try:
        async with grpc.aio.insecure_channel(cache.target) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            primary = sentinel_topology.primary()
            replica = next(n for n in sentinel_topology.redis_nodes if n.address != primary)
            acked: dict[str, str] = {}
            refused: list[str] = []
            for _ in range(WRITES):          # replica up: confirmed and acknowledged
                await _upsert(stub, acked, refused)
            assert not refused, f"writes refused with the replica up: {refused[:3]}"
            await asyncio.to_thread(replica.kill)
            try:
                for _ in range(WRITES):      # replica down: nothing may be acknowledged
                    await _upsert(stub, acked, refused)
                await asyncio.to_thread(sentinel_topology.kill_primary)
            finally:
                await asyncio.to_thread(replica.start)
            await asyncio.to_thread(sentinel_topology.wait_for_promotion, 60.0)
            assert len(acked) + len(refused) == 2 * WRITES
            assert all("not confirmed by replicas" in r for r in refused), refused[:3]
            lost = []
            for order_id, seq in acked.items():
                try:
                    await stub.GetOrder(pb.GetOrderRequest(order_id=order_id), timeout=CALL_TIMEOUT_S,
                                        wait_for_ready=True)
                except grpc.aio.AioRpcError as exc:
                    lost.append(f"{order_id} (seq {seq}): {exc.code().name}")
            report("failover to a lagging replica", {
                "acked_writes": len(acked), "refused_writes": len(refused),
                "acked_writes_lost_by_redis": len(lost)})
            assert not lost, f"{len(lost)} of {len(acked)} acknowledged writes lost: {lost[:5]}"
    finally:
        await asyncio.to_thread(cache.stop)


async def test_planned_failover_under_load_loses_no_acknowledged_write(
        sentinel_topology: SentinelTopology, report: Callable[[str, dict[str, Any]], None]) -> None:
    async with running_stack(sentinel_topology.sentinel_url, primary=sentinel_topology.primary,
                             rate=60.0) as stack:
        await stack.add_standard_clients()
        stack.publisher.start()
        await stack.publisher.wait_acked(100)
        sentinel = redis.Redis(*sentinel_topology.sentinels[0].address, socket_timeout=5)
        try:
            await asyncio.to_thread(sentinel.execute_command, "SENTINEL", "FAILOVER", MASTER_NAME)
        finally:
            sentinel.close()
        await asyncio.to_thread(sentinel_topology.settle)
        await stack.publisher.wait_acked(100)
        await stack.finish(explain=lambda write: True)   # delivery of what Redis kept: strict
        lost = stack.lost_in_redis
        report("3b planned failover (SENTINEL FAILOVER)", {
            "acked_writes": stack.publisher.stats.acked,
            "acked_writes_lost_by_redis": len(lost),
            "delivered_pct_of_what_redis_kept": round(100.0 * stack.ledger.delivered_fraction(), 3),
        })
        assert not lost, f"{len(lost)} acknowledged writes lost: {[(w.stream, w.seq) for w in lost[:5]]}"
