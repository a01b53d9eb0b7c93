"""Scenario 1: Redis killed (SIGKILL) and restarted mid-stream, while publishing continues.

Promise (docs/reliability.md): no client is disconnected; subscriptions say ``interrupted`` then
``resumed``; every acknowledged order/bot event reaches every client that may see it, once,
in order; ticker streams deliver every retained event (Redis keeps them: append-only, fsync
always).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.infra.redis_servers import RedisServer
from tests.resilience.stack import running_stack

pytestmark = [pytest.mark.resilience, pytest.mark.timeout(180)]


async def test_redis_killed_and_restarted_mid_stream(
        fresh_redis: RedisServer, report: Callable[[str, dict[str, Any]], None]) -> None:
    async with running_stack(fresh_redis.url) as stack:
        await stack.add_standard_clients()
        stack.publisher.start()
        await stack.publisher.wait_acked(60)
        fault_at = time.monotonic()
        await asyncio.to_thread(fresh_redis.kill)
        await asyncio.to_thread(fresh_redis.start)
        repaired_at = time.monotonic()
        await stack.publisher.wait_acked(150)
        await stack.finish()
        report("1 redis kill+restart", stack.measures(fault_at, repaired_at))
        assert all(c.connections == 1 for c in stack.clients)
