"""A subscription's set-up, sans I/O: holding, discarding for a catch-up, releasing."""

from __future__ import annotations

from bridge import codec
from bridge.events import Event, seq_key
from bridge.setup import Setup


def _event(seq: str) -> Event:
    return Event(seq, seq_key(seq), "BTC", "", codec.update_tail(seq, "{}"), "{}")


def test_held_events_overflow_closes_unless_a_catch_up_makes_up_for_them() -> None:
    plain = Setup()
    assert plain.hold(_event("1-0"), 2) and plain.hold(_event("2-0"), 2)
    assert not plain.hold(_event("3-0"), 2)            # nothing would replay it: close
    resuming = Setup(catching_up=True)
    for n in (1, 2, 3):
        assert resuming.hold(_event(f"{n}-0"), 2)
    assert resuming.held == [] and resuming.dropped_key == (3, 0)   # discarded, replay owes 3-0
    assert not resuming.caught_up((0, 0))
    assert not resuming.caught_up(seq_key("2-0"))
    assert resuming.caught_up(seq_key("3-0"))


def test_release_sends_only_what_the_catch_up_did_not() -> None:
    setup = Setup(catching_up=True)
    for n in (4, 5, 6):
        setup.hold(_event(f"{n}-0"), 10)
    assert [e.seq for e in setup.release(seq_key("5-0"))] == ["6-0"]
    assert setup.held == []
