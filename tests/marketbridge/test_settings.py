"""The one settings convention (marketbridge/settings.py): names, precedence, one error type."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from marketbridge.settings import (
    ConfigError,
    RaisingParser,
    add_flags,
    env_name,
    flag_name,
    gather,
    require_positive,
)


def test_a_field_has_one_flag_and_one_variable() -> None:
    assert flag_name("max_connections") == "--max-connections"
    assert env_name("BRIDGE_", "max_connections") == "BRIDGE_MAX_CONNECTIONS"


def _parse(argv: list[str]) -> dict[str, object]:
    parser = argparse.ArgumentParser()
    add_flags(parser, ("rate", "log_level"), lambda name: f"help for {name}")
    return vars(parser.parse_args(argv))


def test_a_flag_wins_over_its_variable_which_wins_over_nothing() -> None:
    args = _parse(["--rate", "10"])
    given = gather(args, ("rate", "log_level"), {"X_RATE": "99", "X_LOG_LEVEL": ""}, "X_")
    assert (given["rate"].text, given["rate"].origin, given["rate"].from_env) == ("10", "--rate", False)
    assert (given["log_level"].text, given["log_level"].origin) == ("", "X_LOG_LEVEL")
    assert given["log_level"].from_env
    assert gather(_parse([]), ("rate",), {}, "X_") == {}


def test_the_raising_parser_reports_a_bad_flag_as_a_config_error() -> None:
    parser = RaisingParser()
    add_flags(parser, ("rate",))
    with pytest.raises(ConfigError, match="unrecognized arguments"):
        parser.parse_args(["--speed", "1"])


@dataclass(frozen=True)
class _Knobs:
    rate: float = 1.0
    streams: int | None = None


def test_require_positive_names_the_first_bad_flag_and_skips_unset_ones() -> None:
    require_positive(_Knobs(), ("rate", "streams"), lambda flag, value: f"{flag} {value}")
    with pytest.raises(ConfigError, match=r"^--rate must be > 0, got 0$"):
        require_positive(_Knobs(rate=0), ("rate", "streams"),
                         lambda flag, value: f"{flag} must be > 0, got {value}")
    with pytest.raises(ConfigError, match="^--streams$"):
        require_positive(_Knobs(streams=-1), ("rate", "streams"), lambda flag, _value: flag)


def test_config_error_is_a_value_error_so_old_handlers_still_catch_it() -> None:
    assert issubclass(ConfigError, ValueError)
