"""Order books in the service: validate each publisher message against the book, store it.

The service keeps each book it writes in memory (a :class:`marketbridge.market.book.Book` with
one :class:`~marketbridge.market.depth_feed.DepthFeed` per allowed depth), because validating
a delta needs the book: its sequence (a gap means we missed an update) and its levels (a delta
must not cross it). Redis stays the truth: a book not in memory is loaded from Redis first,
and every write checks that Redis still holds the sequence the memory copy is at
(:mod:`cache_service.book_store`), so a restart or a second writer is noticed, not merged.

Each accepted message becomes one stream entry holding, per depth, the update a subscriber at
that depth needs (the diff of that depth's cut, with the checksum of the new cut): computed
once here, for every subscriber of every bridge (docs/market_data.md, "Update for a depth").

Refusals, per SPEC §9.2:

- malformed (bad decimals, negative quantity, a crossed snapshot, too many levels, a delta
  before any snapshot): INVALID_ARGUMENT, nothing stored, the book untouched;
- a delta whose sequence does not follow, or that would cross the book: FAILED_PRECONDITION
  ("snapshot needed: ..."), and the book is marked stale (in Redis, and on its stream, so
  subscribers are told) until the next snapshot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from cache_service import validation, wire
from cache_service.book_store import ANY_SEQUENCE, BookConflict, BookStore, BookWrite, StoredBook
from cache_service.errors import FailedPrecondition, InvalidArgument, ServiceError
from cache_service.metrics import Metrics
from cache_service.pinned import PinnedConnection
from marketbridge.api.v1 import cache_pb2
from marketbridge.market.book import (DEFAULT_DEPTH, DEPTHS, MAX_DEPTH, Book, BookView, InvalidBook,
                                      SnapshotNeeded, check_depth)
from marketbridge.market.checksum import checksum
from marketbridge.market.depth_feed import DepthFeed
from marketbridge.market.ladder import Level
from marketbridge.market.merge import BookUpdate

MAX_MESSAGE_LEVELS = 5000   # per side of one message
MAX_BOOK_LEVELS = 10000     # per side of a book
ENTRY_SNAPSHOT, ENTRY_DELTA, ENTRY_STALE = b"s", b"d", b"x"

BookKey = tuple[str, str]


def update_field(depth: int) -> bytes:
    """The stream-entry field holding the update of ``depth``'s cut (``u25``)."""
    return f"u{depth}".encode()


def requested_depth(depth: int) -> int:
    """A request's depth: 0 means the default; anything else must be allowed (INVALID_ARGUMENT)."""
    try:
        return check_depth(depth or DEFAULT_DEPTH)
    except InvalidBook as exc:
        raise InvalidArgument(str(exc)) from None


def levels(raw: Sequence[Level]) -> list[cache_pb2.BookLevel]:
    return [cache_pb2.BookLevel(price=price, qty=qty) for price, qty in raw]


def book_message(exchange: str, symbol: str, view: BookView, depth: int, *, sequence: int | None,
                 time: float, seq: str, stale: bool = False) -> cache_pb2.Book:
    """A Book message of a cut; the checksum is the cut's (the same for every depth >= 10)."""
    return cache_pb2.Book(exchange=exchange, symbol=symbol, bids=levels(view.bids[:depth]),
                          asks=levels(view.asks[:depth]), checksum=checksum(view.bids, view.asks),
                          time=time, sequence=sequence or 0, seq=seq, depth=depth, stale=stale)


def cut_snapshot(stored: cache_pb2.Book, depth: int) -> cache_pb2.Book:
    """A snapshot entry's Book (cut to MAX_DEPTH) cut to ``depth``: its checksum still holds."""
    book = cache_pb2.Book()
    book.CopyFrom(stored)
    del book.bids[depth:]
    del book.asks[depth:]
    book.depth = depth
    return book


def book_from_stored(stored: StoredBook) -> Book:
    """The in-memory book of what Redis holds (levels, sequence, staleness)."""
    book = Book()
    book.bids.replace(stored.bids)
    book.asks.replace(stored.asks)
    book.sequence = stored.sequence
    book.stale = bool(stored.stale) or stored.sequence is None
    return book


@dataclass
class _Tracked:
    """A book this service writes, and a feed per depth its subscribers may hold."""

    book: Book
    feeds: tuple[DepthFeed, ...]

    @classmethod
    def of(cls, book: Book) -> _Tracked:
        return cls(book, tuple(DepthFeed(book, depth) for depth in sorted(DEPTHS)))

    def updates(self, key: BookKey, request: cache_pb2.PublishBookRequest) -> list[tuple[int, bytes]]:
        """Each depth's encoded BookUpdate after the delta just applied (depths it left alone
        have none). Depths whose updates are equal (the whole book fits both cuts, or the
        delta moved nothing across the larger one's end) share one encoding."""
        out: list[tuple[int, bytes]] = []
        last: BookUpdate | None = None
        encoded = b""
        for feed in self.feeds:
            update = feed.advance()
            if not update:
                continue
            if update != last:
                last, encoded = update, wire.book_update(key[0], key[1], update.bids, update.asks,
                                                         update.checksum, request.time, request.sequence)
            out.append((feed.depth, encoded))
        return out


def _pairs(raw: Sequence[cache_pb2.BookLevel], side: str) -> list[tuple[str, str]]:
    if len(raw) > MAX_MESSAGE_LEVELS:
        raise InvalidArgument(f"{side}: {len(raw)} levels in one message; at most {MAX_MESSAGE_LEVELS}")
    return [(level.price, level.qty) for level in raw]


class BookKeeper:
    """Applies PublishBook messages to the books and writes them, in order, atomically."""

    def __init__(self, store: BookStore, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics
        self._books: dict[BookKey, _Tracked] = {}
        self._stale: set[BookKey] = set()
        self._lock = asyncio.Lock()   # one batch at a time: memory and Redis move together

    async def publish(self, requests: Sequence[cache_pb2.PublishBookRequest],
                      conn: PinnedConnection | None = None) -> list[str]:
        """Apply and store ``requests`` in order; their seqs.

        At the first refused message, the ones before it are stored (and a stale mark, when
        the refusal makes the book stale), then its error is raised."""
        async with self._lock:
            writes: list[BookWrite] = []
            touched: list[BookKey] = []
            error: ServiceError | None = None
            for request in requests:
                try:
                    key = (validation.require_id("exchange", request.exchange),
                           validation.require_id("symbol", request.symbol))
                    tracked = await self._tracked(key)
                    touched.append(key)
                    writes.append(self._apply(key, tracked, request))
                except _Refused as refused:
                    accepted = len(writes)
                    if refused.stale_mark is not None:
                        writes.append(refused.stale_mark)
                    error = refused.error
                    break
                except ServiceError as exc:
                    accepted, error = len(writes), exc
                    break
            seqs = await self._store(writes, touched, conn) if writes else []
            self.metrics.books_stale.set(len(self._stale))
            if error is not None:
                raise type(error)(f"{error.message} ({accepted} earlier messages of this call's "
                                  "last batch were stored)")
            return seqs

    async def _store(self, writes: list[BookWrite], touched: list[BookKey],
                     conn: PinnedConnection | None) -> list[str]:
        """Write; on any failure forget the books involved, so they are reloaded from Redis."""
        try:
            return await self.store.write(writes, conn)
        except BookConflict as exc:
            self._forget(touched)
            raise FailedPrecondition(f"snapshot needed: another writer changed the book ({exc})") from None
        except BaseException:
            self._forget(touched)
            raise

    def _forget(self, keys: Sequence[BookKey]) -> None:
        for key in keys:
            self._books.pop(key, None)
            self._stale.discard(key)

    async def _tracked(self, key: BookKey) -> _Tracked:
        tracked = self._books.get(key)
        if tracked is None:
            stored = await self.store.load(*key)
            tracked = _Tracked.of(Book() if stored is None else book_from_stored(stored))
            self._books[key] = tracked
            if stored is not None and stored.stale:
                self._stale.add(key)
        return tracked

    def _apply(self, key: BookKey, tracked: _Tracked, request: cache_pb2.PublishBookRequest) -> BookWrite:
        bids, asks = _pairs(request.bids, "bids"), _pairs(request.asks, "asks")
        if not (request.time >= 0 and request.time < float("inf")):
            raise InvalidArgument(f"time must be a finite non-negative unix time, got {request.time}")
        if request.snapshot:
            return self._snapshot(key, tracked, bids, asks, request)
        return self._delta(key, tracked, bids, asks, request)

    def _snapshot(self, key: BookKey, tracked: _Tracked, bids: list[Level], asks: list[Level],
                  request: cache_pb2.PublishBookRequest) -> BookWrite:
        if len(bids) > MAX_BOOK_LEVELS or len(asks) > MAX_BOOK_LEVELS:
            raise InvalidArgument(f"a book holds at most {MAX_BOOK_LEVELS} levels a side")
        book = tracked.book
        try:
            book.apply_snapshot(bids, asks, request.sequence)
        except InvalidBook as exc:
            raise InvalidArgument(str(exc)) from None
        self._stale.discard(key)
        write = BookWrite(key[0], key[1], ANY_SEQUENCE, str(request.sequence), replace=True)
        for side, ladder in (("b", book.bids), ("a", book.asks)):
            for level in ladder.top(len(ladder)):
                write.set_level(side, Decimal(level[0]), level)
        write.sets += [("@sequence", str(request.sequence)), ("@time", repr(request.time))]
        cut = book_message(key[0], key[1], book.cut(MAX_DEPTH), MAX_DEPTH, sequence=request.sequence,
                           time=request.time, seq="")
        write.entry = [("k", ENTRY_SNAPSHOT), ("d", cut.SerializeToString())]
        return write

    def _delta(self, key: BookKey, tracked: _Tracked, bids: list[Level], asks: list[Level],
               request: cache_pb2.PublishBookRequest) -> BookWrite:
        book = tracked.book
        if book.sequence is None:
            raise InvalidArgument(f"no snapshot yet for {key[1]} on {key[0]}: send a snapshot first")
        prior, was_stale = book.sequence, book.stale
        try:
            bid_changes, ask_changes = book.apply_delta(bids, asks, request.sequence)
        except InvalidBook as exc:
            raise InvalidArgument(str(exc)) from None
        except SnapshotNeeded as exc:
            self._stale.add(key)
            mark = None if was_stale else self._stale_mark(key, prior, exc.reason)
            raise _Refused(FailedPrecondition(str(exc)), mark) from None
        write = BookWrite(key[0], key[1], str(prior), str(request.sequence))
        for price, _ in bid_changes:
            write.set_level("b", price, book.bids.get(price))
        for price, _ in ask_changes:
            write.set_level("a", price, book.asks.get(price))
        write.sets += [("@sequence", str(request.sequence)), ("@time", repr(request.time))]
        write.entry = [("k", ENTRY_DELTA)]
        for depth, encoded in tracked.updates(key, request):
            write.entry.append((update_field(depth).decode(), encoded))
        return write

    def _stale_mark(self, key: BookKey, sequence: int, reason: str) -> BookWrite:
        mark = BookWrite(key[0], key[1], str(sequence), str(sequence))
        mark.sets.append(("@stale", reason))
        stale = cache_pb2.BookStale(reason=f"snapshot needed: {reason}", sequence=sequence)
        mark.entry = [("k", ENTRY_STALE), ("d", stale.SerializeToString())]
        return mark

    # ------------------------------------------------------------ reads

    async def get(self, exchange: str, symbol: str, depth: int) -> cache_pb2.Book | None:
        """The book cut to ``depth`` as Redis holds it (``stale`` set when it is), or None."""
        found = await self._read(exchange, symbol, depth)
        return None if found is None else found[0]

    async def opening(self, exchange: str, symbol: str, depth: int) -> cache_pb2.BookEvent | None:
        """A stream's first event: the book now, or (stale) why there is none to show; None
        when the book does not exist yet (its first snapshot will come through the feed)."""
        found = await self._read(exchange, symbol, depth)
        if found is None:
            return None
        book, stale = found
        if stale:
            return cache_pb2.BookEvent(seq=book.seq, stale=cache_pb2.BookStale(
                reason=f"snapshot needed: {stale}", sequence=book.sequence))
        return cache_pb2.BookEvent(seq=book.seq, snapshot=book)

    async def _read(self, exchange: str, symbol: str, depth: int) -> tuple[cache_pb2.Book, str] | None:
        stored = await self.store.load(exchange, symbol)
        if stored is None:
            return None
        book = book_from_stored(stored)
        stale = stored.stale or ("no snapshot yet" if stored.sequence is None else "")
        view = BookView(tuple(book.bids.top(depth)), tuple(book.asks.top(depth)))
        return book_message(exchange, symbol, view, depth, sequence=stored.sequence, time=stored.time,
                            seq=stored.seq, stale=bool(stale)), stale


def book_filter(depth: int) -> Callable[[dict[bytes, bytes]], bool]:
    """The entries a stream at ``depth`` carries: snapshots, stale marks, and the deltas that
    changed that depth's cut."""
    field = update_field(depth)
    return lambda fields: fields.get(b"k") != ENTRY_DELTA or field in fields


def book_entry_bytes(seq: str, fields: dict[bytes, bytes], depth: int) -> bytes:
    """The serialized BookEvent of a stream entry at ``depth`` (one :func:`book_filter`
    passed). A delta's update is stored encoded: it is framed as it is, not parsed and
    serialized again (most entries are deltas)."""
    if fields[b"k"] == ENTRY_DELTA:
        return wire.book_update_event(seq, fields[update_field(depth)])
    return book_entry_event(seq, fields, depth).SerializeToString()


def book_entry_event(seq: str, fields: dict[bytes, bytes], depth: int) -> cache_pb2.BookEvent:
    """The BookEvent of a stream entry at ``depth`` (one the :func:`book_filter` passed)."""
    kind = fields[b"k"]
    if kind == ENTRY_DELTA:
        return cache_pb2.BookEvent(seq=seq, update=cache_pb2.BookUpdate.FromString(fields[update_field(depth)]))
    if kind == ENTRY_STALE:
        return cache_pb2.BookEvent(seq=seq, stale=cache_pb2.BookStale.FromString(fields[b"d"]))
    snapshot = cut_snapshot(cache_pb2.Book.FromString(fields[b"d"]), depth)
    snapshot.seq = seq
    return cache_pb2.BookEvent(seq=seq, snapshot=snapshot)


class _Refused(Exception):
    """A delta the book cannot take: its error, and the stale mark to store (first refusal only)."""

    def __init__(self, error: ServiceError, stale_mark: BookWrite | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.stale_mark = stale_mark
