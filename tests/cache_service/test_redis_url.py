"""Redis URLs (cache_service/redis_url.py): plain, TLS, Sentinel, and the bad ones."""

from __future__ import annotations

import pytest

from cache_service.redis_url import RedisUrlError, connect, parse_redis_url


def test_sentinel_url() -> None:
    target = parse_redis_url("redis+sentinel://u:p%40ss@s1:26379,s2,[::1]:26380/mymaster/2?sentinel_password=sp")
    assert target.is_sentinel
    assert target.sentinels == (("s1", 26379), ("s2", 26379), ("::1", 26380))
    assert (target.master, target.db, target.username, target.password) == ("mymaster", 2, "u", "p@ss")
    assert target.sentinel_password == "sp"
    assert "p@ss" not in repr(target)
    client = connect(target, 1.0)
    assert client.connection_pool.service_name == "mymaster"


@pytest.mark.parametrize(("url", "text"), [
    ("redis+sentinel:///m", "no sentinel host"),
    ("redis+sentinel://h:x/m", "bad sentinel address"),
    ("redis+sentinel://h/m/db/x", r"bad redis\+sentinel"),
    ("redis://h:99999/0", "bad port"),
    ("redis://", "names no host"),
    ("localhost:6379", "scheme must be"),
    ("redis+cluster://", "names no node"),
    ("redis+cluster://h1:6379/0", "a cluster has no databases"),
    ("redis+cluster://h1:x", "bad cluster node address"),
    ("redis+cluster://h1?tls=yes", "want 0 or 1"),
    ("redis+cluster://h1?sentinel_password=x", "unknown redis\\+cluster:// parameter"),
])
def test_bad_redis_urls(url, text) -> None:
    with pytest.raises(RedisUrlError, match=text):
        parse_redis_url(url)


def test_cluster_url() -> None:
    target = parse_redis_url("redis+cluster://u:p%40ss@n1:7000,n2,[::1]:7001/?tls=1")
    assert target.is_cluster and not target.is_sentinel
    assert target.nodes == (("n1", 7000), ("n2", 6379), ("::1", 7001))
    assert (target.username, target.password, target.tls) == ("u", "p@ss", True)
    assert "p@ss" not in repr(target) and "p@ss" not in target.shown
    assert parse_redis_url("redis+cluster://n1:7000").nodes == (("n1", 7000),)


def test_plain_and_tls_urls() -> None:
    assert not parse_redis_url("redis://localhost:6379/0").is_sentinel
    assert parse_redis_url("rediss://localhost:6380/0").scheme == "rediss"
    assert parse_redis_url("redis:///tmp/redis.sock").scheme == "redis"
