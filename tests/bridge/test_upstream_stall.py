"""Upstream streams that stay open but go silent, and upstreams that die (docs/protocol.md, docs/reliability.md).

A subscribed client must be told ``interrupted`` within ``--upstream-stall-s`` (+ slack) when its
topic's upstream cannot deliver, stay connected, and get ``resumed`` (``recovered: true`` when
every missed event is replayed) with those events once delivery is back.

The first tests put a *heartbeating service* between the bridge and the real cache service: a
real grpc.aio server that answers ``StreamTickerBatches`` by streaming the real service's events
(one per message), adds a heartbeat whenever it has had nothing to send for a while, as the
cache service's contract says (proto/cache/v1/cache.proto), and can be frozen: it keeps every
stream open and sends nothing, as a SIGSTOPped or hung service does. The last tests run the real
cache service as a process and stop (SIGSTOP) or kill it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.api.v1 import cache_pb2_grpc
from tests.bridge.client import Client, Frame, client
from tests.infra.eventually import eventually
from tests.infra.feed import Feed
from tests.infra.bridge_runner import RunningBridge, running_bridge
from tests.infra.cache_service_runner import CacheServiceProcess, running_cache_service
from tests.infra.tokens import make_token

ALICE = make_token("alice")

pytestmark = pytest.mark.cluster_too  # SPEC §9.5 lag and stalls hold on a cluster too (SPEC §9.4)
STALL_S = 1.5          # --upstream-stall-s in these tests
SLACK_S = 2.5          # scheduling on a busy 2-core machine
HEARTBEAT_S = 0.25


def heartbeat() -> pb.TickerEventBatch:
    return pb.TickerEventBatch(events=[pb.TickerEvent(
        heartbeat=pb.StreamHeartbeat(server_time=time.time()))])


def is_status(frame: Frame) -> bool:
    return frame.get("type") == "stream_status"


class HeartbeatingService(cache_pb2_grpc.CacheServiceServicer):
    """Ticker streams of the real service, with heartbeats while idle; freezable."""

    def __init__(self, upstream: cache_pb2_grpc.CacheServiceStub, heartbeats: bool) -> None:
        self.upstream = upstream
        self.heartbeats = heartbeats
        self.running = asyncio.Event()
        self.running.set()
        self.heartbeats_sent = 0
        self.rig_catch_up = False   # the next catch-up stream: one event, a heartbeat, silence

    def freeze(self) -> None:
        self.running.clear()

    def thaw(self) -> None:
        self.running.set()

    async def StreamTickerBatches(self, request: pb.StreamTickersRequest,
                                  context: Any) -> AsyncIterator[pb.TickerEventBatch]:
        await self.running.wait()   # a frozen service answers nothing
        rigged = bool(request.symbols) and self.rig_catch_up   # only catch-ups carry filters
        self.rig_catch_up = self.rig_catch_up and not rigged
        async with aclosing(self._merged(request)) as batches:
            async for batch in batches:
                await self.running.wait()
                if batch.events[0].WhichOneof("event") == "heartbeat":
                    self.heartbeats_sent += 1
                yield batch
                if rigged:
                    yield heartbeat()
                    await asyncio.Event().wait()   # open, and silent for good

    async def _merged(self, request: pb.StreamTickersRequest) -> AsyncIterator[pb.TickerEventBatch]:
        """The real stream's events one per message, and a heartbeat after each quiet spell."""
        queue: asyncio.Queue[pb.TickerEventBatch | None] = asyncio.Queue()

        async def pump() -> None:
            try:
                async for batch in self.upstream.StreamTickerBatches(request):
                    for event in batch.events:
                        queue.put_nowait(pb.TickerEventBatch(events=[event]))
            finally:
                queue.put_nowait(None)

        task = asyncio.create_task(pump())
        getter: asyncio.Future[pb.TickerEventBatch | None] | None = None
        try:
            while True:
                getter = getter or asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({getter},
                                             timeout=HEARTBEAT_S if self.heartbeats else None)
                if not done:
                    yield heartbeat()
                    continue
                item, getter = getter.result(), None
                if item is None:
                    return
                yield item
        finally:
            task.cancel()
            if getter is not None:
                getter.cancel()


@asynccontextmanager
async def heartbeating_service(target: str,
                               heartbeats: bool = True) -> AsyncIterator[tuple[HeartbeatingService, str]]:
    channel = grpc.aio.insecure_channel(target)
    service = HeartbeatingService(cache_pb2_grpc.CacheServiceStub(channel), heartbeats)
    server = grpc.aio.server()
    cache_pb2_grpc.add_CacheServiceServicer_to_server(service, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield service, f"127.0.0.1:{port}"
    finally:
        service.thaw()
        await server.stop(0)
        await channel.close()


def stalls(bridge: Any) -> float:
    return bridge.app.metrics.value("bridge_upstream_stalls_total", {"channel": "tickers"})


async def test_silent_stream_is_interrupted_within_the_bound_and_resumes_recovered(cache, feed) -> None:
    loop = asyncio.get_running_loop()
    async with heartbeating_service(cache.target) as (service, target), \
            running_bridge(target, upstream_stall_s=STALL_S) as b, client(b.ws_url(ALICE)) as c:
        sub = (await c.subscribe(channel="tickers", exchange="binance", snapshot=False))["subscription_id"]
        before = await feed.ticker(symbol="BTC/USDT")
        assert [u["seq"] for u in await c.updates(1)] == [before]
        await eventually(lambda: service.heartbeats_sent >= 2)

        service.freeze()
        frozen_at = loop.time()
        status = await c.wait_for(is_status, timeout=STALL_S + SLACK_S)
        detected = loop.time() - frozen_at
        print(f"silent stream detected after {detected:.2f} s (bound {STALL_S} s)")
        assert status == {"type": "stream_status", "subscription_id": sub,
                          "status": "interrupted", "recovered": False}
        outage = [await feed.ticker(symbol=f"S{i}/USDT") for i in range(3)]
        # the re-opened stream gets no answer either: it is given up on too (and retried)
        await eventually(lambda: stalls(b) >= 2, timeout=2 * STALL_S + SLACK_S)

        service.thaw()
        resumed = await c.wait_for(is_status, timeout=20)
        assert (resumed["status"], resumed["recovered"]) == ("resumed", True)
        assert [u["seq"] for u in await c.updates(3)] == outage
        after = await feed.ticker(symbol="BTC/USDT")
        assert [u["seq"] for u in await c.updates(1)] == [after]
        assert (await c.request("ping"))["type"] == "pong"   # never disconnected
        assert not [f for f in c.pending if is_status(f)]
    assert b.app.metrics.value("bridge_connections_total", {"outcome": "accepted"}) == 1


async def test_idle_stream_of_a_service_without_heartbeats_is_left_open(cache, feed) -> None:
    """A cache service that predates heartbeats is never judged stalled once it answered."""
    async with heartbeating_service(cache.target, heartbeats=False) as (_service, target), \
            running_bridge(target, upstream_stall_s=STALL_S) as b, client(b.ws_url(ALICE)) as c:
        await c.subscribe(channel="tickers", exchange="binance", snapshot=False)
        # the stream answered (it is live): from here on it is never judged stalled (a first
        # answer slower than STALL_S on a loaded machine may have counted one before that)
        answered = stalls(b)
        with pytest.raises(TimeoutError):
            await c.wait_for(is_status, timeout=3 * STALL_S)
        seq = await feed.ticker(symbol="BTC/USDT")
        assert [u["seq"] for u in await c.updates(1)] == [seq]
        assert stalls(b) == answered


async def test_silent_catch_up_stream_is_reopened_without_loss(cache, feed) -> None:
    """A resume's catch-up stream that goes silent after a heartbeat (which is not an event)
    is given up on and re-opened from the last event sent: nothing lost, nothing twice, and
    the client is not told anything was lost."""
    start = await feed.ticker(symbol="BTC/USDT")
    written = [await feed.ticker(symbol="BTC/USDT", price=100.0 + i) for i in range(5)]
    async with heartbeating_service(cache.target) as (service, target), \
            running_bridge(target, upstream_stall_s=STALL_S) as b, client(b.ws_url(ALICE)) as c:
        service.rig_catch_up = True
        result = await c.subscribe(channel="tickers", exchange="binance", symbols=["BTC/USDT"],
                                   resume_from=start)
        assert result["recovered"] is True
        updates = await c.updates(len(written), timeout=STALL_S + 20)
        assert [u["seq"] for u in updates] == written
        assert not service.rig_catch_up and stalls(b) == 1
        assert (await c.request("ping"))["type"] == "pong"
        assert not [f for f in c.pending if is_status(f) or f.get("type") == "update"]


# ---------------------------------------------------------------- the real service, as a process


@dataclass
class Scene:
    """A cache service process, another replica on the same Redis to write through while it is
    stopped or dead, a bridge on the process, and a client subscribed to alice's orders."""

    proc: CacheServiceProcess
    writer: Feed
    bridge: RunningBridge
    client: Client
    sub: str


@asynccontextmanager
async def subscribed_through_a_process(redis_url: str, *args: str) -> AsyncIterator[Scene]:
    proc = CacheServiceProcess(redis_url, extra_args=args)
    proc.start()
    scene: Scene | None = None
    try:
        await asyncio.to_thread(proc.wait_ready, 30)
        async with running_cache_service(redis_url) as other, \
                running_bridge(proc.target, upstream_stall_s=STALL_S) as b, \
                client(b.ws_url(ALICE)) as c:
            writer = Feed(other.target)
            try:
                sub = (await c.subscribe(channel="orders", snapshot=False))["subscription_id"]
                before = await writer.order(order_id="before", user_id="alice")
                await c.wait_for(lambda f: f.get("seq") == before)
                scene = Scene(proc, writer, b, c, sub)
                yield scene
            finally:
                await writer.close()
    finally:
        proc = scene.proc if scene is not None else proc
        if proc.proc is not None:
            os.kill(proc.proc.pid, signal.SIGCONT)   # never leave a stopped process behind
        await asyncio.to_thread(proc.stop)


async def outage_writes(scene: Scene) -> list[str]:
    return [await scene.writer.order(order_id=f"during-{i}", user_id="alice") for i in range(3)]


async def resumed_with(scene: Scene, outage: list[str]) -> None:
    """``resumed`` (recovered), then exactly what was written meanwhile, still connected."""
    c = scene.client
    resumed = await c.wait_for(is_status, timeout=30)
    assert (resumed["subscription_id"], resumed["status"], resumed["recovered"]) == (
        scene.sub, "resumed", True)
    assert [u["seq"] for u in await c.updates(3, timeout=20)] == outage
    after = await scene.writer.order(order_id="after", user_id="alice")
    assert [u["seq"] for u in await c.updates(1, timeout=20)] == [after]
    assert (await c.request("ping"))["type"] == "pong"
    assert scene.bridge.app.metrics.value("bridge_connections_total",
                                          {"outcome": "accepted"}) == 1


async def interrupted_within(scene: Scene, bound: float, what: str) -> None:
    started = asyncio.get_running_loop().time()
    status = await scene.client.wait_for(is_status, timeout=bound)
    print(f"{what} detected after {asyncio.get_running_loop().time() - started:.2f} s")
    assert status == {"type": "stream_status", "subscription_id": scene.sub,
                      "status": "interrupted", "recovered": False}


@pytest.mark.resilience
async def test_sigstopped_cache_service_interrupts_and_resumes_recovered(redis_url) -> None:
    """The cache service hangs (SIGSTOP) with its streams open: the client is told within the
    bound, and after SIGCONT gets everything written meanwhile (through another replica).

    No heartbeat comes before the stop (they are 600 s apart here), as when a service hangs in
    the first second of a stream: the stream's headers (``marketbridge-heartbeat-s``) are what
    tell the bridge to watch it. A
    service without heartbeats leaves a stream the bridge cannot judge, and only the channel's
    keepalive (~30 s) ends it.
    """
    async with subscribed_through_a_process(redis_url, "--stream-heartbeat-s", "600") as scene:
        assert scene.proc.proc is not None
        pid = scene.proc.proc.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            await interrupted_within(scene, STALL_S + SLACK_S, "SIGSTOP")
            outage = await outage_writes(scene)
        finally:
            os.kill(pid, signal.SIGCONT)
        await resumed_with(scene, outage)


@pytest.mark.resilience
async def test_killed_cache_service_interrupts_at_once_and_resumes_after_restart(redis_url) -> None:
    """SIGKILL, writes through another replica while it is down, restart on the same port."""
    async with subscribed_through_a_process(redis_url) as scene:
        await asyncio.to_thread(scene.proc.kill)
        await interrupted_within(scene, SLACK_S, "SIGKILL")
        outage = await outage_writes(scene)
        scene.proc = CacheServiceProcess(redis_url, port=scene.proc.port)
        scene.proc.start()
        await asyncio.to_thread(scene.proc.wait_ready, 30)
        await resumed_with(scene, outage)
