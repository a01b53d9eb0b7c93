"""``?heartbeat_s`` (SPEC §9.3): a heartbeat frame when nothing else was sent for N s."""

from __future__ import annotations

import asyncio
import time

import pytest

from bridge.protocol import parse_heartbeat_s
from tests.bridge.client import client
from tests.infra.tokens import make_token

ALICE = make_token("alice")

pytestmark = pytest.mark.cluster_too  # SPEC §9.3 heartbeats hold on a cluster too (SPEC §9.4)


def test_heartbeat_s_is_an_integer_from_1_to_60() -> None:
    assert parse_heartbeat_s(None) is None and parse_heartbeat_s("") is None
    assert parse_heartbeat_s("1") == 1 and parse_heartbeat_s("60") == 60
    for bad in ("0", "61", "1.5", "-1", "abc"):
        with pytest.raises(ValueError, match="heartbeat_s must be an integer from 1 to 60"):
            parse_heartbeat_s(bad)


async def test_an_idle_connection_gets_heartbeats(bridge) -> None:
    async with client(bridge.ws_url(ALICE, heartbeat_s=1)) as c:
        assert c.welcome["limits"]["heartbeat_s"] == 1 and "heartbeat" in c.welcome["features"]
        before = time.time()
        beats = [await c.recv(timeout=5) for _ in range(2)]
        assert [b["type"] for b in beats] == ["heartbeat", "heartbeat"]
        assert before - 1 <= beats[0]["server_time"] < beats[1]["server_time"]
        pong = await c.request("ping")   # the connection is as usable as ever
        assert pong["type"] == "pong"
    assert bridge.app.metrics.value("bridge_messages_sent_total", {"type": "heartbeat"}) >= 2


async def test_no_heartbeat_while_updates_flow(bridge, feed) -> None:
    async with client(bridge.ws_url(ALICE, heartbeat_s=3)) as c:
        await c.subscribe(channel="tickers", exchange="binance", snapshot=False)
        frames = []
        for i in range(20):   # an update every 0.2 s for 4 s: never 3 s of silence
            await feed.ticker(symbol="BTC/USDT", price=float(i))
            frames.append(await c.recv(timeout=5))
            await asyncio.sleep(0.2)
        assert {f["type"] for f in frames} == {"update"}


async def test_without_the_option_no_heartbeats(bridge) -> None:
    async with client(bridge.ws_url(ALICE)) as c:
        assert c.welcome["limits"]["heartbeat_s"] is None
        with pytest.raises(TimeoutError):
            await c.recv(timeout=2.5)


@pytest.mark.parametrize("value", ["0", "61", "x"])
async def test_a_bad_heartbeat_s_is_refused_1008(bridge, value) -> None:
    async with client(bridge.ws_url(ALICE, heartbeat_s=value), welcome=False) as c:
        code, reason = await c.closed()
    assert code == 1008 and "heartbeat_s must be an integer from 1 to 60" in reason
