"""Decimal strings: exact values, plain notation only, clear messages."""

from decimal import Decimal

import pytest

from marketbridge.market.decimals import (
    DecimalError,
    format_decimal,
    known_decimal,
    parse_decimal,
    parse_positive,
)


@pytest.mark.parametrize("text,value", [("50000.10", Decimal("50000.1")), ("0", Decimal(0)),
                                        ("0.000", Decimal(0)), ("007", Decimal(7))])
def test_parses_exact_values(text: str, value: Decimal) -> None:
    assert parse_decimal(text, "qty") == value


@pytest.mark.parametrize("bad,fragment", [
    ("-1", "(negative)"), ("1e-5", "(no exponents)"), ("1E3", "(no exponents)"),
    ("NaN", "got 'NaN'"), ("Infinity", "got 'Infinity'"), ("abc", "got 'abc'"),
    ("", "got ''"), (" 1", "got ' 1'"), (".5", "got '.5'"), ("5.", "got '5.'"),
    ("+1", "got '+1'"), ("1_000", "got '1_000'"), ("1" * 41, "longer than 40"),
])
def test_rejects_with_clear_message(bad: str, fragment: str) -> None:
    with pytest.raises(DecimalError, match="^qty ") as info:
        parse_decimal(bad, "qty")
    assert fragment in str(info.value)


def test_rejects_non_strings() -> None:
    with pytest.raises(DecimalError, match="qty must be a decimal string, got float"):
        parse_decimal(0.1, "qty")


def test_positive_refuses_zero() -> None:
    with pytest.raises(DecimalError, match="price must be greater than zero, got '0.00'"):
        parse_positive("0.00", "price")
    assert parse_positive("0.01", "price") == Decimal("0.01")


def test_format_is_positional() -> None:
    assert format_decimal(Decimal("0.0000001")) == "0.0000001"
    assert format_decimal(Decimal("0.1") + Decimal("0.2")) == "0.3"


def test_accepted_strings_are_remembered_and_nothing_else() -> None:
    assert known_decimal("31337.25") is None
    assert parse_decimal("31337.25", "price") == Decimal("31337.25")
    assert known_decimal("31337.25") == Decimal("31337.25")
    with pytest.raises(DecimalError):
        parse_decimal("-31337.5", "price")
    assert known_decimal("-31337.5") is None          # a refused string is never remembered
    assert known_decimal(["1"]) is None and known_decimal(1) is None   # not a string: not looked up
