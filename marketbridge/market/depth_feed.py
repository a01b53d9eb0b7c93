"""What one subscription depth of a book sends after each change (server side).

The service keeps one :class:`DepthFeed` per book and depth that has subscribers: it holds
the cut the subscribers' copies equal, so each delta costs at most one cut and one diff per
depth in use, whatever the number of subscribers (they share the frame). After a snapshot the
service makes new feeds: subscribers get the new cut as a snapshot, not a diff.

Most deltas touch levels far from the top; the book reports the best rank a delta changed
(``Book.touched``), so a feed whose depth lies above it sends nothing and computes nothing,
and one that is hit diffs only from that rank down.
"""

from __future__ import annotations

from marketbridge.market.book import Book, BookView, check_depth
from marketbridge.market.checksum import CHECKSUM_LEVELS, checksum
from marketbridge.market.merge import BookUpdate, diff_side


class DepthFeed:
    """The last cut sent at ``depth``; :meth:`advance` gives the update to the book's new state."""

    def __init__(self, book: Book, depth: int) -> None:
        self.book = book
        self.depth = check_depth(depth)
        self.view = book.cut(depth)
        self.checksum = checksum(self.view.bids, self.view.asks)

    def snapshot(self) -> tuple[BookView, int]:
        """The cut a new subscriber starts from, with its checksum."""
        return self.view, self.checksum

    def advance(self, top_checksum: int | None = None) -> BookUpdate:
        """The update from the last cut to the book now; falsy when the depth did not change.

        Call it after every delta the book accepted (``Book.touched`` describes the last one).
        ``top_checksum``: the checksum of the book's top 10 after the delta, when the caller
        has it (it is the same at every depth, so feeds of one book can share one).
        """
        bid_rank, ask_rank = self.book.touched
        if bid_rank >= self.depth and ask_rank >= self.depth:
            return BookUpdate((), (), self.checksum)
        before, view = self.view, self.book.cut(self.depth)
        self.view = view
        if min(bid_rank, ask_rank) < CHECKSUM_LEVELS:
            self.checksum = (checksum(view.bids, view.asks) if top_checksum is None
                             else top_checksum)
        return BookUpdate(diff_side(before.bids[bid_rank:], view.bids[bid_rank:]),
                          diff_side(before.asks[ask_rank:], view.asks[ask_rank:]),
                          self.checksum)
