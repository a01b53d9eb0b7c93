"""Seq ids order numerically, and carry their event time."""

from __future__ import annotations

from bridge.events import seq_key, seq_time_ms


def test_seq_order() -> None:
    assert seq_key("10-0") > seq_key("9-5")
    assert seq_key("10-1") > seq_key("10-0")
    assert seq_time_ms("1700000000123-4") == 1700000000123
