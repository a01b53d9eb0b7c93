"""The gRPC servicer: maps each RPC to the store or the change feed, errors to status codes.

Validation, scoping, storage and streaming live in their own modules; this file maps each RPC
onto them and owns what a client sees: bulk ingest's batching, stream headers, the encoding of
feed items, and the status code of every failure.
Every unary call is bounded by min(client deadline, ``timeout``) so a dead or hung Redis gives
UNAVAILABLE quickly instead of a hang; a known condition never surfaces as UNKNOWN.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar

import grpc
from google.protobuf.message import Message
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ClusterDownError, ReadOnlyError, RedisError, TryAgainError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cache_service import validation, wire
from cache_service.changefeed import ChangeFeed, Entry, FeedItem, Gap, Heartbeat, Match, field_filter, match_all
from cache_service.book_store import book_stream
from cache_service.books import BookKeeper, book_entry_bytes, book_filter, requested_depth
from cache_service.canary import CANARY_CHANNEL, CANARY_STREAM
from cache_service.errors import InvalidArgument, NotFound, ServiceError
from cache_service.metrics import Metrics
from marketbridge.api.v1 import cache_pb2, cache_pb2_grpc
from cache_service.pinned import PinnedConnection
from cache_service.scoping import Caller, caller_from_metadata
from cache_service.store import BOTS, ORDERS, WRITE_BATCH, OwnedKind, Store, ticker_stream
from cache_service.trade_store import candle_stream, trade_stream
from cache_service.trades import (CANDLES_LIMIT_DEFAULT, TRADES_LIMIT_DEFAULT, TradeDesk,
                                  check_interval)
from marketbridge.metadata import HEARTBEAT_HEADER
from marketbridge.seq import seq_key
from marketbridge.vocabulary import ORDER_STATUSES

log = logging.getLogger(__name__)

T = TypeVar("T")
WAIT_SLACK_S = 0.5
# ClusterDownError (CLUSTERDOWN, and MASTERDOWN, its subclass) is an outage, not a fault of
# ours: a node answers it while its cluster is not ok (every master restarting at once, a
# shard without a master). It is a ResponseError to redis-py, so it used to end as INTERNAL
# ("internal error: ClusterDownError": ~30 writes per run in that scenario; SPEC §7 wants
# UNAVAILABLE during an outage, which clients retry).
_UNAVAILABLE_ERRORS = (RedisConnectionError, RedisTimeoutError, ReadOnlyError, TryAgainError,
                       ClusterDownError, OSError)


def _caller(context: grpc.aio.ServicerContext) -> Caller:
    return caller_from_metadata(context.invocation_metadata())


async def _abort(context: grpc.aio.ServicerContext, error: BaseException) -> NoReturn:
    """Turn an exception into the status a client should see."""
    if isinstance(error, ServiceError):
        await context.abort(error.code, error.message)
    if isinstance(error, _UNAVAILABLE_ERRORS):
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"Redis unavailable: {error}")
    log.exception("unexpected error", exc_info=error)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}")
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class _Framing:
    """How one channel's change-feed items become stream events: entries are framed from their
    stored bytes (:func:`wire.entry_event`), the rest (gap, live, heartbeat) built as messages."""

    event: type[Message]
    field: str
    entity: type[Message]
    batch: type[Message]

    def encode(self, items: Sequence[FeedItem]) -> list[bytes]:
        """Serialized events of a change-feed batch (the hot path of the batched streams)."""
        return [wire.entry_event(item.id, item.fields[b"d"]) if isinstance(item, Entry)
                else _event(self.event, self.field, self.entity, item).SerializeToString()
                for item in items]


_TICKERS = _Framing(cache_pb2.TickerEvent, "ticker", cache_pb2.Ticker, cache_pb2.TickerEventBatch)
_TRADES = _Framing(cache_pb2.TradeEvent, "trade", cache_pb2.Trade, cache_pb2.TradeEventBatch)


def _event(event_type: type[Message], field: str, entity: type[Message], item: FeedItem) -> Message:
    """A stream event (TickerEvent, OrderEvent, BotEvent) from a change-feed item."""
    if isinstance(item, Entry):
        return event_type(seq=item.id, **{field: entity.FromString(item.data)})
    if isinstance(item, Gap):
        gap = cache_pb2.StreamGap(requested=item.requested, first_retained=item.first_retained)
        return event_type(seq=item.requested, gap=gap)
    if isinstance(item, Heartbeat):
        return event_type(seq="", heartbeat=cache_pb2.StreamHeartbeat(server_time=item.server_time))
    return event_type(seq=item.seq, live=cache_pb2.StreamLive())


def _book_batch(items: Sequence[FeedItem], depth: int) -> tuple[list[bytes], bool]:
    """The serialized BookEvents of a change-feed batch, up to and with a gap (the stream
    starts again from a snapshot after one); and whether there was one."""
    events: list[bytes] = []
    for item in items:
        if isinstance(item, Entry):
            events.append(book_entry_bytes(item.id, item.fields, depth))
            continue
        events.append(_event(cache_pb2.BookEvent, "update", cache_pb2.BookUpdate, item).SerializeToString())
        if isinstance(item, Gap):
            return events, True
    return events, False


def _first_bad(items: Sequence[FeedItem], encode: Callable[[Sequence[FeedItem]], Any]) -> FeedItem:
    """The first item ``encode`` fails on (a failed batch was seen already: the rare path)."""
    for item in items:
        try:
            encode([item])
        except Exception:  # noqa: BLE001 - looking for the one that fails
            return item
    return items[0]


def _check_orders_query(request: cache_pb2.ListOrdersRequest) -> None:
    """ListOrders' limit and status filter, checked before Redis is asked."""
    validation.list_limit(request.limit)
    if request.status and request.status not in ORDER_STATUSES:
        raise InvalidArgument(f"status must be one of {', '.join(sorted(ORDER_STATUSES))}")


def _orders_page(request: cache_pb2.ListOrdersRequest, orders: list[cache_pb2.Order]) -> cache_pb2.ListOrdersResponse:
    """The orders matching the request's filters, newest first, at most ``limit``."""
    wanted = [o for o in orders
              if (not request.status or o.status == request.status)
              and (not request.symbol or o.symbol == request.symbol)
              and (not request.bot_id or o.bot_id == request.bot_id)]
    wanted.sort(key=lambda o: (-o.updated_at, o.order_id))
    return cache_pb2.ListOrdersResponse(orders=wanted[:validation.list_limit(request.limit)])


Write = Callable[[list[T], PinnedConnection], Awaitable[list[str]]]
BOOK_LINGER_S = 0.002   # how long a small PublishBook batch waits for more (see _Ingest)
LINGER_BATCH = 100      # ... unless this many are pending already


class _Ingest(Generic[T]):
    """The write side of one bulk-ingest call (PublishTickers, PublishBook, PublishTrades): a
    buffer and the task that drains it, ``write`` taking whatever has arrived, in order."""

    HIGH_WATER = 5000

    def __init__(self, servicer: CacheServicer, context: grpc.aio.ServicerContext, write: Write[T],
                 channel: str, linger_s: float = 0.0) -> None:
        self.servicer = servicer
        self.context = context
        self.write = write
        self.channel = channel
        # PublishBook carries one delta per message: a writer that took whatever had arrived
        # wrote one or two per script call, and the calls, not the deltas, cost the CPU. So a
        # small batch waits up to ``linger_s`` for more (never a full one, never at the end).
        self.linger_s = linger_s
        self.pending: list[T] = []
        self.received = 0
        self.accepted = 0
        self.last_seq = ""
        self.done = False
        self.failed = False
        self.wake = asyncio.Event()
        self.drained = asyncio.Event()

    async def add(self, items: list[T]) -> bool:
        """Queue items; wait while the buffer is full. False once the writer failed."""
        self.pending += items
        self.received += len(items)
        self.wake.set()
        if len(self.pending) >= self.HIGH_WATER:
            self.drained.clear()
            await self.drained.wait()
        return not self.failed

    def finish(self) -> None:
        self.done = True
        self.wake.set()

    async def write_loop(self) -> None:
        """Write what is pending, as it comes, on one held Redis connection (for the whole
        call: the pool's per-command checks cost more than the write, see cache_service.pinned)."""
        try:
            async with self.servicer.store.connection() as conn:
                await self._write_pending(conn)
        except BaseException:
            self.failed = True
            self.drained.set()
            raise

    async def _write_pending(self, conn: PinnedConnection) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            if self.linger_s and not self.done and len(self.pending) < LINGER_BATCH:
                await asyncio.sleep(self.linger_s)
            while self.pending:
                batch = self.pending[:WRITE_BATCH]
                del self.pending[:WRITE_BATCH]
                seqs = await self.servicer._unary(self.context, self.write(batch, conn))
                if seqs:
                    self.accepted += len(seqs)
                    self.last_seq = seqs[-1]
                    self.servicer.metrics.events_published.labels(self.channel).inc(len(seqs))
                self.drained.set()
            if self.done:
                return


class CacheServicer(cache_pb2_grpc.CacheServiceServicer):
    """cache.v1.CacheService."""

    def __init__(self, store: Store, feed: ChangeFeed, metrics: Metrics, timeout: float,
                 books: BookKeeper, trades: TradeDesk) -> None:
        self.store = store
        self.feed = feed
        self.metrics = metrics
        self.timeout = timeout
        self.books = books
        self.trades = trades

    # ------------------------------------------------------------ plumbing

    async def _unary(self, context: grpc.aio.ServicerContext, op: Awaitable[T]) -> T:
        # The Redis client's socket timeout (``timeout``) normally ends a stuck call first and
        # cleanly; the timeout here is the backstop, and the client's own deadline when it is
        # shorter. ``asyncio.timeout`` runs ``op`` in this task (``wait_for`` would start a task
        # for it: two more event-loop turns per call, measurable in every unary call's latency).
        remaining = context.time_remaining()
        cap = self.timeout + WAIT_SLACK_S
        budget = cap if remaining is None else max(0.0, min(cap, remaining))
        try:
            async with asyncio.timeout(budget):
                return await op
        except TimeoutError:
            if remaining is not None and remaining <= cap:
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded waiting for Redis")
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"Redis did not answer within {budget:g}s")
        except (ServiceError, RedisError, OSError) as exc:
            await _abort(context, exc)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _guarded(self, context: grpc.aio.ServicerContext, feed: AsyncGenerator[T, None]) -> AsyncIterator[T]:
        """Yield from a change-feed generator; a failure ends the call with the status a
        client should see (every stream RPC goes through here). An unexpected one is logged
        with its traceback, counted (``cache_feed_failures{stage="stream"}``) and INTERNAL.

        The stream's headers go out at once and say it carries heartbeats
        (``marketbridge.metadata.HEARTBEAT_HEADER``), so a subscriber can watch it before the first one comes.
        """
        await context.send_initial_metadata(
            ((HEARTBEAT_HEADER, f"{self.feed.policy.heartbeat_s:g}"),))
        try:
            async with aclosing(feed) as items:
                async for item in items:
                    yield item
        except (ServiceError, RedisError, OSError) as exc:
            await _abort(context, exc)
        except Exception as exc:
            self.metrics.feed_failures.labels("stream").inc()
            await _abort(context, exc)

    async def _encoding_failed(self, context: grpc.aio.ServicerContext, item: FeedItem,
                               exc: Exception) -> NoReturn:
        """An entry that cannot become an event (not written by this service?): end this
        stream INTERNAL, naming its seq so the client can resume past it; logged and counted."""
        seq = item.id if isinstance(item, Entry) else ""
        log.error("change-feed event %s cannot be encoded; ending the stream", seq, exc_info=exc)
        self.metrics.feed_failures.labels("stream").inc()
        await context.abort(grpc.StatusCode.INTERNAL,
                            f"change-feed event {seq} cannot be encoded ({type(exc).__name__}); "
                            f"resume_from {seq} skips it")
        raise AssertionError("unreachable")  # pragma: no cover

    async def _stream(self, context: grpc.aio.ServicerContext, key: str, channel: str, match: Match,
                      resume_from: str, make: Callable[[FeedItem], Message]) -> AsyncIterator[Any]:
        async for item in self._guarded(context, self.feed.follow(key, channel, match, resume_from)):
            try:
                event = make(item)
            except Exception as exc:
                await self._encoding_failed(context, item, exc)
            yield event

    # ------------------------------------------------------------ tickers

    async def GetTicker(self, request: cache_pb2.GetTickerRequest, context: grpc.aio.ServicerContext) -> cache_pb2.Ticker:
        async def op() -> cache_pb2.Ticker:
            validation.require_id("exchange", request.exchange)
            validation.require_id("symbol", request.symbol)
            ticker = await self.store.get_ticker(request.exchange, request.symbol)
            if ticker is None:
                raise NotFound(f"no ticker for {request.symbol} on {request.exchange}")
            return ticker
        return await self._unary(context, op())

    async def ListTickers(self, request: cache_pb2.ListTickersRequest,
                          context: grpc.aio.ServicerContext) -> cache_pb2.ListTickersResponse:
        async def op() -> cache_pb2.ListTickersResponse:
            tickers = await self.store.list_tickers(request.exchange, list(request.symbols))
            return cache_pb2.ListTickersResponse(tickers=tickers)
        return await self._unary(context, op())

    async def PublishTicker(self, request: cache_pb2.PublishTickerRequest,
                            context: grpc.aio.ServicerContext) -> cache_pb2.WriteResult:
        async def op() -> cache_pb2.WriteResult:
            if request.tickers:
                raise InvalidArgument("PublishTicker takes one ticker in `ticker`; send `tickers` "
                                      "(many per message) with PublishTickers")
            validation.check_ticker(request.ticker)
            seq = await self.store.publish_ticker(request.ticker)
            self.metrics.events_published.labels("tickers").inc()
            return cache_pb2.WriteResult(seq=seq)
        return await self._unary(context, op())

    async def PublishTickers(self, request_iterator: AsyncIterator[cache_pb2.PublishTickerRequest],
                             context: grpc.aio.ServicerContext) -> cache_pb2.PublishTickersResponse:
        """Bulk ingest: reading and writing overlap; each write takes whatever has arrived.

        Batching what is already queued (up to a pipeline batch) keeps latency low for a slow
        feed and throughput high for a fast one. A bad ticker ends the call with
        INVALID_ARGUMENT after the good ones before it are written; the message says how many
        were accepted.
        """
        ingest: _Ingest[cache_pb2.Ticker] = _Ingest(self, context, self.store.publish_tickers, "tickers")
        return cache_pb2.PublishTickersResponse(**await self._ingest(
            context, ingest, self._read_tickers(request_iterator, ingest)))

    async def _ingest(self, context: grpc.aio.ServicerContext, ingest: _Ingest[Any],
                      reader: Awaitable[InvalidArgument | None]) -> dict[str, Any]:
        """Run a bulk-ingest call: ``reader`` feeds ``ingest`` while it writes; a failed write
        (Redis down, a refused message) ends the call at once, even if the client is idle.
        Returns the response fields (accepted, last_seq)."""
        reading = asyncio.ensure_future(reader)
        writer = asyncio.create_task(ingest.write_loop())
        try:
            # a failed write (Redis down) ends the call at once, even if the client is idle
            await asyncio.wait({reading, writer}, return_when=asyncio.FIRST_COMPLETED)
            if writer.done() and writer.exception() is not None:
                raise writer.exception()  # type: ignore[misc]
            bad = await reading
            ingest.finish()
            await writer
        finally:
            reading.cancel()
            writer.cancel()
        if bad is not None:
            await _abort(context, InvalidArgument(
                f"{bad.message} ({ingest.accepted} accepted before it, last_seq {ingest.last_seq!r})"))
        return {"accepted": ingest.accepted, "last_seq": ingest.last_seq}

    @staticmethod
    async def _read_tickers(request_iterator: AsyncIterator[cache_pb2.PublishTickerRequest],
                            ingest: _Ingest[cache_pb2.Ticker]) -> InvalidArgument | None:
        """Feed the ingest buffer; stop at the first bad ticker and return its error.

        A message's tickers are ``ticker`` (when set) then ``tickers``; the good ones before a
        bad one in the same message are still written. Tickers are numbered over the whole
        call; a message with no ticker at all adds nothing.
        """
        async for request in request_iterator:
            tickers = list(request.tickers)
            if request.HasField("ticker"):
                tickers.insert(0, request.ticker)
            bad = validation.first_bad_ticker(tickers)
            if bad is not None:
                index, error = bad
                await ingest.add(tickers[:index])
                return InvalidArgument(f"ticker #{ingest.received + 1}: {error.message}")
            if tickers and not await ingest.add(tickers):
                break
        return None

    async def _encoded_batches(self, context: grpc.aio.ServicerContext, key: str, channel: str,
                               request: cache_pb2.StreamTickersRequest | cache_pb2.StreamTradesRequest,
                               framing: _Framing) -> AsyncGenerator[list[bytes], None]:
        """The serialized events of one per-exchange subscription (tickers or trades), a change-feed
        batch at a time: both the one-event and the batched stream of each channel use it."""
        match = field_filter(s=list(request.symbols))
        batches = self.feed.follow_batches(key, channel, match, request.resume_from)
        async with aclosing(self._guarded(context, batches)) as guarded:
            async for batch in guarded:
                try:
                    encoded = framing.encode(batch)
                except Exception as exc:
                    await self._encoding_failed(context, _first_bad(batch, framing.encode), exc)
                yield encoded

    async def _exchange_events(self, context: grpc.aio.ServicerContext, key: str, channel: str,
                               request: cache_pb2.StreamTickersRequest | cache_pb2.StreamTradesRequest,
                               framing: _Framing, batched: bool) -> AsyncGenerator[Message, None]:
        """Events one message each, or every ready one in one batch message (the *Batches
        methods, see ChangeFeed.follow_batches)."""
        try:
            validation.require_id("exchange", request.exchange)
        except ServiceError as exc:
            await _abort(context, exc)
        async with aclosing(self._encoded_batches(context, key, channel, request, framing)) as batches:
            async for events in batches:
                if batched:
                    yield wire.event_batch(framing.batch, events)
                    continue
                for event in events:
                    yield framing.event.FromString(event)

    async def StreamTickers(self, request: cache_pb2.StreamTickersRequest,
                            context: grpc.aio.ServicerContext) -> AsyncIterator[cache_pb2.TickerEvent]:
        async for event in self._exchange_events(context, ticker_stream(request.exchange), "tickers",
                                                 request, _TICKERS, batched=False):
            yield event

    async def StreamTickerBatches(self, request: cache_pb2.StreamTickersRequest,
                                  context: grpc.aio.ServicerContext) -> AsyncIterator[cache_pb2.TickerEventBatch]:
        """StreamTickers' events, every ready one in one message (see ChangeFeed.follow_batches)."""
        async for batch in self._exchange_events(context, ticker_stream(request.exchange), "tickers",
                                                 request, _TICKERS, batched=True):
            yield batch

    # ------------------------------------------------------------ orders and bots

    async def _get_owned(self, kind: OwnedKind[Any], record_id: str, context: grpc.aio.ServicerContext) -> Any:
        caller = _caller(context)

        async def op() -> Any:
            validation.require_id(f"{kind.singular}_id", record_id)
            record = await self.store.get(kind, record_id)
            if record is None or not caller.may_see(record.user_id):
                raise NotFound(f"{kind.singular} {record_id!r} not found")
            return record
        return await self._unary(context, op())

    async def _upsert_owned(self, kind: OwnedKind[Any], record: Any, check: Callable[[Any], None],
                            context: grpc.aio.ServicerContext) -> cache_pb2.WriteResult:
        async def op() -> cache_pb2.WriteResult:
            check(record)
            seq = await self.store.upsert(kind, record)
            self.metrics.events_published.labels(kind.name).inc()
            return cache_pb2.WriteResult(seq=seq)
        return await self._unary(context, op())

    async def _list_owned(self, kind: OwnedKind[Any], context: grpc.aio.ServicerContext, user_id: str,
                          respond: Callable[[list[Any]], T], check: Callable[[], object] = lambda: None) -> T:
        """``check`` the request, read the caller's records (all users' for admins), ``respond``."""
        caller = _caller(context)

        async def op() -> T:
            check()
            return respond(await self.store.list(kind, caller.user_filter(user_id)))
        return await self._unary(context, op())

    async def _stream_owned(self, kind: OwnedKind[Any], context: grpc.aio.ServicerContext, user_id: str,
                            resume_from: str, make: Callable[[FeedItem], Message],
                            **filters: list[str]) -> AsyncIterator[Any]:
        try:
            user = _caller(context).user_filter(user_id)
        except ServiceError as exc:
            await _abort(context, exc)
        match = field_filter(u=user, **filters)
        async for event in self._stream(context, kind.stream, kind.name, match, resume_from, make):
            yield event

    async def GetOrder(self, request: cache_pb2.GetOrderRequest, context: grpc.aio.ServicerContext) -> cache_pb2.Order:
        return await self._get_owned(ORDERS, request.order_id, context)

    async def ListOrders(self, request: cache_pb2.ListOrdersRequest,
                         context: grpc.aio.ServicerContext) -> cache_pb2.ListOrdersResponse:
        return await self._list_owned(ORDERS, context, request.user_id, lambda orders: _orders_page(request, orders),
                                      check=lambda: _check_orders_query(request))

    async def UpsertOrder(self, request: cache_pb2.UpsertOrderRequest,
                          context: grpc.aio.ServicerContext) -> cache_pb2.WriteResult:
        return await self._upsert_owned(ORDERS, request.order, validation.check_order, context)

    async def StreamOrders(self, request: cache_pb2.StreamOrdersRequest,
                           context: grpc.aio.ServicerContext) -> AsyncIterator[cache_pb2.OrderEvent]:
        make = lambda item: _event(cache_pb2.OrderEvent, "order", cache_pb2.Order, item)
        async for event in self._stream_owned(ORDERS, context, request.user_id, request.resume_from, make,
                                              s=list(request.symbols), b=list(request.bot_ids)):
            yield event

    async def GetBot(self, request: cache_pb2.GetBotRequest, context: grpc.aio.ServicerContext) -> cache_pb2.Bot:
        return await self._get_owned(BOTS, request.bot_id, context)

    async def ListBots(self, request: cache_pb2.ListBotsRequest,
                       context: grpc.aio.ServicerContext) -> cache_pb2.ListBotsResponse:
        return await self._list_owned(BOTS, context, request.user_id, lambda bots: cache_pb2.ListBotsResponse(
            bots=sorted(bots, key=lambda b: (b.user_id, b.bot_id))))

    async def UpsertBot(self, request: cache_pb2.UpsertBotRequest,
                        context: grpc.aio.ServicerContext) -> cache_pb2.WriteResult:
        return await self._upsert_owned(BOTS, request.bot, validation.check_bot, context)

    async def StreamBots(self, request: cache_pb2.StreamBotsRequest,
                         context: grpc.aio.ServicerContext) -> AsyncIterator[cache_pb2.BotEvent]:
        make = lambda item: _event(cache_pb2.BotEvent, "bot", cache_pb2.Bot, item)
        async for event in self._stream_owned(BOTS, context, request.user_id, request.resume_from, make,
                                              b=list(request.bot_ids)):
            yield event

    # ------------------------------------------------------------ books

    async def PublishBook(self, request_iterator: AsyncIterator[cache_pb2.PublishBookRequest],
                          context: grpc.aio.ServicerContext) -> cache_pb2.PublishBookResponse:
        """Bulk ingest of snapshots and deltas, written in arrival order (cache_service.books).

        A refused message ends the call: INVALID_ARGUMENT (malformed; nothing of it stored) or
        FAILED_PRECONDITION (a missed update: the book is stale until the next snapshot)."""
        return await self._publish_books(context, request_iterator, lambda request: [request], BOOK_LINGER_S)

    async def PublishBookBatches(self, request_iterator: AsyncIterator[cache_pb2.PublishBookBatch],
                                 context: grpc.aio.ServicerContext) -> cache_pb2.PublishBookResponse:
        """PublishBook, a burst of messages per gRPC message: the same ingest, in the same
        order, without the per-message cost (and with no linger: a batch is already a batch)."""
        return await self._publish_books(context, request_iterator, lambda batch: list(batch.messages), 0.0)

    async def _publish_books(self, context: grpc.aio.ServicerContext, request_iterator: AsyncIterator[Any],
                             messages: Callable[[Any], list[cache_pb2.PublishBookRequest]],
                             linger_s: float) -> cache_pb2.PublishBookResponse:
        """One book ingest call: each gRPC message's book messages, in order (cache_service.books)."""
        ingest: _Ingest[cache_pb2.PublishBookRequest] = _Ingest(self, context, self.books.publish, "book",
                                                               linger_s=linger_s)

        async def read() -> None:
            async for request in request_iterator:
                items = messages(request)
                if items and not await ingest.add(items):
                    break
        return cache_pb2.PublishBookResponse(**await self._ingest(context, ingest, read()))

    async def GetBook(self, request: cache_pb2.GetBookRequest, context: grpc.aio.ServicerContext) -> cache_pb2.Book:
        async def op() -> cache_pb2.Book:
            validation.require_id("exchange", request.exchange)
            validation.require_id("symbol", request.symbol)
            book = await self.books.get(request.exchange, request.symbol, requested_depth(request.depth))
            if book is None:
                raise NotFound(f"no book for {request.symbol} on {request.exchange}")
            return book
        return await self._unary(context, op())

    async def StreamBook(self, request: cache_pb2.StreamBookRequest,
                         context: grpc.aio.ServicerContext) -> AsyncIterator[cache_pb2.BookEvent]:
        async for batch in self._book_stream(request, context):
            for event in batch:
                yield cache_pb2.BookEvent.FromString(event)

    async def StreamBookBatches(self, request: cache_pb2.StreamBookRequest,
                                context: grpc.aio.ServicerContext) -> AsyncIterator[cache_pb2.BookEventBatch]:
        """StreamBook's events, every ready one in one message (see ChangeFeed.follow_batches)."""
        async for batch in self._book_stream(request, context):
            yield wire.event_batch(cache_pb2.BookEventBatch, batch)

    async def _book_stream(self, request: cache_pb2.StreamBookRequest,
                           context: grpc.aio.ServicerContext) -> AsyncIterator[list[bytes]]:
        try:
            validation.require_id("exchange", request.exchange)
            validation.require_id("symbol", request.symbol)
            depth = requested_depth(request.depth)
        except ServiceError as exc:
            await _abort(context, exc)
        batches = self._book_events(request.exchange, request.symbol, depth, request.resume_from)
        async for batch in self._guarded(context, batches):
            yield batch

    async def _book_events(self, exchange: str, symbol: str, depth: int,
                           resume_from: str) -> AsyncGenerator[list[bytes], None]:
        """A book's serialized events at ``depth``, as many as are ready at a time: the
        snapshot now (unless resuming), then the feed.

        After a gap the retained updates cannot rebuild the subscriber's copy, so the feed is
        re-opened from a fresh snapshot instead of replaying onto a book it does not match."""
        key, match = book_stream(exchange, symbol), book_filter(depth)
        while True:
            if not resume_from:
                opening = await self.books.opening(exchange, symbol, depth)
                if opening is not None:
                    yield [opening.SerializeToString()]
                    resume_from = opening.seq
            gap = False
            async with aclosing(self.feed.follow_batches(key, "book", match, resume_from)) as batches:
                async for items in batches:
                    events, gap = _book_batch(items, depth)
                    yield events
                    if gap:
                        resume_from = ""
                        break
            if not gap:
                return

    # ------------------------------------------------------------ trades and candles

    async def PublishTrades(self, request_iterator: AsyncIterator[cache_pb2.PublishTradesRequest],
                            context: grpc.aio.ServicerContext) -> cache_pb2.PublishTradesResponse:
        """Bulk ingest of trades with their candles (cache_service.trades); a bad trade ends the
        call INVALID_ARGUMENT after the good ones before it are stored."""
        ingest: _Ingest[cache_pb2.Trade] = _Ingest(self, context, self.trades.publish, "trades")

        async def read() -> None:
            async for request in request_iterator:
                if request.trades and not await ingest.add(list(request.trades)):
                    break
        return cache_pb2.PublishTradesResponse(**await self._ingest(context, ingest, read()))

    async def ListTrades(self, request: cache_pb2.ListTradesRequest,
                         context: grpc.aio.ServicerContext) -> cache_pb2.ListTradesResponse:
        async def op() -> cache_pb2.ListTradesResponse:
            validation.require_id("exchange", request.exchange)
            limit = validation.list_limit(request.limit, TRADES_LIMIT_DEFAULT)
            return await self.trades.recent(request.exchange, sorted(set(request.symbols)), limit)
        return await self._unary(context, op())

    async def StreamTrades(self, request: cache_pb2.StreamTradesRequest,
                           context: grpc.aio.ServicerContext) -> AsyncIterator[cache_pb2.TradeEvent]:
        async for event in self._exchange_events(context, trade_stream(request.exchange), "trades",
                                                 request, _TRADES, batched=False):
            yield event

    async def StreamTradeBatches(self, request: cache_pb2.StreamTradesRequest,
                                 context: grpc.aio.ServicerContext) -> AsyncIterator[cache_pb2.TradeEventBatch]:
        """StreamTrades' events, every ready one in one message: a 10,000 trades/s tape costs one
        gRPC message per burst, not per trade (docs/benchmarks.md, trades)."""
        async for batch in self._exchange_events(context, trade_stream(request.exchange), "trades",
                                                 request, _TRADES, batched=True):
            yield batch

    async def ListCandles(self, request: cache_pb2.ListCandlesRequest,
                          context: grpc.aio.ServicerContext) -> cache_pb2.ListCandlesResponse:
        async def op() -> cache_pb2.ListCandlesResponse:
            validation.require_id("exchange", request.exchange)
            validation.require_id("symbol", request.symbol)
            check_interval(request.interval)
            limit = validation.list_limit(request.limit, CANDLES_LIMIT_DEFAULT)
            return await self.trades.candles(request.exchange, request.symbol, request.interval, limit)
        return await self._unary(context, op())

    async def StreamCandles(self, request: cache_pb2.StreamCandlesRequest,
                            context: grpc.aio.ServicerContext) -> AsyncIterator[cache_pb2.CandleEvent]:
        try:
            validation.require_id("exchange", request.exchange)
            validation.require_id("symbol", request.symbol)
            check_interval(request.interval)
        except ServiceError as exc:
            await _abort(context, exc)
        make = lambda item: _event(cache_pb2.CandleEvent, "candle", cache_pb2.Candle, item)
        match = field_filter(s=request.symbol, i=request.interval)
        async for event in self._stream(context, candle_stream(request.exchange), "candles", match,
                                        request.resume_from, make):
            yield event

    # ------------------------------------------------------------ canary

    async def StreamCanary(self, request: cache_pb2.StreamCanaryRequest,
                           context: grpc.aio.ServicerContext) -> AsyncIterator[cache_pb2.CanaryEvent]:
        """The reserved canary stream (cache_service.canary), like any other change stream."""
        async for item in self._guarded(context, self._canary_items(request.resume_from)):
            yield _event(cache_pb2.CanaryEvent, "canary", cache_pb2.Canary, item)

    async def _canary_items(self, resume_from: str) -> AsyncGenerator[FeedItem, None]:
        """Without ``resume_from`` the newest canary first, then the feed after it: a bridge
        that just started (or re-opened without a position) learns at once that the pipe
        works, instead of waiting up to an interval for the next canary."""
        if not resume_from:
            newest = await self.store.redis.xrevrange(CANARY_STREAM, count=1)
            if newest:
                raw_id, fields = newest[0]
                resume_from = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
                yield Entry(resume_from, seq_key(resume_from), fields)
        async with aclosing(self.feed.follow(CANARY_STREAM, CANARY_CHANNEL, match_all, resume_from)) as items:
            async for item in items:
                yield item
