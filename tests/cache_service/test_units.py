"""Pure logic, no I/O: config, Redis URLs, validation, scoping, filters, backoff."""

from __future__ import annotations

import pytest

from cache_service.changefeed import field_filter, match_all
from cache_service.config import CacheConfig, ConfigError, load_config
from cache_service.errors import InvalidArgument, PermissionDenied
from cache_service.redis_url import RedisUrlError, connect, parse_redis_url
from cache_service.scoping import Caller, caller_from_metadata
from cache_service.validation import list_limit, require_seq


def test_defaults_match_the_spec() -> None:
    config = load_config([], {})
    assert (config.host, config.port, config.metrics_port, config.stream_maxlen) == ("0.0.0.0", 50051, 9101, 100000)
    assert not config.tls_enabled


def test_flags_beat_environment() -> None:
    config = load_config(["--port", "6000"], {"CACHE_PORT": "7000", "CACHE_STREAM_MAXLEN": "50",
                                             "CACHE_REDIS_URL": "rediss://cache:6380/1", "CACHE_TLS_CERT_FILE": ""})
    assert (config.port, config.stream_maxlen, config.redis_url) == (6000, 50, "rediss://cache:6380/1")
    assert config.tls_cert_file is None


def test_environment_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="CACHE_REDIS_TIMEOUT"):
        load_config([], {"CACHE_REDIS_TIMEOUT": "soon"})


@pytest.mark.parametrize("values", [{"redis_timeout": 0}, {"shutdown_grace": -1}, {"subscriber_queue": 0},
                                    {"metrics_port": -1}, {"tls_client_ca_file": "/etc/hostname"}])
def test_config_rejects(values) -> None:
    with pytest.raises(ConfigError):
        CacheConfig(**values)


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
])
def test_bad_redis_urls(url, text) -> None:
    with pytest.raises(RedisUrlError, match=text):
        parse_redis_url(url)


def test_plain_and_tls_urls() -> None:
    assert not parse_redis_url("redis://localhost:6379/0").is_sentinel
    assert parse_redis_url("rediss://localhost:6380/0").scheme == "rediss"
    assert parse_redis_url("redis:///tmp/redis.sock").scheme == "redis"


def test_a_client_seq_is_checked() -> None:
    assert require_seq("1700000000000-5") == (1700000000000, 5)
    assert require_seq("17") == (17, 0)
    with pytest.raises(InvalidArgument, match="resume_from must be a stream id"):
        require_seq("1-")


def test_list_limit() -> None:
    assert list_limit(0) == 100 and list_limit(1000) == 1000
    with pytest.raises(InvalidArgument):
        list_limit(1001)


def test_caller_from_metadata() -> None:
    assert caller_from_metadata(None) == Caller()
    assert caller_from_metadata([("x-user-id", "alice")]) == Caller("alice", False)
    assert caller_from_metadata([("x-user-id", b"root"), ("x-user-scope", "read admin")]) == Caller("root", True)
    assert caller_from_metadata([("x-user-scope", "admin")]) == Caller(None, False)  # scope alone is nothing


def test_user_filter() -> None:
    assert Caller().user_filter("") == "" and Caller().user_filter("bob") == "bob"
    assert Caller("root", True).user_filter("bob") == "bob"
    assert Caller("alice").user_filter("") == "alice" and Caller("alice").user_filter("alice") == "alice"
    with pytest.raises(PermissionDenied):
        Caller("alice").user_filter("bob")
    assert Caller("alice").may_see("alice") and not Caller("alice").may_see("bob")


def test_field_filter() -> None:
    assert field_filter(u="", s=[]) is match_all
    match = field_filter(u="alice", s=["BTC/USDT"])
    assert match({b"u": b"alice", b"s": b"BTC/USDT"})
    assert not match({b"u": b"bob", b"s": b"BTC/USDT"})
    assert not match({b"u": b"alice"})

