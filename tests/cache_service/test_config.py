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
