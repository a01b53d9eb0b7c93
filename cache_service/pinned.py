"""A Redis connection held by one hot loop, used without the client's per-call machinery.

Why: ``Redis.execute_command`` checks a connection out of the pool for every command, probes
it for unread data (a zero-timeout read: an event-loop turn and a timer) and returns it
afterwards. The change-feed readers and bulk ingest send thousands of commands a second, one
at a time, so that bookkeeping was most of their Redis cost: 297-313 us of CPU per EVALSHA
through the client against 150-213 us on a held connection (``docs/cache_service.md``,
"Held connections"). Each such loop holds one pool connection instead, for as long as it runs.

Rules that keep a held connection correct:

- It serves one loop: one command (or one pipelined group) in flight at a time.
- Any error while a command is in flight (error reply, timeout, cancellation, a dropped
  socket) drops the connection, since its replies may be out of step; the next command checks
  out a fresh one, which with Sentinel means asking for the current primary.
- A connection that sat idle longer than ``IDLE_PROBE_S`` is probed as the pool would (a
  restarted Redis closes it while nobody is looking); a busy one never is.

Commands are packed by hiredis (C) rather than redis-py's Python packer: see :func:`_packed`.
"""

from __future__ import annotations

import time
from contextlib import suppress
from types import TracebackType
from typing import Any, Self

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection

IDLE_PROBE_S = 1.0

Command = tuple[Any, ...]


def _packed(conn: AbstractConnection, commands: tuple[Command, ...]) -> bytes | list[bytes]:
    """The commands in RESP, packed by hiredis in C: redis-py's asyncio connection packs in
    Python, about 0.7 us per argument, and a book batch's script call has thousands of them
    (a 300-argument command: 229 us in redis-py, 39 us in hiredis). Anything hiredis does not
    take (None, bool) goes through redis-py, which raises its usual DataError."""
    try:
        return b"".join([hiredis.pack_command(command) for command in commands])
    except TypeError:
        return conn.pack_commands(commands)


class PinnedConnection:
    """One pool connection, checked out on first use and returned on ``close``."""

    def __init__(self, redis: aioredis.Redis, idle_probe_s: float = IDLE_PROBE_S) -> None:
        self._pool = redis.connection_pool
        self._idle_probe_s = idle_probe_s
        self._conn: AbstractConnection | None = None
        self._last_used = 0.0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def execute(self, *commands: Command) -> list[Any]:
        """Send ``commands`` in one write and return their replies in order.

        An error reply raises (as redis-py's client does) after dropping the connection.
        """
        conn = await self._connection()
        try:
            await conn.send_packed_command(_packed(conn, commands), check_health=False)
            replies = [await conn.read_response() for _ in commands]
        except BaseException:
            await self._drop()
            raise
        self._last_used = time.monotonic()
        return replies

    async def _connection(self) -> AbstractConnection:
        conn = self._conn
        if conn is not None and time.monotonic() - self._last_used > self._idle_probe_s:
            try:
                stale = await conn.can_read_destructive()
            except Exception:  # noqa: BLE001 - a probe that fails says the same as unread data
                stale = True
            if stale:
                await self._drop()
                conn = None
        if conn is None:
            conn = self._conn = await self._pool.get_connection()
        return conn

    async def _drop(self) -> None:
        """Disconnect and hand back the connection (the pool reconnects it when reused)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.disconnect()
            await self._release(conn)

    async def close(self) -> None:
        """Return the connection to the pool, still connected, for others to reuse."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._release(conn)

    async def _release(self, conn: AbstractConnection) -> None:
        # a pool that was reset meanwhile (client closed at shutdown) no longer knows it
        with suppress(ValueError):
            await self._pool.release(conn)
