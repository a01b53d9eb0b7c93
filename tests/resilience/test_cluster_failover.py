"""A Redis Cluster master SIGKILLed under load, and a slot migrated under load (SPEC §9.4,
issue 18). The failover: the whole system as real processes (cache service, bridge, WebSocket clients of every channel, a publisher) on the
session's cluster of 3 masters and 3 replicas.

The master that serves the orders (``{orders}``, every user's orders and their change feed) is
killed with SIGKILL (``docker kill``) while the publisher writes tickers, orders and bots. Its
replica takes over (``cluster-node-timeout`` 2 s); the cache service's cluster client learns
the new map (MOVED, or a refresh after the broken connection). The new master has no replica
until the killed node is started again and rejoins as one: meanwhile that shard's writes are
refused (``WAIT 1`` cannot be met), the other shards' go on. Then writes go on everywhere, and:

- 0 acknowledged writes are lost (``--min-replica-acks`` 1, the default on a cluster: a write
  is acknowledged only once the replica that is then promoted holds it);
- the streams of that shard are interrupted, then resumed, with ``recovered: true``; those of
  the other shards (the tickers') are not interrupted at all;
- every stream of every shard resumes: every client ends with every event Redis holds;
- no client was shown an event Redis does not hold (a phantom).

The same with the master paused (``docker pause``: a hang, not a crash) instead: its replica
takes over just the same, and then the old master is thawed, still believing it is the master
of those slots until the cluster tells it otherwise; a write the service had sent it before
giving up runs then, but is never acknowledged (``WAIT 1``: its replica is a master now), and it
rejoins as a replica of the new master.

The cluster is whole again (3 masters with a replica each) for the tests after this one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from cache_service.store import ORDERS, ticker_stream
from marketbridge.api.v1 import cache_pb2 as pb
from tests.factories import OrderFactory
from tests.infra.cache_calls import serving
from tests.infra.eventually import eventually
from tests.infra.redis_cluster import RedisClusterNodes
from tests.resilience.publisher import EXCHANGE
from tests.resilience.stack import running_stack
from tests.resilience.test_failover_durability import finish_strict
from tests.resilience.test_process_restarts import statuses_are_interrupted_then_resumed

pytestmark = [pytest.mark.resilience, pytest.mark.timeout(240)]

FAULTS = ("SIGKILL", "pause")


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_master_killed_under_load_loses_no_acknowledged_write_and_every_stream_resumes(
        redis_cluster: RedisClusterNodes, fault: str, report: Callable[[str, dict[str, Any]], None]) -> None:
    await asyncio.to_thread(redis_cluster.flush)
    async with running_stack(redis_cluster.url, rate=60.0, store=redis_cluster.client) as stack:
        await stack.add_standard_clients()
        stack.publisher.start()
        await stack.publisher.wait_acked(100)
        victim = await asyncio.to_thread(redis_cluster.master_of, ORDERS.stream)
        tickers_at = await asyncio.to_thread(redis_cluster.master_of, ticker_stream(EXCHANGE))
        elsewhere_before_kill = tickers_at != victim
        fault_at = time.monotonic()
        try:
            if fault == "SIGKILL":
                await asyncio.to_thread(redis_cluster.kill, victim)
            else:
                await asyncio.to_thread(redis_cluster.pause, victim)
            await asyncio.to_thread(redis_cluster.wait_failed_over, victim)
        finally:
            # the promoted replica has no replica of its own: until the old master rejoins as
            # one, WAIT 1 fails and that shard's writes are refused (UNAVAILABLE), never acked
            if fault == "SIGKILL":
                await asyncio.to_thread(redis_cluster.restart_killed)
            else:
                await asyncio.to_thread(redis_cluster.unpause_paused)
                await asyncio.to_thread(redis_cluster.wait_healthy)
        repaired_at = time.monotonic()
        await stack.publisher.wait_acked(150, timeout=60.0)   # writes go on, on every shard
        await finish_strict(stack, f"cluster master {fault} under load", report)
        measures = stack.measures(fault_at, repaired_at)
        measures["old_master_now_replica"] = victim not in await asyncio.to_thread(redis_cluster.masters)
        report(f"cluster master {fault} under load (delivery)", measures)
        statuses_are_interrupted_then_resumed(stack.ledger)
        interrupted = {stream for record in stack.ledger.clients.values()
                       for stream, status, _, _ in record.statuses if status == "interrupted"}
        assert "orders" in interrupted, f"the killed shard's streams should have been interrupted: {interrupted}"
        assert elsewhere_before_kill, "the tickers' slot should be on another shard than the orders'"
        assert f"tickers:{EXCHANGE}" not in interrupted, "a stream of another shard was interrupted"
        assert measures["old_master_now_replica"], "the old master should have rejoined as a replica"
        stack.assert_failures_retryable()


async def test_a_slot_migrated_under_load_loses_nothing_and_refuses_writes_only_while_it_moves(
        redis_cluster: RedisClusterNodes, report: Callable[[str, dict[str, Any]], None]) -> None:
    """Resharding while the service writes and streams: the orders slot (its stream, owner
    hash, users set, records) moves key by key to another master. Meanwhile a write script
    whose keys are split between the two nodes is refused by Redis (TRYAGAIN), so the service
    answers UNAVAILABLE and nothing is acknowledged that Redis does not keep; the stream's
    reader follows ASK/MOVED to the new owner, and every acknowledged order is delivered."""
    await asyncio.to_thread(redis_cluster.flush)
    async with serving(redis_cluster.url) as (_service, stub):
        acked: list[str] = []
        refused: dict[str, int] = {}
        delivered: list[str] = []
        stream_errors: list[str] = []
        stop = asyncio.Event()

        async def write() -> None:
            while not stop.is_set():
                try:
                    reply = await stub.UpsertOrder(pb.UpsertOrderRequest(order=OrderFactory()), timeout=5)
                    acked.append(reply.seq)
                except grpc.aio.AioRpcError as exc:
                    reason = f"{exc.code().name}: {exc.details()}"
                    refused[reason] = refused.get(reason, 0) + 1
                await asyncio.sleep(0.01)

        async def follow() -> None:
            last = "0"
            while True:
                try:
                    async for event in stub.StreamOrders(pb.StreamOrdersRequest(resume_from=last)):
                        if event.WhichOneof("event") == "order":
                            delivered.append(event.seq)
                            last = event.seq
                except grpc.aio.AioRpcError as exc:
                    stream_errors.append(f"{exc.code().name}: {exc.details()}")

        tasks = [asyncio.create_task(write()), asyncio.create_task(follow())]
        try:
            await eventually(lambda: len(acked) >= 50, 30, what="orders acknowledged before the reshard")
            started = time.monotonic()
            source, target = await asyncio.to_thread(redis_cluster.migrate_slot, ORDERS.stream, 0.2,
                                                    [ticker_stream(EXCHANGE)])
            moved_s = time.monotonic() - started
            at_move = len(acked)
            await eventually(lambda: len(acked) >= at_move + 50, 30, what="orders acknowledged after the reshard")
        finally:
            stop.set()
        await eventually(lambda: set(acked) <= set(delivered), 30, what="every acknowledged order delivered")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        client = redis_cluster.client()
        try:
            held = {i.decode() for i, _ in client.xrange(ORDERS.stream)}
        finally:
            client.close()
        assert redis_cluster.master_of(ORDERS.stream) == target != source
        report("cluster slot migration under load", {
            "acked_writes": len(acked), "refused_writes": sum(refused.values()),
            "migration_s": round(moved_s, 2), "acked_writes_lost_by_redis": len(set(acked) - held),
            "stream_errors": len(stream_errors)})
        assert set(acked) <= held, "acknowledged orders Redis does not hold"
        assert all("UNAVAILABLE" in reason for reason in refused), refused
        assert len(delivered) == len(set(delivered)), "an order delivered twice"
