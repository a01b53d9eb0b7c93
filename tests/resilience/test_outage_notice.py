"""Scenario 9: an upstream that cannot deliver is told to every subscriber, within a bound.

docs/reliability.md promises ``interrupted`` then ``resumed``. Each fault below is held for 15 s, as a
real outage would be, with clients subscribed on every channel (plain and batched, user and
admin, filtered tickers) while the publisher keeps writing:

a. Redis killed (SIGKILL) and left down, then started again;
b. Redis hung (SIGSTOP / ``docker pause``: the socket stays open, nothing answers), then resumed;
c. Sentinel with every Redis node down (replica and primary killed), then both back;
d. the cache service killed and left down, then started again on its port.

In each: every subscription of every client is told ``interrupted`` within
:data:`NOTICE_BOUND_S` of the fault (the documented default bound: the cache service ends a
stream whose feed cannot read Redis within ``--feed-stall-s`` 2 s; the bridge notices a silent
or broken upstream within ``--upstream-stall-s`` 3 s), then ``resumed`` with
``recovered: true`` once the fault is repaired (Redis keeps its data: append-only, fsync always);
every acknowledged write is delivered; no client is disconnected.

a, b and d run on a single Redis and on the Redis Cluster (``breakable_redis``), where "Redis"
is every master at once (killed, or paused, together: no replica can be promoted meanwhile,
since that needs a majority of masters), so every subscription's shard is down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.infra.ledger import Ledger
from tests.infra.sentinel import SentinelTopology
from tests.resilience.stack import BreakableRedis, Stack, running_stack

pytestmark = [pytest.mark.resilience, pytest.mark.timeout(240)]

NOTICE_BOUND_S = 5.0     # docs/reliability.md: interrupted within 5 s with default flags
OUTAGE_S = 15.0
Report = Callable[[str, dict[str, Any]], None]


def notice_delays(ledger: Ledger, fault_at: float) -> dict[tuple[str, str], float | None]:
    """Per (client, stream): seconds from the fault to its first ``interrupted`` (None: never)."""
    delays: dict[tuple[str, str], float | None] = {}
    for record in ledger.clients.values():
        for stream in record.interests:
            times = [at for s, st, _, at in record.statuses
                     if s == stream and st == "interrupted" and at >= fault_at]
            delays[(record.name, stream)] = min(times) - fault_at if times else None
    return delays


async def wait_all_told(ledger: Ledger, fault_at: float, timeout: float) -> None:
    """Return once every subscription was told ``interrupted`` (or ``timeout`` passed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if all(d is not None for d in notice_delays(ledger, fault_at).values()):
            return
        await asyncio.sleep(0.05)


def assert_told_and_resumed(stack: Stack, fault_at: float, repaired_at: float) -> dict[str, Any]:
    """Every subscription: interrupted within the bound, then resumed (recovered) after repair."""
    delays = notice_delays(stack.ledger, fault_at)
    late = {key: d for key, d in delays.items() if d is None or d > NOTICE_BOUND_S}
    assert not late, f"not told interrupted within {NOTICE_BOUND_S}s: {late}\n{stack.describe()}"
    for record in stack.ledger.clients.values():
        for stream in record.interests:
            after = [(st, rec) for s, st, rec, at in record.statuses if s == stream and at >= fault_at]
            assert after and after[-1] == ("resumed", True), (record.name, stream, after)
            assert all(st == "interrupted" or rec for st, rec in after), (record.name, stream, after)
    assert all(c.connections == 1 for c in stack.clients), [(c.name, c.connections) for c in stack.clients]
    told = [d for d in delays.values() if d is not None]
    return {"notice_max_s": round(max(told), 2), "notice_min_s": round(min(told), 2),
            "subscriptions": len(delays)}


async def run_outage(stack: Stack, fault: Callable[[], Awaitable[None]],
                     repair: Callable[[], Awaitable[None]], name: str, report: Report,
                     notes: Callable[[], dict[str, Any]] = dict) -> None:
    """Start load, inject ``fault``, hold it :data:`OUTAGE_S`, ``repair``, check and report."""
    await stack.add_standard_clients()
    stack.publisher.start()
    await stack.publisher.wait_acked(40)
    fault_at = time.monotonic()
    await fault()
    await wait_all_told(stack.ledger, fault_at, OUTAGE_S)
    await asyncio.sleep(max(0.0, fault_at + OUTAGE_S - time.monotonic()))   # the outage lasts
    await repair()
    repaired_at = time.monotonic()
    await stack.publisher.wait_acked(40, timeout=60.0)   # writing again after the repair
    await stack.finish()
    measures = stack.measures(fault_at, repaired_at)
    measures.update(assert_told_and_resumed(stack, fault_at, repaired_at), **notes())
    report(name, measures)
    stack.assert_failures_retryable()


async def run_redis_outage(redis: BreakableRedis, fault: Callable[[], None], repair: Callable[[], None],
                           name: str, report: Report) -> None:
    """A scenario whose fault is the Redis's own (``fault``, then ``repair``), on either topology."""
    async with running_stack(redis.url, store=redis.store) as stack:
        await run_outage(stack, lambda: asyncio.to_thread(fault), lambda: asyncio.to_thread(repair),
                         redis.named(name), report, redis.fault.notes)


async def test_redis_killed_and_left_down(breakable_redis: BreakableRedis, report: Report) -> None:
    redis = breakable_redis
    await run_redis_outage(redis, redis.fault.kill, redis.fault.start, "9a redis down 15 s", report)


async def test_redis_hung(breakable_redis: BreakableRedis, report: Report) -> None:
    redis = breakable_redis
    await run_redis_outage(redis, redis.fault.pause, redis.fault.unpause, "9b redis hung 15 s", report)


async def test_sentinel_with_every_redis_node_down(sentinel_topology: SentinelTopology,
                                                   report: Report) -> None:
    topology = sentinel_topology
    primary = topology.node_at(topology.primary())
    replica = next(n for n in topology.redis_nodes if n is not primary)

    def kill_all() -> None:
        replica.kill()   # the replica first: the sentinels have nobody to promote
        primary.kill()

    def start_all() -> None:
        primary.start()
        replica.start()
        topology.settle()

    async with running_stack(topology.sentinel_url, primary=topology.primary) as stack:
        await run_outage(stack, lambda: asyncio.to_thread(kill_all),
                         lambda: asyncio.to_thread(start_all), "9c sentinel, every node down 15 s",
                         report)


async def test_cache_service_down(breakable_redis: BreakableRedis, report: Report) -> None:
    redis = breakable_redis
    async with running_stack(redis.url, store=redis.store) as stack:
        cache = stack.caches[0]
        await run_outage(stack, lambda: asyncio.to_thread(cache.kill),
                         lambda: asyncio.to_thread(cache.start), redis.named("9d cache service down 15 s"),
                         report)
