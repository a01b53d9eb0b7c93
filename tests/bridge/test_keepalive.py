"""WebSocket keepalive (bridge/keepalive.py): one task pings every connection each interval and
closes 1011 the ones whose pong is late, as ``websockets``' per-connection keepalive did."""

from __future__ import annotations

import asyncio

from bridge.keepalive import TICKS, KeepAlive
from tests.bridge.client import client
from tests.infra.bridge_runner import running_bridge
from tests.infra.eventually import eventually
from tests.infra.tokens import make_token

ALICE = make_token("alice")
INTERVAL_S = 0.5


async def test_a_client_that_answers_pings_stays_and_its_latency_is_measured(cache) -> None:
    async with running_bridge(cache.target, ping_interval=INTERVAL_S, ping_timeout=INTERVAL_S) as b:
        async with client(b.ws_url(ALICE), ping_interval=None) as c:
            [session] = b.app.sessions
            # pinged and answered (websockets records the round trip of each pong it matches)
            await eventually(lambda: session.ws.latency > 0, timeout=10)
            latency = session.ws.latency
            await eventually(lambda: session.ws.latency != latency, timeout=10)   # again
            assert (await c.request("ping"))["type"] == "pong"   # never closed meanwhile
            assert b.app.sessions == {session}


async def test_a_client_that_sends_no_pong_is_closed_1011(cache) -> None:
    async with running_bridge(cache.target, ping_interval=INTERVAL_S, ping_timeout=INTERVAL_S) as b:
        async with client(b.ws_url(ALICE), ping_interval=None) as c:
            assert len(b.app.sessions) == 1
            c.ws.transport.pause_reading()   # it reads no ping, so it answers none
            # interval + timeout, each up to a slice late: ~1.1 s; 10 s is a wide bound
            await eventually(lambda: not b.app.sessions, timeout=10)
            assert b.app.metrics.value("bridge_disconnects_total", {"code": "1011"}) == 1
            c.ws.transport.resume_reading()
            await asyncio.wait_for(c.ws.wait_closed(), timeout=10)
            assert c.ws.close_code == 1011 and c.ws.close_reason == "keepalive ping timeout"


async def test_connections_are_pinged_over_the_interval_not_in_one_burst(cache) -> None:
    """Each slice of the interval pings its share: 40 connections, 20 slices, 2 a slice."""
    async with running_bridge(cache.target, ping_interval=60.0, ping_timeout=60.0) as b:
        clients = [client(b.ws_url(make_token(f"u{i}")), ping_interval=None) for i in range(40)]
        opened = [await cm.__aenter__() for cm in clients]
        try:
            keepalive = KeepAlive(lambda: [s.ws for s in b.app.sessions], 60.0, 60.0)
            loop = asyncio.get_running_loop()
            pinged = []
            for _ in range(TICKS):
                keepalive.tick(loop.time())
                pinged.append(sum(1 for s in b.app.sessions if s.ws.pong_waiters))
            assert pinged[0] == 2 and pinged[-1] == 40 and pinged == sorted(pinged)
            for c in opened:
                assert (await c.request("ping"))["type"] == "pong"
        finally:
            for cm in clients:
                await cm.__aexit__(None, None, None)
