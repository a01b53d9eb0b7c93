"""Shared fixtures: a real Redis per test session (container or process, see tests/infra)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from tests.infra.redis_servers import RedisServer, backend, start_redis


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
