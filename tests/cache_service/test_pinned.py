"""PinnedConnection against a real Redis: replies in order, and a connection that may be out
of step (error reply, cancellation, a server that hung up) is never reused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from cache_service.pinned import PinnedConnection


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(redis_url, socket_timeout=5)
    yield redis
    await redis.aclose()


async def kill(client: aioredis.Redis, client_id: int) -> None:
    """CLIENT KILL, then wait until Redis has really closed that socket (it frees killed
    clients asynchronously, after answering)."""
    await client.execute_command("CLIENT", "KILL", "ID", client_id)
    async with asyncio.timeout(5):
        while f"id={client_id} ".encode() in await client.execute_command("CLIENT", "LIST"):
            await asyncio.sleep(0.01)


async def my_client_id(pinned: PinnedConnection) -> int:
    (client_id,) = await pinned.execute(("CLIENT", "ID"))
    return int(client_id)


async def test_pipelined_commands_reply_in_order_on_one_held_connection(client: aioredis.Redis) -> None:
    async with PinnedConnection(client) as pinned:
        first = await my_client_id(pinned)
        replies = await pinned.execute(("SET", "k", "v"), ("GET", "k"), ("INCR", "n"), ("INCR", "n"))
        assert replies == [b"OK", b"v", 1, 2]
        assert await my_client_id(pinned) == first  # the same connection throughout
    pool = client.connection_pool
    assert not pool._in_use_connections  # handed back on close, connected, for reuse


async def test_an_error_reply_raises_its_class_and_the_next_command_gets_a_fresh_connection(
        client: aioredis.Redis) -> None:
    async with PinnedConnection(client) as pinned:
        before = await my_client_id(pinned)
        with pytest.raises(NoScriptError):
            await pinned.execute(("EVALSHA", "0" * 40, 0), ("PING",))
        with pytest.raises(ResponseError):
            await pinned.execute(("INCR", "k"), ("SET", "k", "not a number"), ("INCR", "k"))
        assert await pinned.execute(("PING",)) == [b"PONG"]
        assert await my_client_id(pinned) != before


async def test_a_cancelled_command_does_not_leave_its_reply_for_the_next(client: aioredis.Redis) -> None:
    async with PinnedConnection(client) as pinned:
        before = await my_client_id(pinned)
        blocked = asyncio.create_task(pinned.execute(("BLPOP", "nothing-here", 10)))
        async with asyncio.timeout(5):  # until Redis has it blocked
            while not blocked.done() and b"cmd=blpop" not in await client.execute_command("CLIENT", "LIST"):
                await asyncio.sleep(0.01)
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        await client.lpush("nothing-here", "late")  # would be the reply of a reused connection
        assert await pinned.execute(("ECHO", "mine")) == [b"mine"]
        assert await my_client_id(pinned) != before


async def test_a_connection_the_server_closed_fails_the_command_then_recovers(client: aioredis.Redis) -> None:
    async with PinnedConnection(client, idle_probe_s=3600) as pinned:
        victim = await my_client_id(pinned)
        await kill(client, victim)
        with pytest.raises((RedisConnectionError, ConnectionError, OSError)):
            await pinned.execute(("PING",))
        assert await pinned.execute(("PING",)) == [b"PONG"]


async def test_an_idle_connection_is_probed_and_replaced_when_the_server_closed_it(
        client: aioredis.Redis) -> None:
    async with PinnedConnection(client, idle_probe_s=0.0) as pinned:
        victim = await my_client_id(pinned)
        await kill(client, victim)
        assert await pinned.execute(("PING",)) == [b"PONG"]  # no error: the probe saw the hang-up
        assert await my_client_id(pinned) != victim
