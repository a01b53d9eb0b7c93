"""A slow client's book updates are merged, never dropped, and the checksum stays valid
(SPEC §9.3), decided by the outbound queue without sockets; and the bridge's self-check."""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.book_check import BookCheck
from bridge.codec import update_prefix
from bridge.outbound import Outbound, Push
from bridge.pending_book import BookDelta, PendingBook
from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.market.book import Book
from marketbridge.market.client_book import ClientBook
from marketbridge.market.depth_feed import DepthFeed
from marketbridge.market.merge import BookUpdate

PREFIX = update_prefix("book_update", "book-1")
KEY = ("book-1", "")


def pending(seq: int, update: BookUpdate) -> PendingBook:
    return PendingBook(PREFIX, f"{seq}-0", BookDelta({"exchange": "x", "symbol": "S", "time": 1.0}, update))


def frames_to_copy(copy: ClientBook, frames: list[str]) -> None:
    for frame in frames:
        result = json.loads(frame)["result"]
        copy.apply(BookUpdate(tuple(map(tuple, result["bids"])), tuple(map(tuple, result["asks"])),
                              result["checksum"]))


def random_book_updates(rng: random.Random, count: int, depth: int) -> tuple[ClientBook, list[BookUpdate], Book]:
    """A real server book fed random deltas, and the depth feed's updates for each."""
    book = Book()
    book.apply_snapshot([(str(p), "1") for p in range(1, 41)], [(str(p), "1") for p in range(41, 81)], 1)
    feed = DepthFeed(book, depth)
    start = ClientBook(depth)
    start.load(feed.view.bids, feed.view.asks)
    updates = []
    for n in range(count):
        bids = [(str(rng.randint(1, 40)), rng.choice(["0", "2", "3.5"])) for _ in range(rng.randint(0, 3))]
        asks = [(str(rng.randint(41, 80)), rng.choice(["0", "4"])) for _ in range(rng.randint(0, 3))]
        book.apply_delta(bids, asks, 2 + n)
        update = feed.advance()
        if update:
            updates.append(update)
    return start, updates, book


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), backlog=st.integers(2, 12))
def test_a_client_behind_gets_merged_updates_that_verify(seed: int, backlog: int) -> None:
    copy, updates, book = random_book_updates(random.Random(seed), 80, 10)
    ob = Outbound(max_backlog=backlog)
    merged = 0
    for n, update in enumerate(updates):
        p = pending(n + 1, update)
        result = ob.push_update(p.frame(), n, KEY, 0.0, book=p)
        assert result is not Push.OVERFLOW          # book updates are never refused
        merged += result is Push.CONFLATED
    frames = [o.frame for o in ob.take(0.0)]
    assert len(frames) + merged == len(updates)
    frames_to_copy(copy, frames)                    # each checksum verifies, or this raises
    cut = book.cut(10)
    assert (copy.view().bids, copy.view().asks) == (cut.bids, cut.asks)
    if frames:
        assert json.loads(frames[-1])["seq"] == f"{len(updates)}-0"   # the newest seq


def test_a_snapshot_or_stale_mark_is_a_barrier_to_merging() -> None:
    ob = Outbound(max_backlog=2)
    a = pending(1, BookUpdate((("10", "1"),), (), 1))
    b = pending(3, BookUpdate((("10", "2"),), (), 3))
    ob.push_update(a.frame(), 1, KEY, 0.0, book=a)
    ob.push_update("snapshot-2", 2, KEY, 0.0)       # behind now; a snapshot never merges
    assert ob.push_update(b.frame(), 3, KEY, 0.0, book=b) is Push.QUEUED
    frames = [o.frame for o in ob.take(0.0)]
    assert frames[1] == "snapshot-2" and json.loads(frames[2])["seq"] == "3-0"
    assert len(frames) == 3


def test_a_client_that_keeps_up_gets_every_update() -> None:
    ob = Outbound(max_backlog=1000)
    for n in range(10):
        p = pending(n + 1, BookUpdate((("10", str(n + 1)),), (), n))
        assert ob.push_update(p.frame(), n, KEY, 0.0, book=p) is Push.QUEUED
    assert len(ob.take(0.0)) == 10


def _book(bids: list[tuple[str, str]], asks: list[tuple[str, str]], checksum: int) -> pb.Book:
    return pb.Book(symbol="S", bids=[pb.BookLevel(price=p, qty=q) for p, q in bids],
                   asks=[pb.BookLevel(price=p, qty=q) for p, q in asks], checksum=checksum)


def test_the_self_check_counts_a_wrong_checksum_and_waits_for_a_snapshot() -> None:
    copy = ClientBook(10)
    copy.load([("10", "1")], [("11", "1")])
    check = BookCheck(10)
    assert check.verify(pb.BookUpdate(checksum=1))              # nothing to check before a snapshot
    assert check.verify(_book([("10", "1")], [("11", "1")], copy.checksum()))
    good = ClientBook(10)
    good.load([("10", "2")], [("11", "1")])
    assert check.verify(pb.BookUpdate(bids=[pb.BookLevel(price="10", qty="2")], checksum=good.checksum()))
    assert not check.verify(pb.BookUpdate(bids=[pb.BookLevel(price="10", qty="3")], checksum=123))
    assert check.verify(pb.BookUpdate(checksum=5))              # waiting for a snapshot again
    assert not check.verify(_book([("10", "1")], [("11", "1")], 42))
    assert check.verify(pb.BookStale(reason="gap"))
