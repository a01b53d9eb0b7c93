"""A bridge in front of a cache service from before a batched stream (a rolling upgrade).

The older service here is a real gRPC server that offers exactly the older API: it answers the
methods an older release had by calling the real cache service, and answers the batched stream
the way any gRPC server answers a method it does not have (UNIMPLEMENTED).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.api.v1 import cache_pb2_grpc
from tests.bridge.client import client
from tests.factories import TradeFactory, book_delta, book_snapshot
from tests.infra.bridge_runner import running_bridge
from tests.infra.eventually import eventually
from tests.infra.tokens import make_token

ALICE = make_token("alice")


class ServiceBeforeBatches(cache_pb2_grpc.CacheServiceServicer):
    """The ticker methods of an older release, each answered by the real service."""

    def __init__(self, upstream: cache_pb2_grpc.CacheServiceStub) -> None:
        self.upstream = upstream

    async def ListTickers(self, request: pb.ListTickersRequest, context: Any) -> Any:
        return await self.upstream.ListTickers(request, timeout=10)

    async def StreamTickers(self, request: pb.StreamTickersRequest,
                            context: Any) -> AsyncIterator[pb.TickerEvent]:
        async for event in self.upstream.StreamTickers(request):
            yield event


class ServiceBeforeTradeBatches(ServiceBeforeBatches):
    """A release with StreamTickerBatches, trades and books, but not yet StreamTradeBatches
    nor StreamBookBatches."""

    async def StreamTickerBatches(self, request: pb.StreamTickersRequest,
                                  context: Any) -> AsyncIterator[pb.TickerEventBatch]:
        async for batch in self.upstream.StreamTickerBatches(request):
            yield batch

    async def ListTrades(self, request: pb.ListTradesRequest, context: Any) -> Any:
        return await self.upstream.ListTrades(request, timeout=10)

    async def StreamTrades(self, request: pb.StreamTradesRequest,
                           context: Any) -> AsyncIterator[pb.TradeEvent]:
        async for event in self.upstream.StreamTrades(request):
            yield event

    async def GetBook(self, request: pb.GetBookRequest, context: Any) -> Any:
        return await self.upstream.GetBook(request, timeout=10)

    async def StreamBook(self, request: pb.StreamBookRequest, context: Any) -> AsyncIterator[pb.BookEvent]:
        async for event in self.upstream.StreamBook(request):
            yield event


async def _serve(cache: Any, servicer: type[ServiceBeforeBatches]) -> AsyncIterator[str]:
    channel = grpc.aio.insecure_channel(cache.target)
    server = grpc.aio.server()
    cache_pb2_grpc.add_CacheServiceServicer_to_server(servicer(cache_pb2_grpc.CacheServiceStub(channel)), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)
        await channel.close()


@pytest.fixture
async def older_service(cache) -> AsyncIterator[str]:
    async for target in _serve(cache, ServiceBeforeBatches):
        yield target


@pytest.fixture
async def service_before_trade_batches(cache) -> AsyncIterator[str]:
    async for target in _serve(cache, ServiceBeforeTradeBatches):
        yield target


async def test_bridge_falls_back_to_one_event_per_message_streams(older_service, feed) -> None:
    async with running_bridge(older_service) as b:
        async with client(b.ws_url(ALICE, batch_ms=5)) as c:
            await c.subscribe(channel="tickers", exchange="binance", snapshot=False)
            seq = await feed.ticker(symbol="BTC/USDT")
            (u,) = await c.updates(1)
            assert u["seq"] == seq
            # a second topic goes straight to the older method
            await c.subscribe(channel="tickers", exchange="kraken", snapshot=False)
            seq = await feed.ticker(exchange="kraken", symbol="BTC/USD")
            (u,) = await c.updates(1)
            assert u["seq"] == seq
        def calls(method: str, code: str) -> float:
            return b.app.metrics.value("bridge_grpc_requests_total",
                                       {"method": method, "code": code})

        assert calls("StreamTickerBatches", "UNIMPLEMENTED") == 1   # asked once, not per topic


async def test_each_batched_method_falls_back_on_its_own(service_before_trade_batches, feed) -> None:
    """A service without StreamTradeBatches nor StreamBookBatches: trades and books use the
    one-event methods, tickers stay batched."""
    async with running_bridge(service_before_trade_batches) as b:
        async with client(b.ws_url(ALICE, batch_ms=5)) as c:
            await c.subscribe(channel="trades", exchange="binance", snapshot=False)
            trade = TradeFactory(exchange="binance")
            seq = await feed.trades(trade)
            (u,) = await c.updates(1)
            assert (u["seq"], u["result"]["trade_id"]) == (seq, trade.trade_id)
            await c.subscribe(channel="tickers", exchange="binance", snapshot=False)
            seq = await feed.ticker(symbol="BTC/USDT")
            (u,) = await c.updates(1)
            assert u["seq"] == seq
            await feed.book(book_snapshot(sequence=1, levels=12))
            await c.subscribe(channel="book", exchange="binance", symbol="BTC/USDT", depth=10)
            seq = await feed.book(book_delta(sequence=2, bids=[("49999.5", "7")]))
            (u,) = await c.updates(1)
            assert u["seq"] == seq and ["49999.5", "7"] in u["result"]["bids"]

        def calls(method: str, code: str) -> float:
            return b.app.metrics.value("bridge_grpc_requests_total",
                                       {"method": method, "code": code})

        assert calls("StreamTradeBatches", "UNIMPLEMENTED") == 1
        assert calls("StreamBookBatches", "UNIMPLEMENTED") == 1
        assert calls("StreamTickerBatches", "UNIMPLEMENTED") == 0


async def test_a_service_without_the_canary_does_not_keep_the_bridge_unready(older_service) -> None:
    """StreamCanary answered UNIMPLEMENTED (a release before it): after the canary's 3 intervals
    of silence the canary still does not make the bridge unready, instead of taking every
    bridge out of the load balancer's rotation in the middle of a rolling upgrade."""
    async with running_bridge(older_service, canary_s=0.1) as b:
        canary = b.app.canary
        assert canary is not None
        await eventually(lambda: canary.not_offered)
        loop = asyncio.get_running_loop()
        await eventually(lambda: canary.silent_s(loop.time()) > canary.limit_s)
        assert canary.stale_reason(loop.time()) is None
        # (this older-release server has no health service, so /readyz says so, not "canary")
        assert "canary" not in (b.app.not_ready_reason() or "")
