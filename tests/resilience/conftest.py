"""Fixtures of the resilience scenarios and the report of their measured outcomes.

Each scenario calls ``report(name, measures)``; the figures are printed at the end of the run
(and written as JSON to ``$RESILIENCE_RESULTS`` when set) so docs/reliability.md can quote them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.infra.redis_cluster import RedisClusterNodes
from tests.infra.redis_faults import ClusterFault, OwnRedis
from tests.infra.redis_servers import RedisServer
from tests.infra.sentinel import SentinelTopology, start_sentinel_topology
from tests.resilience.stack import BreakableRedis, environment_note

RESULTS: dict[str, dict[str, Any]] = {}


@pytest.fixture
def report() -> Callable[[str, dict[str, Any]], None]:
    def record(name: str, measures: dict[str, Any]) -> None:
        RESULTS[name] = measures

    return record


@pytest.fixture
def sentinel_topology() -> Iterator[SentinelTopology]:
    """Primary, replica and three sentinels of the test's own (Docker network or processes)."""
    topology = start_sentinel_topology()
    yield topology
    topology.close()


@pytest.fixture(params=("single", "cluster"))
def breakable_redis(request: pytest.FixtureRequest) -> Iterator[BreakableRedis]:
    """A scenario's Redis, in turn a single Redis of the test's own (``fresh_redis``) and the
    session's Redis Cluster (SPEC §9.4: §7 holds on a cluster), emptied first; a cluster is
    left whole (every master thawed and started again) even when the test failed half way."""
    if request.param == "single":
        server: RedisServer = request.getfixturevalue("fresh_redis")
        yield BreakableRedis("single", OwnRedis(server))
        return
    cluster: RedisClusterNodes = request.getfixturevalue("redis_cluster")
    cluster.flush()
    masters = ClusterFault.every_master(cluster)
    try:
        yield BreakableRedis("cluster", masters, cluster.client)
    finally:
        masters.restore()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section(f"resilience measures ({environment_note()})")
    for name, measures in RESULTS.items():
        terminalreporter.write_line(f"{name}: {json.dumps(measures, sort_keys=True)}")
    path = os.environ.get("RESILIENCE_RESULTS")
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"environment": environment_note(), "scenarios": RESULTS}, handle, indent=2)
