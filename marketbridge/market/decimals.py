"""Decimal strings for money: parsed exactly, kept as given (docs/market_data.md).

Prices and quantities travel as strings so no float ever rounds them. We parse them with
``decimal.Decimal`` to compare and key levels by value (``"50000.1"`` and ``"50000.10"`` are
one price), but we hand on and hash the publisher's own string, since the checksum (§9.3) is
computed over strings and a client must be able to rebuild it from what it received.

Only plain positional notation is accepted: digits, optionally one ``.`` and more digits. No
sign, no exponent (``1e-5``), no ``NaN``/``Infinity``, no spaces, no ``.5`` or ``5.``: the
checksum removes the ``.`` and leading zeros from the string, which is only meaningful for
positional strings (``"1e-5"`` would hash as ``"1e-5"`` while it means ``"0.00001"``). Length
is bounded so that a hostile string cannot make parsing or hashing expensive.
"""

from __future__ import annotations

import functools
import re
from decimal import Decimal

MAX_LENGTH = 40
_POSITIONAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")


class DecimalError(ValueError):
    """A bad decimal string; the message names the field (INVALID_ARGUMENT / INVALID_PARAMS)."""


def parse_decimal(text: object, field: str) -> Decimal:
    """``text`` as a non-negative Decimal, or DecimalError saying what is wrong with it."""
    if not isinstance(text, str):
        raise DecimalError(f"{field} must be a decimal string, got {type(text).__name__}")
    try:
        return _value(text)
    except DecimalError as exc:
        raise DecimalError(f"{field} {exc}") from None


def valid_decimal(text: object) -> Decimal | None:
    """``text``'s value when it is a valid decimal string, else None (the caller then asks
    :func:`parse_decimal` for the error): the check without building a field name."""
    if type(text) is not str:
        return None
    try:
        return _value(text)
    except DecimalError:
        return None


@functools.lru_cache(maxsize=20_000)   # at most about 5 MiB
def _value(text: str) -> Decimal:
    """A valid string's value, remembered: a book names the same prices (and many sizes) again
    and again, and remembering them makes applying an update to a checked copy (``ClientBook``:
    the bridge's self-check, the probes) 0.9x as costly (docs/benchmarks.md, issue 14's third
    round), and every delta's ingest a little cheaper. Refusals are not remembered (an exception
    is never cached)."""
    if len(text) > MAX_LENGTH:
        raise DecimalError(f"is longer than {MAX_LENGTH} characters")
    if _POSITIONAL.fullmatch(text) is None:
        raise DecimalError(f"must be a plain non-negative decimal like '50000.10', got {text!r}{_hint(text)}")
    return Decimal(text)


def _hint(text: str) -> str:
    if text.startswith("-"):
        return " (negative)"
    if "e" in text.lower() and any(c.isdigit() for c in text):
        return " (no exponents)"
    return ""


def parse_positive(text: object, field: str) -> Decimal:
    """``text`` as a Decimal greater than zero (a price, a trade amount)."""
    value = parse_decimal(text, field)
    if not value:
        raise DecimalError(f"{field} must be greater than zero, got {text!r}")
    return value


def format_decimal(value: Decimal) -> str:
    """``value`` in positional notation (``str(Decimal)`` would write 1E-7 for 0.0000001)."""
    return format(value, "f")
