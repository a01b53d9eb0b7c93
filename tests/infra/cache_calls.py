"""Calling a real cache service in tests: a service of the test's own, callers as the bridge
sends them, and reads of server streams that fail instead of hanging.

Shared by the cache service tests and any other test that talks to the service over gRPC;
kept out of conftest.py so that tests import helpers from a module, and conftest only holds
fixtures.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from marketbridge.api.v1 import cache_pb2_grpc
from marketbridge.metadata import SCOPE_HEADER, USER_HEADER
from tests.infra.cache_service_runner import InProcessCacheService, running_cache_service

EVENT_TIMEOUT = 30.0


@asynccontextmanager
async def serving(redis_url: str, **settings: Any) -> AsyncIterator[
        tuple[InProcessCacheService, cache_pb2_grpc.CacheServiceStub]]:
    """A cache service of the test's own (``settings`` are CacheConfig fields) and a stub on it."""
    async with running_cache_service(redis_url, **settings) as service:
        async with grpc.aio.insecure_channel(service.target) as open_channel:
            yield service, cache_pb2_grpc.CacheServiceStub(open_channel)


def as_user(user_id: str, *scopes: str) -> list[tuple[str, str]]:
    """Metadata the bridge sends for an authenticated user."""
    metadata = [(USER_HEADER, user_id)]
    if scopes:
        metadata.append((SCOPE_HEADER, " ".join(scopes)))
    return metadata


ALICE = as_user("alice")
BOB = as_user("bob")
ADMIN = as_user("root", "read admin")


def is_heartbeat(message: Any) -> bool:
    """A heartbeat event, or a TickerEventBatch that carries only heartbeats."""
    if hasattr(message, "events"):
        return bool(message.events) and all(is_heartbeat(e) for e in message.events)
    return message is not grpc.aio.EOF and message.WhichOneof("event") == "heartbeat"


async def next_message(call: Any, timeout: float = EVENT_TIMEOUT) -> Any:
    """The next message of a server stream that is not a heartbeat, failing instead of hanging
    (an idle stream carries heartbeats; tests that are about them read ``call.read()``)."""
    while True:
        message = await asyncio.wait_for(call.read(), timeout)
        if not is_heartbeat(message):
            return message


async def read_events(call: Any, count: int, timeout: float = EVENT_TIMEOUT) -> list[Any]:
    """The next ``count`` messages of a server stream (heartbeats skipped)."""
    return [await next_message(call, timeout) for _ in range(count)]


async def read_until_live(call: Any, timeout: float = EVENT_TIMEOUT) -> list[Any]:
    """Every event up to and including the `live` marker."""
    events = []
    while True:
        event = await next_message(call, timeout)
        assert event is not grpc.aio.EOF, "stream ended before live"
        events.append(event)
        last = event.events[-1] if hasattr(event, "events") else event   # a TickerEventBatch
        if last.WhichOneof("event") == "live":
            return events


async def rpc_error(awaitable: Any) -> grpc.aio.AioRpcError:
    """Await a call that must fail; return its error."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await awaitable
    return info.value


def ids(messages: Sequence[Any], field: str) -> list[str]:
    return [getattr(m, field) for m in messages]
