"""A websockets server connection that writes many frames with one socket write.

``Connection.send`` writes each frame with its own ``transport.write`` (one ``send(2)`` system
call per frame when the buffer is empty). Profiles of the fan-out showed that call as the single
largest cost, so a backlog of N frames is encoded by the sans-I/O protocol in one go and handed
to the transport joined: one system call per backlog instead of per frame. Flow control and
close handling are websockets' own (``send_context``). When nothing is queued at all, a frame
is written synchronously (:meth:`BatchingConnection.send_now`), sparing a task switch per frame.

Frames shared by many clients (:mod:`bridge.lanes`) are framed once, and compressed once when
the connections negotiated permessage-deflate (:mod:`bridge.compression`: a fresh window per
message makes a frame's bytes the same on every connection with the same settings), and written
as bytes (:meth:`BatchingConnection.write_frames`). Those bytes are held until the end of the event-loop turn and written together: a client subscribed
to 50 books has 50 lanes flushing in the same turn (their timers share a grid,
:func:`bridge.lanes.flush_time`), and one ``send(2)`` for all of them instead of 50 was most of
the bridge's CPU per book update (docs/benchmarks.md, depth). Every other write (websockets'
own, through :meth:`BatchingConnection.send_data`) writes the held bytes first, so frame order
holds.

Reading and keepalive are callbacks too, for what an idle connection costs (docs/benchmarks.md,
memory per connection): the client's messages are handed on as ``websockets``' parser yields
them (:meth:`BatchingConnection.read_with`), not awaited by a read task, and keepalive pings
are sent by one task for every connection (bridge/keepalive.py).
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import InvalidState
from websockets.frames import DATA_OPCODES, CloseCode, Frame, Opcode
from websockets.protocol import State


# What :meth:`BatchingConnection.read_with` hands each message to: a text one as str.
MessageHandler = Callable[[str | bytes], None]


class BatchingConnection(ServerConnection):
    """``ServerConnection`` plus :meth:`send_texts` and a coalescing :meth:`send_data`.

    ``last_sent`` (``time.monotonic()``) is when a data frame was last written, by any of the
    three ways: what ``?heartbeat_s`` measures silence against.

    This class and its subclasses keep their own attributes in slots: ``websockets`` sets 25
    attributes of its own, and past 30 (CPython's bound for an instance sharing its class's
    key table) every connection's attributes move into a dict of their own, 1.6 KB each."""

    __slots__ = ("last_sent", "_held", "_held_size", "_on_message", "_early", "_fragments",
                 "_closed_waiter")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.last_sent = 0.0
        self._held: list[bytes] | None = None   # shared frames waiting for the end of this loop turn
        self._held_size = 0
        self._on_message: MessageHandler | None = None   # read_with(): where messages go
        self._early: list[str | bytes] | None = None     # messages before read_with()
        self._fragments: list[Frame] | None = None       # a fragmented message so far
        self._closed_waiter: asyncio.Future[None] | None = None   # closed()'s
        super().__init__(*args, **kwargs)
        # Every attribute websockets sets later (connection_made) exists from here on: an
        # attribute added to an instance whose dict was made meanwhile (under concurrent
        # handshakes it is) turns that dict into one of its own, tripled in size (1.6 KB).
        self.recv_messages = None  # type: ignore[assignment]
        self.transport = None  # type: ignore[assignment]
        # websockets' deque of flow-control waiters, as a list: it is only appended to,
        # iterated and removed from, and an empty deque costs a 64-slot block (about 760
        # bytes) on every idle connection, an empty list none.
        self.drain_waiters = []  # type: ignore[assignment]

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        # The same for the queue of received frames (websockets' Assembler): frames are read
        # as they come, so it holds a few at most, and an empty one holds none.
        frames = getattr(getattr(self, "recv_messages", None), "frames", None)
        if frames is not None and hasattr(frames, "queue") and not frames.queue:
            frames.queue = FrameQueue()

    def closed(self) -> asyncio.Future[None]:
        """A future of its own, done once the TCP connection is closed: cancelling it ends
        only that wait. ``wait_closed()`` is a coroutine around ``asyncio.shield``, about
        700 bytes while an idle connection waits in it; this is one future."""
        waiter = self.loop.create_future()
        if self.connection_lost_waiter.done():
            waiter.set_result(None)
        else:
            self._closed_waiter = waiter
        return waiter

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        waiter, self._closed_waiter = self._closed_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def read_with(self, on_message: MessageHandler) -> None:
        """From now on hand every message the client sends to ``on_message`` (a text message
        as ``str``, a binary one as ``bytes``), as it is parsed, in ``data_received``; the
        ones that came before are handed over first, in order.

        Instead of ``recv()`` in a loop: an idle connection waiting in ``recv()`` held a read
        task's coroutines (its own, ``recv``'s, the assembler's), a future and a timeout, about
        1 KB. ``recv()`` gets nothing once this is called. Messages that arrive before it (while
        the token is checked) wait in a list, and reading pauses at ``max_queue`` of them, as
        ``websockets``' assembler would."""
        early, self._early = self._early, None
        self._on_message = on_message
        if early:
            if self._early_full(early):
                self.transport.resume_reading()
            for message in early:
                on_message(message)

    def _early_full(self, early: list[str | bytes]) -> bool:
        high = self.max_queue[0]
        return high is not None and len(early) >= high

    def process_event(self, event: Any) -> None:
        """Data frames are assembled into messages here (see :meth:`read_with`); everything
        else (the handshake request, control frames) is ``websockets``' own."""
        if not isinstance(event, Frame) or event.opcode not in DATA_OPCODES:
            super().process_event(event)
            return
        if event.opcode is not Opcode.CONT:
            if event.fin:
                self._message(event.opcode, event.data)
            else:
                self._fragments = [event]
            return
        fragments = self._fragments
        assert fragments is not None   # the protocol refuses a continuation with no start
        fragments.append(event)
        if event.fin:
            self._fragments = None
            self._message(fragments[0].opcode, b"".join(frame.data for frame in fragments))

    def _message(self, opcode: Opcode, data: bytes) -> None:
        """A whole message: decoded as ``recv()`` would (invalid UTF-8 fails the connection
        1007), then handed over or held."""
        message: str | bytes
        if opcode is Opcode.TEXT:
            try:
                message = bytes(data).decode()
            except UnicodeDecodeError as exc:
                self._fail_soon(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
                return
        else:
            message = bytes(data)
        if self._on_message is not None:
            self._on_message(message)
            return
        if self._early is None:
            self._early = []
        self._early.append(message)
        if self._early_full(self._early):
            self.transport.pause_reading()

    def keepalive_ping(self) -> bytes | None:
        """Send a keepalive ping now, as ``websockets``' own keepalive does but without its
        task (bridge/keepalive.py); its payload, whose pong ``pong_waiters`` will match, or
        None when the connection is not open."""
        if self.protocol.state is not State.OPEN or self.transport.is_closing():
            return None
        data = struct.pack("!I", random.getrandbits(32))
        while data in self.pong_waiters:
            data = struct.pack("!I", random.getrandbits(32))
        self.pong_waiters[data] = (self.loop.create_future(), self.loop.time())
        self.protocol.send_ping(data)
        self.send_data()
        return data

    def fail_keepalive(self) -> None:
        """No pong in time: close 1011 ``keepalive ping timeout``, as ``websockets`` does."""
        self._fail_soon(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

    def _fail_soon(self, code: CloseCode, reason: str) -> None:
        """Fail the connection (close frame, then the TCP close) from code that cannot wait."""
        task = asyncio.get_running_loop().create_task(self._fail(code, reason))
        _FAILING.add(task)
        task.add_done_callback(_FAILING.discard)

    async def _fail(self, code: CloseCode, reason: str) -> None:
        async with self.send_context():
            self.protocol.fail(code, reason)

    async def send_texts(self, frames: Sequence[str]) -> None:
        """Send text frames in order, as separate WebSocket messages, in one write."""
        while self.fragmented_send_waiter is not None:   # never while a fragmented send runs
            await self.fragmented_send_waiter
        async with self.send_context():
            for frame in frames:
                self.protocol.send_text(frame.encode())
            self.last_sent = time.monotonic()

    def send_now(self, frame: str) -> bool:
        """Write one text frame synchronously, as ``websockets.broadcast`` does, if the socket
        has nothing queued; False means "not now" and the caller queues the frame instead."""
        if (self.protocol.state is not State.OPEN or self.fragmented_send_waiter is not None
                or self._held is not None or self.transport.get_write_buffer_size() > 0):
            return False
        try:
            self.protocol.send_text(frame.encode())
            self.send_data()
        except (OSError, InvalidState):  # going away; the reader will see it
            return False
        self.last_sent = time.monotonic()
        return True

    def write_frames(self, data: bytes, now: bool = False) -> bool:
        """Write frames already serialised (:meth:`bridge.compression.FrameCodec.frames`), if
        the connection is open and its write buffer is within its high-water mark; False means
        "not now" (the caller queues instead). Nothing of websockets' state depends on data frames sent (no
        fragmentation here; permessage-deflate only with a fresh window per message, so its
        compressor keeps no state across messages), so writing the bytes directly is safe.

        ``now``: the caller has joined everything of this loop turn already (a batch window of
        :class:`bridge.lanes.FlushGrid`): written at once, without holding it for the turn's
        end (a callback per connection per window, a sixth of a loaded bridge's CPU)."""
        transport = self.transport
        if (self.protocol.state is not State.OPEN or self.fragmented_send_waiter is not None
                or transport.is_closing()
                or transport.get_write_buffer_size() + self._held_size > transport.get_write_buffer_limits()[1]):
            return False
        if now and self._held is None:
            transport.write(data)
            self.last_sent = time.monotonic()
            return True
        if self._held is None:
            self._held = []
            asyncio.get_running_loop().call_soon(self._write_held)
        self._held.append(data)
        self._held_size += len(data)
        self.last_sent = time.monotonic()
        return True

    def _write_held(self) -> None:
        """Write the shared frames held this loop turn, joined (see the module doc)."""
        held, self._held, self._held_size = self._held, None, 0
        if held and not self.transport.is_closing():
            self.transport.write(held[0] if len(held) == 1 else b"".join(held))

    def send_data(self) -> None:
        """Join the protocol's pending bytes into one write (b"" still means half-close),
        after the shared frames held so far, which were queued before them."""
        if self._held is not None:
            self._write_held()
        pending: list[bytes] = []
        for data in self.protocol.data_to_send():
            if data:
                pending.append(data)
                continue
            if pending:
                self.transport.write(b"".join(pending))
                pending = []
            if self.transport.can_write_eof():
                try:
                    self.transport.write_eof()
                except (OSError, RuntimeError):  # pragma: no cover - as websockets does
                    pass
            else:  # pragma: no cover - TLS transports cannot half-close
                self.transport.close()
        if pending:
            self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))


class FrameQueue(list):  # type: ignore[type-arg]
    """The deque operations ``websockets``' frame queue uses, on a list (see
    :meth:`BatchingConnection.connection_made`)."""

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


_FAILING: set[asyncio.Task[None]] = set()   # failures in progress (_fail_soon), kept from GC
