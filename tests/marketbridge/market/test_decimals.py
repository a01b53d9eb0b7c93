"""Decimal strings: exact values, plain notation only, clear messages."""

from decimal import Decimal

import pytest

from marketbridge.market.decimals import (
    DecimalError,
    format_decimal,
    parse_decimal,
    parse_positive,
    valid_decimal,
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


def test_valid_decimal_is_the_check_without_the_message() -> None:
    assert valid_decimal("31337.25") == Decimal("31337.25") == parse_decimal("31337.25", "price")
    for bad in ("-31337.5", "1e5", "", "1" * 41, ["1"], 1, 1.5, None):
        assert valid_decimal(bad) is None
    with pytest.raises(DecimalError, match="^price must be a plain non-negative decimal"):
        parse_decimal("-31337.5", "price")   # refused every time: a refusal is never remembered
    with pytest.raises(DecimalError, match="^qty must be a plain non-negative decimal"):
        parse_decimal("-31337.5", "qty")
