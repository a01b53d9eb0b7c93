"""10,000 random frames over a real WebSocket to a real bridge process (issue 16).

The bridge runs as ``python -m bridge`` (tests/resilience/stack.py's ``BridgeNode``, which
reads its RSS) in front of a cache service process over real Redis. One connection gets
1,000 warm-up frames, then 10,000 more (tests/factories/frames.py: near misses, valid
requests, random JSON, garbage, binary, deep nesting, frames near the size limit, edge ids).

Asserted: every frame gets exactly one reply (each id its own, with an expected code or a
result; never ``INTERNAL``), the connection still answers ``ping`` and serves a subscription's
updates afterwards, and the bridge's RSS grows by less than ``RSS_GROWTH_LIMIT`` over the
10,000. Frames that close a connection by the spec (over ``max_frame_bytes``: 1009; a text
frame that is not UTF-8: 1007) each go on a connection of their own, while the stream runs.

Rate limits: the bridge is started with ``--rate-limit``/``--rate-burst`` far above what the
test sends. Pacing within the default 50 frames/s would take 220 s; the limiter has tests of
its own (test_limits.py, test_ws_limits.py). Pacing is by replies instead: at most ``WINDOW``
frames are unanswered at a time, so the client never sleeps and the bridge's outbound queue
never fills (a full queue closes 1013 ``slow consumer``, by the spec).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.bridge.client import Client, client
from tests.factories.frames import ANONYMOUS, FrameFactory, Sent
from tests.factories.requests import SPEC_CODES
from tests.infra.cache_service_runner import CacheServiceProcess
from tests.infra.feed import Feed
from tests.infra.tokens import make_token
from tests.resilience.stack import BridgeNode

pytestmark = pytest.mark.timeout(120)

SEED = 16
WARM_UP = 1_000
FRAMES = 10_000
WINDOW = 200          # frames in flight: far below --max-backlog (1,000)
PHASE_TIMEOUT_S = 60.0
MAX_FRAME_BYTES = 65_536
# 5 MiB over 10,000 frames: a leak of 512 bytes a frame (an error string, a task, a frame
# kept) would show as 5 MiB, and one of a reply-sized object (~2 KiB) as 20; what moves RSS
# without a leak is allocator noise: arenas, orjson's and websockets' buffers for the largest
# frames, which the warm-up has already touched. Measured: see the test's output.
RSS_GROWTH_LIMIT = 5 * 2**20
CLOSING_FRAMES: list[tuple[bytes | str, bool, int]] = [   # (payload, as text, close code)
    ("x" * (MAX_FRAME_BYTES + 1), True, 1009), ("[" * 70_000, True, 1009),
    (b"\x00" * 100_000, False, 1009), ("\u00e9" * 40_000, True, 1009),
    (b"\xff\xfe\xfd", True, 1007), (b'{"action":"ping","x":"\xc3\x28"}', True, 1007)]
REPLY_TYPES = ("response", "pong", "error")


@pytest.fixture
def bridge_node(cache_process: CacheServiceProcess) -> Iterator[BridgeNode]:
    """``python -m bridge`` with rate limits out of the way (module docstring), its output
    drained so a chatty log cannot block it."""
    node = BridgeNode(cache_process.target, ["--rate-limit", "1000000", "--rate-burst", "1000000",
                                             "--log-level", "WARNING"])
    node.start()
    yield node
    node.stop()


@dataclass
class Tally:
    """Replies as they come, and the count that frees the window."""

    window: asyncio.Semaphore
    by_id: dict[Any, list[dict[str, Any]]] = field(default_factory=dict)
    anonymous: list[dict[str, Any]] = field(default_factory=list)
    others: list[dict[str, Any]] = field(default_factory=list)
    replies: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, frame: dict[str, Any]) -> None:
        if frame.get("type") not in REPLY_TYPES:
            self.others.append(frame)
            return
        if frame.get("request_id") is None:
            self.anonymous.append(frame)
        else:
            self.by_id.setdefault(frame["request_id"], []).append(frame)
        self.replies += 1
        self.window.release()
        self.changed.set()

    async def until(self, replies: int) -> None:
        while self.replies < replies:
            self.changed.clear()
            await self.changed.wait()


async def read_replies(ws: ClientConnection, tally: Tally) -> None:
    async for message in ws:
        tally.add(json.loads(message))


async def send_all(ws: ClientConnection, tally: Tally, frames: list[Sent]) -> None:
    """Send ``frames``, never more than the window unanswered, and wait for every reply."""
    target = tally.replies + len(frames)
    try:
        async with asyncio.timeout(PHASE_TIMEOUT_S):
            for sent in frames:
                await tally.window.acquire()
                await ws.send(sent.payload)
            await tally.until(target)
    except TimeoutError:
        raise AssertionError(f"{target - tally.replies} of {len(frames)} frames unanswered "
                             f"after {PHASE_TIMEOUT_S:g} s") from None


def error_code(reply: dict[str, Any]) -> str | None:
    return None if reply.get("success", True) else reply["error"]["code"]


def allowed(codes: frozenset[str] | None) -> frozenset[str | None]:
    """The codes a reply may carry (None: a success): ``codes``, else any SPEC code but
    ``INTERNAL`` (a bug in the bridge), or a success."""
    return frozenset(codes) if codes is not None else SPEC_CODES - {"INTERNAL"} | {None}


def check_replies(tally: Tally, sent: list[Sent]) -> None:
    """Exactly one reply per id, with an expected code; the id-less ones as many as sent."""
    expected = {s.request_id: s for s in sent if s.request_id is not None}
    assert set(tally.by_id) == set(expected), set(expected) ^ set(tally.by_id)
    for request_id, replies in tally.by_id.items():
        assert len(replies) == 1, replies
        assert error_code(replies[0]) in allowed(expected[request_id].codes), \
            (expected[request_id].payload[:200], replies[0])
    assert len(tally.anonymous) == sum(s.request_id is None for s in sent)
    assert {error_code(reply) for reply in tally.anonymous} <= ANONYMOUS
    assert tally.others == [], tally.others[:3]


async def closes_with(url: str, payload: bytes | str, text: bool) -> int | None:
    """A connection of its own for a frame that ends it; the close code the bridge sent."""
    async with client(url) as c:
        await c.ws.send(payload, text=text)
        code, _reason = await c.closed()
        return code


async def still_serves(c: Client, feed: Feed) -> None:
    """The connection answers ``ping`` and a new subscription gets its updates."""
    pong = await c.request("ping")
    assert pong["type"] == "pong"
    await c.subscribe(channel="tickers", exchange="fuzz", snapshot=False)
    await feed.ticker(exchange="fuzz", symbol="BTC/USDT", price=42.0)
    (update,) = await c.updates(1)
    assert update["result"]["price"] == 42.0


async def test_random_frames_leave_the_connection_usable_and_rss_flat(
        bridge_node: BridgeNode, cache_process: CacheServiceProcess) -> None:
    factory = FrameFactory(SEED)
    warm_up, frames = factory.frames(WARM_UP), factory.frames(FRAMES)
    url = bridge_node.runner.ws_url(make_token("fuzzer"))
    feed = Feed(cache_process.target)
    async with client(url) as c:
        tally = Tally(asyncio.Semaphore(WINDOW))
        reader = asyncio.create_task(read_replies(c.ws, tally))
        await send_all(c.ws, tally, warm_up)
        rss_before = bridge_node.rss_bytes()
        closing = asyncio.gather(*(closes_with(url, payload, text)
                                   for payload, text, _code in CLOSING_FRAMES))
        await send_all(c.ws, tally, frames)
        assert await closing == [code for _payload, _text, code in CLOSING_FRAMES]
        rss_after = bridge_node.rss_bytes()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        check_replies(tally, warm_up + frames)
        await still_serves(c, feed)
    await feed.close()
    growth = rss_after - rss_before
    print(f"bridge RSS after {WARM_UP} warm-up frames {rss_before / 2**20:.1f} MiB, after "
          f"{FRAMES} more {rss_after / 2**20:.1f} MiB: {growth / 2**20:+.2f} MiB; kinds "
          f"{dict(Counter(type(s.payload).__name__ for s in frames))}")
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew {growth / 2**20:.1f} MiB over {FRAMES} frames"
