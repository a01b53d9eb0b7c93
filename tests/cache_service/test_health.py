"""The service's Redis health (cache_service/health.py): what an operator reads when Redis is
unreachable, against a real port nothing listens on and a real Redis."""

from __future__ import annotations

import logging

from grpc_health.v1 import health

from cache_service.health import RedisMonitor
from cache_service.metrics import Metrics
from cache_service.redis_url import connect, parse_redis_url
from devstack.ports import free_port


async def test_an_unreachable_redis_is_logged_with_its_url_and_the_cause(caplog, redis_url) -> None:
    target = parse_redis_url(f"redis://:secret@127.0.0.1:{free_port()}/0")
    client = connect(target, 1.0)
    monitor = RedisMonitor(client, health.aio.HealthServicer(), Metrics(), timeout=1.0,
                           where=target.shown)
    try:
        with caplog.at_level(logging.INFO, logger="cache_service"):
            assert not await monitor.check()
        [line] = [r.getMessage() for r in caplog.records if "not answering" in r.getMessage()]
        assert line.startswith(f"Redis at redis://:***@127.0.0.1:{target.url.rsplit(':', 1)[1]}"
                               " is not answering (Connection refused: ")
        assert line.endswith("reporting NOT_SERVING")
        assert "secret" not in line
    finally:
        await client.aclose()


async def test_a_redis_that_answers_is_serving(redis_url) -> None:
    target = parse_redis_url(redis_url)
    client = connect(target, 1.0)
    monitor = RedisMonitor(client, health.aio.HealthServicer(), Metrics(), where=target.shown)
    try:
        assert await monitor.check()
        assert monitor.cause == "" and monitor.up is True
    finally:
        await client.aclose()
