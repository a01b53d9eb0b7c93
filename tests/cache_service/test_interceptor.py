"""The metrics interceptor wraps every handler shape grpc.aio accepts without changing what the
client sees: async/sync unary, async generators, coroutines that ``context.write`` (health
Watch), sync generators. Real grpc.aio servers and channels throughout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cache_service.interceptor import MetricsInterceptor
from cache_service.metrics import Metrics
from tests.infra.cache_service_runner import running_cache_service

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
TIMEOUT = 30.0


async def _async_unary(request: bytes, context: Any) -> bytes:
    return b"async:" + request


def _sync_unary(request: bytes, context: Any) -> bytes:
    return b"sync:" + request


async def _async_gen(request: bytes, context: Any) -> AsyncIterator[bytes]:
    for i in range(3):
        yield request + str(i).encode()


async def _writes(request: bytes, context: Any) -> None:
    for i in range(3):
        await context.write(request + str(i).encode())


def _sync_gen(request: bytes, context: Any) -> Iterator[bytes]:
    for i in range(3):
        yield request + str(i).encode()


async def _sum_lengths(requests: AsyncIterator[bytes], context: Any) -> bytes:
    return str(sum([len(r) async for r in requests])).encode()


async def _echo_stream(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for r in requests:
        yield r


HANDLERS = {
    "AsyncUnary": grpc.unary_unary_rpc_method_handler(_async_unary),
    "SyncUnary": grpc.unary_unary_rpc_method_handler(_sync_unary),
    "AsyncGen": grpc.unary_stream_rpc_method_handler(_async_gen),
    "Writes": grpc.unary_stream_rpc_method_handler(_writes),
    "SyncGen": grpc.unary_stream_rpc_method_handler(_sync_gen),
    "SumLengths": grpc.stream_unary_rpc_method_handler(_sum_lengths),
    "EchoStream": grpc.stream_stream_rpc_method_handler(_echo_stream),
}


async def test_every_handler_shape_works_and_is_counted() -> None:
    metrics = Metrics()
    server = grpc.aio.server(interceptors=[MetricsInterceptor(metrics)])
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Shapes", HANDLERS)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert await channel.unary_unary("/test.Shapes/AsyncUnary")(b"x", timeout=TIMEOUT) == b"async:x"
            assert await channel.unary_unary("/test.Shapes/SyncUnary")(b"x", timeout=TIMEOUT) == b"sync:x"
            for name in ("AsyncGen", "Writes", "SyncGen"):
                call = channel.unary_stream(f"/test.Shapes/{name}")(b"r", timeout=TIMEOUT)
                assert [r async for r in call] == [b"r0", b"r1", b"r2"], name
            assert await channel.stream_unary("/test.Shapes/SumLengths")(iter([b"ab", b"c"]), timeout=TIMEOUT) == b"3"
            call = channel.stream_stream("/test.Shapes/EchoStream")(iter([b"a", b"b"]), timeout=TIMEOUT)
            assert [r async for r in call] == [b"a", b"b"]
    finally:
        await server.stop(None)
    for name in HANDLERS:
        assert metrics.grpc_requests.labels(f"test.Shapes/{name}", "OK")._value.get() == 1, name
    metrics.close()


async def _next_status(watch: Any) -> int:
    response = await asyncio.wait_for(watch.read(), TIMEOUT)
    assert response is not grpc.aio.EOF
    return response.status


async def test_health_watch_streams_serving_then_not_serving_when_redis_stops_liveness_stays(fresh_redis) -> None:
    async with running_cache_service(fresh_redis.url, redis_timeout=1.0) as svc:
        async with grpc.aio.insecure_channel(svc.target) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            assert await _next_status(watch) == SERVING
            await asyncio.to_thread(fresh_redis.stop)
            assert await _next_status(watch) == NOT_SERVING
            # Redis down: not ready, but alive (the chart's liveness probe must not restart us)
            liveness = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="liveness"), timeout=TIMEOUT)
            assert liveness.status == SERVING
            await asyncio.to_thread(fresh_redis.start)
            assert await _next_status(watch) == SERVING
            watch.cancel()
