"""Book integrity: clients fed per-depth updates (or merges of them) always equal the server.

A hypothesis state machine plays random snapshots and deltas (crossing and out-of-sequence
ones included) into the server's book. For each depth one client applies every update as it
comes and another, "behind", applies merges of its pending updates at random moments. After
every step the first, and after every merge the second, equals ``cut(depth)`` and its checksum
verifies (ClientBook.apply raises on a mismatch).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from marketbridge.market.book import Book, BookView, SnapshotNeeded
from marketbridge.market.client_book import ChecksumMismatch, ClientBook
from marketbridge.market.depth_feed import DepthFeed
from marketbridge.market.merge import BookUpdate, diff, merge

DEPTHS = (10, 25, 100)


def _price(value: int, style: int) -> str:
    """One price value in several spellings ("7", "7.0", "7.00"): one level by value."""
    return [str(value), f"{value}.0", f"{value}.00"][style]


bid_prices = st.builds(_price, st.integers(1, 45), st.integers(0, 2))
ask_prices = st.builds(_price, st.integers(46, 90), st.integers(0, 2))
any_prices = st.builds(_price, st.integers(1, 90), st.integers(0, 2))
quantities = st.sampled_from(["1", "2.5", "0.10", "0.00100000", "3"])
delta_quantities = st.sampled_from(["0", "0.000", "1", "2.5", "0.10", "7"])


class BookIntegrity(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.book = Book()
        self.sequence = 0
        self.feeds: dict[int, DepthFeed] = {}
        self.fast: dict[int, ClientBook] = {}
        self.slow: dict[int, ClientBook] = {}
        self.pending: dict[int, list[BookUpdate]] = {}
        self.cuts: dict[int, BookView] = {}

    @rule(bids=st.lists(st.tuples(bid_prices, quantities), max_size=40),
          asks=st.lists(st.tuples(ask_prices, quantities), max_size=40))
    def snapshot(self, bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> None:
        self.sequence += 1
        self.book.apply_snapshot(bids, asks, self.sequence)
        for depth in DEPTHS:
            self.feeds[depth] = DepthFeed(self.book, depth)
            view, _ = self.feeds[depth].snapshot()
            self.cuts[depth] = view
            for clients in (self.fast, self.slow):
                clients[depth] = ClientBook(depth)
                clients[depth].load(view.bids, view.asks)
            self.pending[depth] = []

    @precondition(lambda self: self.feeds)
    @rule(bids=st.lists(st.tuples(st.one_of(bid_prices, any_prices), delta_quantities),
                        max_size=6),
          asks=st.lists(st.tuples(ask_prices, delta_quantities), max_size=6),
          skip=st.sampled_from([1, 1, 1, 1, 1, 1, 1, 1, 2, 0]))
    def delta(self, bids: list[tuple[str, str]], asks: list[tuple[str, str]], skip: int) -> None:
        self.sequence += skip
        try:
            self.book.apply_delta(bids, asks, self.sequence)
        except SnapshotNeeded:
            assert self.book.stale
            return
        assert skip == 1
        for depth in DEPTHS:
            update = self.feeds[depth].advance()
            after = self.book.cut(depth)
            # derived from the delta, it is exactly the diff of the two cuts (order included)
            assert update == diff(self.cuts[depth], after)
            self.cuts[depth] = after
            if update:
                self.fast[depth].apply(update)
                self.pending[depth].append(update)

    @precondition(lambda self: any(self.pending.values()))
    @rule()
    def catch_up(self) -> None:
        for depth in DEPTHS:
            if self.pending[depth]:
                self.slow[depth].apply(merge(self.pending[depth]))
                self.pending[depth] = []
                assert self.slow[depth].view() == self.book.cut(depth)

    @invariant()
    def fast_clients_match(self) -> None:
        for depth, client in self.fast.items():
            view = self.book.cut(depth)
            assert client.view() == view
            assert client.checksum() == diff(view, view).checksum


TestBookIntegrity = BookIntegrity.TestCase
TestBookIntegrity.settings = settings(max_examples=30, stateful_step_count=30, deadline=None,
                                      suppress_health_check=[HealthCheck.too_slow])


def _deep_book() -> Book:
    book = Book()
    book.apply_snapshot([[str(100 - i), "1"] for i in range(12)], [["200", "1"]], sequence=1)
    return book


def test_removed_level_pulls_in_one_from_beyond_depth() -> None:
    book = _deep_book()
    feed = DepthFeed(book, 10)
    client = ClientBook(10)
    view, _ = feed.snapshot()
    client.load(view.bids, view.asks)
    book.apply_delta([["100", "0"]], [], sequence=2)
    update = feed.advance()
    assert update.bids == (("100", "0"), ("90", "1"))   # 90 was the 11th level
    client.apply(update)
    assert client.view() == book.cut(10)


def test_better_level_pushes_the_last_one_out() -> None:
    book = _deep_book()
    feed = DepthFeed(book, 10)
    book.apply_delta([["150", "2"]], [], sequence=2)
    assert feed.advance().bids == (("91", "0"), ("150", "2"))


def test_change_beyond_depth_sends_nothing() -> None:
    book = _deep_book()
    feed = DepthFeed(book, 10)
    book.apply_delta([["89", "5"]], [], sequence=2)
    assert not feed.advance()


def test_respelled_price_is_sent_with_new_strings() -> None:
    book = _deep_book()
    feed = DepthFeed(book, 10)
    book.apply_delta([["100.0", "1"]], [], sequence=2)
    assert feed.advance().bids == (("100.0", "1"),)


def test_merge_latest_wins_and_keeps_last_checksum() -> None:
    first = BookUpdate((("10", "1"), ("9", "1")), (("11", "1"),), checksum=1)
    second = BookUpdate((("10.0", "0"),), (("11", "2"), ("12", "1")), checksum=2)
    merged = merge([first, second])
    assert merged == BookUpdate((("10.0", "0"), ("9", "1")), (("11", "2"), ("12", "1")), 2)


def test_merge_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="nothing to merge"):
        merge([])


def test_client_detects_a_wrong_checksum() -> None:
    client = ClientBook(10)
    client.load([("10", "1")], [("11", "1")])
    with pytest.raises(ChecksumMismatch, match="checksum .* != 12345"):
        client.apply(BookUpdate((("10", "2"),), (), checksum=12345))


def test_client_truncates_to_its_depth() -> None:
    client = ClientBook(10)
    client.load([(str(i), "1") for i in range(1, 16)], [("100", "1")])
    assert len(client.view().bids) == 10 and client.view().bids[0] == ("15", "1")
