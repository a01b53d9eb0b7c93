"""Typed configuration, built once from flags and ``CACHE_*`` environment variables.

Every flag has an environment twin (``--stream-maxlen`` <-> ``CACHE_STREAM_MAXLEN``); a flag on
the command line wins. Everything is validated here, at start, so a bad value stops the
process with one clear line instead of failing later under load.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from cache_service.feed_health import FeedPolicy
from cache_service.redis_url import RedisTarget, RedisUrlError, parse_redis_url
from cache_service.trust import MODES, MTLS, UserMetadataPolicy
from marketbridge.settings import (ConfigError, RaisingParser, Raw, add_flags, convert, env_name, gather,
                                  require_positive)

__all__ = ["CacheConfig", "ConfigError", "build_parser", "configure_logging", "load_config", "validate"]

ENV_PREFIX = "CACHE_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class CacheConfig:
    """Everything the service needs to start. Defaults match docs/cache_service.md and the chart."""

    redis_url: str = "redis://localhost:6379/0"
    host: str = "0.0.0.0"
    port: int = 50051
    metrics_port: int = 9101
    stream_maxlen: int = 100_000
    log_level: str = "INFO"
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_client_ca_file: str | None = None
    redis_timeout: float = 3.0
    shutdown_grace: float = 10.0
    subscriber_queue: int = 10_000
    # None = 1 with redis+sentinel:// and redis+cluster:// (writes must reach a replica before
    # they are acknowledged, so a failover keeps them), else 0; resolved in __post_init__.
    min_replica_acks: int | None = None
    replica_ack_timeout_ms: int = 500
    # A change-feed reader that cannot read Redis for this long ends its streams UNAVAILABLE
    # (at once on a lost connection); idle live streams carry a heartbeat this often.
    feed_stall_s: float = 2.0
    stream_heartbeat_s: float = 1.0
    # The end-to-end canary (cache_service/canary.py): one event into the reserved canary
    # stream this often; bridges go unready after 3 intervals without one.
    canary_s: float = 5.0
    # Market data (docs/market_data.md): recent trades kept per symbol for ListTrades, and
    # candles kept per symbol and interval (the newest N intervals).
    trade_retention: int = 1000
    candle_retention: int = 1000
    # Filled, canceled and rejected orders leave the latest state this long after their last
    # write (cache_service/order_retention.py); 0 keeps them forever. Bots never expire.
    terminal_order_retention_s: float = 86400.0
    # Whose x-user-id / x-user-scope is believed (cache_service/trust.py): any caller's (local
    # use), or with "mtls" only a peer whose client certificate names one of the peers.
    user_metadata_from: str = "any"
    user_metadata_peers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate(self)
        if self.min_replica_acks is None:
            target = self.redis_target
            object.__setattr__(self, "min_replica_acks", 1 if target.is_sentinel or target.is_cluster else 0)

    @property
    def redis_target(self) -> RedisTarget:
        return parse_redis_url(self.redis_url)

    @property
    def feed_policy(self) -> FeedPolicy:
        """The change feed's settings (cache_service.feed_health)."""
        return FeedPolicy(stall_s=self.feed_stall_s, heartbeat_s=self.stream_heartbeat_s,
                          min_acks=self.min_replica_acks or 0, ack_timeout_ms=self.replica_ack_timeout_ms,
                          socket_timeout_s=self.redis_timeout)

    @property
    def tls_enabled(self) -> bool:
        return self.tls_cert_file is not None

    @property
    def user_metadata_policy(self) -> UserMetadataPolicy:
        """Whose user metadata is believed (cache_service.trust)."""
        return UserMetadataPolicy(self.user_metadata_from, frozenset(self.user_metadata_peers))


def _port(name: str, value: int) -> None:
    if not 0 <= value <= 65535:
        raise ConfigError(f"--{name}: {value} is not a port (0-65535)")


def _readable(name: str, path: str | None) -> None:
    if path is not None and not os.access(path, os.R_OK):
        raise ConfigError(f"--{name}: cannot read file {path!r}")


def validate(config: CacheConfig) -> None:
    """Raise ConfigError for the first value that cannot work."""
    try:
        parse_redis_url(config.redis_url)
    except RedisUrlError as exc:
        raise ConfigError(f"--redis-url: {exc}") from None
    _port("port", config.port)
    _port("metrics-port", config.metrics_port)
    if config.stream_maxlen <= 0:
        raise ConfigError(f"--stream-maxlen: must be > 0, got {config.stream_maxlen}")
    if config.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(f"--log-level: {config.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    require_positive(config, ("redis_timeout", "shutdown_grace", "feed_stall_s", "stream_heartbeat_s", "canary_s",
                              "subscriber_queue", "trade_retention", "candle_retention"), lambda flag, _value: f"{flag}: must be > 0")
    if config.terminal_order_retention_s < 0:
        raise ConfigError("--terminal-order-retention-s: must be >= 0 (0 keeps terminal orders "
                          f"forever), got {config.terminal_order_retention_s}")
    if config.min_replica_acks is not None and config.min_replica_acks < 0:
        raise ConfigError(f"--min-replica-acks: must be >= 0, got {config.min_replica_acks}")
    if config.replica_ack_timeout_ms <= 0:
        raise ConfigError(f"--replica-ack-timeout-ms: must be > 0, got {config.replica_ack_timeout_ms}")
    if (config.tls_cert_file is None) != (config.tls_key_file is None):
        raise ConfigError("--tls-cert-file and --tls-key-file must be given together")
    if config.tls_client_ca_file is not None and config.tls_cert_file is None:
        raise ConfigError("--tls-client-ca-file needs --tls-cert-file and --tls-key-file")
    for name in ("tls_cert_file", "tls_key_file", "tls_client_ca_file"):
        _readable(name.replace("_", "-"), getattr(config, name))
    _validate_trust(config)


def _validate_trust(config: CacheConfig) -> None:
    """``mtls`` trusts client certificates, so it needs them required and a peer to trust."""
    if config.user_metadata_from not in MODES:
        raise ConfigError(f"--user-metadata-from: {config.user_metadata_from!r} "
                          f"is not one of {', '.join(MODES)}")
    if config.user_metadata_from != MTLS:
        if config.user_metadata_peers:
            raise ConfigError("--user-metadata-peers needs --user-metadata-from mtls (it would be ignored)")
        return
    if config.tls_client_ca_file is None:
        raise ConfigError("--user-metadata-from mtls needs --tls-client-ca-file "
                          "(client certificates are what it trusts)")
    if not config.user_metadata_peers:
        raise ConfigError("--user-metadata-from mtls needs --user-metadata-peers (the CN or SAN of the bridge's "
                          "client certificate)")


def build_parser() -> argparse.ArgumentParser:
    """The CLI; every option defaults to None so the environment can fill it in."""
    parser = RaisingParser(prog="python -m cache_service", description="cache.v1.CacheService over Redis")
    defaults = {f.name: f.default for f in fields(CacheConfig)}
    add_flags(parser, defaults, lambda name: f"(env {env_name(ENV_PREFIX, name)}, default {defaults[name]!r})")
    return parser


def _convert(raw: Raw, annotation: object) -> Any:
    """The shared conversion, and a comma-separated list for the one tuple field (the peers)."""
    if annotation == "tuple[str, ...]":
        return tuple(part.strip() for part in raw.text.split(",") if part.strip())
    return convert(raw, annotation)


def load_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> CacheConfig:
    """Build the config from flags, then environment, then defaults; raise ConfigError."""
    environ = os.environ if environ is None else environ
    args = vars(build_parser().parse_args(argv))
    types = {f.name: f.type for f in fields(CacheConfig)}
    values: dict[str, Any] = {name: _convert(raw, types[name])
                              for name, raw in gather(args, args, environ, ENV_PREFIX).items()
                              if not (raw.text == "" and name.startswith("tls_"))}
    return CacheConfig(**values)


def configure_logging(config: CacheConfig) -> None:
    """One line per record, level from the config."""
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
