"""Fixtures for bridge tests: a real cache service over real Redis, a real bridge, a feed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest

from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.api.v1 import cache_pb2_grpc
from tests.factories import BotFactory, OrderFactory, TickerFactory
from tests.infra.bridge_runner import RunningBridge, running_bridge
from tests.infra.cache_service_runner import (
    CacheServiceProcess,
    InProcessCacheService,
    running_cache_service,
)


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

    async def close(self) -> None:
        await self.channel.close()


@pytest.fixture
async def cache(redis_url: str) -> AsyncIterator[InProcessCacheService]:
    async with running_cache_service(redis_url) as svc:
        yield svc


@pytest.fixture
async def bridge(cache: InProcessCacheService) -> AsyncIterator[RunningBridge]:
    async with running_bridge(cache.target) as b:
        yield b


@pytest.fixture
async def feed(cache: InProcessCacheService) -> AsyncIterator[Feed]:
    f = Feed(cache.target)
    yield f
    await f.close()


@pytest.fixture
def cache_process(redis_url: str) -> Iterator[CacheServiceProcess]:
    """The cache service as a subprocess, for tests that run the bridge as one too."""
    proc = CacheServiceProcess(redis_url)
    proc.start()
    proc.wait_ready(30)
    yield proc
    proc.stop()
