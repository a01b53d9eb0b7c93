"""Redis going away: streams end UNAVAILABLE and resume without loss, unary calls fail fast,
health follows (more on interrupted streams in test_feed_interruption.py). On a cluster the
shards serving the keys under test go (tests/infra/redis_faults.py)."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cache_service.store import BOTS, ORDERS, ticker_stream, tickers_key
from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.api.v1 import cache_pb2_grpc
from tests.infra.cache_calls import read_events, read_until_live, rpc_error
from tests.factories import OrderFactory, TickerFactory
from tests.infra.cache_service_runner import running_cache_service

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

pytestmark = pytest.mark.cluster_too   # every redis_url test here runs on a Redis Cluster too (tests/conftest.py)


async def watch_until(watch, status: int, timeout: float = 30.0) -> None:
    """Read health Watch updates until ``status`` shows up."""
    while True:
        response = await asyncio.wait_for(watch.read(), timeout)
        assert response is not grpc.aio.EOF
        if response.status == status:
            return


@pytest.mark.resilience
async def test_redis_restart_mid_stream_loses_nothing(redis_fault) -> None:
    redis = redis_fault(ORDERS.stream, tickers_key("binance"))
    async with running_cache_service(redis.url, redis_timeout=1.0) as svc:
        async with grpc.aio.insecure_channel(svc.target) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="cache.v1.CacheService"))
            await watch_until(watch, SERVING)
            stream = stub.StreamOrders(pb.StreamOrdersRequest())
            await read_until_live(stream)
            before = [(await stub.UpsertOrder(pb.UpsertOrderRequest(order=OrderFactory()))).seq for _ in range(3)]
            assert [e.seq for e in await read_events(stream, 3)] == before

            await asyncio.to_thread(redis.stop)
            started = time.monotonic()
            error = await rpc_error(stub.UpsertOrder(pb.UpsertOrderRequest(order=OrderFactory()), timeout=10))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - started < 10  # failed, did not wait for the client deadline
            error = await rpc_error(stub.GetTicker(pb.GetTickerRequest(exchange="binance", symbol="BTC/USDT")))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            error = await rpc_error(read_events(stream, 1))   # the open stream says so too
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert "change feed interrupted" in (error.details() or "")
            await watch_until(watch, NOT_SERVING)
            assert svc.server.metrics.redis_up._value.get() == 0

            await asyncio.to_thread(redis.start)
            await watch_until(watch, SERVING)
            after = [(await stub.UpsertOrder(pb.UpsertOrderRequest(order=OrderFactory()))).seq for _ in range(3)]
            deadline = time.monotonic() + 30
            while True:   # resume as a client does: from the last seq it got, retrying UNAVAILABLE
                stream = stub.StreamOrders(pb.StreamOrdersRequest(resume_from=before[-1]))
                try:
                    replayed = await read_until_live(stream)
                    break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline, exc
                    await asyncio.sleep(0.2)
            assert [e.seq for e in replayed[:-1]] == after
            assert svc.server.metrics.redis_reconnects._value.get() >= 1
            stream.cancel()
            watch.cancel()


@pytest.mark.resilience
async def test_new_stream_while_redis_is_down_is_unavailable(redis_fault) -> None:
    redis = redis_fault(ticker_stream("binance"))
    async with running_cache_service(redis.url, redis_timeout=1.0) as svc:
        async with grpc.aio.insecure_channel(svc.target) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            await asyncio.to_thread(redis.stop)
            for stream in (stub.StreamTickers(pb.StreamTickersRequest(exchange="binance")),
                           stub.StreamTickerBatches(pb.StreamTickersRequest(exchange="binance"))):
                error = await rpc_error(stream.read())
                assert error.code() == grpc.StatusCode.UNAVAILABLE
            async def one():
                yield pb.PublishTickerRequest(ticker=TickerFactory())
            error = await rpc_error(stub.PublishTickers(one()))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert svc.server.feed.reader_count == 0
            await asyncio.to_thread(redis.start)


@pytest.mark.resilience
async def test_paused_redis_fails_unary_calls_within_the_deadline(redis_fault) -> None:
    redis = redis_fault(tickers_key("binance"), BOTS.users_key)
    async with running_cache_service(redis.url, redis_timeout=1.0) as svc:
        async with grpc.aio.insecure_channel(svc.target) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            await stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory(symbol="BTC/USDT")))
            await asyncio.to_thread(redis.pause)
            try:
                for call in (stub.GetTicker(pb.GetTickerRequest(exchange="binance", symbol="BTC/USDT"), timeout=20),
                             stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory()), timeout=20),
                             stub.ListBots(pb.ListBotsRequest(), timeout=0.5)):
                    started = time.monotonic()
                    error = await rpc_error(call)
                    assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                    assert time.monotonic() - started < 15
            finally:
                await asyncio.to_thread(redis.unpause)
            got = await stub.GetTicker(pb.GetTickerRequest(exchange="binance", symbol="BTC/USDT"), timeout=10)
            assert got.exchange == "binance"


@pytest.mark.resilience
async def test_publish_tickers_ends_when_redis_fails_even_if_the_client_is_idle(redis_fault) -> None:
    redis = redis_fault(ticker_stream("binance"))
    async with running_cache_service(redis.url, redis_timeout=1.0) as svc:
        async with grpc.aio.insecure_channel(svc.target) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            call = stub.PublishTickers(timeout=60)
            await call.write(pb.PublishTickerRequest(ticker=TickerFactory(symbol="BTC/USDT")))
            stream = stub.StreamTickers(pb.StreamTickersRequest(exchange="binance", resume_from="0"))
            await read_until_live(stream)  # the first ticker is in Redis
            stream.cancel()
            await asyncio.to_thread(redis.stop)
            await call.write(pb.PublishTickerRequest(ticker=TickerFactory(symbol="ETH/USDT")))
            error = await rpc_error(call)  # no done_writing(): the client stays idle
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            await asyncio.to_thread(redis.start)
