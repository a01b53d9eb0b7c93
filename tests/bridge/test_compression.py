"""permessage-deflate (bridge/compression.py): a shared frame compressed once reads the same on
every client, whatever it negotiated, and a client that offers nothing gets plain frames."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory, PerMessageDeflate
from websockets.frames import Frame, Opcode

from bridge.compression import PLAIN, FrameCodec
from tests.bridge.client import Client, client
from tests.factories import TickerFactory
from tests.infra.bridge_runner import running_bridge
from tests.infra.tokens import make_token

ALICE = make_token("alice")

pytestmark = pytest.mark.cluster_too  # SPEC §9.3 compression hold on a cluster too (SPEC §9.4)
PAYLOADS = st.lists(st.text(max_size=20) | st.sampled_from(
    ["", "x" * 125, "x" * 126, "é" * 40000, '{"type":"update"}' * 500, "x" * 65536]), max_size=4)


@given(PAYLOADS)
def test_plain_frames_are_what_websockets_would_write(payloads: list[str]) -> None:
    expected = b"".join(Frame(Opcode.TEXT, p.encode()).serialize(mask=False) for p in payloads)
    assert PLAIN.frames(payloads) == expected


@given(PAYLOADS, st.sampled_from([(12, 5), (9, 5), (15, 8)]))
def test_deflated_frames_are_what_websockets_would_write(payloads: list[str],
                                                         settings: tuple[int, int]) -> None:
    """One websockets extension object for the whole list: with a fresh window per message, the
    bytes of each message do not depend on the ones before it."""
    bits, mem_level = settings
    extension = PerMessageDeflate(False, True, 12, bits, {"memLevel": mem_level})
    expected = b"".join(Frame(Opcode.TEXT, p.encode()).serialize(mask=False, extensions=[extension])
                        for p in payloads)
    assert FrameCodec(bits, mem_level).frames(payloads) == expected


# ------------------------------------------------------------------ over real sockets

OFFERS: dict[str, dict[str, Any]] = {
    "none": {"compression": None},
    "deflate": {},   # websockets' client default: permessage-deflate, client_max_window_bits
    "client_no_context_takeover": {"compression": None, "extensions": [
        ClientPerMessageDeflateFactory(client_no_context_takeover=True, client_max_window_bits=True)]},
    "small_server_window": {"compression": None, "extensions": [
        ClientPerMessageDeflateFactory(server_max_window_bits=10, client_max_window_bits=True)]},
}


async def _clients(stack: AsyncExitStack, url: str) -> dict[str, Client]:
    return {name: await stack.enter_async_context(client(url, **offer)) for name, offer in OFFERS.items()}


def _negotiated(c: Client) -> str:
    return c.ws.response.headers.get("Sec-WebSocket-Extensions", "") if c.ws.response else ""


@pytest.fixture
async def deflate_bridge(cache) -> AsyncIterator[Any]:
    async with running_bridge(cache.target, compression="deflate") as b:
        yield b


@pytest.mark.parametrize("batch_ms", [None, 10])
async def test_every_client_reads_the_same_updates(deflate_bridge, feed, batch_ms: int | None) -> None:
    query = {"batch_ms": batch_ms} if batch_ms else {}
    async with AsyncExitStack() as stack:
        clients = await _clients(stack, deflate_bridge.ws_url(ALICE, **query))
        assert _negotiated(clients["none"]) == ""
        for name in OFFERS.keys() - {"none"}:
            assert "server_no_context_takeover" in _negotiated(clients[name]), name
            assert "client_no_context_takeover" in _negotiated(clients[name]), name
        assert "server_max_window_bits=10" in _negotiated(clients["small_server_window"])
        for c in clients.values():
            await c.subscribe(channel="tickers", exchange="binance", snapshot=False)
        tickers = [TickerFactory(symbol=f"S{i % 7}/USDT", price=float(i)) for i in range(60)]
        for start in range(0, len(tickers), 20):
            await feed.tickers(tickers[start:start + 20])
        received = await asyncio.gather(*(c.updates(len(tickers)) for c in clients.values()))
    results = [[(u["seq"], u["result"]) for u in updates] for updates in received]
    assert all(r == results[0] for r in results[1:])
    assert [r["price"] for _, r in results[0]] == [t.price for t in tickers]
    assert 0 < deflate_bridge.app.metrics.value("bridge_compression_ratio") < 1


async def test_one_compression_per_lane_serves_every_client_that_shares_it(deflate_bridge, feed) -> None:
    """Two clients with the same offer share one lane (one compressed flush); other offers get
    lanes of their own, so nobody is sent bytes it cannot inflate."""
    url = deflate_bridge.ws_url(ALICE, batch_ms=10)
    async with AsyncExitStack() as stack:
        clients = await _clients(stack, url)
        twin = await stack.enter_async_context(client(url))
        for c in (*clients.values(), twin):
            await c.subscribe(channel="tickers", exchange="binance", snapshot=False)
        await feed.ticker(symbol="BTC/USDT")
        await asyncio.gather(*(c.updates(1) for c in (*clients.values(), twin)))
        (topic,) = [t for key, t in deflate_bridge.app.fanout.topics.items() if key[1] == "binance"]
        codecs = sorted((lane.codec.window_bits or 0, len(lane.members)) for lane in topic.lanes.values()
                        if lane.codec is not None)
    assert codecs == [(0, 1), (10, 1), (12, 3)]   # plain; small window; deflate x2 + no-takeover


async def test_compression_none_declines_the_extension(cache, feed) -> None:
    async with running_bridge(cache.target, compression="none") as b:
        async with client(b.ws_url(ALICE, batch_ms=10)) as c:
            assert _negotiated(c) == ""
            await c.subscribe(channel="tickers", exchange="binance", snapshot=False)
            await feed.ticker(symbol="BTC/USDT", price=7.0)
            (u,) = await c.updates(1)
            assert u["result"]["price"] == 7.0
        assert b.app.metrics.value("bridge_compression_ratio") == 1.0   # nothing compressed
