"""The bridge reads a client's messages as they are parsed (BatchingConnection.read_with), not
with a read task per connection: fragmented messages, messages sent before the welcome and
binary messages (refused, as ever) are handled as ``recv()`` handled them."""

from __future__ import annotations

import json

from tests.bridge.client import Client
from tests.infra.tokens import make_token
from websockets.asyncio.client import connect

ALICE = make_token("alice")


def _ping(request_id: int) -> str:
    return json.dumps({"action": "ping", "request_id": request_id})


async def test_a_fragmented_message_is_one_request(bridge) -> None:
    async with connect(bridge.ws_url(ALICE), open_timeout=10) as ws:
        c = Client(ws)
        assert (await c.recv())["type"] == "connection"
        text = _ping(7)
        await ws.send([text[:5], text[5:12], text[12:]])   # three frames: TEXT, CONT, CONT(fin)
        reply = await c.recv()
        assert reply["type"] == "pong" and reply["request_id"] == 7


async def test_messages_sent_before_the_welcome_are_answered_in_order(bridge) -> None:
    """Sent right after the upgrade, while the bridge is still checking the token: they wait
    for the session and are answered after the welcome, in order."""
    async with connect(bridge.ws_url(ALICE), open_timeout=10) as ws:
        for i in range(1, 21):   # more than max_queue (16): reading pauses, then resumes
            await ws.send(_ping(i))
        c = Client(ws)
        assert (await c.recv())["type"] == "connection"
        replies = [await c.recv() for _ in range(20)]
        assert [r["request_id"] for r in replies] == list(range(1, 21))
        assert {r["type"] for r in replies} == {"pong"}


async def test_a_binary_message_is_refused_as_before(bridge) -> None:
    async with connect(bridge.ws_url(ALICE), open_timeout=10) as ws:
        c = Client(ws)
        assert (await c.recv())["type"] == "connection"
        await ws.send(_ping(3).encode())
        reply = await c.recv()
        assert reply["type"] == "error" and "binary frames are not supported" in reply["error"]["message"]
        await ws.send(_ping(4))   # the connection goes on
        assert (await c.recv())["request_id"] == 4
