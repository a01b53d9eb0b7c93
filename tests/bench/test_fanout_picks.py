"""bench fanout --pick: each client's own random symbols, and what it is owed of them."""

from __future__ import annotations

from bench.fanout import CounterClient, client_picks
from bench.ticks import symbol_names


def test_each_client_gets_its_own_seeded_draw_of_distinct_symbols() -> None:
    symbols = symbol_names(500)
    picks = client_picks(symbols, 5000, 5)
    assert picks is not None and len(picks) == 5000
    assert all(len(set(p)) == 5 and set(p) <= set(symbols) for p in picks)
    assert len({tuple(p) for p in picks}) > 4900          # distinct subscriptions
    assert client_picks(symbols, 5000, 5) == picks       # the same draw every run
    assert client_picks(symbols, 10, None) is None and client_picks(symbols, 10, 500) is None


def test_a_client_is_owed_only_its_own_symbols() -> None:
    client = CounterClient()
    client.symbols = ["A", "C"]
    final = {"A": 3, "B": 7, "C": 2}
    assert client.own(final) == {"A": 3, "C": 2}
    client.received = 4
    assert client.holes(final) == 1
    client.received = 5
    assert client.finished(final, 0.0)
