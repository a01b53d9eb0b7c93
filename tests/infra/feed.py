"""A writer of test data into a real cache service, over gRPC with no user metadata: what the
market and trading services are to the bridge. Records come from tests/factories."""

from __future__ import annotations

from typing import Any

import grpc

from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.api.v1 import cache_pb2_grpc
from tests.factories import BotFactory, OrderFactory, TickerFactory


class Feed:
    """An internal writer (no user metadata), as the market and trading services are."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.stub = cache_pb2_grpc.CacheServiceStub(self.channel)

    async def ticker(self, **fields: Any) -> str:
        reply = await self.stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory(**fields)),
                                              timeout=10)
        return reply.seq

    async def tickers(self, tickers: list[pb.Ticker]) -> str:
        """Publish many tickers through one bulk ``PublishTickers`` call; the last seq."""
        reply = await self.stub.PublishTickers(
            iter([pb.PublishTickerRequest(ticker=t) for t in tickers]), timeout=30)
        assert reply.accepted == len(tickers)
        return reply.last_seq

    async def order(self, **fields: Any) -> str:
        reply = await self.stub.UpsertOrder(pb.UpsertOrderRequest(order=OrderFactory(**fields)),
                                            timeout=10)
        return reply.seq

    async def bot(self, **fields: Any) -> str:
        reply = await self.stub.UpsertBot(pb.UpsertBotRequest(bot=BotFactory(**fields)), timeout=10)
        return reply.seq

    async def book(self, *messages: pb.PublishBookRequest) -> str:
        """Publish book snapshots/deltas through one ``PublishBook`` call; the last seq."""
        reply = await self.stub.PublishBook(iter(messages), timeout=30)
        assert reply.accepted == len(messages)
        return reply.last_seq

    async def trades(self, *trades: pb.Trade) -> str:
        """Publish trades through one ``PublishTrades`` call; the last seq."""
        reply = await self.stub.PublishTrades(iter([pb.PublishTradesRequest(trades=trades)]), timeout=30)
        assert reply.accepted == len(trades)
        return reply.last_seq

    async def close(self) -> None:
        await self.channel.close()
