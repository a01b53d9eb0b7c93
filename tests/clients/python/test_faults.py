"""Faults against the real stack: a bridge restart, a Redis restart, a cache service restart
and a stalled network. After each, the client's view (tickers, orders, book, trades) ends
equal to the service's, with nothing lost that the service kept.

The stack and its publisher (tickers, orders, book deltas, trades every 50 ms, surviving the
faults) are the JavaScript client's (tests/clients/js/stack.py), so both clients face the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal

from marketbridge_client import Client, Stream
from tests.clients.js.stack import BOOK_SYMBOL, EXCHANGE, Stack, js_stack
from marketbridge.api.v1 import cache_pb2 as pb
from tests.factories import TradeFactory, book_delta
from tests.infra.redis_servers import RedisServer
from tests.infra.tcp_proxy import StallingProxy
from tests.infra.tokens import make_token

TIMEOUT = 20.0
DEPTH = 10


@dataclass
class View:
    """The four subscriptions whose state must match the service's."""

    tickers: Stream
    orders: Stream
    book: Stream
    trades: Stream

    @property
    def all(self) -> tuple[Stream, ...]:
        return self.tickers, self.orders, self.book, self.trades


def subscribe_all(client: Client) -> View:
    return View(client.subscribe("tickers", exchange=EXCHANGE), client.subscribe("orders"),
                client.subscribe("book", exchange=EXCHANGE, symbol=BOOK_SYMBOL, depth=DEPTH),
                client.subscribe("trades", exchange=EXCHANGE, limit=1000))


async def flowing(view: View, more: int = 3) -> None:
    """Every subscription has taken ``more`` further items: the stream is live again."""
    marks = [s.received + more for s in view.all]
    await asyncio.gather(*(s.wait_for(lambda s, m=m: s.received >= m, TIMEOUT)
                           for s, m in zip(view.all, marks)))


def top_of_book_change(stack: Stack) -> pb.PublishBookRequest:
    """A book write every depth sees: a change outside a subscriber's depth sends it nothing."""
    model = stack.publisher.book
    if model.need_snapshot:                 # the last write failed: the model publishes it whole
        message = model.next_message()
        model.need_snapshot = False
        return message
    model.sequence += 1
    best = max(model.bids, key=Decimal)
    model.bids[best] = f"{model.sequence}.25"   # never a qty it had: an equal one changes nothing
    return book_delta(EXCHANGE, BOOK_SYMBOL, sequence=model.sequence, bids=[(best, model.bids[best])])


async def marker_seqs(stack: Stack) -> tuple[str, str, str, str]:
    """Stop the publisher, then write one more of each kind: the seqs the client must reach."""
    publisher = stack.publisher
    await publisher.quiesce()
    feed = publisher.feed
    ticker = await feed.ticker(exchange=EXCHANGE, symbol="BTC/USDT", price=12345.0)
    order = await feed.order(order_id="alice-js-00", user_id="alice", created_at=1700000000.0)
    book = await feed.book(top_of_book_change(stack))
    trade = await feed.trades(TradeFactory(exchange=EXCHANGE, symbol="BTC/USDT",
                                           trade_id=f"marker-{publisher.rounds}"))
    return ticker, order, book, trade


async def stuck(client: Client, stream: Stream, seq: str) -> str:
    """What a stream that did not reach its marker holds, next to what the service holds."""
    said = (f"{stream.channel} at {stream.last_seq}, not {seq} (stale {stream.stale}, resyncs "
            f"{stream.subscription.resyncs}; last items {[(u.kind, u.seq) for u in list(stream._items)[-6:]]})")
    if stream.book is not None:
        server = await client.get_book(EXCHANGE, BOOK_SYMBOL, depth=DEPTH)
        said += (f"; service's book checksum {server['checksum']}, the client's {stream.book.checksum()}, "
                 f"service best bid {server['bids'][:1]}, client's {stream.book.best_bid()}")
    return said


async def assert_converged(stack: Stack, client: Client, view: View) -> None:
    """Wait for the markers, then compare every subscription's state with the service's answers."""
    for stream, seq in zip(view.all, await marker_seqs(stack)):
        try:
            await stream.wait_seq(seq, TIMEOUT)
        except TimeoutError:
            raise AssertionError(await stuck(client, stream, seq)) from None
    tickers = await client.list_tickers(EXCHANGE)
    assert view.tickers.records == {(t["exchange"], t["symbol"]): t for t in tickers}
    orders = await client.list_orders(limit=1000)
    assert view.orders.records == {o["order_id"]: o for o in orders}
    book = await client.get_book(EXCHANGE, BOOK_SYMBOL, depth=DEPTH)
    assert view.book.book is not None
    assert view.book.book.levels() == ([tuple(x) for x in book["bids"]], [tuple(x) for x in book["asks"]])
    trades = await client.list_trades(EXCHANGE, limit=1000)
    held = {key[2] for key in view.trades.records}
    assert held == {t["trade_id"] for t in trades}, "the client lost trades the service kept"


@asynccontextmanager
async def connected(url: str) -> AsyncIterator[tuple[Client, View]]:
    tokens = lambda: make_token("alice")  # noqa: E731 - a fresh token for every connect
    async with Client(url, tokens, batch_ms=10, heartbeat_s=1) as client:
        view = subscribe_all(client)
        await asyncio.gather(*(s.wait_for(lambda s: s.last_seq is not None, TIMEOUT) for s in view.all))
        yield client, view


async def test_bridge_redis_and_cache_service_restarts(fresh_redis: RedisServer) -> None:
    async with js_stack(fresh_redis) as stack, connected(stack.ws_url) as (client, view):
        stack.publisher.start("start")
        await flowing(view)
        await stack.fault("bridge")               # drained: 1001, reconnect at once, resume
        await client.wait_until(lambda: client.connections >= 2, TIMEOUT)
        await flowing(view)
        await assert_converged(stack, client, view)
        assert client.last_close is not None and client.last_close.code == 1001

        for fault in ("redis", "cache"):          # the bridge stays: interrupted, then resumed
            stack.publisher.start(fault)
            await flowing(view)
            statuses = [s.received for s in view.all]
            await stack.fault(fault)
            await flowing(view)
            await assert_converged(stack, client, view)
            assert all(s.received > n for s, n in zip(view.all, statuses))
        assert client.connections == 2


async def test_a_stalled_network_is_found_by_heartbeats(fresh_redis: RedisServer) -> None:
    async with js_stack(fresh_redis) as stack, StallingProxy("127.0.0.1", stack.port) as proxy, \
            connected(f"ws://127.0.0.1:{proxy.port}/ws") as (client, view):
        stack.publisher.start("stall")
        await flowing(view)
        proxy.stall()                             # nothing closes: only silence tells
        await client.wait_until(lambda: client.dead_connections >= 1, TIMEOUT)
        proxy.resume()
        await client.wait_until(lambda: client.connections >= 2, TIMEOUT)
        await flowing(view)
        await assert_converged(stack, client, view)
        assert all(s.subscription.resyncs == 0 for s in view.all), "resumed, not re-snapshotted"
