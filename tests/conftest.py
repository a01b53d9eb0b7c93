"""Shared fixtures: a real Redis per test session (container or process, see tests/infra)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.infra.redis_servers import RedisServer, backend, start_redis


def pytest_report_header() -> str:
    return f"redis backend: {backend()} (set by scripts/test_env.sh; REDIS_BACKEND=process forces processes)"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One Redis for the whole session; tests that break Redis start their own."""
    server = start_redis()
    yield server
    server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session Redis, emptied before each test."""
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
