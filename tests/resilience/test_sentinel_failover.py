"""Scenario 3: Sentinel failover under load.

The cache service is given ``redis+sentinel://`` and asks the sentinels for the primary on every
reconnect. The primary is killed (SIGKILL) while publishing continues; the sentinels promote the
replica; the service follows it and its change-feed readers resume where they stopped. Clients
stay connected and get every acknowledged event.

Note on what is promised: Redis replication is asynchronous and the cache service does not use
WAIT, so a write acknowledged by the old primary in the instant before it dies may never reach
the replica. The ledger holds the product to "no acknowledged event lost"; see
docs/reliability.md for how often that window was hit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.infra.sentinel import SentinelTopology
from tests.resilience.stack import running_stack

pytestmark = [pytest.mark.resilience, pytest.mark.timeout(180)]


async def test_sentinel_failover_under_load(
        sentinel_topology: SentinelTopology, report: Callable[[str, dict[str, Any]], None]) -> None:
    async with running_stack(sentinel_topology.sentinel_url) as stack:
        await stack.add_standard_clients()
        stack.publisher.start()
        await stack.publisher.wait_acked(60)
        fault_at = time.monotonic()
        old = await asyncio.to_thread(sentinel_topology.kill_primary)
        new = await asyncio.to_thread(sentinel_topology.wait_for_promotion, 30.0)
        repaired_at = time.monotonic()
        await stack.publisher.wait_acked(150)
        await asyncio.to_thread(sentinel_topology.restart_killed)
        await stack.publisher.wait_acked(30)
        await stack.finish()
        measures = stack.measures(fault_at, repaired_at)
        report("3 sentinel failover", measures)
        assert new != old
        assert all(c.connections == 1 for c in stack.clients)
