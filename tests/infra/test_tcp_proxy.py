"""The stalling proxy itself: forwards both ways, holds bytes while stalled (nothing closes),
delivers them on resume, and drop() closes every connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.infra.tcp_proxy import StallingProxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    yield int(server.sockets[0].getsockname()[1])
    server.close()
    await server.wait_closed()


async def test_stall_holds_bytes_without_closing_and_resume_delivers_them(echo_port: int) -> None:
    async with StallingProxy("127.0.0.1", echo_port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"one")
        assert await asyncio.wait_for(reader.readexactly(3), 5) == b"one"
        proxy.stall()
        writer.write(b"two")
        with pytest.raises(TimeoutError):     # a bounded check that nothing comes through
            await asyncio.wait_for(reader.readexactly(3), 0.3)
        assert not reader.at_eof() and proxy.stalled
        proxy.resume()
        assert await asyncio.wait_for(reader.readexactly(3), 5) == b"two"
        proxy.drop()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        again_reader, again = await asyncio.open_connection("127.0.0.1", proxy.port)
        again.write(b"new")
        assert await asyncio.wait_for(again_reader.readexactly(3), 5) == b"new"
        assert proxy.connections == 2
        writer.close()
        again.close()
