"""The per-client queue: conflation, overflow, batch framing and deadlines."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.outbound import Outbound, Push


def test_tickers_conflate_and_orders_overflow() -> None:
    ob = Outbound(max_backlog=3)
    assert ob.push_update("t1", 1, ("s", "BTC"), 0.0) is Push.QUEUED
    assert ob.push_update("t2", 2, ("s", "BTC"), 0.0) is Push.CONFLATED
    assert ob.push_update("o1", 3, None, 0.0) is Push.QUEUED
    assert ob.push_control("r1", "response") is Push.QUEUED
    assert ob.push_update("o2", 4, None, 0.0) is Push.OVERFLOW
    assert ob.push_control("r2", "response") is Push.OVERFLOW
    assert ob.push_update("t3", 5, ("s", "ETH"), 0.0) is Push.QUEUED   # tickers never close
    out = ob.take(0.0)
    assert [o.frame for o in out] == ["t2", "o1", "r1", "t3"]
    assert out[0].event_ms == [2] and out[2].event_ms == []
    assert ob.take(0.0) == [] and ob.wait_time(0.0) is None
    assert ob.push_update("t4", 6, ("s", "BTC"), 0.0) is Push.QUEUED   # taken: key is free again


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["BTC", "ETH", "SOL"]),
                          st.booleans()), max_size=60), st.sampled_from([1, 3, 10, 1000]))
def test_conflation_keeps_per_subscription_seq_order(pushes: list[tuple[int, str, bool]],
                                                     conflate_above: int) -> None:
    """Whatever mix of symbols, subscriptions, writer takes and conflation bound, each
    subscription's seqs leave the queue strictly increasing, and the latest update of every
    (subscription, symbol) is the last one delivered for it (a client resuming from the last
    seq it saw loses nothing)."""
    ob = Outbound(max_backlog=1000, conflate_above=conflate_above)
    sent: list[tuple[int, str, int]] = []
    latest: dict[tuple[int, str], int] = {}
    for seq, (sub, symbol, take_now) in enumerate(pushes, start=1):
        frame = json.dumps([sub, symbol, seq])
        assert ob.push_update(frame, seq, (sub, symbol), 0.0) is not Push.OVERFLOW
        latest[(sub, symbol)] = seq
        if take_now:
            sent.extend(tuple(json.loads(o.frame)) for o in ob.take(0.0))
    sent.extend(tuple(json.loads(o.frame)) for o in ob.take(0.0))
    assert len(ob) == 0 and ob.wait_time(0.0) is None
    for sub in range(3):
        seqs = [seq for s, _, seq in sent if s == sub]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    last = {(s, sym): seq for s, sym, seq in sent}
    assert last == latest


def test_conflation_moves_the_newer_update_back_and_bounds_the_queue() -> None:
    ob = Outbound(max_backlog=5)
    ob.push_update("btc-10", 10, ("s", "BTC"), 0.0)
    ob.push_update("eth-11", 11, ("s", "ETH"), 0.0)
    assert ob.push_update("btc-12", 12, ("s", "BTC"), 0.0) is Push.CONFLATED
    assert [o.frame for o in ob.take(0.0)] == ["eth-11", "btc-12"]
    for i in range(10_000):   # a reader that never drains: tombstones are compacted away
        ob.push_update(f"x{i}", i, ("s", ("BTC", "ETH")[i % 2]), 0.0)
    assert len(ob) == 2 and len(ob.entries) <= 4
    assert [o.frame for o in ob.take(0.0)] == ["x9998", "x9999"]


def test_batch_mode_waits_then_groups_and_controls_flush() -> None:
    ob = Outbound(max_backlog=100, batch_ms=50)
    ob.push_update('{"u":1}', 1, None, now=10.0)
    ob.push_update('{"u":2}', 2, None, now=10.01)
    assert ob.wait_time(10.02) == pytest.approx(0.03)
    assert ob.take(10.02) == []
    out = ob.take(10.05)
    assert len(out) == 1 and out[0].kind == "batch" and out[0].event_ms == [1, 2]
    assert json.loads(out[0].frame) == {"type": "batch", "updates": [{"u": 1}, {"u": 2}]}
    ob.push_update('{"u":3}', 3, None, now=20.0)
    ob.push_control('{"r":1}', "response")
    ob.push_update('{"u":4}', 4, None, now=20.0)
    out = ob.take(20.0)   # a reply flushes at once, order kept
    assert [o.kind for o in out] == ["batch", "response", "batch"]
