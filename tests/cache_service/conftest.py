"""Fixtures for the cache service tests: a real service on a real Redis, and a real client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc
import pytest

from marketbridge.api.v1 import cache_pb2_grpc
from tests.infra.cache_service_runner import InProcessCacheService, running_cache_service
from tests.infra.redis_servers import RedisServer, start_redis
from tests.infra.sentinel import replicate_and_wait


@pytest.fixture
async def svc(redis_url: str) -> AsyncIterator[InProcessCacheService]:
    async with running_cache_service(redis_url) as service:
        yield service


@pytest.fixture
async def channel(svc: InProcessCacheService) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(svc.target) as chan:
        yield chan


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> cache_pb2_grpc.CacheServiceStub:
    return cache_pb2_grpc.CacheServiceStub(channel)


@pytest.fixture
def primary_with_replica() -> Iterator[tuple[RedisServer, RedisServer]]:
    """A primary and its replica on the backend in force (containers under testcontainers)."""
    primary = start_redis()
    try:
        replica = start_redis()
        try:
            replicate_and_wait(replica, primary)
            yield primary, replica
        finally:
            replica.close()
    finally:
        primary.close()
