"""The service's Redis health (cache_service/health.py): what an operator reads when Redis is
unreachable, against a real port nothing listens on and a real Redis (or Redis Cluster)."""

from __future__ import annotations

import logging

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from cache_service.health import RedisMonitor
from cache_service.metrics import Metrics
from cache_service.redis_url import connect, parse_redis_url
from devstack.ports import free_port
from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.api.v1 import cache_pb2_grpc
from tests.infra.cache_calls import rpc_error
from tests.infra.cache_service_runner import running_cache_service

pytestmark = pytest.mark.cluster_too   # every redis_url test here runs on a Redis Cluster too (tests/conftest.py)


def unreachable(topology: str) -> str:
    """A URL of the topology's form whose one node is a port nothing listens on."""
    port = free_port()
    if topology == "single":
        return f"redis://:secret@127.0.0.1:{port}/0"
    return f"redis+cluster://:secret@127.0.0.1:{port}"


async def test_an_unreachable_redis_is_logged_with_its_url_and_the_cause(
        caplog, redis_url, redis_topology) -> None:
    """(``redis_url`` only makes ``cluster_too`` run it on both topologies.)"""
    url = unreachable(redis_topology)
    target = parse_redis_url(url)
    client = connect(target, 1.0)
    monitor = RedisMonitor(client, health.aio.HealthServicer(), Metrics(), timeout=1.0,
                           where=target.shown)
    try:
        with caplog.at_level(logging.INFO, logger="cache_service"):
            assert not await monitor.check()
        [line] = [r.getMessage() for r in caplog.records if "not answering" in r.getMessage()]
        masked = url.replace(":secret@", ":***@")
        assert line.startswith(f"Redis at {masked} is not answering (Connection refused: ")
        assert line.endswith("reporting NOT_SERVING")
        assert "secret" not in line
    finally:
        await client.aclose()


async def test_a_service_whose_redis_does_not_answer_starts_not_serving_and_answers_unavailable(
        redis_url, redis_topology) -> None:
    """A service may start before its Redis (or the whole cluster) is up: it must start, say
    NOT_SERVING and answer UNAVAILABLE, never UNKNOWN (SPEC §3). (``redis_url`` only makes
    ``cluster_too`` run it on both topologies.)"""
    async with running_cache_service(unreachable(redis_topology), redis_timeout=1.0) as svc:
        async with grpc.aio.insecure_channel(svc.target) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            status = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
            error = await rpc_error(stub.GetTicker(
                pb.GetTickerRequest(exchange="binance", symbol="BTC/USDT"), timeout=10))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            error = await rpc_error(stub.StreamTickers(pb.StreamTickersRequest(exchange="binance")).read())
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert svc.server.metrics.feed_failures.labels("reader")._value.get() == 0   # an outage, not a crash


async def test_a_redis_that_answers_is_serving(redis_url) -> None:
    target = parse_redis_url(redis_url)
    client = connect(target, 1.0)
    monitor = RedisMonitor(client, health.aio.HealthServicer(), Metrics(), where=target.shown)
    try:
        assert await monitor.check()
        assert monitor.cause == "" and monitor.up is True
    finally:
        await client.aclose()
