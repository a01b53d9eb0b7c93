"""Scenario 3: Sentinel failover under load.

The cache service is given ``redis+sentinel://`` and asks the sentinels for the primary on every
reconnect. The primary is killed (SIGKILL) while publishing continues; the sentinels promote the
replica; the service follows it and its change-feed readers resume where they stopped. Clients
stay connected and get every acknowledged event.

Note on what is promised: with Sentinel the cache service confirms every write with
``WAIT 1`` (``--min-replica-acks``, default 1 for ``redis+sentinel://``) before it answers with a
seq, so an acknowledged write is on a replica and survives the failover: none may be lost here.
While the topology has no replica (this two-node test, between the kill and the old primary's
return) writes are refused with UNAVAILABLE, never acknowledged and then lost.
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
        # The new primary has no replica until the old one rejoins: writes are refused till then.
        await asyncio.to_thread(sentinel_topology.restart_killed)
        await stack.publisher.wait_acked(150)
        await stack.finish()   # strict: no acknowledged write may be missing from Redis
        measures = stack.measures(fault_at, repaired_at)
        report("3 sentinel failover", measures)
        assert new != old
        assert all(c.connections == 1 for c in stack.clients)
