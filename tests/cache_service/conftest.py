"""Fixtures for the cache service tests: a real service on a real Redis, and a real client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import grpc
import pytest

from marketbridge.api.v1 import cache_pb2_grpc
from tests.infra.cache_service_runner import InProcessCacheService, running_cache_service
from tests.infra.redis_cluster import RedisClusterNodes
from tests.infra.redis_faults import ClusterFault, OwnRedis, RedisFault, ReplicatedRedis
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


@pytest.fixture
def redis_fault(request: pytest.FixtureRequest, redis_url: str,
                redis_topology: str) -> Iterator[Callable[..., RedisFault]]:
    """``redis_fault(*keys)``: a Redis the test may stop, kill, pause and restart
    (tests/infra/redis_faults.py): on ``single`` one of its own (``fresh_redis``; the session
    Redis stays whole), on ``cluster`` the session cluster's shards serving ``keys``, left whole
    after the test. It takes ``redis_url`` so that a ``cluster_too`` module runs it on both."""
    made: list[RedisFault] = []

    def make(*keys: str) -> RedisFault:
        assert keys, "name the keys whose shard the test breaks on a cluster"
        if redis_topology == "cluster":
            cluster: RedisClusterNodes = request.getfixturevalue("redis_cluster")
            made.append(ClusterFault.shards_of(cluster, keys))
        else:
            made.append(OwnRedis(request.getfixturevalue("fresh_redis")))
        return made[-1]

    yield make
    for broken in made:
        broken.restore()


@pytest.fixture
def replicated_redis(request: pytest.FixtureRequest, redis_url: str,
                     redis_topology: str) -> Iterator[ReplicatedRedis]:
    """A primary with a replica the test may freeze (tests/infra/redis_faults.py): on ``single``
    ``primary_with_replica``, on ``cluster`` the session cluster (each key's shard), left whole
    after the test. It takes ``redis_url`` so that a ``cluster_too`` module runs it on both."""
    if redis_topology == "cluster":
        replicated = ReplicatedRedis(redis_url, cluster=request.getfixturevalue("redis_cluster"))
    else:
        primary, replica = request.getfixturevalue("primary_with_replica")
        replicated = ReplicatedRedis(primary.url, single=(primary, replica))
    yield replicated
    replicated.restore()
