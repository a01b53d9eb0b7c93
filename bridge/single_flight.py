"""Single flight: concurrent identical reads of public data share one upstream call.

Market-data clients ask for the same hot tickers at the same moments (every dashboard polls
BTC/USDT), and each ``get_ticker`` costs the bridge and the cache service a few hundred
microseconds of CPU each, nearly all of it gRPC's, whatever the answer. A request that arrives
while an identical call is in flight waits for that call's answer instead of making its own.
The answer it gets was read after that call started, so it is at most one round trip older
than the request: for a value that changes every few milliseconds, any read of it is that old
by the time it arrives. Only calls whose answer does not depend on who asks may share
(tickers are public, proto/cache/v1/cache.proto); orders and bots are scoped to their owner and never share.

The call is made in the first caller's task (no task of its own: that would cost event-loop
turns on every call). If that caller is cancelled (its connection went away), the call ends
with it, and the callers waiting on it start over: the first of them makes the call again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Abandoned(Exception):
    """The caller making the call was cancelled; whoever waited on it calls again."""


class SingleFlight(Generic[T]):
    """Calls in flight by key; a caller with the key of one in flight waits for its answer."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, asyncio.Future[T]] = {}
        self.shared = 0  # answers (or errors) that came from another caller's call

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()``, unless a call with ``key`` is in flight: then its outcome."""
        while True:
            flight = self._flights.get(key)
            if flight is None:
                return await self._lead(key, call)
            try:
                # shield: a waiter that is cancelled must not cancel the call for the others
                result = await asyncio.shield(flight)
            except _Abandoned:
                continue
            except Exception:
                self.shared += 1
                raise
            self.shared += 1
            return result

    async def _lead(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        flight: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        try:
            result = await call()
        except asyncio.CancelledError:
            flight.set_exception(_Abandoned())
            raise
        except BaseException as exc:
            flight.set_exception(exc)
            raise
        finally:
            del self._flights[key]
            if flight.done():
                flight.exception()  # retrieved: nobody waiting is not an error to log
        flight.set_result(result)
        return result
