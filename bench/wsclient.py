"""The WebSocket side of a load client: connect, read the welcome, make requests (SPEC §4).

Clients do not offer permessage-deflate unless asked (``compression="deflate"``): trading
clients usually do not, and the bridge's cost per connection is what is being measured.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect

try:
    from orjson import dumps as _dumps

    def encode(value: Any) -> str:
        return _dumps(value).decode()
except ImportError:  # pragma: no cover
    from json import dumps as encode  # type: ignore[assignment]

from bench.frames import decode

MAX_FRAME = 64 * 1024 * 1024
_request_ids = itertools.count(1)


class SessionError(RuntimeError):
    """The server refused the connection or a request; the message says how."""


def ws_url(base: str, token: str | None = None, batch_ms: int | None = None) -> str:
    """``base`` plus ``?token=`` and ``batch_ms=`` as the client needs them."""
    query: dict[str, str] = {}
    if token:
        query["token"] = token
    if batch_ms:
        query["batch_ms"] = str(batch_ms)
    if not query:
        return base
    return f"{base}{'&' if '?' in base else '?'}{urlencode(query)}"


async def open_session(
    url: str, timeout: float, welcome: bool = True, compression: str | None = None
) -> ClientConnection:
    """Connect and, for the bridge, wait for its ``connection`` welcome frame."""
    ws = await connect(
        url,
        open_timeout=timeout,
        close_timeout=2,
        compression=compression,
        max_size=MAX_FRAME,
        ping_interval=None,
    )
    if welcome:
        try:
            frame = decode(await asyncio.wait_for(ws.recv(decode=False), timeout))
        except BaseException:
            await ws.close()
            raise
        if frame.get("type") != "connection" or frame.get("status") != "connected":
            await ws.close()
            raise SessionError(f"unexpected first frame: {frame}")
    return ws


async def request(
    ws: ClientConnection, action: str, params: dict[str, Any] | None, timeout: float
) -> dict[str, Any]:
    """Send one action and return its response frame (frames before it are skipped)."""
    request_id = next(_request_ids)
    await ws.send(encode({"action": action, "request_id": request_id, "params": params or {}}))
    async with asyncio.timeout(timeout):
        while True:
            frame = decode(await ws.recv(decode=False))
            if frame.get("request_id") == request_id:
                return frame


async def subscribe_tickers(
    ws: ClientConnection, exchange: str, symbols: list[str], timeout: float
) -> str:
    """Subscribe to ``symbols`` of ``exchange`` without a snapshot; returns the subscription id."""
    frame = await request(
        ws,
        "subscribe",
        {"channel": "tickers", "exchange": exchange, "symbols": symbols, "snapshot": False},
        timeout,
    )
    if not frame.get("success"):
        raise SessionError(f"subscribe refused: {frame.get('error')}")
    return str(frame["result"]["subscription_id"])
