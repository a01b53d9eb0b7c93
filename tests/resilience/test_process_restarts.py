"""Scenarios 4 and 5: the cache service or the bridge process is restarted under load.

4. cache_service killed (SIGKILL) and started again, and two replicas of which one is killed:
   the bridge re-opens its upstream streams with ``resume_from``; clients stay connected and
   see only ``interrupted``/``resumed`` (recovered) and then every acknowledged event. The
   first runs on a single Redis and on the Redis Cluster (``breakable_redis``).
5. bridge restarted (SIGTERM, drain, start again on the same port): clients are closed 1001,
   reconnect with ``resume_from`` = the last seq they got, and miss nothing retained.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.infra.ledger import Ledger
from tests.infra.redis_servers import RedisServer
from tests.resilience.stack import BreakableRedis, running_stack

pytestmark = [pytest.mark.resilience, pytest.mark.timeout(180)]

Report = Callable[[str, dict[str, Any]], None]


def statuses_are_interrupted_then_resumed(ledger: Ledger) -> None:
    """Every status is interrupted/resumed in turn, and every resume recovered what was missed."""
    for record in ledger.clients.values():
        for stream in {s for s, *_ in record.statuses}:
            sequence = [(st, rec) for s, st, rec, _ in record.statuses if s == stream]
            kinds = [st for st, _ in sequence]
            assert all(k in ("interrupted", "resumed") for k in kinds), (record.name, sequence)
            assert all(a != b for a, b in itertools.pairwise(kinds)), (record.name, sequence)
            assert all(rec for st, rec in sequence if st == "resumed"), (record.name, sequence)


async def test_cache_service_killed_and_restarted(breakable_redis: BreakableRedis, report: Report) -> None:
    redis = breakable_redis
    async with running_stack(redis.url, store=redis.store) as stack:
        await stack.add_standard_clients()
        stack.publisher.start()
        await stack.publisher.wait_acked(60)
        fault_at = time.monotonic()
        await asyncio.to_thread(stack.caches[0].restart)
        repaired_at = time.monotonic()
        await stack.publisher.wait_acked(150)
        await stack.finish()
        report(redis.named("4 cache_service kill+restart"), stack.measures(fault_at, repaired_at))
        statuses_are_interrupted_then_resumed(stack.ledger)
        interrupted = [r.name for r in stack.ledger.clients.values()
                       if any(st == "interrupted" for _, st, _, _ in r.statuses)]
        assert interrupted, "the bridge's upstream streams should have been interrupted"
        assert all(c.connections == 1 for c in stack.clients)
        stack.assert_failures_retryable()


async def test_one_of_two_cache_service_replicas_killed(fresh_redis: RedisServer, report: Report) -> None:
    async with running_stack(fresh_redis.url, replicas=2) as stack:
        await stack.add_standard_clients()
        stack.publisher.start()
        await stack.publisher.wait_acked(60)
        loads = [await asyncio.to_thread(c.stream_subscribers) for c in stack.caches]
        victim = stack.caches[loads.index(max(loads))]   # the one carrying the bridge's streams
        fault_at = time.monotonic()
        await asyncio.to_thread(victim.kill)
        repaired_at = time.monotonic()
        await stack.publisher.wait_acked(150)
        await stack.finish()
        report("4b one of two cache_service replicas killed", stack.measures(fault_at, repaired_at))
        statuses_are_interrupted_then_resumed(stack.ledger)
        assert max(loads) > 0 and any(r.statuses for r in stack.ledger.clients.values())
        assert all(c.connections == 1 for c in stack.clients)


async def test_bridge_restarted_clients_resume(fresh_redis: RedisServer, report: Report) -> None:
    async with running_stack(fresh_redis.url, bridge_args=["--shutdown-grace", "5"]) as stack:
        await stack.add_standard_clients(reconnect_on=frozenset({1001, 1006, 1012}))
        stack.publisher.start()
        await stack.publisher.wait_acked(60)
        fault_at = time.monotonic()
        await asyncio.to_thread(stack.bridge.stop)
        await asyncio.to_thread(stack.bridge.start)
        repaired_at = time.monotonic()
        await stack.publisher.wait_acked(150)
        await stack.finish()
        report("5 bridge restart", stack.measures(fault_at, repaired_at))
        for client in stack.clients:
            assert client.connections == 2, client.name
            assert [code for code, _, _ in client.record.closes] == [1001], client.record.closes
