"""Configuration: precedence of flags, env and defaults; one-line errors."""

from __future__ import annotations

import pytest

from bridge.config import ConfigError, load_config


def test_config_precedence_and_env() -> None:
    env = {"BRIDGE_JWT_SECRET": "s", "BRIDGE_PORT": "9000", "BRIDGE_MAX_SUBSCRIPTIONS": "7",
           "BRIDGE_JWT_ALGORITHMS": "HS256,HS512", "BRIDGE_IDLE_TIMEOUT": ""}
    config = load_config(["--port", "9001"], environ=env)
    assert config.port == 9001 and config.max_subscriptions == 7
    assert config.jwt_algorithms == ("HS256", "HS512") and config.idle_timeout == 300
    assert "s" not in repr(config).split("jwt_secret")[0] or "jwt_secret" not in repr(config)


@pytest.mark.parametrize("argv, env, message", [
    ([], {}, "--auth jwt needs --jwt-secret, --jwt-public-key-file or --jwks-url"),
    (["--auth", "basic"], {}, "--auth must be one of jwt, none"),
    (["--jwt-secret", "s", "--port", "x"], {}, "--port: expected an integer, got 'x'"),
    (["--jwt-secret", "s"], {"BRIDGE_RATE_LIMIT": "fast"}, "BRIDGE_RATE_LIMIT: expected a number, got 'fast'"),
    (["--jwt-secret", "s", "--max-connections", "0"], {}, "--max-connections must be > 0"),
    (["--jwt-secret", "s", "--port", "70000"], {}, "--port must be from 0 to 65535"),
    (["--jwt-secret", "s", "--jwt-algorithms", "RS256"], {}, "cannot be used with a shared secret"),
    (["--jwt-secret", "s", "--jwt-public-key-file", "/nonexistent"], {}, "/nonexistent"),
    (["--jwt-secret", "s", "--log-level", "loud"], {}, "--log-level must be one of"),
    (["--jwt-secret", "s", "--grpc-tls-cert-file", "c"], {}, "must be given together"),
    (["--jwt-secret", "s", "--grpc-target", " "], {}, "--grpc-target must not be empty"),
    (["--jwt-secret", "s", "--shutdown-grace", "-1"], {}, "--shutdown-grace must be >= 0"),
    (["--jwt-secret", "s", "--canary-s", "-1"], {}, "--canary-s must be >= 0 (0: no canary)"),
    (["--jwt-secret", "s"], {"BRIDGE_CANARY_S": "often"}, "BRIDGE_CANARY_S: expected a number"),
])
def test_bad_config_one_line(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(argv, environ=env)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_key_file_must_be_pem(tmp_path) -> None:
    path = tmp_path / "k"
    path.write_text("hello")
    with pytest.raises(ConfigError, match="not a PEM public key"):
        load_config(["--jwt-public-key-file", str(path)], environ={})
    path.write_text("-----BEGIN PUBLIC KEY-----\n")
    with pytest.raises(ConfigError, match="either --jwt-secret or --jwt-public-key-file"):
        load_config(["--jwt-public-key-file", str(path), "--jwt-secret", "s"], environ={})


def test_handshake_bounds_read_flags_and_env() -> None:
    env = {"BRIDGE_JWT_SECRET": "s", "BRIDGE_HANDSHAKE_TIMEOUT_S": "2.5",
           "BRIDGE_MAX_HANDSHAKES": "100"}
    config = load_config(["--max-handshakes", "50", "--max-header-bytes", "8192"], environ=env)
    assert (config.handshake_timeout_s, config.max_handshakes, config.max_header_bytes) == (
        2.5, 50, 8192)   # the flag over the variable, the variable over the default
    defaults = load_config([], environ={"BRIDGE_JWT_SECRET": "s"})
    assert (defaults.handshake_timeout_s, defaults.max_handshakes, defaults.max_header_bytes) == (
        10.0, 4096, 16384)


@pytest.mark.parametrize("argv, env, message", [
    (["--max-handshakes", "0"], {}, "--max-handshakes must be > 0, got 0"),
    (["--handshake-timeout-s", "-1"], {}, "--handshake-timeout-s must be > 0, got -1.0"),
    ([], {"BRIDGE_HANDSHAKE_TIMEOUT_S": "soon"},
     "BRIDGE_HANDSHAKE_TIMEOUT_S: expected a number, got 'soon'"),
    (["--max-header-bytes", "100"], {}, "--max-header-bytes must be >= 1024"),
])
def test_bad_handshake_bounds_one_line(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(["--jwt-secret", "s", *argv], environ=env)
    assert message in str(info.value) and "\n" not in str(info.value)
