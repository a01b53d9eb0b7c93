"""The test Redis itself: restart keeps URL and data; pause is a hang, not a refusal."""

from __future__ import annotations

import pytest
import redis

from tests.infra.redis_servers import RedisServer


def test_restart_keeps_url_and_data(fresh_redis: RedisServer) -> None:
    client = redis.Redis.from_url(fresh_redis.url, socket_timeout=5)
    client.set("k", "v")
    fresh_redis.restart()
    assert client.get("k") == b"v"
    client.close()


def test_pause_hangs_until_unpaused(fresh_redis: RedisServer) -> None:
    client = redis.Redis.from_url(fresh_redis.url, socket_timeout=0.5)
    client.ping()
    fresh_redis.pause()
    try:
        with pytest.raises(redis.TimeoutError):
            client.ping()
    finally:
        fresh_redis.unpause()
    client = redis.Redis.from_url(fresh_redis.url, socket_timeout=5)
    assert client.ping()
    client.close()
