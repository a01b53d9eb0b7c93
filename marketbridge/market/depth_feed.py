"""What one subscription depth of a book sends after each change (server side).

The service keeps one :class:`DepthFeed` per book and depth that has subscribers: it holds
the cut the subscribers' copies equal, so each delta costs one cut and one diff per depth in
use, whatever the number of subscribers (they share the frame).
"""

from __future__ import annotations

from marketbridge.market.book import Book, BookView, check_depth
from marketbridge.market.checksum import checksum
from marketbridge.market.merge import BookUpdate, diff


class DepthFeed:
    """The last cut sent at ``depth``; :meth:`advance` gives the update to the book's new state."""

    def __init__(self, book: Book, depth: int) -> None:
        self.book = book
        self.depth = check_depth(depth)
        self.view = book.cut(depth)

    def snapshot(self) -> tuple[BookView, int]:
        """The cut a new subscriber starts from, with its checksum."""
        return self.view, checksum(self.view.bids, self.view.asks)

    def advance(self) -> BookUpdate:
        """Diff from the last cut to now (falsy when nothing inside the depth changed)."""
        view = self.book.cut(self.depth)
        update = diff(self.view, view)
        self.view = view
        return update

    def reset(self) -> None:
        """After a snapshot: subscribers get a fresh snapshot, not a diff."""
        self.view = self.book.cut(self.depth)
