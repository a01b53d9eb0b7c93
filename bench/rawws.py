"""The client side of RFC 6455 for the fan-out load clients, without I/O: handshake and frames.

The ``websockets`` client costs 250-300 us of CPU per received 25 KB batch frame (its parser
generator, frame objects, message queue and a task wake-up per message), and a client that
only counts spends most of its time in that machinery. At 10,000 ticks/s the 100 load clients
then took more CPU than the bridge and the cache service together, on the same two cores, and
the servers' latency tail was mostly time spent waiting for a CPU the load generator held.
This reader does the least work a correct client must: it parses each frame header, hands a
complete message to its owner as a slice of the bytes that arrived (no copy when a frame
arrives whole, which is the usual case), answers pings, echoes the close, assembles the rare
fragmented message and inflates permessage-deflate messages when the server agreed to it.

Client frames must be masked (RFC 6455 §5.3); a zero masking key is a valid key and leaves the
payload as is, which is all a load client needs.
"""

from __future__ import annotations

import base64
import os
import struct
import zlib
from collections.abc import Callable
from urllib.parse import urlsplit

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
ZERO_MASK = b"\x00\x00\x00\x00"
MAX_HANDSHAKE = 16 * 1024
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"
DEFLATE_TAIL = b"\x00\x00\xff\xff"

# (opcode, buffer, start, stop): one whole text or binary message, ``buffer[start:stop]``.
MessageHandler = Callable[[int, bytes | bytearray, int, int], None]


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


def handshake_request(url: str, deflate: bool = False) -> bytes:
    """The HTTP/1.1 upgrade request for ``ws://host:port/path?query``."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    extensions = f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n" if deflate else ""
    return (
        f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"{extensions}\r\n"
    ).encode()


def accepted_deflate(head: bytes) -> tuple[bool, bool]:
    """From a 101 response head: (server agreed to permessage-deflate, with a fresh window per
    message, i.e. ``server_no_context_takeover``)."""
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-extensions" and "permessage-deflate" in value:
            return True, "server_no_context_takeover" in value
    return False, False


class FrameReader:
    """Feed it the bytes of a connection after the handshake; it calls ``on_message`` with
    every whole text or binary message and collects the frames to send back."""

    def __init__(
        self, on_message: MessageHandler, deflate: bool = False, fresh_window: bool = False
    ) -> None:
        self.on_message = on_message
        self.buffer = bytearray()
        self.frames = 0
        self.close_code: int | None = None
        self.close_sent = False  # set by the owner once it sent a close: the server's is a reply
        self.replies: list[bytes] = []  # pongs, the close echo
        self._fragments: list[bytes] = []
        self._fragment_opcode = 0
        self._fragment_deflated = False
        self._fresh_window = fresh_window  # as agreed in the handshake
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS) if deflate else None

    @property
    def deflate(self) -> bool:
        """Whether the handshake agreed to permessage-deflate."""
        return self._inflater is not None

    def feed(self, data: bytes) -> None:
        """Consume whole frames; a partial frame waits in the buffer for the rest. The buffer
        is only used for a frame split across reads, so a frame that arrives whole is handed
        over as a slice of ``data`` itself."""
        if self.buffer:
            self.buffer += data
            used = self._parse(self.buffer)
            del self.buffer[:used]
        else:
            used = self._parse(data)
            if used < len(data):
                self.buffer += data[used:]

    def _parse(self, buf: bytes | bytearray) -> int:
        """Handle every whole frame in ``buf``; returns how many bytes they took."""
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
                head += 4  # servers never mask; a masked frame is still skipped correctly
            stop = pos + head + size
            if stop > end:
                break
            self.frames += 1
            self._frame(b0, buf, pos + head, stop)
            pos = stop
        return pos

    def _frame(self, b0: int, buf: bytes | bytearray, start: int, stop: int) -> None:
        opcode = b0 & 0x0F
        if opcode in (OP_TEXT, OP_BINARY, OP_CONT):
            self._data_frame(b0, opcode, buf, start, stop)
        elif opcode == OP_PING:
            self.replies.append(client_frame(OP_PONG, bytes(buf[start:stop])))
        elif opcode == OP_CLOSE:
            payload = bytes(buf[start:stop])
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            if not self.close_sent:  # echo the server's close; never send a second one
                self.replies.append(client_frame(OP_CLOSE, payload[:2]))
                self.close_sent = True

    def _data_frame(
        self, b0: int, opcode: int, buf: bytes | bytearray, start: int, stop: int
    ) -> None:
        final, deflated = bool(b0 & 0x80), bool(b0 & 0x40)
        if opcode != OP_CONT and final:  # a whole message in one frame: the usual case
            self._message(opcode, deflated, buf, start, stop)
            return
        if opcode != OP_CONT:  # the first fragment of a message
            self._fragment_opcode, self._fragment_deflated = opcode, deflated
        self._fragments.append(bytes(buf[start:stop]))
        if final:
            payload = b"".join(self._fragments)
            self._fragments.clear()
            self._message(self._fragment_opcode, self._fragment_deflated, payload, 0, len(payload))

    def _message(
        self, opcode: int, deflated: bool, buf: bytes | bytearray, start: int, stop: int
    ) -> None:
        """Hand a whole message over: as it arrived, or inflated (RFC 7692 §7.2.2: with the
        empty block's tail) when it was compressed."""
        if not deflated:
            self.on_message(opcode, buf, start, stop)
            return
        if self._inflater is None:
            raise ValueError("compressed frame on a connection that did not agree to deflate")
        if self._fresh_window:
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        data = self._inflater.decompress(bytes(buf[start:stop]) + DEFLATE_TAIL)
        self.on_message(opcode, data, 0, len(data))
