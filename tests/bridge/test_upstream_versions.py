"""A bridge in front of a cache service from before ``StreamTickerBatches`` (a rolling upgrade).

The older service here is a real gRPC server that offers exactly the older API: it answers the
methods an older release had by calling the real cache service, and answers the batched stream
the way any gRPC server answers a method it does not have (UNIMPLEMENTED).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.api.v1 import cache_pb2_grpc
from tests.bridge.client import client
from tests.infra.bridge_runner import running_bridge
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


@pytest.fixture
async def older_service(cache) -> AsyncIterator[str]:
    channel = grpc.aio.insecure_channel(cache.target)
    server = grpc.aio.server()
    cache_pb2_grpc.add_CacheServiceServicer_to_server(
        ServiceBeforeBatches(cache_pb2_grpc.CacheServiceStub(channel)), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)
        await channel.close()


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
