"""A stream never sits silent while it cannot deliver (cache.proto): Redis killed or hung ends
open streams UNAVAILABLE within ``--feed-stall-s``, a new stream meanwhile is refused at once,
resume_from afterwards replays everything retained, and idle healthy streams carry heartbeats
that stop when Redis hangs. Real Redis (a container or process of the test's own; on a cluster
the session cluster's shards serving the streams under test, tests/infra/redis_faults.py), real
gRPC."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from cache_service.config import CacheConfig, ConfigError, load_config
from cache_service.store import BOTS, ORDERS, ticker_stream
from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.api.v1 import cache_pb2_grpc
from tests.infra.cache_calls import read_events, read_until_live, rpc_error
from tests.factories import OrderFactory, TickerFactory
from tests.infra.cache_service_runner import running_cache_service

# every redis_url test here runs on a Redis Cluster too (tests/conftest.py)
pytestmark = [pytest.mark.resilience, pytest.mark.cluster_too]

STALL_S = 2.0
SLACK_S = 3.0       # 2 shared cores: scheduling noise, never a hang (that would be unbounded)
HEARTBEAT_S = 0.5
RECOVER_S = 60.0


async def ended_with(call: Any, timeout: float = 30.0) -> grpc.aio.AioRpcError:
    """Read a stream until it ends with an error (heartbeats and events are skipped)."""
    async def drain() -> None:
        while True:
            message = await call.read()
            assert message is not grpc.aio.EOF, "stream ended OK instead of with an error"
    return await rpc_error(asyncio.wait_for(drain(), timeout))


async def resumed(open_stream: Any, deadline_s: float = RECOVER_S) -> tuple[Any, list[Any]]:
    """Open a stream (retrying UNAVAILABLE, as a client resuming after an outage does) and
    return it with its events up to live."""
    deadline = time.monotonic() + deadline_s
    while True:
        call = open_stream()
        try:
            return call, await read_until_live(call)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() is grpc.StatusCode.UNAVAILABLE, exc
            assert time.monotonic() < deadline, f"no resume within {deadline_s}s: {exc.details()}"
            await asyncio.sleep(0.2)


async def live(*calls: Any) -> tuple[Any, ...]:
    """The given streams, each read up to its live marker."""
    for call in calls:
        await read_until_live(call)
    return calls


def upsert(stub: cache_pb2_grpc.CacheServiceStub) -> Any:
    return stub.UpsertOrder(pb.UpsertOrderRequest(order=OrderFactory()), timeout=10)


@pytest.mark.parametrize("fault", ["kill", "pause"])
async def test_redis_fault_ends_open_streams_unavailable_then_resume_replays_everything(
        redis_fault, fault: str) -> None:
    redis = redis_fault(ORDERS.stream, ticker_stream("binance"))
    # default --redis-timeout (3 s): a hang is found by the feed's own watchdog, not the socket
    async with running_cache_service(redis.url, feed_stall_s=STALL_S) as svc:
        async with grpc.aio.insecure_channel(svc.target) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            orders, tickers = await live(stub.StreamOrders(pb.StreamOrdersRequest()),
                                         stub.StreamTickerBatches(pb.StreamTickersRequest(exchange="binance")))
            before = [(await upsert(stub)).seq for _ in range(3)]
            assert [e.seq for e in await read_events(orders, 3)] == before

            started = time.monotonic()
            await asyncio.to_thread(redis.kill if fault == "kill" else redis.pause)
            try:
                errors = await asyncio.gather(ended_with(orders), ended_with(tickers))
                detected = time.monotonic() - started
                for error in errors:
                    assert error.code() is grpc.StatusCode.UNAVAILABLE
                    assert "change feed interrupted" in (error.details() or "")
                assert detected < STALL_S + SLACK_S, detected
                assert svc.server.feed.reader_count == 0   # no reader lingers
                # a new stream during the outage is refused at once, not left waiting
                refused_at = time.monotonic()
                error = await ended_with(stub.StreamOrders(pb.StreamOrdersRequest(resume_from=before[-1])))
                assert error.code() is grpc.StatusCode.UNAVAILABLE
                assert time.monotonic() - refused_at < 1.5
                print(f"{fault}: streams ended UNAVAILABLE after {detected:.2f}s")
            finally:
                await asyncio.to_thread(redis.start if fault == "kill" else redis.unpause)

            deadline = time.monotonic() + RECOVER_S
            while True:   # unary writes come back once Redis answers again
                try:
                    after = [(await upsert(stub)).seq for _ in range(3)]
                    break
                except grpc.aio.AioRpcError as exc:
                    assert time.monotonic() < deadline, exc
                    await asyncio.sleep(0.2)
            stream, replayed = await resumed(lambda: stub.StreamOrders(pb.StreamOrdersRequest(resume_from=before[-1])))
            assert [e.seq for e in replayed[:-1]] == after     # no loss, no duplicate
            everything, replayed = await resumed(lambda: stub.StreamOrders(pb.StreamOrdersRequest(resume_from="0")))
            assert [e.seq for e in replayed[:-1]] == before + after
            later = [(await upsert(stub)).seq]
            assert [e.seq for e in await read_events(stream, 1)] == later
            assert svc.server.metrics.feed_interruptions.labels(
                "connection" if fault == "kill" else "stalled")._value.get() >= 1
            for call in (stream, everything):
                call.cancel()


async def test_idle_streams_carry_heartbeats_until_redis_hangs(redis_fault) -> None:
    redis = redis_fault(BOTS.stream, ticker_stream("binance"))
    stall = 4.0   # long enough to see the heartbeats stop before the stream ends
    async with running_cache_service(redis.url, feed_stall_s=stall, stream_heartbeat_s=HEARTBEAT_S) as svc:
        async with grpc.aio.insecure_channel(svc.target) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            bots, batches = await live(stub.StreamBots(pb.StreamBotsRequest()),
                                       stub.StreamTickerBatches(pb.StreamTickersRequest(exchange="binance")))
            beats = [await asyncio.wait_for(bots.read(), 10) for _ in range(4)]
            assert [b.WhichOneof("event") for b in beats] == ["heartbeat"] * 4
            assert all(b.seq == "" for b in beats)
            times = [b.heartbeat.server_time for b in beats]
            gaps = [b - a for a, b in zip(times, times[1:])]
            assert all(HEARTBEAT_S * 0.9 <= g < HEARTBEAT_S + 1.0 for g in gaps), gaps
            assert abs(times[-1] - time.time()) < 2.0
            batch = await asyncio.wait_for(batches.read(), 10)
            assert [e.WhichOneof("event") for e in batch.events] == ["heartbeat"]

            await asyncio.to_thread(redis.pause)
            paused_at = time.time()
            try:
                late: list[float] = []
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    while True:
                        message = await asyncio.wait_for(bots.read(), stall + SLACK_S)
                        assert message is not grpc.aio.EOF
                        assert message.WhichOneof("event") == "heartbeat"
                        late.append(message.heartbeat.server_time)
                assert info.value.code() is grpc.StatusCode.UNAVAILABLE
                # healthy means a read completed within BLOCK + slack: nothing decided later
                bound = paused_at + svc.server.config.feed_policy.healthy_within_s + 0.1
                assert all(t <= bound for t in late), (late, bound)
            finally:
                await asyncio.to_thread(redis.unpause)
            batches.cancel()


async def test_ticker_heartbeats_on_streamtickers(redis_url: str) -> None:
    async with running_cache_service(redis_url, stream_heartbeat_s=HEARTBEAT_S) as svc:
        async with grpc.aio.insecure_channel(svc.target) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            stream = stub.StreamTickers(pb.StreamTickersRequest(exchange="binance"))
            await read_until_live(stream)
            beat = await asyncio.wait_for(stream.read(), 10)
            assert beat.WhichOneof("event") == "heartbeat" and beat.seq == ""
            # events still flow right after, on the same stream
            seq = (await stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory()))).seq
            assert [e.seq for e in await read_events(stream, 1)] == [seq]
            stream.cancel()


def test_feed_flags_have_env_twins_and_must_be_positive() -> None:
    config = load_config(["--feed-stall-s", "0.5"], {"CACHE_STREAM_HEARTBEAT_S": "0.25"})
    assert (config.feed_stall_s, config.stream_heartbeat_s) == (0.5, 0.25)
    assert config.feed_policy.block_ms == 250
    assert (CacheConfig().feed_stall_s, CacheConfig().stream_heartbeat_s) == (2.0, 1.0)
    for name in ("feed_stall_s", "stream_heartbeat_s"):
        with pytest.raises(ConfigError, match=f"--{name.replace('_', '-')}: must be > 0"):
            CacheConfig(**{name: 0})
