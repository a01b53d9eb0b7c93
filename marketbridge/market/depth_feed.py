"""What one subscription depth of a book sends after each change (server side).

Subscribers at one depth share one frame per delta, so the service computes each depth's
update once, whatever the number of subscribers. It derives it from what the delta did
(:meth:`marketbridge.market.book.Book.cut_update`: the few prices named, plus the levels that
crossed the cut's end) rather than by diffing two cuts, so a delta costs the same at depth 500
as at depth 10, and a depth whose cut the delta left alone costs a comparison. After a snapshot
subscribers get the new cut as a snapshot, not an update.
"""

from __future__ import annotations

from marketbridge.market.book import Book, BookView, check_depth
from marketbridge.market.merge import BookUpdate


class DepthFeed:
    """One depth of a book: the cut its subscribers hold, and the update after each delta."""

    def __init__(self, book: Book, depth: int) -> None:
        self.book = book
        self.depth = check_depth(depth)

    @property
    def view(self) -> BookView:
        """The cut the subscribers' copies equal (after :meth:`advance` for the last delta)."""
        return self.book.cut(self.depth)

    def snapshot(self) -> tuple[BookView, int]:
        """The cut a new subscriber starts from, with its checksum."""
        return self.view, self.book.checksum()

    def advance(self) -> BookUpdate:
        """The update from the cut before the book's last delta to the cut now; falsy when
        that delta left this depth's cut alone. Call it once per delta the book accepted."""
        bids, asks = self.book.cut_update(self.depth)
        return BookUpdate(bids, asks, self.book.checksum())
