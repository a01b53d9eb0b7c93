"""permessage-deflate (SPEC §9.3 "Compression"): offered with a fresh window per message, so a
shared frame is compressed once for every client that shares it.

Browsers always offer permessage-deflate, and JSON updates shrink to a fraction. Compressed the
usual way (one running deflate context per connection, as websockets does by default), a frame's
bytes depend on everything that connection was sent before, so a frame shared by 100 clients
would be compressed 100 times. With ``server_no_context_takeover`` (RFC 7692 §7.1.1.1: the
server may add it to any offer it accepts) each message is compressed from an empty window: its
bytes depend only on the message and the connection's window size and settings, the same on
every connection that negotiated them. So the bridge's lanes (:mod:`bridge.lanes`) compress a
flush once per :class:`FrameCodec`, and write those bytes to each member as they are.

``client_no_context_takeover`` too: a client's few, small requests gain little from a running
window, and without one the bridge holds no inflate state per idle connection (a zlib stream
and its window, several KiB each) but makes one per message it reads.

Frames that are not shared (responses, snapshots, a client's own backlog) go through websockets,
which compresses them for that connection with the same settings. A connection whose
negotiated extensions the lanes cannot reproduce (anything but no compression or
permessage-deflate with a fresh server window) has no codec: it takes every update through its
own queue, compressed by websockets, so nothing is sent that its client cannot read.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from websockets.extensions.base import ServerExtensionFactory
from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.protocol import Protocol

COMPRESSION_MODES = ("deflate", "none")
# websockets' own defaults for a server (enable_server_permessage_deflate): a 4 KiB window each
# way and memLevel 5 keep a connection's zlib state small; JSON updates gain little from more.
WINDOW_BITS = 12
MEM_LEVEL = 5
_SYNC_TAIL = b"\x00\x00\xff\xff"   # what a sync flush ends with; RFC 7692 §7.2.1 drops it


@dataclass(frozen=True)
class FrameCodec:
    """How one group of connections is sent text frames: ``window_bits`` None means plain."""

    window_bits: int | None = None
    mem_level: int = MEM_LEVEL

    def frames(self, payloads: Sequence[str]) -> bytes:
        """Final text frames, unmasked (a server's), one per payload, joined: websockets' own
        framing and, when compressed, permessage-deflate's encoding of a message from an empty
        window (what ``PerMessageDeflate.encode`` does with ``local_no_context_takeover``)."""
        return self.sized_frames(payloads)[0]

    def sized_frames(self, payloads: Sequence[str]) -> tuple[bytes, int]:
        """:meth:`frames`, and how many bytes the payloads held before compression (what
        ``bridge_compression_ratio`` compares the compressed frames with)."""
        raw = [payload.encode() for payload in payloads]
        size = sum(len(data) for data in raw)
        if self.window_bits is None:
            return b"".join(_frame(_TEXT, data) for data in raw), size
        return b"".join(_frame(_DEFLATED_TEXT, self.deflate(data)) for data in raw), size

    def deflate(self, data: bytes) -> bytes:
        """One message's compressed payload, from a fresh window, without the sync-flush tail."""
        encoder = zlib.compressobj(wbits=-(self.window_bits or WINDOW_BITS), memLevel=self.mem_level)
        out = encoder.compress(data) + encoder.flush(zlib.Z_SYNC_FLUSH)
        return out[:-4] if out.endswith(_SYNC_TAIL) else out


PLAIN = FrameCodec()
_TEXT = 0x81            # FIN + text opcode (RFC 6455 §5.2)
_DEFLATED_TEXT = 0xC1   # FIN + RSV1 ("compressed", RFC 7692 §6) + text opcode


def _frame(first: int, data: bytes) -> bytes:
    """One unmasked frame (a server's): the header websockets' ``Frame.serialize`` writes,
    without its checks, which refuse RSV1 unless its own extension object set it."""
    length = len(data)
    if length < 126:
        return struct.pack("!BB", first, length) + data
    if length < 65536:
        return struct.pack("!BBH", first, 126, length) + data
    return struct.pack("!BBQ", first, 127, length) + data


def codec_of(protocol: Protocol) -> FrameCodec | None:
    """The codec of a connection's negotiated extensions, or None when shared frames cannot be
    built for it (it then takes its updates one by one, through websockets)."""
    extensions = protocol.extensions
    if not extensions:
        return PLAIN
    if len(extensions) != 1 or not isinstance(extensions[0], PerMessageDeflate):
        return None
    deflate = extensions[0]
    settings: dict[str, Any] = deflate.compress_settings or {}
    if not deflate.local_no_context_takeover or set(settings) - {"memLevel"}:
        return None
    return FrameCodec(deflate.local_max_window_bits, int(settings.get("memLevel", 8)))


def server_extensions(mode: str) -> list[ServerExtensionFactory]:
    """The extensions a bridge offers for ``--compression`` (``deflate`` or ``none``)."""
    if mode == "none":
        return []
    return [ServerPerMessageDeflateFactory(
        server_no_context_takeover=True, client_no_context_takeover=True,
        server_max_window_bits=WINDOW_BITS, client_max_window_bits=WINDOW_BITS,
        compress_settings={"memLevel": MEM_LEVEL})]
