"""The demo feed's book and trade streams, against a real gRPC server on a real socket.

The server is a minimal ``CacheServiceServicer`` of this file: it serves only
``PublishBook`` and ``PublishTrades`` (everything else answers UNIMPLEMENTED, as an older cache
service would) and applies each book message to ``marketbridge.market.book.Book`` exactly as
the cache service does, so a delta before its book's snapshot, or out of sequence, is
refused here as it would be there. It can also refuse a delta on purpose
(FAILED_PRECONDITION "snapshot needed: ..."), or be restarted empty, to see the feed resync.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal

import grpc
import pytest

from marketbridge.api.v1 import cache_pb2, cache_pb2_grpc
from marketbridge.market.book import Book, SnapshotNeeded
from marketbridge.market.client_book import ClientBook
from marketbridge.market.merge import BookUpdate
from marketbridge.market.trades import parse_trade
from marketbridge.settings import ConfigError
from scripts.demo_feed import BASE_PRICES, EXCHANGES, Feed, FeedConfig, parse_config
from tests.e2e.test_demo_feed import running_feed
from tests.infra.cache_service_runner import InProcessCacheService, running_cache_service
from tests.infra.eventually import eventually

BOOKS = {(exchange, symbol) for exchange in EXCHANGES for symbol in BASE_PRICES}
WAIT_S = 30.0


def pairs(levels: object) -> list[tuple[str, str]]:
    return [(level.price, level.qty) for level in levels]  # type: ignore[attr-defined]


class RecordingCache(cache_pb2_grpc.CacheServiceServicer):
    """Records every book message and trade, applying books as the cache service does."""

    def __init__(self) -> None:
        self.books: dict[tuple[str, str], Book] = {}
        self.calls: list[list[cache_pb2.PublishBookRequest]] = []   # per PublishBook call
        self.trades: list[cache_pb2.Trade] = []
        self.refused: list[str] = []   # refusals the feed earned: must stay empty
        self.refuse_after: int | None = None   # refuse the delta after this many in a call
        self.injected: tuple[int, tuple[str, str]] | None = None   # (call index, book)
        self._changed = asyncio.Condition()

    async def until(self, what: Callable[[], object], timeout: float = WAIT_S) -> None:
        """Wait for ``what()`` to hold; re-checked on every message the server receives.

        A message the feed should not have sent fails the wait at once, naming it, rather
        than as a timeout later."""
        def done() -> object:
            assert not self.refused, self.refused
            return what()

        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(done)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def deltas(self) -> int:
        return sum(not m.snapshot for call in self.calls for m in call)

    async def PublishBook(self, request_iterator: AsyncIterator[cache_pb2.PublishBookRequest],
                          context: grpc.aio.ServicerContext) -> cache_pb2.PublishBookResponse:
        call: list[cache_pb2.PublishBookRequest] = []
        self.calls.append(call)
        async for message in request_iterator:
            call.append(message)
            key = (message.exchange, message.symbol)
            if self._inject(call, message):
                self.books.pop(key)   # as after a gap: nothing until its next snapshot
                self.injected = (len(self.calls) - 1, key)
                await self._notify()
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"snapshot needed: delta sequence {message.sequence} "
                                    f"does not follow (injected)")
            try:
                self._apply(key, message)
            except SnapshotNeeded as exc:
                self.refused.append(f"{key}: {exc}")
                await self._notify()
                await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
            await self._notify()
        return cache_pb2.PublishBookResponse(accepted=len(call))

    def _inject(self, call: list[cache_pb2.PublishBookRequest],
                message: cache_pb2.PublishBookRequest) -> bool:
        if self.refuse_after is None or message.snapshot or len(call) <= self.refuse_after:
            return False
        self.refuse_after = None
        return True

    def _apply(self, key: tuple[str, str], message: cache_pb2.PublishBookRequest) -> None:
        if message.snapshot:
            self.books[key] = Book()
            self.books[key].apply_snapshot(pairs(message.bids), pairs(message.asks),
                                           message.sequence)
        elif key not in self.books:
            raise SnapshotNeeded(f"no snapshot yet (delta {message.sequence})")
        else:
            self.books[key].apply_delta(pairs(message.bids), pairs(message.asks),
                                        message.sequence)

    async def PublishTrades(self, request_iterator: AsyncIterator[cache_pb2.PublishTradesRequest],
                            context: grpc.aio.ServicerContext) -> cache_pb2.PublishTradesResponse:
        accepted = 0
        async for message in request_iterator:
            self.trades.extend(message.trades)
            accepted += len(message.trades)
            await self._notify()
        return cache_pb2.PublishTradesResponse(accepted=accepted)


async def start_server(servicer: RecordingCache, port: int = 0) -> tuple[grpc.aio.Server, int]:
    """A grpc.aio server for ``servicer`` on 127.0.0.1 (``port`` 0: a free one), and its port."""
    server = grpc.aio.server()
    cache_pb2_grpc.add_CacheServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, bound


@asynccontextmanager
async def serving(servicer: RecordingCache) -> AsyncIterator[int]:
    """A server for ``servicer`` until the block ends; yields its port."""
    server, port = await start_server(servicer)
    try:
        yield port
    finally:
        await server.stop(grace=None)


def first_messages(call: list[cache_pb2.PublishBookRequest]) -> dict[tuple[str, str], bool]:
    """Per book, whether its first message in ``call`` is a snapshot."""
    first: dict[tuple[str, str], bool] = {}
    for message in call:
        first.setdefault((message.exchange, message.symbol), message.snapshot)
    return first


def assert_trades_unique_and_valid(trades: list[cache_pb2.Trade]) -> None:
    ids = [(t.exchange, t.symbol, t.trade_id) for t in trades]
    assert len(ids) == len(set(ids))
    for trade in trades:
        parse_trade(trade.trade_id, trade.price, trade.amount, trade.side, trade.time)


def test_book_and_trade_rates_from_flags_and_environment() -> None:
    config = parse_config(["--book-rate", "50"], {"FEED_TRADE_RATE": "5"})
    assert (config.book_rate, config.trade_rate) == (50.0, 5.0)
    assert (FeedConfig().book_rate, FeedConfig().trade_rate) == (300.0, 20.0)
    with pytest.raises(ConfigError, match="--trade-rate must be > 0"):
        parse_config(["--trade-rate", "0"], {})


async def test_every_book_starts_with_a_snapshot_and_deltas_follow_in_sequence() -> None:
    """Across PublishBook calls (window 1 s) every book is snapshotted once, first, and its
    deltas never skip a number; trades arrive in batches with unique ids."""
    cache = RecordingCache()
    async with serving(cache) as port, running_feed(f"127.0.0.1:{port}", book_rate=300.0,
                                                    trade_rate=40.0) as feed:
        await cache.until(lambda: len(cache.calls) >= 3 and cache.deltas() >= 600
                          and len(cache.trades) >= 60)
    assert cache.refused == []
    assert first_messages(cache.calls[0]) == dict.fromkeys(BOOKS, True)
    assert [m.snapshot for m in cache.calls[0][:len(BOOKS)]] == [True] * len(BOOKS)
    for call in cache.calls[1:]:   # the window rolled over, the connection did not break
        assert not any(m.snapshot for m in call)
    assert_trades_unique_and_valid(cache.trades)
    assert feed.books.resyncs == 0 and feed.books.outages == 0
    assert feed.books.book_messages > 0 and feed.books.trades > 0


async def test_the_feed_resyncs_every_book_after_failed_precondition() -> None:
    """The server ends the call with "snapshot needed": the next call opens at once with a
    snapshot of every book, and deltas carry on from them."""
    cache = RecordingCache()
    cache.refuse_after = 150
    async with serving(cache) as port, running_feed(f"127.0.0.1:{port}", window=30.0) as feed:
        await cache.until(lambda: cache.injected is not None)
        assert cache.injected is not None
        refused_call, _ = cache.injected
        await cache.until(lambda: len(cache.calls) > refused_call + 1
                          and len(cache.calls[refused_call + 1]) >= len(BOOKS) + 100)
    resync = cache.calls[refused_call + 1]
    assert first_messages(resync) == dict.fromkeys(BOOKS, True)
    assert cache.refused == []
    assert feed.books.resyncs == 1 and feed.books.outages == 0


async def test_a_restarted_empty_server_gets_snapshots_before_deltas() -> None:
    """A cache service that comes back empty (it refuses any delta before a snapshot) is
    snapshotted again on the reconnect, after the feed's backoff; trade ids go on unique."""
    first, second = RecordingCache(), RecordingCache()
    server, port = await start_server(first)
    try:
        async with running_feed(f"127.0.0.1:{port}", window=30.0) as feed:
            await first.until(lambda: first.deltas() >= 100 and first.trades)
            await server.stop(grace=None)
            await eventually(lambda: feed.books.outages >= 1, WAIT_S,
                             what="the feed saw the outage")
            server, _ = await start_server(second, port)
            await second.until(lambda: second.deltas() >= 100 and second.trades)
    finally:
        await server.stop(grace=None)
    assert second.refused == [] and first.refused == []
    assert first_messages(second.calls[0]) == dict.fromkeys(BOOKS, True)
    assert_trades_unique_and_valid(first.trades + second.trades)


async def test_default_rates_pace_deltas_and_trades() -> None:
    """At the defaults (300 deltas/s and 20 trades/s in all) the pacing never runs ahead of the
    schedule. Only that bound is asserted: how close it keeps up depends on the machine's load,
    which is a benchmark's business, not a test's (the measured rates are printed)."""
    cache = RecordingCache()
    async with serving(cache) as port, running_feed(f"127.0.0.1:{port}", window=30.0):
        await cache.until(lambda: cache.deltas() > 0)
        start, deltas, trades = time.monotonic(), cache.deltas(), len(cache.trades)
        await cache.until(lambda: cache.deltas() >= deltas + 960)
        elapsed = time.monotonic() - start
    delta_rate = (cache.deltas() - deltas) / elapsed
    trade_rate = (len(cache.trades) - trades) / elapsed
    print(f"measured: {delta_rate:.0f} deltas/s, {trade_rate:.1f} trades/s over {elapsed:.2f}s")
    assert delta_rate < 400   # 300 made + 20 from trades, one pacing tick of slack
    assert trade_rate < 30


# ---------------------------------------------------------------------------- the real cache service


async def fresh_books(stub: cache_pb2_grpc.CacheServiceStub) -> dict[tuple[str, str], cache_pb2.Book]:
    """Every book at depth 25 once all are fresh with 25 levels a side; {} before that."""
    books = {key: await stub.GetBook(cache_pb2.GetBookRequest(exchange=key[0], symbol=key[1],
                                                              depth=25), timeout=5)
             for key in sorted(BOOKS)}
    ready = all(not b.stale and len(b.bids) == len(b.asks) == 25 for b in books.values())
    return books if ready else {}


async def verified_updates(stub: cache_pb2_grpc.CacheServiceStub, key: tuple[str, str],
                           count: int) -> int:
    """Follow ``StreamBook`` at depth 25 as a client would: load the snapshot, apply ``count``
    updates, each verified against its checksum (ClientBook raises on a mismatch)."""
    copy, updates = ClientBook(25), 0
    call = stub.StreamBook(cache_pb2.StreamBookRequest(exchange=key[0], symbol=key[1], depth=25))
    try:
        async with asyncio.timeout(WAIT_S):
            async for event in call:
                kind = event.WhichOneof("event")
                assert kind != "stale", event
                if kind == "snapshot":
                    copy.load(pairs(event.snapshot.bids), pairs(event.snapshot.asks))
                    assert copy.checksum() == event.snapshot.checksum
                elif kind == "update":
                    update = event.update
                    copy.apply(BookUpdate(tuple(pairs(update.bids)), tuple(pairs(update.asks)),
                                          update.checksum))
                    updates += 1
                    if updates == count:
                        break
    finally:
        call.cancel()
    return updates


@asynccontextmanager
async def real_stack(redis_url: str, window: float) -> AsyncIterator[
        tuple[InProcessCacheService, Feed, cache_pb2_grpc.CacheServiceStub]]:
    """The real cache service, the feed writing into it, and a stub to read it back with."""
    async with (running_cache_service(redis_url) as cache,
                running_feed(cache.target, window=window) as feed,
                grpc.aio.insecure_channel(cache.target) as channel):
        yield cache, feed, cache_pb2_grpc.CacheServiceStub(channel)


async def all_fresh(stub: cache_pb2_grpc.CacheServiceStub) -> dict[tuple[str, str], cache_pb2.Book]:
    """Wait until every book is fresh (NOT_FOUND until its first snapshot counts as not yet)."""
    return await eventually(lambda: fresh_books(stub), WAIT_S, interval=0.1,
                            ignore=(grpc.aio.AioRpcError,), what="every book fresh")


async def test_the_cache_service_serves_fresh_books_a_client_can_verify(redis_url: str) -> None:
    """Against the real cache service: every book is fresh with 25 levels a side and uncrossed,
    a StreamBook client verifies every update's checksum, the trades tape fills with valid,
    unique trades, and the service never refused a message."""
    async with real_stack(redis_url, window=2.0) as (_, feed, stub):
        books = await all_fresh(stub)
        for book in books.values():
            assert Decimal(book.bids[0].price) < Decimal(book.asks[0].price), book
        assert await verified_updates(stub, ("binance", "BTC/USDT"), 40) == 40
        tape = await eventually(
            lambda: stub.ListTrades(cache_pb2.ListTradesRequest(exchange="kraken", limit=100),
                                    timeout=5),
            WAIT_S, interval=0.1, what="kraken's trades")
        assert tape.trades
        assert_trades_unique_and_valid(list(tape.trades))
    assert feed.books.resyncs == 0 and feed.books.outages == 0


async def test_books_are_fresh_again_after_a_cache_service_restart(redis_url: str) -> None:
    """The feed's reconnect re-snapshots every book, so none stays stale after the restart."""
    async with real_stack(redis_url, window=30.0) as (cache, feed, stub):
        before = await all_fresh(stub)
        await cache.stop()
        await eventually(lambda: feed.books.outages >= 1, WAIT_S, what="the feed saw the outage")
        await cache.start()

        async def moved_on() -> bool:
            books = await fresh_books(stub)
            return bool(books) and all(books[k].sequence > before[k].sequence for k in BOOKS)

        await eventually(moved_on, WAIT_S, interval=0.1, ignore=(grpc.aio.AioRpcError,),
                         what="every book fresh past its sequence before the restart")
