"""Trade validation: each bad field refused with a message naming it."""

from decimal import Decimal

import pytest

from marketbridge.market.trades import InvalidTrade, parse_trade


def test_valid_trade_keeps_strings_and_values() -> None:
    trade = parse_trade("t-1", "50000.10", "0.25000000", "buy", 1_700_000_000.5)
    assert (trade.price, trade.amount, trade.side) == ("50000.10", "0.25000000", "buy")
    assert trade.price_value == Decimal("50000.1") and trade.time == 1_700_000_000.5


@pytest.mark.parametrize("fields,message", [
    (("", "1", "1", "buy", 0), "trade_id must be a non-empty string"),
    (("x" * 129, "1", "1", "buy", 0), "at most 128"),
    ((7, "1", "1", "buy", 0), "got 7"),
    (("t", "1", "1", "BUY", 0), "side must be 'buy' or 'sell', got 'BUY'"),
    (("t", "1", "1", "buy", -1), "time must be a finite non-negative unix time, got -1"),
    (("t", "1", "1", "buy", float("nan")), "got nan"),
    (("t", "1", "1", "buy", True), "got True"),
    (("t", "1", "1", "buy", "5"), "got '5'"),
    (("t", "-1", "1", "buy", 0), r"price must be a plain .* \(negative\)"),
    (("t", "1", "0", "buy", 0), "amount must be greater than zero"),
    (("t", "1", "1e2", "sell", 0), r"amount .* \(no exponents\)"),
])
def test_bad_trade(fields: tuple, message: str) -> None:
    with pytest.raises(InvalidTrade, match=message):
        parse_trade(*fields)
