"""A trade as the service accepts it (docs/market_data.md), validated once at the door.

Candles, ``ListTrades`` and the streams all trust a :class:`Trade`, so everything they rely on
is checked here: a non-empty bounded id, a known taker side, a positive price and amount in
plain decimal notation, a finite non-negative time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from marketbridge.market.decimals import DecimalError, parse_positive

SIDES = frozenset({"buy", "sell"})
MAX_TRADE_ID = 128


class InvalidTrade(ValueError):
    """The trade is malformed (INVALID_ARGUMENT); the message says which field and why."""


@dataclass(frozen=True, slots=True)
class Trade:
    """A validated trade; ``price``/``amount`` strings as given, with their values beside."""

    trade_id: str
    price: str
    amount: str
    side: str
    time: float
    price_value: Decimal
    amount_value: Decimal


def parse_trade(trade_id: object, price: object, amount: object, side: object,
                time: object) -> Trade:
    """A :class:`Trade`, or InvalidTrade naming the first bad field."""
    if not isinstance(trade_id, str) or not trade_id or len(trade_id) > MAX_TRADE_ID:
        raise InvalidTrade(f"trade_id must be a non-empty string of at most {MAX_TRADE_ID} "
                           f"characters, got {trade_id!r}")
    if side not in SIDES:
        raise InvalidTrade(f"side must be 'buy' or 'sell', got {side!r}")
    if isinstance(time, bool) or not isinstance(time, int | float) \
            or not math.isfinite(time) or time < 0:
        raise InvalidTrade(f"time must be a finite non-negative unix time, got {time!r}")
    try:
        price_value = parse_positive(price, "price")
        amount_value = parse_positive(amount, "amount")
    except DecimalError as exc:
        raise InvalidTrade(str(exc)) from None
    return Trade(trade_id, price, amount, side, float(time),  # type: ignore[arg-type]
                 price_value, amount_value)
