"""docs/protocol.md §6 delivery rules as the outbound queue decides them, without sockets: when tickers
may conflate (only for a client that is behind), what never conflates, when a batch is due."""

from __future__ import annotations

import pytest

from bridge.outbound import CONFLATE_FRACTION, Outbound, Push, conflation_bound


def test_the_conflation_bound_is_half_the_backlog_and_at_least_one() -> None:
    assert CONFLATE_FRACTION == 0.5
    assert conflation_bound(1000) == 500 and conflation_bound(5) == 2
    assert conflation_bound(1) == 1 and conflation_bound(1, 0.0) == 1
    assert Outbound(max_backlog=1000).conflate_above == 500
    assert Outbound(max_backlog=1000, conflate_above=7).conflate_above == 7


@pytest.mark.parametrize("batch_ms", [None, 50])
def test_a_burst_behind_a_reply_is_not_conflated_for_a_client_that_keeps_up(
        batch_ms: int | None) -> None:
    """The resume bug: updates queued behind the subscribe response replaced each other."""
    ob = Outbound(max_backlog=1000, batch_ms=batch_ms)
    assert ob.push_control("response", "response") is Push.QUEUED
    for i in range(10):
        assert ob.push_update(f"btc-{i}", i, ("tickers-1", "BTC"), 0.0) is Push.QUEUED
    assert not ob.behind and len(ob) == 11
    out = ob.take(0.0)
    if batch_ms is None:
        assert [o.frame for o in out] == ["response"] + [f"btc-{i}" for i in range(10)]
    else:
        assert [o.kind for o in out] == ["response", "batch"]
        assert out[1].event_ms == list(range(10))


def test_a_client_behind_conflates_latest_per_key_and_stays_bounded() -> None:
    ob = Outbound(max_backlog=10)   # behind from 5 queued frames
    for i in range(5):
        assert ob.push_update(f"btc-{i}", i, ("s", "BTC"), 0.0) is Push.QUEUED
    assert ob.behind
    assert ob.push_update("btc-5", 5, ("s", "BTC"), 0.0) is Push.CONFLATED
    assert ob.push_update("eth-6", 6, ("s", "ETH"), 0.0) is Push.QUEUED   # a new key: queued
    for i in range(7, 10_000):   # a reader that never drains
        symbol = ("BTC", "ETH")[i % 2]
        assert ob.push_update(f"{symbol.lower()}-{i}", i, ("s", symbol), 0.0) is Push.CONFLATED
    assert len(ob) == 6 and len(ob.entries) <= 12
    frames = [o.frame for o in ob.take(0.0)]
    # the older updates kept before the client fell behind, then the latest of each key
    assert frames == ["btc-0", "btc-1", "btc-2", "btc-3", "btc-9998", "eth-9999"]


def test_keyless_updates_never_conflate_and_overflow_only_when_bounded() -> None:
    """A replay (or released events) is pushed without a key: every update stays, even when
    the client is behind; a bounded push past ``max_backlog`` is refused (1013 for orders)."""
    ob = Outbound(max_backlog=4)
    for i in range(4):
        assert ob.push_update(f"btc-{i}", i, None, 0.0) is Push.QUEUED
    assert ob.behind
    assert ob.push_update("btc-4", 4, None, 0.0) is Push.OVERFLOW
    assert ob.push_update("btc-5", 5, None, 0.0, bounded=False) is Push.QUEUED
    assert ob.push_update("btc-6", 6, ("s", "BTC"), 0.0) is Push.QUEUED   # nothing keyed yet
    assert [o.frame for o in ob.take(0.0)] == ["btc-0", "btc-1", "btc-2", "btc-3", "btc-5",
                                               "btc-6"]


def test_an_update_handed_over_by_a_lane_is_due_at_once() -> None:
    """A batched lane already waited ``batch_ms``: its events must not wait for a second
    batch timer here (up to 2 x batch_ms after the event before this fix)."""
    ob = Outbound(max_backlog=100, batch_ms=50)
    ob.push_update("u1", 1, None, now=10.0, due=True)
    assert ob.wait_time(10.0) == 0.0
    assert [o.kind for o in ob.take(10.0)] == ["batch"]
    ob.push_update("u2", 2, None, now=20.0)               # own batch: due 50 ms later
    assert ob.wait_time(20.0) == pytest.approx(0.05)
    ob.push_update("u3", 3, None, now=20.01, due=True)    # a handed-over one brings it forward
    assert ob.wait_time(20.01) == 0.0
    (out,) = ob.take(20.01)
    assert out.event_ms == [2, 3]
    ob.push_update("u4", 4, None, now=30.0, due=True)
    ob.push_update("u5", 5, None, now=30.0)               # a later own update keeps it due
    assert ob.wait_time(30.0) == 0.0
