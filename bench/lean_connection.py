"""The asyncio edge of the fan-out load clients: bytes in and out of a socket, nothing more.

An ``asyncio.Protocol`` rather than a stream reader and a reading task: the event loop calls
``data_received`` with what the socket had, and the frames are handled right there, with no
future to resolve, no task to wake and no copy into a stream buffer. What a message means is
the owner's business (``on_message``: count it, or decode and check it); welcome and reply
frames are the exception, queued for ``text()`` while the session is being set up.
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any, cast
from urllib.parse import urlsplit

from bench.rawws import (
    MAX_HANDSHAKE,
    OP_CLOSE,
    OP_TEXT,
    FrameReader,
    HandshakeError,
    MessageHandler,
    accepted_deflate,
    client_frame,
    handshake_request,
)


class LeanConnection(asyncio.Protocol):
    """One client connection: the opening handshake, then every frame through a FrameReader."""

    def __init__(self, on_message: MessageHandler, deflate: bool = False) -> None:
        self._handler = on_message
        self._offer_deflate = deflate
        self.reader: FrameReader | None = None
        self.transport: asyncio.Transport | None = None
        self.last_data = 0.0  # wall clock of the last bytes read, as the publisher's stamps
        self.reads = 0  # data_received calls: more than frames when frames arrive in pieces
        self.wire_bytes = 0  # everything read, handshake included: what compression saves
        self._head = bytearray()
        loop = asyncio.get_running_loop()
        self._switched: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    @classmethod
    async def open(
        cls, url: str, on_message: MessageHandler, timeout: float, deflate: bool = False,
        source: str | None = None,
    ) -> LeanConnection:
        """Connect and complete the opening handshake (101 Switching Protocols). ``source``
        binds the client socket to that address first (another loopback address: one address
        has only the ~28,000 ports of the ephemeral range towards one server port)."""
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            _, conn = await loop.create_connection(
                lambda: cls(on_message, deflate), parts.hostname, parts.port or 80,
                local_addr=None if source is None else (source, 0),
            )
            assert conn.transport is not None
            conn.transport.write(handshake_request(url, deflate))
            try:
                await conn._switched
            except BaseException:
                conn.transport.close()
                raise
        return conn

    @property
    def close_code(self) -> int | None:
        """The server's close code; 1006 once the connection ended without one."""
        if self.reader is not None and self.reader.close_code is not None:
            return self.reader.close_code
        return 1006 if self.closed.done() else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.last_data = time.time()
        self.reads += 1
        self.wire_bytes += len(data)
        reader = self.reader
        if reader is None:
            self._handshake(data)
            return
        reader.feed(data)
        if reader.replies:
            assert self.transport is not None
            self.transport.write(b"".join(reader.replies))
            reader.replies.clear()
            if reader.close_code is not None:
                self.transport.close()

    def _handshake(self, data: bytes) -> None:
        """Collect the response head; on 101 switch to frames (the rest of ``data`` is one)."""
        self._head += data
        head, found, rest = bytes(self._head).partition(b"\r\n\r\n")
        if not found:
            if len(self._head) > MAX_HANDSHAKE:
                self._fail(HandshakeError("handshake response too large"))
            return
        if not head.startswith(b"HTTP/1.1 101"):
            self._fail(HandshakeError(head.split(b"\r\n", 1)[0].decode(errors="replace")))
            return
        deflate, fresh = accepted_deflate(head) if self._offer_deflate else (False, False)
        self.reader = FrameReader(self._handler, deflate, fresh)
        self._switched.set_result(None)
        if rest:
            self.data_received(rest)

    def _fail(self, error: Exception) -> None:
        if not self._switched.done():
            self._switched.set_exception(error)
        assert self.transport is not None
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._switched.done():
            self._switched.set_exception(HandshakeError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def send_text(self, text: str) -> None:
        assert self.transport is not None
        self.transport.write(client_frame(OP_TEXT, text.encode()))

    def abort(self) -> None:
        """Drop the connection at once (a session that failed to set up)."""
        if self.transport is not None:
            self.transport.abort()

    async def close(self) -> None:
        """Start the closing handshake (1000) and give the server a moment to end it."""
        assert self.transport is not None
        if self.reader is None:  # still in the HTTP handshake: nothing to close politely
            self.transport.close()
        elif self.close_code is None and not self.transport.is_closing():
            self.transport.write(client_frame(OP_CLOSE, struct.pack("!H", 1000)))
            self.reader.close_sent = True
        try:
            async with asyncio.timeout(2):
                await asyncio.shield(self.closed)
        except TimeoutError:
            self.transport.abort()


class TextInbox:
    """Queues the frames a handler did not consume (welcome, replies) for ``next()``; the
    handler has parsed them already (``bench.frames.decode``)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def put(self, frame: dict[str, Any]) -> None:
        self._queue.put_nowait(frame)

    async def next(self, timeout: float) -> dict[str, Any]:
        """The next queued frame."""
        async with asyncio.timeout(timeout):
            return await self._queue.get()
