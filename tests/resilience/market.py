"""Market-data publishers for the resilience scenarios: trades and order books, through the real
bulk-ingest calls (``PublishTrades``, ``PublishBook``), each acknowledgement into the ledger.

Both stream calls of a few paced messages each (a call ~0.1 s), so a fault lands mid-call:

- :class:`TradePublisher`: a call's trades are acknowledged when the call returns ``accepted`` =
  all of them (``Ledger.record_trades``). A call that fails leaves its trades unknown (stored or
  not: ``Ledger.record_unknown_trades``), and the next call sends them again first, with the
  same ``trade_id`` (at-least-once, as a feed replays from its last acknowledged point).
- :class:`BookPublisher`: books an exchange could have published
  (:class:`scripts.demo_market.OrderBook`: 30 levels a side, 8-decimal sizes, sequences), one
  snapshot each, then deltas. After a refused call (``FAILED_PRECONDITION`` "snapshot needed")
  or a failed one (its deltas may or may not be applied) the next call starts with a snapshot
  of every book, like a real feed resyncing. :meth:`BookPublisher.pause` holds it after an
  accepted call, so the service's book is then exactly the publisher's own (:meth:`expected`).

Pacing waits on the stop event with a timeout (as :class:`tests.resilience.publisher.Publisher`
does); nothing here sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc

from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.api.v1 import cache_pb2_grpc
from marketbridge.market.client_book import ClientBook
from scripts.demo_market import OrderBook
from tests.infra.ledger import Ledger
from tests.resilience.publisher import CALL_TIMEOUT_S, EXCHANGE, RETRY_PAUSE_S, open_channel
from tests.resilience.wsclient import LedgerClient

SYMBOLS = ("BTC/USDT", "ETH/USDT")
PRICES = {"BTC/USDT": 50000.0, "ETH/USDT": 3000.0}
MESSAGES_PER_CALL = 10


@dataclass
class MarketStats:
    calls: int = 0
    calls_ok: int = 0
    failures: Counter[str] = field(default_factory=Counter)   # failed calls by status code
    failure_details: dict[str, list[str]] = field(default_factory=dict)   # the first few, by code
    mismatched_replies: list[str] = field(default_factory=list)   # OK but accepted != sent

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {k: v for k, v in self.__dict__.items()
                                  if not isinstance(v, (Counter, list, dict))}
        out["failures"] = dict(self.failures)
        out["mismatched_replies"] = len(self.mismatched_replies)
        return out


@dataclass
class TradeStats(MarketStats):
    trades_sent: int = 0          # distinct trade ids streamed at least once
    trade_resends: int = 0        # sends of an id again, after the call carrying it failed
    trades_acked: int = 0
    trades_unknown: int = 0       # distinct ids streamed on a failed call


@dataclass
class BookStats(MarketStats):
    book_messages_acked: int = 0
    deltas_acked: int = 0
    snapshots_sent: int = 0
    resyncs: int = 0              # calls that began with snapshots after a refusal or failure


class _Streaming:
    """What both publishers share: a loop of paced client-streaming calls, stop, ack waits."""

    def __init__(self, rate: float, stats: MarketStats) -> None:
        self.interval = 1.0 / rate
        self.stats = stats
        self.stopping = asyncio.Event()
        self.acked = asyncio.Condition()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop(), name=type(self).__name__)

    async def _loop(self) -> None:
        raise NotImplementedError

    async def _pace(self) -> bool:
        """Wait one interval; False when asked to stop meanwhile."""
        try:
            await asyncio.wait_for(self.stopping.wait(), self.interval)
        except TimeoutError:
            return True
        return False

    async def _acked(self, count: int) -> None:
        async with self.acked:
            self._count_acked(count)
            self.acked.notify_all()

    def _count_acked(self, count: int) -> None:
        raise NotImplementedError

    def acked_count(self) -> int:
        raise NotImplementedError

    async def wait_acked(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` more items have been acknowledged (the system is writing again)."""
        target = self.acked_count() + count
        async with asyncio.timeout(timeout), self.acked:
            await self.acked.wait_for(lambda: self.acked_count() >= target)

    async def _failed(self, exc: grpc.aio.AioRpcError) -> None:
        self.stats.failures[exc.code().name] += 1
        details = self.stats.failure_details.setdefault(exc.code().name, [])
        if len(details) < 3:
            details.append(exc.details() or "")
        await asyncio.sleep(RETRY_PAUSE_S)   # a retry pause, as the ticker publisher's


class TradePublisher(_Streaming):
    """Trades of :data:`SYMBOLS` at ``rate`` messages/s, ``per_message`` trades each."""

    def __init__(self, ledger: Ledger, stub: cache_pb2_grpc.CacheServiceStub, rate: float = 50.0,
                 per_message: int = 2, prefix: str = "t") -> None:
        super().__init__(rate, TradeStats())
        self.stats: TradeStats
        self.ledger = ledger
        self.stub = stub
        self.per_message = per_message
        self.prefix = prefix
        self.ids = itertools.count(1)
        self.retry: list[pb.Trade] = []
        self.sent_at: dict[str, float] = {}
        self.unknown: set[str] = set()

    def _count_acked(self, count: int) -> None:
        self.stats.trades_acked += count

    def acked_count(self) -> int:
        return self.stats.trades_acked

    async def stop(self) -> None:
        self.stopping.set()
        if self.task is not None:
            await self.task

    def _new(self) -> pb.Trade:
        n = next(self.ids)
        symbol = SYMBOLS[n % len(SYMBOLS)]
        price = PRICES[symbol] + (n % 17) * 0.5
        trade = pb.Trade(exchange=EXCHANGE, symbol=symbol, trade_id=f"{self.prefix}{n:07d}",
                         price=f"{price:.2f}", amount=f"0.{n % 9 + 1:08d}",
                         side=("buy", "sell")[n % 2], time=time.time())
        self.sent_at[trade.trade_id] = time.monotonic()
        self.stats.trades_sent += 1
        return trade

    async def _loop(self) -> None:
        while not self.stopping.is_set():
            await self._call()

    async def _call(self) -> None:
        streamed: list[pb.Trade] = []
        retry, self.retry = self.retry, []

        async def requests() -> AsyncIterator[pb.PublishTradesRequest]:
            if retry:   # the failed call's trades first, unchanged
                self.stats.trade_resends += len(retry)
                streamed.extend(retry)
                yield pb.PublishTradesRequest(trades=retry)
            for _ in range(MESSAGES_PER_CALL):
                trades = [self._new() for _ in range(self.per_message)]
                streamed.extend(trades)
                yield pb.PublishTradesRequest(trades=trades)
                if not await self._pace():
                    return

        self.stats.calls += 1
        try:
            reply = await self.stub.PublishTrades(requests(), timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            self.ledger.record_unknown_trades(streamed)
            fresh = {t.trade_id for t in streamed} - self.unknown
            self.unknown |= fresh
            self.stats.trades_unknown += len(fresh)
            if exc.code() is not grpc.StatusCode.INVALID_ARGUMENT:   # ours to fix, not to retry
                self.retry = streamed
            await self._failed(exc)
            return
        self.stats.calls_ok += 1
        if reply.accepted != len(streamed):
            self.stats.mismatched_replies.append(f"accepted {reply.accepted} of {len(streamed)}")
            self.ledger.record_unknown_trades(streamed)
            return
        self.ledger.record_trades(streamed, self.sent_at)
        await self._acked(len(streamed))


class BookPublisher(_Streaming):
    """Books of :data:`SYMBOLS`: ``rate`` deltas/s in all, a snapshot of each after a resync."""

    def __init__(self, stub: cache_pb2_grpc.CacheServiceStub, rate: float = 100.0, seed: int = 14) -> None:
        super().__init__(rate, BookStats())
        self.stats: BookStats
        self.stub = stub
        self.rng = random.Random(seed)
        self.books = {s: OrderBook(self.rng, EXCHANGE, s, PRICES[s]) for s in SYMBOLS}
        self.resync = True          # the next call starts with a snapshot of every book
        self.in_sync = False        # the last call was accepted: the service holds our books
        self.hold = False
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.refusals: list[str] = []   # FAILED_PRECONDITION details

    def _count_acked(self, count: int) -> None:
        self.stats.deltas_acked += count

    def acked_count(self) -> int:
        return self.stats.deltas_acked

    async def pause(self, timeout: float = 30.0) -> None:
        """Hold after the next accepted call: the service's books are then :meth:`expected`."""
        self.release.clear()
        self.hold = True
        async with asyncio.timeout(timeout):
            await self.held.wait()

    def resume(self) -> None:
        self.hold = False
        self.held.clear()
        self.release.set()

    async def stop(self, timeout: float = 30.0) -> None:
        """Stop after an accepted call (so the books end fresh and known)."""
        if self.task is None:
            return
        await self.pause(timeout)
        self.stopping.set()
        self.release.set()
        await self.task

    def expected(self, symbol: str, depth: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The publisher's own book cut to ``depth`` (strings as it sent them)."""
        snap = self.books[symbol].snapshot(0.0)
        return ([(l.price, l.qty) for l in snap.bids[:depth]], [(l.price, l.qty) for l in snap.asks[:depth]])

    async def _loop(self) -> None:
        while True:
            if self.hold and self.in_sync:
                self.held.set()
                await self.release.wait()
                if self.stopping.is_set():
                    return
                continue
            await self._call()

    def _step(self, book: OrderBook) -> pb.PublishBookRequest:
        """A delta: the mid wanders a little around its start, a few levels change."""
        mid = float(book.mid)
        target = mid * (1 + self.rng.gauss(0, 0.0002)) + (PRICES[book.symbol] - mid) * 0.05
        return book.step(target, time.time())

    async def _call(self) -> None:
        streamed = {"snapshots": 0, "deltas": 0}
        resync, self.resync = self.resync, False

        async def requests() -> AsyncIterator[pb.PublishBookRequest]:
            if resync:
                for book in self.books.values():
                    streamed["snapshots"] += 1
                    self.stats.snapshots_sent += 1
                    yield book.snapshot(time.time())
            for _ in range(MESSAGES_PER_CALL):
                streamed["deltas"] += 1
                yield self._step(self.rng.choice(list(self.books.values())))
                if self.hold or not await self._pace():
                    return

        self.stats.calls += 1
        self.in_sync = False
        if resync:
            self.stats.resyncs += 1
        try:
            reply = await self.stub.PublishBook(requests(), timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            # Refused (snapshot needed) or failed mid-way: which deltas were applied is unknown.
            self.resync = True
            if exc.code() is grpc.StatusCode.FAILED_PRECONDITION:
                self.refusals.append(exc.details() or "")
            await self._failed(exc)
            return
        self.stats.calls_ok += 1
        sent = streamed["snapshots"] + streamed["deltas"]
        if reply.accepted != sent:
            self.stats.mismatched_replies.append(f"accepted {reply.accepted} of {sent}")
            self.resync = True
            return
        self.in_sync = True
        self.stats.book_messages_acked += sent
        await self._acked(streamed["deltas"])


class MarketFeed:
    """Both publishers on one channel to the cache service replicas."""

    def __init__(self, ledger: Ledger, targets: list[str], trade_rate: float = 50.0,
                 book_rate: float = 100.0) -> None:
        self.channel = open_channel(targets)
        self.stub = cache_pb2_grpc.CacheServiceStub(self.channel)
        self.trades = TradePublisher(ledger, self.stub, trade_rate)
        self.books = BookPublisher(self.stub, book_rate)

    def start(self) -> None:
        self.trades.start()
        self.books.start()

    async def wait_acked(self, trades: int, deltas: int, timeout: float = 30.0) -> None:
        await asyncio.gather(self.trades.wait_acked(trades, timeout), self.books.wait_acked(deltas, timeout))

    async def stop(self) -> None:
        await asyncio.gather(self.trades.stop(), self.books.stop())

    async def close(self) -> None:
        """Stop whatever still runs (a failed scenario), then the channel."""
        for publisher in (self.trades, self.books):
            publisher.stopping.set()
            if isinstance(publisher, BookPublisher):
                publisher.release.set()
            if publisher.task is not None and not publisher.task.done():
                publisher.task.cancel()
                await asyncio.gather(publisher.task, return_exceptions=True)
        await self.channel.close()

    async def get_book(self, symbol: str, depth: int) -> pb.Book:
        return await self.stub.GetBook(pb.GetBookRequest(exchange=EXCHANGE, symbol=symbol, depth=depth),
                                       timeout=10)


@dataclass
class BookComparison:
    """One client's copy of one book against the service's, at one moment."""

    client: str
    symbol: str
    depth: int
    levels: int          # levels a side compared (bids + asks)
    checksum: int
    seq: str             # the service book's change-feed position
    waited_s: float      # until the copy equalled it (updates still in flight)


def _levels(levels: object) -> tuple[tuple[str, str], ...]:
    return tuple((level.price, level.qty) for level in levels)  # type: ignore[attr-defined]


async def compare_books(feed: MarketFeed, clients: list[LedgerClient], timeout: float = 30.0) -> list[BookComparison]:
    """Hold the book publisher after an accepted call, then every book copy of every client must
    become the service's book at its depth (GetBook), with the same, valid checksum; and the
    service's book must be the publisher's own. Raises AssertionError naming what differs."""
    await feed.books.pause(timeout)
    try:
        wanted = sorted({(spec.symbol, spec.depth) for c in clients for spec in c.subs if spec.channel == "book"})
        service: dict[tuple[str, int], pb.Book] = {}
        for symbol, depth in wanted:
            book = service[(symbol, depth)] = await feed.get_book(symbol, depth)
            assert not book.stale, f"GetBook {symbol}@{depth} is stale after an accepted snapshot/deltas"
            bids, asks = feed.books.expected(symbol, depth)
            assert (_levels(book.bids), _levels(book.asks)) == (tuple(bids), tuple(asks)), (
                f"GetBook {symbol}@{depth} (sequence {book.sequence}) differs from what the publisher "
                f"published (sequence {feed.books.books[symbol].sequence}): bids {_levels(book.bids)[:3]} vs "
                f"{bids[:3]}, asks {_levels(book.asks)[:3]} vs {asks[:3]}")
            copy = ClientBook(depth)
            copy.load(_levels(book.bids), _levels(book.asks))
            assert copy.checksum() == book.checksum, f"GetBook {symbol}@{depth}: checksum does not verify"
        return await _converge(clients, service, timeout)
    finally:
        feed.books.resume()


async def _converge(clients: list[LedgerClient], service: dict[tuple[str, int], pb.Book],
                    timeout: float) -> list[BookComparison]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeout
    done: dict[tuple[str, str], BookComparison] = {}
    while True:
        for client in clients:
            client.progress.clear()   # before looking: a frame from now on wakes the wait below
        pending: list[tuple[LedgerClient, str]] = []
        for client in clients:
            for spec in client.subs:
                if spec.channel != "book" or (client.name, spec.stream) in done:
                    continue
                book = service[(spec.symbol, spec.depth)]
                copy = client.books.get(spec.stream)
                if (copy is not None and not copy.stale
                        and (copy.book.view().bids, copy.book.view().asks) == (_levels(book.bids), _levels(book.asks))
                        and copy.book.checksum() == book.checksum):
                    done[(client.name, spec.stream)] = BookComparison(
                        client.name, spec.symbol, spec.depth, len(book.bids) + len(book.asks),
                        book.checksum, book.seq, round(loop.time() - started, 3))
                else:
                    pending.append((client, spec.stream))
        if not pending:
            return list(done.values())
        if loop.time() >= deadline:
            lines = []
            for client, stream in pending:
                copy = client.books.get(stream)
                symbol, depth = stream.split(":")[2], int(stream.split(":")[3])
                book = service[(symbol, depth)]
                view = copy.book.view() if copy else None
                lines.append(
                    f"{client.name} {stream}: copy at {copy.seq if copy else None} stale={copy.stale if copy else None} "
                    f"bids {view.bids[:3] if view else None} asks {view.asks[:3] if view else None}; service at "
                    f"{book.seq} sequence {book.sequence} bids {_levels(book.bids)[:3]} asks {_levels(book.asks)[:3]}")
            raise AssertionError("book copies differ from the service's book:\n" + "\n".join(lines))
        waits = [asyncio.ensure_future(c.progress.wait()) for c, _ in pending]
        await asyncio.wait(waits, timeout=min(1.0, max(0.0, deadline - loop.time())),
                           return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
