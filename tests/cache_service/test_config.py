"""The cache service's settings (cache_service/config.py): defaults, flags over environment, refusals."""

from __future__ import annotations

import pytest

from cache_service.config import CacheConfig, ConfigError, load_config


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


MTLS_FILES = {name: "/etc/hostname" for name in ("tls_cert_file", "tls_key_file", "tls_client_ca_file")}


def test_user_metadata_trust_from_environment() -> None:
    environ = {f"CACHE_{k.upper()}": v for k, v in MTLS_FILES.items()}
    environ |= {"CACHE_USER_METADATA_FROM": "mtls", "CACHE_USER_METADATA_PEERS": "bridge, mb-bridge.svc"}
    config = load_config([], environ)
    assert config.user_metadata_policy.checks_peers
    assert config.user_metadata_peers == ("bridge", "mb-bridge.svc")
    assert not load_config([], {}).user_metadata_policy.checks_peers   # "any" by default


@pytest.mark.parametrize(("values", "message"), [
    ({"user_metadata_from": "everyone"}, "--user-metadata-from: 'everyone' is not one of any, mtls"),
    ({"user_metadata_from": "mtls", "user_metadata_peers": ("bridge",)}, "needs --tls-client-ca-file"),
    ({**MTLS_FILES, "user_metadata_from": "mtls"}, "needs --user-metadata-peers"),
    ({"user_metadata_peers": ("bridge",)}, "--user-metadata-peers needs --user-metadata-from mtls"),
])
def test_user_metadata_trust_rejects(values, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CacheConfig(**values)


def test_canary_interval_from_flag_or_environment_and_validated_in_one_line() -> None:
    assert load_config([], {}).canary_s == 5.0
    assert load_config([], {"CACHE_CANARY_S": "0.5"}).canary_s == 0.5
    assert load_config(["--canary-s", "2"], {"CACHE_CANARY_S": "0.5"}).canary_s == 2.0
    with pytest.raises(ConfigError) as info:
        load_config(["--canary-s", "0"], {})
    assert str(info.value) == "--canary-s: must be > 0"
