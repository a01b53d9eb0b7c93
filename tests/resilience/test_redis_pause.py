"""Scenario 2: Redis hangs (paused, not refusing) for longer than the call deadline.

Promise (docs/reliability.md): unary calls fail fast with UNAVAILABLE (or TIMEOUT at the bridge's deadline),
never hang past their deadline; ``/readyz`` goes 503 while the upstream is not SERVING and comes
back; clients stay connected and get every acknowledged event once Redis answers again.

Run on a single Redis and on the Redis Cluster (``breakable_redis``), where every master is
paused at once: the slots of every stream and of the unary call hang, and no replica is promoted
meanwhile (that needs a majority of masters), so it stays a hang, not a failover (C1).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.api.v1 import cache_pb2_grpc
from tests.resilience.publisher import EXCHANGE
from tests.resilience.stack import BreakableRedis, running_stack, wait_for

pytestmark = [pytest.mark.resilience, pytest.mark.timeout(180)]

BRIDGE_DEADLINE_S = 2.0
SLACK_S = 3.0   # scheduling noise on 2 shared cores; a hang would be 30 s (the long deadline)


async def _direct_unary(target: str, timeout: float) -> tuple[grpc.StatusCode, float]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        started = time.monotonic()
        try:
            await stub.GetTicker(pb.GetTickerRequest(exchange=EXCHANGE, symbol="BTC/USDT"), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), time.monotonic() - started
        return grpc.StatusCode.OK, time.monotonic() - started


async def test_redis_paused_longer_than_the_deadline(
        breakable_redis: BreakableRedis, report: Callable[[str, dict[str, Any]], None]) -> None:
    redis = breakable_redis
    bridge_args = ["--grpc-deadline", str(BRIDGE_DEADLINE_S)]
    async with running_stack(redis.url, bridge_args=bridge_args, store=redis.store) as stack:
        await stack.add_standard_clients()
        alice = stack.clients[0]
        stack.publisher.start()
        await stack.publisher.wait_acked(60)
        fault_at = time.monotonic()
        await asyncio.to_thread(redis.fault.pause)
        try:
            started = time.monotonic()
            reply = await alice.request("get_ticker", {"exchange": EXCHANGE, "symbol": "BTC/USDT"})
            bridge_elapsed = time.monotonic() - started
            code, direct_elapsed = await _direct_unary(stack.caches[0].target, timeout=BRIDGE_DEADLINE_S)
            long_code, long_elapsed = await _direct_unary(stack.caches[0].target, timeout=30.0)
            await wait_for(lambda: stack.bridge.readyz() == 503, 20.0, "bridge /readyz 503")
        finally:
            await asyncio.to_thread(redis.fault.unpause)
        repaired_at = time.monotonic()
        await wait_for(lambda: stack.bridge.readyz() == 200, 20.0, "bridge /readyz 200 again")
        await stack.publisher.wait_acked(150)
        await stack.finish()
        measures = stack.measures(fault_at, repaired_at)
        measures.update(bridge_unary_fail_s=round(bridge_elapsed, 2),
                        direct_unary_fail_s=round(long_elapsed, 2), **redis.fault.notes())
        report(redis.named("2 redis pause"), measures)

    assert reply["success"] is False and reply["error"]["code"] in ("UNAVAILABLE", "TIMEOUT"), reply
    assert bridge_elapsed < BRIDGE_DEADLINE_S + SLACK_S
    assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert direct_elapsed < BRIDGE_DEADLINE_S + SLACK_S
    # Without a short client deadline the service itself gives up on Redis and says UNAVAILABLE.
    assert long_code is grpc.StatusCode.UNAVAILABLE, long_code
    assert long_elapsed < 10.0
    assert stack.publisher.stats.slowest_failure_s < 2.0 + SLACK_S
    assert all(c.connections == 1 for c in stack.clients)
    stack.assert_failures_retryable()
