"""The ledger's checks themselves: what counts as missing, duplicated, conflated or foreign."""

from __future__ import annotations

import time

from tests.factories import BotFactory, OrderFactory, TickerFactory
from tests.infra.ledger import Ledger, percentile, seq_key


def _ledger_with_alice() -> Ledger:
    ledger = Ledger()
    ledger.client("a", user="alice")
    ledger.subscribed("a", "orders", since=0.0)
    return ledger


def _order_dict(order) -> dict:  # type: ignore[no-untyped-def]
    return {"order_id": order.order_id, "user_id": order.user_id, "symbol": order.symbol}


def test_complete_when_every_owed_write_arrives_once_in_order() -> None:
    ledger = _ledger_with_alice()
    orders = [OrderFactory(user_id="alice") for _ in range(3)]
    for n, order in enumerate(orders, 1):
        ledger.record_write("orders", order, f"100-{n}", time.monotonic())
        ledger.received("a", "orders", f"100-{n}", _order_dict(order))
    verdict = ledger.assert_complete("a")
    assert (verdict.expected, verdict.delivered) == (3, 3)
    assert ledger.delivered_fraction() == 1.0


def test_missing_duplicate_out_of_order_and_foreign_are_reported() -> None:
    ledger = _ledger_with_alice()
    mine = [OrderFactory(user_id="alice") for _ in range(3)]
    for n, order in enumerate(mine, 1):
        ledger.record_write("orders", order, f"9-{n}", time.monotonic())
    bob = OrderFactory(user_id="bob")
    ledger.record_write("orders", bob, "10-0", time.monotonic())
    ledger.received("a", "orders", "9-2", _order_dict(mine[1]))
    ledger.received("a", "orders", "9-2", _order_dict(mine[1]))
    ledger.received("a", "orders", "9-1", _order_dict(mine[0]))
    ledger.received("a", "orders", "10-0", _order_dict(bob))
    verdict = ledger.check("a")
    assert verdict.missing == [f"orders 9-3 ({mine[2].order_id})"]
    assert verdict.duplicates == ["orders 9-2"]
    assert verdict.out_of_order == ["orders 9-1"]
    assert verdict.foreign == ["orders 10-0 of bob"]
    assert len(verdict.problems) == 4


def test_writes_before_the_subscription_are_not_owed_and_admins_see_everyone() -> None:
    ledger = Ledger()
    early = BotFactory(user_id="bob")
    ledger.record_write("bots", early, "1-0", time.monotonic())
    ledger.client("root", user="root", admin=True)
    ledger.subscribed("root", "bots")
    late = BotFactory(user_id="bob")
    ledger.record_write("bots", late, "2-0", time.monotonic())
    assert [w.seq for w in ledger.owed(ledger.clients["root"], ledger.clients["root"].interests["bots"])] == ["2-0"]
    assert ledger.check("root").missing == [f"bots 2-0 ({late.bot_id})"]


def test_tickers_may_be_conflated_or_lost_only_when_reported() -> None:
    ledger = Ledger()
    ledger.client("t", user="alice")
    ledger.subscribed("t", "tickers", exchange="binance", since=0.0)
    btc = [TickerFactory(symbol="BTC/USDT") for _ in range(3)]
    for n, ticker in enumerate(btc, 1):
        ledger.record_write("tickers", ticker, f"5-{n}", time.monotonic())
    ledger.received("t", "tickers", "5-3", {"exchange": "binance", "symbol": "BTC/USDT"})
    verdict = ledger.assert_complete("t")
    assert (verdict.delivered, verdict.conflated) == (1, 2)
    eth = TickerFactory(symbol="ETH/USDT")
    ledger.record_write("tickers", eth, "6-0", time.monotonic())
    assert ledger.check("t").missing == ["tickers:binance 6-0 (binance:ETH/USDT)"]
    ledger.status("t", "tickers:binance", "resumed", False)
    ledger.assert_complete("t")


def test_closes_and_unfinished_interruptions_are_problems() -> None:
    ledger = _ledger_with_alice()
    ledger.status("a", "orders", "interrupted", False)
    ledger.closed("a", 1013, "slow consumer")
    problems = ledger.check("a").problems
    assert any("still interrupted" in p for p in problems)
    assert any("1013" in p for p in problems)
    ledger.status("a", "orders", "resumed", True)
    ledger.assert_complete("a", allowed_closes={1013})


def test_latency_recovery_and_percentile() -> None:
    ledger = _ledger_with_alice()
    start = time.monotonic()
    order = OrderFactory(user_id="alice")
    ledger.record_write("orders", order, "7-0", start)
    ledger.received("a", "orders", "7-0", _order_dict(order))
    assert ledger.latencies()[0] >= 0.0
    recovery = ledger.recovery_time(start - 1.0)
    assert recovery is not None and recovery >= 1.0
    later = OrderFactory(user_id="alice")
    ledger.record_write("orders", later, "8-0", start + 10.0)
    assert ledger.recovery_time(start + 5.0) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0 and percentile([], 99) == 0.0
    assert seq_key("10-0") > seq_key("9-5")


def test_writes_redis_lost_are_set_apart_not_owed() -> None:
    ledger = _ledger_with_alice()
    kept, lost = OrderFactory(user_id="alice"), OrderFactory(user_id="alice")
    ledger.record_write("orders", kept, "1-0", time.monotonic())
    ledger.record_write("orders", lost, "2-0", time.monotonic())
    ledger.received("a", "orders", "1-0", _order_dict(kept))
    assert [w.seq for w in ledger.reconcile({"orders": {"1-0"}})] == ["2-0"]
    ledger.assert_complete("a")
