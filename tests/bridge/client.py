"""A small test client for the bridge protocol over a real WebSocket connection."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

Frame = dict[str, Any]
_ids = itertools.count(1)


class Client:
    """Sends requests and reads frames; frames not asked for yet wait in ``pending``."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pending: list[Frame] = []
        self.welcome: Frame | None = None

    async def recv(self, timeout: float = 10.0) -> Frame:
        if self.pending:
            return self.pending.pop(0)
        return await self._read(timeout)

    async def _read(self, timeout: float) -> Frame:
        async with asyncio.timeout(timeout):
            return json.loads(await self.ws.recv())

    async def wait_for(self, predicate: Callable[[Frame], bool], timeout: float = 10.0) -> Frame:
        """The first frame (queued or new) matching ``predicate``; others stay queued."""
        for i, frame in enumerate(self.pending):
            if predicate(frame):
                return self.pending.pop(i)
        async with asyncio.timeout(timeout):
            while True:
                frame = json.loads(await self.ws.recv())
                if predicate(frame):
                    return frame
                self.pending.append(frame)

    async def send(self, payload: Any) -> None:
        await self.ws.send(payload if isinstance(payload, str | bytes) else json.dumps(payload))

    async def request(self, action: str, params: dict[str, Any] | None = None,
                      timeout: float = 10.0, **extra: Any) -> Frame:
        """Send an action and return its reply (response or pong) by request_id."""
        request_id = extra.pop("request_id", f"r{next(_ids)}")
        message: dict[str, Any] = {"action": action, "request_id": request_id, **extra}
        if params is not None:
            message["params"] = params
        await self.send(message)
        return await self.wait_for(
            lambda f: f.get("type") in ("response", "pong") and f.get("request_id") == request_id,
            timeout)

    async def subscribe(self, **params: Any) -> Frame:
        reply = await self.request("subscribe", params)
        assert reply["success"], reply
        return reply["result"]

    async def updates(self, count: int, timeout: float = 10.0,
                      subscription_id: str | None = None) -> list[Frame]:
        """The next ``count`` update frames (batches unpacked)."""
        got: list[Frame] = []
        async with asyncio.timeout(timeout):
            while len(got) < count:
                frame = await self.wait_for(lambda f: f.get("type") in ("update", "batch"))
                items = frame["updates"] if frame["type"] == "batch" else [frame]
                got.extend(u for u in items
                           if subscription_id is None or u["subscription_id"] == subscription_id)
        return got

    async def closed(self, timeout: float = 15.0) -> tuple[int | None, str]:
        """Read until the server closes; return (code, reason)."""
        async with asyncio.timeout(timeout):
            try:
                while True:
                    await self.ws.recv()
            except ConnectionClosed:
                pass
        rcvd = self.ws.protocol.close_rcvd
        return (rcvd.code, rcvd.reason) if rcvd else (None, "")


@asynccontextmanager
async def client(url: str, welcome: bool = True, **kwargs: Any) -> AsyncIterator[Client]:
    """Connect; by default read the welcome frame first (kept in ``client.welcome``)."""
    async with connect(url, open_timeout=10, close_timeout=5, **kwargs) as ws:
        c = Client(ws)
        if welcome:
            c.welcome = await c.recv()
            assert c.welcome["type"] == "connection", c.welcome
        yield c



def small_buffer_socket(port: int) -> socket.socket:
    """A connected client socket with a 4 KiB receive buffer, so a reader that pauses backs the
    bridge up quickly (its queue, then its delivery rules, take over). Connect over it with
    ``compression=None``: deflated frames are so small that the buffers would take ages to fill."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock
