"""Scenario 3: Sentinel failover under load.

The cache service is given ``redis+sentinel://`` and asks the sentinels for the primary on every
reconnect. The primary is killed (SIGKILL) while publishing continues; the sentinels promote the
replica; the service follows it and its change-feed readers resume where they stopped. Clients
stay connected and get every acknowledged event.

Note on what is promised: Redis replication is asynchronous and the cache service does not use
WAIT, so a write acknowledged by the old primary in the instant before it dies may never reach
the replica. Every acknowledged write is looked up in Redis at the end: one
Redis lost is excused only if it was sent in the seconds before the failover (the known gap,
asserted on its own in test_failover_durability.py), and counted in the report; every write
Redis holds must reach every client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.infra.sentinel import SentinelTopology
from tests.resilience.stack import running_stack

pytestmark = [pytest.mark.resilience, pytest.mark.timeout(300)]
LOSS_WINDOW_S = 5.0   # a write this close before the failover may not have reached the replica


async def test_sentinel_failover_under_load(
        sentinel_topology: SentinelTopology, report: Callable[[str, dict[str, Any]], None]) -> None:
    async with running_stack(sentinel_topology.sentinel_url, primary=sentinel_topology.primary) as stack:
        await stack.add_standard_clients()
        stack.publisher.start()
        await stack.publisher.wait_acked(60)
        fault_at = time.monotonic()
        old = await asyncio.to_thread(sentinel_topology.kill_primary)
        new = await asyncio.to_thread(sentinel_topology.wait_for_promotion)
        repaired_at = time.monotonic()
        await stack.publisher.wait_acked(150)
        await asyncio.to_thread(sentinel_topology.restart_killed)
        await stack.publisher.wait_acked(30)
        # Redis may lose what the old primary acknowledged but had not replicated (known gap,
        # docs/reliability.md); only such writes are excused, and they are counted.
        await stack.finish(explain=lambda w: fault_at - LOSS_WINDOW_S <= w.sent_at <= repaired_at)
        measures = stack.measures(fault_at, repaired_at)
        report("3 sentinel failover", measures)
        assert new != old
        assert all(c.connections == 1 for c in stack.clients)
