"""Shared fixtures: a real Redis per test session (container or process, see tests/infra).

A test module marked ``pytest.mark.cluster_too`` runs each of its tests that take ``redis_url``
twice: on the session's single Redis (``[single]``) and on the session's Redis Cluster of 3
masters and 3 replicas (``[cluster]``, started on first use; SPEC §9.4).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.infra.redis_cluster import RedisClusterNodes, start_redis_cluster
from tests.infra.redis_servers import RedisServer, backend, start_redis

TOPOLOGIES = ("single", "cluster")


def backend_line() -> str:
    """Which Redis the run used, as scripts/test_env.sh decided it (a fallback says why)."""
    note = os.environ.get("REDIS_BACKEND_NOTE", "REDIS_BACKEND_NOTE not set: not run through scripts/test_env.sh")
    return f"redis backend: {backend()} ({note})"


def pytest_report_header() -> str:
    return backend_line()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Repeat the backend at the end of the run, loudly when it is the process fallback."""
    terminalreporter.section("redis backend", yellow=backend() == "process", bold=True)
    terminalreporter.write_line(backend_line())


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis for the whole session; tests that break Redis start their own."""
    server = start_redis()
    yield server
    server.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "redis_url" in metafunc.fixturenames and metafunc.definition.get_closest_marker("cluster_too"):
        metafunc.parametrize("redis_topology", TOPOLOGIES, indirect=True)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterNodes]:
    """One Redis Cluster (3 masters, 3 replicas) for the whole session, started on first use;
    tests that fail it over leave it whole again (``restart_killed``)."""
    cluster = start_redis_cluster()
    yield cluster
    cluster.close()


@pytest.fixture
def redis_topology(request: pytest.FixtureRequest) -> str:
    """``single`` unless the module is marked ``cluster_too`` (then each in turn)."""
    return str(getattr(request, "param", "single"))


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, redis_topology: str) -> Iterator[str]:
    """The session Redis (or Redis Cluster), emptied before each test."""
    if redis_topology == "cluster":
        cluster: RedisClusterNodes = request.getfixturevalue("redis_cluster")
        cluster.flush()
        yield cluster.url
        return
    redis_server: RedisServer = request.getfixturevalue("redis_server")
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def fresh_redis() -> Iterator[RedisServer]:
    """A Redis of the test's own, for tests that stop, kill, pause or restart it."""
    server = start_redis()
    yield server
    server.close()
