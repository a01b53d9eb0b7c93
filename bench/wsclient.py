"""The ``websockets`` client of the capacity, churn and unary scenarios: connect, read the
welcome (docs/protocol.md). The fan-out clients use the leaner bench/lean_connection.py.

Clients do not offer permessage-deflate unless asked (``compression="deflate"``): trading
clients usually do not, and the bridge's cost per connection is what is being measured.
"""

from __future__ import annotations

import asyncio
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

__all__ = ["MAX_FRAME", "SessionError", "encode", "open_session", "ws_url"]

MAX_FRAME = 64 * 1024 * 1024


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
