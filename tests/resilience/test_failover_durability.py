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

And what clients are shown: a refused write may still sit in the old primary's change feed.
Before the change feed confirmed entries (it delivered whatever the primary had), clients were
shown such writes and Redis no longer held them after the failover: "phantom" events. With
replica acks on, a reader delivers only entries ``WAIT`` says replicas hold (docs/reliability.md,
"Only confirmed events reach subscribers"), so after the failovers below no client holds an event Redis lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest
import redis

from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.api.v1 import cache_pb2_grpc
from tests.factories import OrderFactory
from tests.infra.ledger import seq_key
from tests.infra.sentinel import MASTER_NAME, SentinelTopology
from tests.resilience.stack import CacheReplica, Stack, running_stack

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


def phantoms(stack: Stack) -> list[str]:
    """Events some client received that Redis (the primary now) does not hold: shown, then undone.

    Only seqs up to the newest Redis holds count: a stream that was emptied and restarted is
    the ledger's gap check, not a phantom.
    """
    retained = stack.retained()
    shown = []
    for record in stack.ledger.clients.values():
        for stream, items in record.received.items():
            held = retained.get(stream, set())
            newest = max((seq_key(s) for s in held), default=(0, 0))
            shown += [f"{record.name} {stream} {i.seq}" for i in items
                      if i.seq not in held and seq_key(i.seq) <= newest]
    return sorted(set(shown))


async def finish_strict(stack: Stack, name: str, report: Callable[[str, dict[str, Any]], None]) -> None:
    """End a failover scenario: every event Redis kept delivered (strict), no acknowledged write
    lost, and no client holding an event Redis does not hold (a phantom)."""
    await stack.finish(explain=lambda write: True)
    shown = await asyncio.to_thread(phantoms, stack)
    lost = stack.lost_in_redis
    report(name, {
        "acked_writes": stack.publisher.stats.acked,
        "refused_writes": sum(stack.publisher.stats.failures.values()),
        "acked_writes_lost_by_redis": len(lost),
        "phantom_events_shown": len(shown),
        "delivered_pct_of_what_redis_kept": round(100.0 * stack.ledger.delivered_fraction(), 3),
    })
    assert not lost, f"{len(lost)} acknowledged writes lost: {[(w.stream, w.seq) for w in lost[:5]]}"
    assert not shown, f"{len(shown)} events shown to clients that Redis does not hold: {shown[:5]}"


def _failover(sentinel_topology: SentinelTopology) -> None:
    sentinel = redis.Redis(*sentinel_topology.sentinels[0].address, socket_timeout=5)
    try:
        sentinel.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
    finally:
        sentinel.close()


async def test_failovers_under_load_lose_no_acknowledged_write_and_show_no_phantom(
        sentinel_topology: SentinelTopology, report: Callable[[str, dict[str, Any]], None]) -> None:
    async with running_stack(sentinel_topology.sentinel_url, primary=sentinel_topology.primary,
                             rate=60.0) as stack:
        await stack.add_standard_clients()
        stack.publisher.start()
        await stack.publisher.wait_acked(100)
        await asyncio.to_thread(sentinel_topology.kill_primary)        # a crash...
        await asyncio.to_thread(sentinel_topology.wait_for_promotion)
        await asyncio.to_thread(sentinel_topology.restart_killed)
        await stack.publisher.wait_acked(100)
        await asyncio.to_thread(_failover, sentinel_topology)          # ...then a planned one
        await asyncio.to_thread(sentinel_topology.settle)
        await stack.publisher.wait_acked(100)
        await finish_strict(stack, "3b failovers under load (SIGKILL, then SENTINEL FAILOVER)", report)
