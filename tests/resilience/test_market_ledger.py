"""The ledger's market-data mode and the client's book copies, checked without a stack: trades
known by id (acknowledged, unknown and retried), and what counts as a book problem."""

from __future__ import annotations

import time

from marketbridge.market.checksum import checksum
from tests.factories import TradeFactory
from tests.infra.ledger import Ledger
from tests.resilience.wsclient import LedgerClient, SubSpec

BIDS = [["50000.1", "0.25000000"], ["49999.9", "2"]]
ASKS = [["50000.5", "0.00100000"], ["50001.0", "1.5"]]


def _tape() -> Ledger:
    ledger = Ledger()
    ledger.client("tape", user="alice")
    ledger.subscribed("tape", "trades", "binance", since=0.0, stream="trades:binance")
    return ledger


def _got(ledger: Ledger, seq: str, trade) -> None:  # type: ignore[no-untyped-def]
    ledger.received("tape", "trades", seq, {"exchange": trade.exchange, "symbol": trade.symbol,
                                            "trade_id": trade.trade_id})


def test_every_acknowledged_trade_must_arrive_by_id() -> None:
    ledger = _tape()
    trades = [TradeFactory() for _ in range(3)]
    ledger.record_trades(trades, time.monotonic())
    _got(ledger, "1-0", trades[0])
    _got(ledger, "1-1", trades[2])
    verdict = ledger.check("tape")
    assert verdict.missing == [f"trades:binance BTC/USDT:{trades[1].trade_id}"]
    assert (verdict.expected, verdict.delivered) == (3, 2)
    _got(ledger, "2-0", trades[1])
    assert ledger.assert_complete("tape").delivered == 3


def test_a_trade_may_arrive_again_only_as_often_as_failed_calls_resent_it() -> None:
    ledger = _tape()
    retried, plain = TradeFactory(), TradeFactory()
    ledger.record_unknown_trades([retried])        # its call failed: stored or not
    ledger.record_trades([retried, plain], time.monotonic())   # sent again, acknowledged
    _got(ledger, "1-0", retried)
    _got(ledger, "2-0", retried)
    _got(ledger, "2-1", plain)
    verdict = ledger.assert_complete("tape")
    assert verdict.redelivered == 1
    _got(ledger, "3-0", retried)                   # a third copy: more than the two sends
    _got(ledger, "3-1", plain)                     # never failed: no copy allowed
    verdict = ledger.check("tape")
    assert sorted(verdict.duplicates) == sorted([f"trades:binance BTC/USDT:{retried.trade_id} x3",
                                                 f"trades:binance BTC/USDT:{plain.trade_id} x2"])


def test_trades_nobody_sent_seq_order_and_the_symbol_filter() -> None:
    ledger = Ledger()
    ledger.client("eth", user="bob")
    ledger.subscribed("eth", "trades", "binance", symbols=["ETH/USDT"], since=0.0, stream="trades:binance")
    btc, eth = TradeFactory(symbol="BTC/USDT"), TradeFactory(symbol="ETH/USDT")
    ledger.record_trades([btc, eth], time.monotonic())
    stranger = TradeFactory(symbol="ETH/USDT")
    for seq, trade in (("5-0", eth), ("4-0", stranger)):
        ledger.received("eth", "trades", seq, {"exchange": "binance", "symbol": trade.symbol,
                                               "trade_id": trade.trade_id})
    verdict = ledger.check("eth")
    assert (verdict.expected, verdict.delivered) == (1, 1)   # the BTC trade is not owed
    assert verdict.unknown == [f"trades:binance ETH/USDT:{stranger.trade_id}"]
    assert verdict.out_of_order == ["trades:binance 4-0"]


def test_reconcile_knows_trades_by_id_and_can_check_only_some_streams() -> None:
    ledger = _tape()
    kept, lost = TradeFactory(), TradeFactory()
    ledger.record_trades([kept, lost], time.monotonic())
    held = {"trades:binance": {f"BTC/USDT:{kept.trade_id}"}}
    assert ledger.reconcile(held, only=["orders"]) == []
    assert [w.key for w in ledger.reconcile(held)] == [f"BTC/USDT:{lost.trade_id}"]
    # the one Redis lost is set apart (not owed); the one it holds is still owed
    assert ledger.check("tape").missing == [f"trades:binance BTC/USDT:{kept.trade_id}"]


def _book_client() -> tuple[Ledger, LedgerClient, SubSpec]:
    ledger = Ledger()
    spec = SubSpec("book", "binance", symbol="BTC/USDT", depth=10)
    client = LedgerClient(ledger, "books", lambda: "ws://unused", [spec], "carol")
    client._subscribed(spec, {"success": True, "result": {
        "subscription_id": "b1", "seq": "10-0", "recovered": True,
        "snapshot": {"bids": BIDS, "asks": ASKS, "checksum": 3211480509, "stale": False}}})
    return ledger, client, spec


def _update(client: LedgerClient, seq: str, **result) -> None:  # type: ignore[no-untyped-def]
    client._on_frame({"type": "update", "action": "book_update", "subscription_id": "b1", "seq": seq,
                      "result": {"bids": [], "asks": [], "checksum": 0, **result}})


def test_a_book_copy_follows_updates_snapshots_and_stale_marks() -> None:
    ledger, client, spec = _book_client()
    copy = client.books[spec.stream]
    assert spec.stream == "book:binance:BTC/USDT:10" and copy.seq == "10-0"
    bids = [("50000.1", "0.25000000")]
    _update(client, "11-0", bids=[["49999.9", "0"]], checksum=checksum(bids, [tuple(a) for a in ASKS]))
    assert copy.book.view().bids == tuple(bids) and copy.updates == 1
    _update(client, "12-0", stale=True, reason="snapshot needed", sequence=7)
    _update(client, "13-0", snapshot=True, bids=[["100", "1"]], asks=[["101", "2"]],
            checksum=checksum([("100", "1")], [("101", "2")]))
    assert copy.book.view().asks == (("101", "2"),) and copy.snapshots == 1 and not copy.stale
    assert client._resume_point(spec) == "13-0"
    assert ledger.assert_complete("books").problems == []


def test_a_wrong_checksum_or_an_update_while_stale_is_a_book_problem() -> None:
    ledger, client, _ = _book_client()
    _update(client, "11-0", bids=[["49999.9", "0"]], checksum=12345)
    assert "checksum" in ledger.clients["books"].book_problems[0]
    _update(client, "12-0", asks=[["50001.0", "0"]], checksum=1)   # the copy is stale since
    assert "while the book is stale" in ledger.clients["books"].book_problems[1]
    assert "2 book problems" in ledger.check("books").problems[0]
