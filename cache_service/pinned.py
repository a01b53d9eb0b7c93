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

On a Redis Cluster a loop writes to, or reads from, keys on several nodes, so it holds one
connection per node, and every ``execute`` names a ``key`` whose slot picks the node (all
commands of one call must be in that slot, as a script's keys are anyway). The cluster
client's slot map is the truth: a MOVED reply (a failover, a migrated slot) updates it and the
call is sent again to the new owner (the command did not run); ASK is followed for that one
call; a broken connection or CLUSTERDOWN drops the connection and makes the client relearn the
map (``RedisCluster.aclose``, what redis-py does itself) before the next command.

Relearning the map disconnects every connection in the client's node pools, and while a
master is down it can take a connect timeout (the map may still name the dead node). A
long-lived loop (a change-feed reader, bulk ingest) therefore holds connections of its own
(``own=True``) and waits for the map to be relearnt only when its own command failed: a
failover on one shard then stalls only the loops that were talking to that shard, and the
readers of the other shards read on. A held connection for one call relearns like any redis-py
command.

A READONLY reply or a broken connection on a single Redis (maybe a demoted primary, with
Sentinel) disconnects the pool's idle connections, so the next command asks the Sentinels for
the current primary instead of reusing a demoted one.
"""

from __future__ import annotations

import time
from contextlib import suppress
from types import TracebackType
from typing import Any, Self

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.cluster import get_node_name
from redis.exceptions import AskError, ClusterDownError, MovedError, ReadOnlyError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cache_service.slots import slot_of

IDLE_PROBE_S = 1.0
REDIRECTS = 5   # MOVED/ASK followed per call, as redis-py's cluster client does (it allows 16)
_BROKEN = (RedisConnectionError, RedisTimeoutError, ClusterDownError, OSError)

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


def _learn_moved(cluster: RedisCluster, exc: MovedError) -> None:
    """Tell the cluster client's map that a slot moved, unless its map says so already.

    Why: redis-py applies a MOVED by swapping the redirect target to the front of the node list
    that every slot of the range shares, and marking the node it displaced a replica. Applied a
    second time (calls sent before the map changed each get a MOVED: a thawed master answers
    every command queued on it with one), the new master displaces itself and is marked a
    replica: it still serves the slot, but the client no longer counts it among the primaries,
    so ``SCRIPT LOAD`` (sent to every primary) never reached it and every write to that shard
    failed ``NOSCRIPT``, as INTERNAL, until the service restarted (a master paused until its
    replica took over: ~240 writes per run in tests/resilience/test_cluster_failover.py).
    """
    owners = cluster.nodes_manager.slots_cache.get(exc.slot_id)
    if owners and owners[0].name == get_node_name(exc.host, exc.port):
        return
    cluster.nodes_manager.update_moved_exception(exc)


def _closed_under_us(conn: AbstractConnection, exc: AttributeError) -> Exception:
    """A connection another task disconnected while this one used it is a broken connection.

    Why: on a cluster, relearning the map (``RedisCluster.aclose`` after a failure, ours or
    any other call's) disconnects every connection of every node pool, those in use too; one
    that was (re)connecting then fails inside redis-py with ``'NoneType' object has no
    attribute 'writelines'`` (its writer is gone). Seen on every master restarting at once:
    about 20 writes per run answered UNKNOWN instead of UNAVAILABLE (SPEC §7). Any other
    AttributeError is a bug and is raised as it is.
    """
    if conn.is_connected:
        return exc
    return RedisConnectionError(f"connection closed while in use ({exc})")


class _Held:
    """One held connection, where it came from, and when it last answered."""

    def __init__(self, conn: AbstractConnection, node: ClusterNode | None, own: bool) -> None:
        self.conn = conn
        self.node = node
        self.own = own   # opened by us, not taken from a node pool: closed by us
        self.last_used = time.monotonic()


class PinnedConnection:
    """One pool connection (one per cluster node), checked out on first use, returned on ``close``."""

    def __init__(self, redis: aioredis.Redis | RedisCluster, idle_probe_s: float = IDLE_PROBE_S,
                 own: bool = False) -> None:
        self._redis = redis
        self._idle_probe_s = idle_probe_s
        self._own = own and isinstance(redis, RedisCluster)
        self._held: dict[str, _Held] = {}   # by node name; "" on a single Redis
        self._relearn = False   # a command of ours broke: wait for a fresh slot map first

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def execute(self, *commands: Command, key: str | None = None) -> list[Any]:
        """Send ``commands`` in one write and return their replies in order.

        ``key``: a key of the commands' slot, required on a cluster (ignored otherwise).
        An error reply raises (as redis-py's client does) after dropping the connection.
        """
        if not isinstance(self._redis, RedisCluster):
            return await self._send("", None, commands)
        if key is None:
            raise ValueError("a cluster connection needs the key whose slot the commands are in")
        cluster = self._redis
        asking: ClusterNode | None = None
        for _ in range(REDIRECTS):
            if not self._own or self._relearn or not cluster.nodes_manager.slots_cache:
                await cluster.initialize()
                self._relearn = False
            node = asking or cluster.nodes_manager.get_node_from_slot(slot_of(key))
            sent = (("ASKING",), *commands) if asking is not None else commands
            try:
                replies = await self._send(node.name, node, sent)
            except MovedError as exc:   # not run: the slot has a new owner
                _learn_moved(cluster, exc)
                asking = None
                continue
            except AskError as exc:     # not run: the slot is migrating, this key has moved on
                asking = cluster.get_node(host=exc.host, port=exc.port)
                if asking is None:
                    await cluster.aclose()   # a node it does not know yet: relearn the map
                    raise
                continue
            return replies[1:] if asking is not None else replies
        raise ClusterDownError(f"more than {REDIRECTS} MOVED/ASK redirects for a key in slot {slot_of(key)}")

    async def _send(self, name: str, node: ClusterNode | None, commands: tuple[Command, ...]) -> list[Any]:
        held = await self._connection(name, node)
        conn = held.conn
        try:
            try:
                await conn.send_packed_command(_packed(conn, commands), check_health=False)
                replies = [await conn.read_response() for _ in commands]
            except AttributeError as exc:
                raise _closed_under_us(conn, exc) from exc
        except BaseException as exc:
            await self._drop(name)
            await self._after_failure(name, exc)
            raise
        held.last_used = time.monotonic()
        return replies

    async def _after_failure(self, name: str, exc: BaseException) -> None:
        """Make the client find the servers again after an error that may mean they moved."""
        if isinstance(self._redis, RedisCluster):
            if isinstance(exc, _BROKEN):
                # as redis-py does: ask the other nodes for the map, then relearn it
                self._redis.nodes_manager.startup_nodes.pop(name, None)
                self._relearn = True
                await self._redis.aclose()
        elif isinstance(exc, (ReadOnlyError, RedisConnectionError)):
            await self._redis.connection_pool.disconnect(inuse_connections=False)

    async def _connection(self, name: str, node: ClusterNode | None) -> _Held:
        held = self._held.get(name)
        if held is not None and not held.own and held.node is not node:   # the map was relearnt: a new pool
            await self._drop(name)
            held = None
        if held is not None and time.monotonic() - held.last_used > self._idle_probe_s:
            try:
                stale = await held.conn.can_read_destructive()
            except Exception:  # noqa: BLE001 - a probe that fails says the same as unread data
                stale = True
            if stale:
                await self._drop(name)
                held = None
        if held is None:
            if node is None:
                conn = await self._redis.connection_pool.get_connection()  # type: ignore[union-attr]
            elif self._own:
                conn = node.connection_class(**node.connection_kwargs)
            else:
                conn = node.acquire_connection()
            held = self._held[name] = _Held(conn, node, self._own)
        return held

    async def _drop(self, name: str) -> None:
        """Disconnect and hand back the connection (the pool reconnects it when reused)."""
        held = self._held.pop(name, None)
        if held is not None:
            await held.conn.disconnect()
            await self._release(held)

    async def close(self) -> None:
        """Return the connections to their pools, still connected, for others to reuse."""
        for name in tuple(self._held):
            held = self._held.pop(name)
            await self._release(held)

    async def _release(self, held: _Held) -> None:
        if held.node is None:
            # a pool that was reset meanwhile (client closed at shutdown) no longer knows it
            with suppress(ValueError):
                await self._redis.connection_pool.release(held.conn)  # type: ignore[union-attr]
            return
        cluster = self._redis
        assert isinstance(cluster, RedisCluster)
        if held.own:
            await held.conn.disconnect()
        elif cluster.nodes_manager.nodes_cache.get(held.node.name) is held.node:
            held.node.release(held.conn)
        else:   # that node object was replaced when the client relearnt the map: nobody would close it
            await held.conn.disconnect()
