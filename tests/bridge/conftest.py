"""Fixtures for bridge tests: a real cache service over real Redis, a real bridge, a feed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.infra.bridge_runner import RunningBridge, running_bridge
from tests.infra.cache_service_runner import (
    CacheServiceProcess,
    InProcessCacheService,
    running_cache_service,
)
from tests.infra.feed import Feed


@pytest.fixture
async def cache(redis_url: str) -> AsyncIterator[InProcessCacheService]:
    async with running_cache_service(redis_url) as svc:
        yield svc


@pytest.fixture
async def bridge(cache: InProcessCacheService) -> AsyncIterator[RunningBridge]:
    async with running_bridge(cache.target) as b:
        yield b


@pytest.fixture
async def feed(cache: InProcessCacheService) -> AsyncIterator[Feed]:
    f = Feed(cache.target)
    yield f
    await f.close()


@pytest.fixture
def cache_process(redis_url: str) -> Iterator[CacheServiceProcess]:
    """The cache service as a subprocess, for tests that run the bridge as one too."""
    proc = CacheServiceProcess(redis_url)
    proc.start()
    proc.wait_ready(30)
    yield proc
    proc.stop()
