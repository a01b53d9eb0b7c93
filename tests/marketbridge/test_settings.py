"""The one settings convention (marketbridge/settings.py): names, precedence, one error type."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from marketbridge.settings import (
    ConfigError,
    RaisingParser,
    Raw,
    add_flags,
    convert,
    env_name,
    flag_name,
    gather,
    number_type,
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


def test_a_number_field_is_parsed_and_anything_else_kept_as_text() -> None:
    assert [number_type(a) for a in ("int", "int | None", "float", "float | None", "str", "Path", int)] == [
        int, int, float, float, None, None, int]
    assert convert(Raw("8080", "--port", from_env=False), "int") == 8080
    assert convert(Raw("2.5", "--rate", from_env=False), "float | None") == 2.5
    assert convert(Raw("abc", "--host", from_env=False), "str") == "abc"


@pytest.mark.parametrize(("raw", "annotation", "message"), [
    (Raw("abc", "--port", from_env=False), "int", "--port: expected an integer, got 'abc'"),
    (Raw("1.5", "BRIDGE_PORT", from_env=True), "int", "BRIDGE_PORT: expected an integer, got '1.5'"),
    (Raw("fast", "--rate", from_env=False), "float", "--rate: expected a number, got 'fast'"),
])
def test_a_bad_number_is_one_wording_naming_where_it_came_from(raw: Raw, annotation: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        convert(raw, annotation)
    assert str(info.value) == message
