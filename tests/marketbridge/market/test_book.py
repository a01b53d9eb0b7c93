"""The server's book: snapshots, deltas, sequences, staleness, crossed books, bad input."""

import pytest

from marketbridge.market.book import (
    Book,
    BookView,
    InvalidBook,
    SnapshotNeeded,
    check_depth,
)


def _book() -> Book:
    book = Book()
    book.apply_snapshot([["100.0", "1"], ["99.5", "2"], ["101", "0.5"]],
                        [["102", "1"], ["103.00", "4"]], sequence=10)
    return book


def test_snapshot_orders_sides_best_first() -> None:
    view = _book().cut(10)
    assert view == BookView(bids=(("101", "0.5"), ("100.0", "1"), ("99.5", "2")),
                            asks=(("102", "1"), ("103.00", "4")))


def test_levels_keyed_by_value_latest_strings_kept() -> None:
    book = _book()
    book.apply_delta([["100", "3.0"]], [["103", "0.000"]], sequence=11)
    assert book.cut(10) == BookView(bids=(("101", "0.5"), ("100", "3.0"), ("99.5", "2")),
                                    asks=(("102", "1"),))
    assert book.sequence == 11


def test_repeated_price_in_one_delta_latest_wins() -> None:
    book = _book()
    book.apply_delta([["98", "1"], ["98.0", "0"], ["98.00", "7"]], [], sequence=11)
    assert book.bids.top(10)[-1] == ("98.00", "7")


def test_removing_an_absent_level_is_harmless() -> None:
    book = _book()
    book.apply_delta([["1", "0"]], [], sequence=11)
    assert len(book.bids) == 3


def test_cut_limits_each_side() -> None:
    book = Book()
    book.apply_snapshot([[str(1000 - i), "1"] for i in range(30)],
                        [[str(2000 + i), "1"] for i in range(30)], sequence=1)
    view = book.cut(25)
    assert len(view.bids) == len(view.asks) == 25
    assert view.bids[0] == ("1000", "1") and view.asks[-1] == ("2024", "1")


@pytest.mark.parametrize("depth", [0, 5, 11, 1000, "10"])
def test_bad_depth(depth: object) -> None:
    with pytest.raises(InvalidBook, match=f"depth must be one of 10, 25, 100, 500, got {depth!r}"):
        check_depth(depth)  # type: ignore[arg-type]


def test_delta_before_snapshot() -> None:
    with pytest.raises(SnapshotNeeded, match="^snapshot needed: no snapshot yet$"):
        Book().apply_delta([["1", "1"]], [], sequence=1)


@pytest.mark.parametrize("sequence", [10, 12, 9])
def test_gap_marks_stale_until_snapshot(sequence: int) -> None:
    book = _book()
    before = book.cut(10)
    with pytest.raises(SnapshotNeeded,
                       match=f"snapshot needed: delta sequence {sequence} does not follow 10"):
        book.apply_delta([["100", "5"]], [], sequence=sequence)
    assert book.stale and book.cut(10) == before
    with pytest.raises(SnapshotNeeded, match="snapshot needed: book is stale since sequence 10"):
        book.apply_delta([["100", "5"]], [], sequence=11)
    book.apply_snapshot([["1", "1"]], [["2", "1"]], sequence=50)
    assert not book.stale
    book.apply_delta([["1", "2"]], [], sequence=51)


def test_crossed_delta_refused_book_unchanged_and_stale() -> None:
    book = _book()
    before = book.cut(10)
    with pytest.raises(SnapshotNeeded, match="snapshot needed: delta 11 would cross the book"):
        book.apply_delta([["99.5", "0"], ["102", "1"], ["100", "9"]], [["102.5", "1"]],
                         sequence=11)
    assert book.cut(10) == before and book.stale and book.sequence == 10


def test_touching_bid_and_ask_is_crossed() -> None:
    book = _book()
    with pytest.raises(SnapshotNeeded, match="cross"):
        book.apply_delta([], [["101", "1"]], sequence=11)


def test_crossed_snapshot_is_invalid_and_keeps_old_book() -> None:
    book = _book()
    before = book.cut(10)
    with pytest.raises(InvalidBook, match=r"snapshot is crossed \(best bid >= best ask\)"):
        book.apply_snapshot([["5", "1"]], [["5", "1"]], sequence=99)
    assert book.cut(10) == before and book.sequence == 10 and not book.stale


@pytest.mark.parametrize("bids,asks,message", [
    ([["100", "-1"]], [], r"bids\[1\] qty must be a plain non-negative decimal .*\(negative\)"),
    ([], [["1e3", "1"]], r"asks\[0\] price must be .*\(no exponents\)"),
    ([["0", "1"]], [], r"bids\[1\] price must be greater than zero"),
    ([["NaN", "1"]], [], r"bids\[1\] price must be a plain"),
    ([["1", "1", "x"]], [], r"bids\[1\] must be \[price, qty\], got 3 items"),
    ([["1", 1.5]], [], r"bids\[1\] qty must be a decimal string, got float"),
])
def test_bad_delta_is_invalid_and_changes_nothing(bids: list, asks: list, message: str) -> None:
    book = _book()
    before = book.cut(10)
    with pytest.raises(InvalidBook, match=message):
        book.apply_delta([["99", "1"]] + bids, asks, sequence=11)
    assert book.cut(10) == before and not book.stale and book.sequence == 10
    book.apply_delta([], [], sequence=11)


def test_a_remembered_zero_is_still_refused_as_a_price() -> None:
    book = _book()
    book.apply_delta([["99", "0"]], [], sequence=11)   # "0" accepted (and remembered) as a qty
    with pytest.raises(InvalidBook, match=r"bids\[0\] price must be greater than zero, got '0'"):
        book.apply_delta([["0", "1"]], [], sequence=12)
    assert book.sequence == 11 and not book.stale


def test_zero_qty_in_snapshot_is_invalid() -> None:
    with pytest.raises(InvalidBook, match=r"asks\[1\] qty is zero; a snapshot lists only"):
        Book().apply_snapshot([], [["1", "1"], ["2", "0.0"]], sequence=1)
