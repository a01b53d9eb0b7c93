"""Scenario 7: bad frames, oversized frames and connection churn next to well-behaved clients.

Promise (docs/protocol.md, docs/reliability.md): no bad frame, oversized frame, flood or churn degrades other clients:
they stay connected and get every acknowledged event; the abusers get their error frames or
their close codes (1009 for an oversized frame); after 1,000 connect/close cycles the bridge
holds no leftover connection and its memory returns to within 10% of where it started.
Run on a single Redis and on the Redis Cluster (``breakable_redis``; SPEC §9.4: §7 holds there).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.infra.ledger import percentile
from tests.infra.tokens import make_token
from tests.resilience.publisher import EXCHANGE
from tests.resilience.stack import BreakableRedis, Stack, running_stack, wait_for

pytestmark = [pytest.mark.resilience, pytest.mark.timeout(240)]

CHURN_CYCLES = 1000
CHURN_CONCURRENCY = 8
WARMUP_CYCLES = 100
BAD_FRAMES = 1000
OVERSIZED = 10
MEMORY_TOLERANCE = 0.10
IO_TIMEOUT_S = 10.0
BAD = ["not json", "[1, 2, 3]", '{"action": 5}', '"just a string"', "{", '{"action":"nope"}']


async def one_cycle(stack: Stack, n: int) -> None:
    """Connect, get welcomed (or refused), sometimes subscribe, close."""
    valid = n % 4 != 0
    token = make_token(sub=f"churn-{n % CHURN_CONCURRENCY}") if valid else "not-a-token"
    async with asyncio.timeout(IO_TIMEOUT_S):
        async with websockets.connect(stack.bridge.runner.ws_url(token)) as ws:
            try:
                json.loads(await ws.recv())
                if valid and n % 3 == 0:
                    await ws.send(json.dumps({"action": "subscribe", "request_id": 1,
                                              "params": {"channel": "tickers", "exchange": EXCHANGE}}))
                    await ws.recv()
            except ConnectionClosed:
                assert not valid


async def churn(stack: Stack, cycles: int) -> None:
    numbers = iter(range(cycles))

    async def worker() -> None:
        for n in numbers:
            await one_cycle(stack, n)

    await asyncio.gather(*(worker() for _ in range(CHURN_CONCURRENCY)))


async def flood_bad_frames(stack: Stack) -> tuple[int, set[int]]:
    """Send garbage as fast as possible; count the error frames, note the close code if any."""
    errors = 0
    codes: set[int] = set()
    async with websockets.connect(stack.bridge.runner.ws_url(make_token(sub="flooder"))) as ws:
        await ws.recv()

        async def drain() -> None:
            nonlocal errors
            async for frame in ws:
                if json.loads(frame).get("type") in ("error", "response"):
                    errors += 1
                if errors >= BAD_FRAMES:
                    return

        reader = asyncio.create_task(drain())
        try:
            for n in range(BAD_FRAMES):
                await ws.send(BAD[n % len(BAD)])
        except ConnectionClosed:
            pass
        try:
            await asyncio.wait_for(reader, IO_TIMEOUT_S)
        except (ConnectionClosed, TimeoutError):
            pass
        if ws.close_code is not None:
            codes.add(ws.close_code)
    return errors, codes


async def oversized(stack: Stack) -> set[int]:
    codes: set[int] = set()
    for _ in range(OVERSIZED):
        async with websockets.connect(stack.bridge.runner.ws_url(make_token(sub="big")),
                                      max_size=None) as ws:
            await ws.recv()
            await ws.send(json.dumps({"action": "ping", "params": {"pad": "x" * 200_000}}))
            try:
                async with asyncio.timeout(IO_TIMEOUT_S):
                    async for _ in ws:
                        pass
            except ConnectionClosed:
                pass
            codes.add(ws.close_code or 0)
    return codes


async def test_bad_frames_oversized_frames_and_churn_leave_others_alone(
        breakable_redis: BreakableRedis, report: Callable[[str, dict[str, Any]], None]) -> None:
    redis = breakable_redis
    async with running_stack(redis.url, store=redis.store) as stack:
        await stack.add_standard_clients()
        healthy = len(stack.clients)
        stack.publisher.start()
        await churn(stack, WARMUP_CYCLES)   # first-use allocations are not a leak
        await wait_for(lambda: stack.bridge.metric("bridge_active_connections") == healthy, 30.0,
                       "warm-up connections gone")
        rss_start = await asyncio.to_thread(stack.bridge.rss_bytes)

        abuse_from = time.monotonic()
        (errors, flood_codes), big_codes, _ = await asyncio.gather(
            flood_bad_frames(stack), oversized(stack), churn(stack, CHURN_CYCLES))
        abuse_until = time.monotonic()
        await wait_for(lambda: stack.bridge.metric("bridge_active_connections") == healthy, 30.0,
                       "churned connections gone")
        await stack.publisher.wait_acked(60)
        rss_end = await asyncio.to_thread(stack.bridge.rss_bytes)
        await stack.finish()

        latencies = stack.ledger.latencies(abuse_from, abuse_until)
        measures = {
            "delivered_pct": round(100.0 * stack.ledger.delivered_fraction(), 3),
            "abuse_s": round(abuse_until - abuse_from, 2),
            "others_p50_ms_during_abuse": round(1000 * percentile(latencies, 50), 1),
            "others_p99_ms_during_abuse": round(1000 * percentile(latencies, 99), 1),
            "rss_start_mb": round(rss_start / 2**20, 1),
            "rss_end_mb": round(rss_end / 2**20, 1),
            "bad_frame_replies": errors,
            "flood_close": sorted(flood_codes),
        }
        report(redis.named("7 bad frames, oversized frames, 1000-cycle churn"), measures)
        assert errors > 0 and flood_codes <= {1008}, measures
        assert big_codes == {1009}, big_codes
        assert all(c.connections == 1 for c in stack.clients)
        assert rss_end <= rss_start * (1 + MEMORY_TOLERANCE), measures
