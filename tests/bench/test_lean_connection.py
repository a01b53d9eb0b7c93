"""The fan-out load clients' WebSocket edge (bench/lean_connection.py) against a real
``websockets`` server: handshake, messages, pings, permessage-deflate, both closing handshakes,
and a refused upgrade."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.server import ServerConnection, serve

from bench.frames import decode
from bench.lean_connection import LeanConnection, TextInbox
from bench.rawws import OP_TEXT, HandshakeError

pytestmark = pytest.mark.timeout(20)


class Received:
    """Every whole message the connection hands over, as the fan-out clients get them."""

    def __init__(self) -> None:
        self.inbox = TextInbox()
        self.binary: list[bytes] = []

    def __call__(self, opcode: int, buf: bytes | bytearray, start: int, stop: int) -> None:
        if opcode == OP_TEXT:
            self.inbox.put(decode(bytes(buf[start:stop])))
        else:
            self.binary.append(bytes(buf[start:stop]))


@asynccontextmanager
async def server(compression: str | None = None) -> AsyncIterator[tuple[str, asyncio.Queue[object]]]:
    """A server that greets, answers each text with a big reply, pings, and closes on "bye"."""
    seen: asyncio.Queue[object] = asyncio.Queue()

    async def handler(ws: ServerConnection) -> None:
        await ws.send('{"type":"connection"}')
        async for message in ws:
            await seen.put(message)
            if message == '{"bye":true}':
                await ws.close(1001, "going away")
                return
            await ws.send('{"echo":"' + "x" * 100_000 + '"}')  # a 64-bit length frame
            await ws.send(b"\x00\x01")
            await ws.ping(b"are you there")

    async with serve(handler, "127.0.0.1", 0, compression=compression) as srv:
        port = srv.sockets[0].getsockname()[1]
        async with asyncio.timeout(15):
            yield f"ws://127.0.0.1:{port}/ws?token=t", seen


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_messages_pings_and_the_servers_close(compression: str | None) -> None:
    received = Received()
    async with server(compression) as (url, seen):
        conn = await LeanConnection.open(url, received, timeout=5, deflate=bool(compression))
        assert (await received.inbox.next(5)) == {"type": "connection"}
        conn.send_text('{"hello":1}')
        assert await seen.get() == '{"hello":1}'
        assert len((await received.inbox.next(5))["echo"]) == 100_000
        conn.send_text('{"bye":true}')  # the server closes; the client echoes its close
        await asyncio.wait_for(asyncio.shield(conn.closed), 5)
        assert conn.close_code == 1001
        assert received.binary == [b"\x00\x01"]
        assert conn.reader is not None and conn.reader.frames >= 5
        assert conn.reader.deflate == bool(compression)  # agreed when offered to a willing server


async def test_the_clients_close_is_answered() -> None:
    received = Received()
    async with server() as (url, _seen):
        conn = await LeanConnection.open(url, received, timeout=5)
        await received.inbox.next(5)
        await conn.close()
        assert conn.closed.done() and conn.close_code == 1000
        assert conn.reader is not None and conn.reader.close_sent


async def test_a_refused_upgrade_is_a_handshake_error() -> None:
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    refusing = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = refusing.sockets[0].getsockname()[1]
    async with refusing:
        with pytest.raises(HandshakeError, match="401 Unauthorized"):
            await LeanConnection.open(f"ws://127.0.0.1:{port}/ws", Received(), timeout=5)
