"""The sans-I/O core with literal frames: no socket, no clock, every §9 rule checked."""

from __future__ import annotations

from typing import Any

import pytest

from marketbridge_client import (Backoff, ChecksumMismatch, Liveness, OrderBook, PolicyViolation,
                                 Session, Subscription, TryAgainLater, checksum, close_advice,
                                 parse_seq, updates_of)
from marketbridge_client.core import Deliver, Reply, Send, SubscribeFailed, TokenExpiring

ASKS = [("50000.5", "0.00100000"), ("50001.0", "1.5")]
BIDS = [("50000.1", "0.25000000"), ("49999.9", "2")]


def test_checksum_matches_the_worked_example_and_the_server_copy() -> None:
    from marketbridge.market.checksum import checksum as server_checksum
    assert checksum(BIDS, ASKS) == 3211480509 == server_checksum(BIDS, ASKS)


def test_seqs_compare_numerically() -> None:
    assert parse_seq("9-0") < parse_seq("10-0")
    assert parse_seq("10-2") > parse_seq("10-1")


def test_batch_frames_are_unwrapped_in_order() -> None:
    a = {"type": "update", "seq": "1-0"}
    b = {"type": "update", "seq": "2-0"}
    assert updates_of({"type": "batch", "updates": [a, b]}) == [a, b]
    assert updates_of(a) == [a]
    assert updates_of({"type": "heartbeat"}) == []


@pytest.mark.parametrize(("code", "reason", "renew", "retry", "immediate"), [
    (1000, "idle timeout", False, True, False),
    (1001, "server shutting down", False, True, True),
    (1006, "", False, True, False),
    (1011, "internal error", False, True, False),
    (1013, "slow consumer", False, True, False),
    (1008, "Invalid token", False, False, False),
    (1008, "Token expired", True, True, False),
    (1008, "rate limit exceeded", False, True, False),
    (1008, "batch_ms must be an integer from 1 to 1000", True, False, False),
])
def test_close_advice(code: int, reason: str, renew: bool, retry: bool, immediate: bool) -> None:
    advice = close_advice(code, reason, can_renew_token=renew)
    assert (advice.retry, advice.immediate) == (retry, immediate)
    assert advice.error.code == code


def test_close_errors_by_code() -> None:
    assert isinstance(close_advice(1008, "Invalid token", False).error, PolicyViolation)
    assert isinstance(close_advice(1013, "slow consumer", False).error, TryAgainLater)


def test_backoff_doubles_to_its_cap_with_jitter() -> None:
    low, high = Backoff(rng=lambda: 0.0), Backoff(rng=lambda: 1.0)
    assert [round(low.next(), 3) for _ in range(3)] == [0.25, 0.5, 1.0]
    assert [round(high.next(), 3) for _ in range(8)][-1] == 22.5       # 15 s cap x 1.5
    high.reset()
    assert high.next() == 0.75


def test_liveness_is_k_heartbeats_of_silence() -> None:
    live = Liveness(1.0, misses=3)
    live.seen(100.0)
    assert not live.dead(102.9) and live.dead(103.1)


def test_book_applies_deltas_truncates_and_detects_a_wrong_copy() -> None:
    book = OrderBook("x", "BTC/USDT", depth=10)
    book.load({"bids": BIDS, "asks": ASKS, "checksum": 3211480509})
    bids = [(f"{49990 - i}.0", "1") for i in range(12)]
    book.apply({"bids": bids, "asks": [], "checksum": checksum(BIDS + bids[:8], ASKS)})
    assert len(book.bids) == 10
    book.apply({"bids": [("50000.10", "0")], "asks": [],
                "checksum": checksum(BIDS[1:] + bids[:8], ASKS)})   # truncated levels are gone
    assert book.best_bid() == ("49999.9", "2")
    with pytest.raises(ChecksumMismatch):
        book.apply({"bids": [], "asks": [("50000.5", "9")], "checksum": 1})


def welcome(**limits: Any) -> dict[str, Any]:
    return {"type": "connection", "status": "connected", "protocol": 1,
            "limits": {"heartbeat_s": None, **limits}}


def subscribed(frame: dict[str, Any], sid: str, seq: str, snapshot: Any = (),
               recovered: bool = True) -> dict[str, Any]:
    return {"type": "response", "action": "subscribe", "request_id": frame["request_id"],
            "success": True, "result": {"subscription_id": sid, "snapshot": list(snapshot) if
                                        not isinstance(snapshot, dict) else snapshot,
                                        "recovered": recovered, "seq": seq}}


def sent(events: list[Any]) -> list[dict[str, Any]]:
    return [e.frame for e in events if isinstance(e, Send)]


def ticker(symbol: str, price: float) -> dict[str, Any]:
    return {"exchange": "x", "symbol": symbol, "price": price}


def test_session_resumes_every_subscription_from_its_own_last_seq() -> None:
    session = Session()
    tickers, orders = Subscription("tickers", {"exchange": "x"}), Subscription("orders", {})
    assert session.add(tickers) == [] and session.add(orders) == []
    first = sent(session.connected(welcome()))
    assert [f["params"] for f in first] == [{"channel": "tickers", "exchange": "x"}, {"channel": "orders"}]
    session.receive(subscribed(first[0], "tickers-1", "5-0", [ticker("A", 1.0)]))
    session.receive(subscribed(first[1], "orders-2", "7-0"))
    events = session.receive({"type": "batch", "updates": [
        {"type": "update", "action": "ticker_update", "subscription_id": "tickers-1", "seq": "6-0",
         "result": ticker("A", 2.0)},
        {"type": "update", "action": "ticker_update", "subscription_id": "tickers-99", "seq": "6-1",
         "result": ticker("B", 9.0)}]})
    assert [e.update.seq for e in events if isinstance(e, Deliver)] == ["6-0"]
    assert tickers.records == {("x", "A"): ticker("A", 2.0)}
    session.disconnected()
    again = sent(session.connected(welcome()))
    assert [f["params"].get("resume_from") for f in again] == ["6-0", "7-0"]


def test_recovered_false_and_a_gap_re_snapshot() -> None:
    session = Session()
    sub = Subscription("tickers", {"exchange": "x"})
    session.add(sub)
    (frame,) = sent(session.connected(welcome()))
    session.receive(subscribed(frame, "tickers-1", "5-0"))
    session.disconnected()
    (resume,) = sent(session.connected(welcome()))
    events = session.receive(subscribed(resume, "tickers-2", "5-0", recovered=False))
    unsubscribe, fresh = sent(events)
    assert unsubscribe["params"] == {"subscription_id": "tickers-2"}
    assert "resume_from" not in fresh["params"] and sub.resyncs == 1
    session.receive(subscribed(fresh, "tickers-3", "9-0", [ticker("A", 3.0)]))
    events = session.receive({"type": "stream_status", "subscription_id": "tickers-3",
                              "status": "resumed", "recovered": False})
    assert [f["action"] for f in sent(events)] == ["unsubscribe", "subscribe"] and sub.resyncs == 2


def test_a_checksum_mismatch_re_subscribes_the_book() -> None:
    session = Session()
    sub = Subscription("book", {"exchange": "x", "symbol": "BTC/USDT", "depth": 10})
    session.add(sub)
    (frame,) = sent(session.connected(welcome()))
    session.receive(subscribed(frame, "book-1", "5-0", {"bids": BIDS, "asks": ASKS,
                                                        "checksum": 3211480509}))
    events = session.receive({"type": "update", "action": "book_update", "subscription_id": "book-1",
                              "seq": "6-0", "result": {"bids": [["50000.1", "1"]], "asks": [],
                                                       "checksum": 12345}})
    assert [f["action"] for f in sent(events)] == ["unsubscribe", "subscribe"]
    assert "resume_from" not in sent(events)[1]["params"]


def test_replies_errors_and_token_expiring_reach_the_caller() -> None:
    session = Session()
    session.connected(welcome())
    request_id, _ = session.request("get_ticker", {"exchange": "x", "symbol": "A"})
    (reply,) = session.receive({"type": "response", "request_id": request_id, "success": False,
                                "error": {"code": "NOT_FOUND", "message": "no"}})
    assert isinstance(reply, Reply) and reply.request_id == request_id
    (expiring,) = session.receive({"type": "token_expiring", "expires_at": 5.0})
    assert expiring == TokenExpiring(5.0)
    sub = Subscription("tickers", {"exchange": "x"})
    (frame,) = sent(session.add(sub))
    (failed,) = session.receive({"type": "response", "request_id": frame["request_id"], "success": False,
                                 "error": {"code": "UNAVAILABLE", "message": "try again"}})
    assert isinstance(failed, SubscribeFailed) and failed.retry
    assert session.receive({"type": "brand_new_type"}) == []
