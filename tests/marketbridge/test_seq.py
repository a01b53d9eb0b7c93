"""Seq ids (marketbridge/seq.py): one order for both services."""

from __future__ import annotations

from marketbridge.seq import format_seq, parse_seq, seq_key, seq_time_ms


def test_ids_order_by_number_not_by_text() -> None:
    assert "9-0" > "10-0"
    assert seq_key("10-0") > seq_key("9-5")
    assert seq_key("10-1") > seq_key("10-0")
    assert seq_key("17") == (17, 0)


def test_an_id_carries_the_time_redis_appended_it() -> None:
    assert seq_time_ms("1700000000123-4") == 1700000000123


def test_a_client_id_is_checked_and_printed_back() -> None:
    assert parse_seq("1700000000000-5") == (1700000000000, 5)
    assert parse_seq("17") == (17, 0)
    for bad in ("1-", "-1", "x-0", "", "1-2-3", "1" * 21, "1-0\n", "\u0661-\u0660", " 1-0"):
        assert parse_seq(bad) is None
    assert format_seq((1, 2)) == "1-2"
    assert format_seq(seq_key("5-6")) == "5-6"
