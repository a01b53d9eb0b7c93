"""Typed bridge configuration, built once from command-line flags and ``BRIDGE_*`` variables.

Every flag reads an environment variable of the same name (``--max-connections`` ->
``BRIDGE_MAX_CONNECTIONS``); a flag on the command line wins over the environment. Values are
validated here, at start, so a bad setting fails with one clear line instead of a traceback deep
inside a connection handler hours later.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit

from bridge.compression import COMPRESSION_MODES
from bridge.jwks import JWKS_ALGORITHMS
from bridge.origins import OriginPolicy
from marketbridge.settings import (ConfigError, Raw, RaisingParser, add_flags, convert, env_name, gather,
                                  require_positive)

__all__ = ["BridgeConfig", "ConfigError", "build_parser", "load_config", "read_key_file", "validate"]

ENV_PREFIX = "BRIDGE_"
AUTH_MODES = ("jwt", "none")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SECRET_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
KEY_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "EdDSA"})
MIN_HEADER_BYTES = 1024  # --max-header-bytes below this would refuse ordinary upgrades


@dataclass(frozen=True)
class BridgeConfig:
    """Every setting of one bridge process. Durations are seconds unless the name says ms."""

    grpc_target: str = "127.0.0.1:50051"
    host: str = "0.0.0.0"
    port: int = 8080
    auth: str = "jwt"
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_public_key_file: str | None = None
    jwt_algorithms: tuple[str, ...] = ()
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    # Keys by ``kid`` from a JWK Set (bridge/jwks.py), instead of --jwt-secret or a PEM key:
    # refetched every jwks_refresh_s; HTTPS checked against the system CAs or jwks_ca_file's.
    jwks_url: str | None = None
    jwks_refresh_s: float = 300.0
    jwks_ca_file: str | None = None
    jwks_timeout_s: float = 5.0
    max_connections: int = 10000
    max_connections_per_user: int = 50
    max_subscriptions: int = 200
    idle_timeout: float = 300.0
    rate_limit: float = 50.0
    rate_burst: int = 100
    max_frame_bytes: int = 65536
    # permessage-deflate for clients that offer it (bridge/compression.py): shared frames are
    # compressed once for all the clients that share them; "none" declines the extension.
    compression: str = "deflate"
    # Opening handshakes (bridge/handshake_guard.py): at most this many in progress at once
    # (503 at accept beyond it), each dropped if not complete this long after its accept
    # (websockets' open_timeout: silent and trickling sockets), with a request head of at most
    # this many bytes (431 beyond it).
    max_handshakes: int = 4096
    handshake_timeout_s: float = 10.0
    max_header_bytes: int = 16384
    batch_max_ms: int = 1000
    max_backlog: int = 1000
    shutdown_grace: float = 20.0
    grpc_deadline: float = 5.0
    # A subscribed topic that hears nothing (no event, no heartbeat) for this long is stalled:
    # its subscribers are told ``interrupted`` and the stream is re-opened (bridge/stall.py).
    upstream_stall_s: float = 3.0
    # The end-to-end canary (bridge/canary.py): the cache service's --canary-s (set both the
    # same); /readyz says 503 after 3 intervals without one. 0: not followed (a cache service
    # that predates StreamCanary).
    canary_s: float = 5.0
    grpc_tls_ca_file: str | None = None
    grpc_tls_cert_file: str | None = None
    grpc_tls_key_file: str | None = None
    log_level: str = "INFO"
    # Web pages whose handshakes are served (bridge/origins.py): "*" for any (local use).
    allowed_origins: tuple[str, ...] = ("*",)
    # Token lifecycle (bridge/token_life.py): warn this long before ``exp``; a token without
    # ``exp`` is accepted only when allowed (the local default; the chart sets false).
    token_warning_s: float = 30.0
    jwt_allow_no_exp: bool = True
    # Not flags: knobs the tests turn (docs/protocol.md fixes the 10 s of sustained excess).
    rate_limit_close_after: float = 10.0
    # WebSocket keepalive (bridge/keepalive.py): a ping every interval, 1011 when its pong is
    # the timeout late; websockets' defaults.
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    upstream_backoff_max: float = 5.0
    jwt_public_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The JWT algorithms accepted: explicit, else HS256 with a secret, RS256/ES256 with a key."""
        if self.jwt_algorithms:
            return self.jwt_algorithms
        return ("HS256",) if self.jwt_secret else ("RS256", "ES256")

    @property
    def batch_limit_ms(self) -> int:
        """Largest ``?batch_ms`` a client may ask for (docs/protocol.md: 1..1000, capped by the flag)."""
        return min(1000, self.batch_max_ms)


def validate(config: BridgeConfig) -> None:
    """Reject settings that cannot work; each message names the flag to fix."""
    require_positive(config, ("max_connections", "max_connections_per_user", "max_subscriptions",
                              "idle_timeout", "rate_limit", "rate_burst", "max_frame_bytes",
                              "batch_max_ms", "max_backlog", "grpc_deadline", "upstream_stall_s",
                              "rate_limit_close_after", "upstream_backoff_max", "token_warning_s",
                              "max_handshakes", "handshake_timeout_s"),
                     lambda flag, value: f"{flag} must be > 0, got {value}")
    if config.max_header_bytes < MIN_HEADER_BYTES:
        raise ConfigError(f"--max-header-bytes must be >= {MIN_HEADER_BYTES} (an upgrade request "
                          f"with a token takes about 600), got {config.max_header_bytes}")
    if not 0 <= config.port <= 65535:
        raise ConfigError(f"--port must be from 0 to 65535, got {config.port}")
    if config.canary_s < 0:
        raise ConfigError(f"--canary-s must be >= 0 (0: no canary), got {config.canary_s}")
    if config.shutdown_grace < 0:
        raise ConfigError(f"--shutdown-grace must be >= 0, got {config.shutdown_grace}")
    if not config.grpc_target.strip():
        raise ConfigError("--grpc-target must not be empty")
    if config.compression not in COMPRESSION_MODES:
        raise ConfigError(f"--compression must be one of {', '.join(COMPRESSION_MODES)}, "
                          f"got {config.compression!r}")
    if config.auth not in AUTH_MODES:
        raise ConfigError(f"--auth must be one of {', '.join(AUTH_MODES)}, got {config.auth!r}")
    if config.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {config.log_level!r}")
    if bool(config.grpc_tls_cert_file) != bool(config.grpc_tls_key_file):
        raise ConfigError("--grpc-tls-cert-file and --grpc-tls-key-file must be given together")
    if not config.allowed_origins:
        raise ConfigError("--allowed-origins must name origins (comma-separated) or be *")
    try:
        OriginPolicy.parse(config.allowed_origins)
    except ValueError as exc:
        raise ConfigError(f"--allowed-origins: {exc}") from None
    if config.auth == "jwt":
        _validate_jwt(config)


def _validate_jwt(config: BridgeConfig) -> None:
    if config.jwks_url or config.jwks_ca_file:
        return _validate_jwks(config)
    if not config.jwt_secret and not config.jwt_public_key:
        raise ConfigError("--auth jwt needs --jwt-secret, --jwt-public-key-file or --jwks-url (or --auth none for local development)")
    if config.jwt_secret and config.jwt_public_key:
        raise ConfigError("give either --jwt-secret or --jwt-public-key-file, not both")
    allowed = SECRET_ALGORITHMS if config.jwt_secret else KEY_ALGORITHMS
    wrong = [alg for alg in config.algorithms if alg not in allowed]
    if wrong:
        kind = "a shared secret" if config.jwt_secret else "a public key"
        raise ConfigError(f"--jwt-algorithms {' '.join(wrong)} cannot be used with {kind}")


MAX_JWKS_TIMEOUT_S = 30.0   # a connection with a new kid waits for the fetch: keep it short


def _validate_jwks(config: BridgeConfig) -> None:
    """``--jwks-url``: the only key source, an http(s) URL, RS256/ES256, bounded timings."""
    url = config.jwks_url
    if not url:
        raise ConfigError("--jwks-ca-file needs --jwks-url")
    if config.jwt_secret or config.jwt_public_key:
        raise ConfigError("give either --jwks-url or --jwt-secret / --jwt-public-key-file, not both")
    try:
        scheme, host = urlsplit(url).scheme, urlsplit(url).hostname
    except ValueError:   # e.g. an unclosed [IPv6 literal
        scheme, host = "", None
    if scheme not in ("http", "https") or not host:
        raise ConfigError(f"--jwks-url must be an http:// or https:// URL, got {url!r}")
    if config.jwks_ca_file and scheme != "https":
        raise ConfigError("--jwks-ca-file applies to an https:// --jwks-url only")
    wrong = [alg for alg in config.algorithms if alg not in JWKS_ALGORITHMS]
    if wrong:
        raise ConfigError(f"--jwt-algorithms {' '.join(wrong)} cannot be used with --jwks-url "
                          f"(allowed: {', '.join(JWKS_ALGORITHMS)})")
    if config.jwks_refresh_s <= 0:
        raise ConfigError(f"--jwks-refresh-s must be > 0, got {config.jwks_refresh_s}")
    if not 0 < config.jwks_timeout_s <= MAX_JWKS_TIMEOUT_S:
        raise ConfigError(f"--jwks-timeout-s must be > 0 and <= {MAX_JWKS_TIMEOUT_S:g}, "
                          f"got {config.jwks_timeout_s}")


# ------------------------------------------------------------------ parsing


def _to_algorithms(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.replace(",", " ").split() if part)


FLAG_FIELDS = [f for f in fields(BridgeConfig)
               if f.name not in {"rate_limit_close_after", "upstream_backoff_max", "jwt_public_key",
                                 "ping_interval", "ping_timeout"}]


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m bridge`` parser; every option defaults to None so env and defaults apply."""
    parser = RaisingParser(
        prog="python -m bridge",
        description="WebSocket bridge for cache.v1.CacheService (every flag also reads BRIDGE_<FLAG>).",
    )
    defaults = {f.name: f.default for f in FLAG_FIELDS}
    add_flags(parser, defaults, lambda name: f"env {env_name(ENV_PREFIX, name)} "
                                             f"(default: {_default_text(defaults[name])})")
    return parser


def _default_text(value: Any) -> str:
    if value in (None, (), ""):
        return "unset"
    return str(value)


def _convert(name: str, raw: Raw) -> Any:
    """Numbers by the shared rule (marketbridge.settings.convert); the algorithm list is ours."""
    annotation = BridgeConfig.__dataclass_fields__[name].type
    if name == "jwt_algorithms":
        return _to_algorithms(raw.text)
    if name == "allowed_origins":
        return tuple(part.strip() for part in raw.text.split(",") if part.strip())
    return convert(raw, annotation)


def load_config(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None,
                **overrides: Any) -> BridgeConfig:
    """Flags > environment > defaults; ``overrides`` (typed values) win over all, for tests."""
    environ = os.environ if environ is None else environ
    args = vars(build_parser().parse_args(list(argv or [])))
    given = gather(args, (f.name for f in FLAG_FIELDS), environ, ENV_PREFIX)
    values: dict[str, Any] = {name: _convert(name, raw)
                              for name, raw in given.items() if not (raw.from_env and raw.text == "")}
    values.update(overrides)
    values["log_level"] = str(values.get("log_level", "INFO")).upper()
    key_file = values.get("jwt_public_key_file")
    if key_file and "jwt_public_key" not in values:
        values["jwt_public_key"] = read_key_file(key_file)
    return BridgeConfig(**values)


def read_key_file(path: str) -> str:
    """Read a PEM public key, failing with one line when it is missing or not a key."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f"--jwt-public-key-file {path}: {exc.strerror or exc}") from None
    if "-----BEGIN" not in text:
        raise ConfigError(f"--jwt-public-key-file {path}: not a PEM public key")
    return text
