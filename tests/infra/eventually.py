"""Wait for a condition nothing announces, and fail saying what was last seen.

Most waits in this suite await an event: a frame, a stream message, a process exit. Some
conditions have no event to await: a metric the server bumps after the client saw the close,
a readiness probe, a replica's link, a DOM element. For those, and only those, a test polls
with :func:`eventually` (or :func:`eventually_sync` from a thread or a synchronous fixture).

Why one helper rather than a loop at each site: a polling loop written by hand tends to fail
with a bare ``TimeoutError`` that says neither what was awaited nor how far it got. Here the
failure (:class:`NotReached`) names the condition, the bound and the last value (or the
last error) the check produced, so a red run says "bridge_active_connections was 3, not 2"
rather than "timed out".

A check returns its value; the wait ends when it is truthy and returns it. A check may be a
coroutine function (it is awaited each time). Errors of the types in ``ignore`` count as "not
yet" (a server that refuses a probe while it restarts); any other error fails the wait at once.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

Ignored = tuple[type[BaseException], ...]


class NotReached(TimeoutError, AssertionError):
    """A condition that did not come true in time: a test failure (AssertionError), and a
    timeout for the callers that treat "not within the bound" as such (TimeoutError)."""


class Attempts:
    """What a wait saw so far (sans-I/O): the last value or error, and the failure it makes."""

    def __init__(self, what: str, timeout: float, ignore: Ignored) -> None:
        self.what = what
        self.timeout = timeout
        self.ignore = ignore
        self.last: Any = None
        self.error: BaseException | None = None
        self.count = 0

    def saw(self, value: Any) -> bool:
        """Record one check's value; whether the wait is over."""
        self.count += 1
        self.last, self.error = value, None
        return bool(value)

    def failed(self, error: BaseException) -> None:
        """Record an error of an ignored type; re-raise any other."""
        if not isinstance(error, self.ignore):
            raise error
        self.count += 1
        self.error = error

    def failure(self) -> NotReached:
        seen = (f"last error {type(self.error).__name__}: {self.error}" if self.error is not None
                else f"last value {self.last!r}")
        return NotReached(f"{self.what} not true within {self.timeout:g} s "
                              f"({self.count} checks; {seen})")


def _name(check: Callable[..., Any], what: str | None) -> str:
    return what or getattr(check, "__qualname__", repr(check))


async def eventually(check: Callable[[], T | Awaitable[T]], timeout: float = 10.0, *,
                     interval: float = 0.02, what: str | None = None, ignore: Ignored = ()) -> T:
    """Poll ``check`` until it returns something truthy, and return that; fail after ``timeout``
    with :class:`NotReached` naming ``what`` and the last value or ignored error seen."""
    attempts = Attempts(_name(check, what), timeout, ignore)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await asyncio.wait_for(value, max(deadline - loop.time(), 0.001))
            if attempts.saw(value):
                return value  # type: ignore[return-value]
        except Exception as error:  # noqa: BLE001 - sorted by ``failed``
            if isinstance(error, TimeoutError) and loop.time() >= deadline:
                raise attempts.failure() from None   # the awaited check ran out of time
            attempts.failed(error)
        if loop.time() >= deadline:
            raise attempts.failure()
        await asyncio.sleep(interval)


def eventually_sync(check: Callable[[], T], timeout: float = 10.0, *, interval: float = 0.1,
                    what: str | None = None, ignore: Ignored = ()) -> T:
    """:func:`eventually` for synchronous code (fixtures, threads): blocks between checks."""
    attempts = Attempts(_name(check, what), timeout, ignore)
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if attempts.saw(value):
                return value
        except Exception as error:  # noqa: BLE001 - sorted by ``failed``
            attempts.failed(error)
        if time.monotonic() >= deadline:
            raise attempts.failure()
        time.sleep(interval)
