"""A lean WebSocket client for the fan-out *counters*: RFC 6455 framing by hand, no decoding.

The ``websockets`` client costs 15-25 us of Python per received frame (parser generator,
frame object, message queue, task wake-up). At 1,000 ticks/s in plain mode 100 clients
receive 100,000 frames a second, so the load generator would take more CPU than the server
it measures, on the same two cores. Counters only need to know how many ``ticker_update``
payloads arrived, so this client speaks the protocol with the least work: the opening
handshake, then a frame loop that reads each header, counts the marker in text payloads with
``bytearray.count`` (C, no copy), answers pings, and honours the closing handshake.

Client frames must be masked (RFC 6455 §5.3); a zero masking key is a valid key and leaves the
payload as is, which is all a load client needs. Probes use the ``websockets`` library, so
every byte the bridge sends is also checked by a complete implementation.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
ZERO_MASK = b"\x00\x00\x00\x00"
MAX_HANDSHAKE = 16 * 1024


class HandshakeError(ConnectionError):
    """The server did not switch protocols (or closed first)."""


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame (zero key: the masked payload equals the payload)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return header + ZERO_MASK + payload


def handshake_request(url: str) -> bytes:
    """The HTTP/1.1 upgrade request for ``ws://host:port/path?query``."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


@dataclass
class FrameCounter:
    """Sans-I/O frame reader: feed it bytes, it counts markers and collects control work."""

    marker: bytes
    counted: int = 0
    frames: int = 0
    close_code: int | None = None

    def __post_init__(self) -> None:
        self.buffer = bytearray()
        self.texts: list[bytes] = []  # text frames without the marker (welcome, replies)
        self.replies: list[bytes] = []  # frames to send back (pongs, close echo)

    def feed(self, data: bytes) -> None:
        """Consume whole frames from the stream; a partial frame waits for more data."""
        buf = self.buffer
        buf += data
        pos, end = 0, len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            size, head = b1 & 0x7F, 2
            if size == 126:
                if end - pos < 4:
                    break
                size, head = (buf[pos + 2] << 8) | buf[pos + 3], 4
            elif size == 127:
                if end - pos < 10:
                    break
                size, head = struct.unpack_from("!Q", buf, pos + 2)[0], 10
            if b1 & 0x80:
                head += 4  # servers never mask, but a masked frame is still skipped correctly
            stop = pos + head + size
            if stop > end:
                break
            self._frame(b0 & 0x0F, pos + head, stop)
            pos = stop
        if pos:
            del buf[:pos]

    def _frame(self, opcode: int, start: int, stop: int) -> None:
        self.frames += 1
        if opcode in (OP_TEXT, OP_CONT, OP_BINARY):
            found = self.buffer.count(self.marker, start, stop)
            if found:
                self.counted += found
            elif opcode == OP_TEXT:
                self.texts.append(bytes(self.buffer[start:stop]))
        elif opcode == OP_PING:
            self.replies.append(client_frame(OP_PONG, bytes(self.buffer[start:stop])))
        elif opcode == OP_CLOSE:
            payload = self.buffer[start:stop]
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            self.replies.append(client_frame(OP_CLOSE, bytes(payload[:2])))


class CountingConnection:
    """An open connection whose frames are counted as they arrive, by a reader task."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, marker: bytes
    ) -> None:
        self.reader, self.writer = reader, writer
        self.counter = FrameCounter(marker)
        self.last_frame = 0.0
        self._texts: asyncio.Queue[bytes] = asyncio.Queue()

    @classmethod
    async def open(cls, url: str, marker: bytes, timeout: float) -> CountingConnection:
        """Connect and complete the opening handshake (101 Switching Protocols)."""
        parts = urlsplit(url)
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 80)
            writer.write(handshake_request(url))
            head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise HandshakeError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        return cls(reader, writer, marker)

    async def run(self) -> None:
        """Read until the connection ends: count, answer pings, hand other texts to ``text()``."""
        counter = self.counter
        while counter.close_code is None:
            data = await self.reader.read(1 << 18)
            if not data:
                counter.close_code = counter.close_code or 1006
                break
            self.last_frame = time.time()  # wall clock, as the publisher's timestamps
            counter.feed(data)
            for text in counter.texts:
                self._texts.put_nowait(text)
            counter.texts.clear()
            if counter.replies:
                self.writer.write(b"".join(counter.replies))
                counter.replies.clear()
        self.writer.close()

    async def text(self, timeout: float) -> dict[str, Any]:
        """The next non-update text frame (welcome, reply), parsed."""
        async with asyncio.timeout(timeout):
            value = json.loads(await self._texts.get())
        if not isinstance(value, dict):
            raise TypeError(f"frame is not a JSON object: {value!r}")
        return value

    def send_text(self, text: str) -> None:
        self.writer.write(client_frame(OP_TEXT, text.encode()))

    async def close(self) -> None:
        """Start the closing handshake (1000) and give the server a moment to answer."""
        if self.counter.close_code is None and not self.writer.is_closing():
            self.writer.write(client_frame(OP_CLOSE, struct.pack("!H", 1000)))
        self.writer.close()
        try:
            async with asyncio.timeout(2):
                await self.writer.wait_closed()
        except (TimeoutError, OSError):
            pass
