"""Scenario 1: Redis killed (SIGKILL) and restarted mid-stream, while publishing continues.

Promise (docs/reliability.md): no client is disconnected; subscriptions say ``interrupted`` then
``resumed``; every acknowledged order/bot event reaches every client that may see it, once,
in order; ticker streams deliver every retained event (Redis keeps them: append-only, fsync
always).

Run on a single Redis and on the Redis Cluster (``breakable_redis``), where every master is
SIGKILLed and started again at once: no replica is promoted (that needs a majority of masters),
each master comes back with its slots and data, and its replica resynchronises.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.resilience.stack import BreakableRedis, running_stack
from tests.resilience.test_process_restarts import statuses_are_interrupted_then_resumed

pytestmark = [pytest.mark.resilience, pytest.mark.timeout(180)]


async def test_redis_killed_and_restarted_mid_stream(
        breakable_redis: BreakableRedis, report: Callable[[str, dict[str, Any]], None]) -> None:
    redis = breakable_redis
    async with running_stack(redis.url, store=redis.store) as stack:
        await stack.add_standard_clients()
        stack.publisher.start()
        await stack.publisher.wait_acked(60)
        fault_at = time.monotonic()
        await asyncio.to_thread(redis.fault.kill)
        await asyncio.to_thread(redis.fault.start)
        repaired_at = time.monotonic()
        await stack.publisher.wait_acked(150)
        await stack.finish()
        report(redis.named("1 redis kill+restart"), {**stack.measures(fault_at, repaired_at), **redis.fault.notes()})
        assert all(c.connections == 1 for c in stack.clients)
        stack.assert_failures_retryable()
        statuses_are_interrupted_then_resumed(stack.ledger)
        told = {s for r in stack.ledger.clients.values() for s, st, _, _ in r.statuses if st == "interrupted"}
        assert told, "no subscription was told interrupted"
