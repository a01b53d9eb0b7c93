"""A step run every so many seconds in a task of its own, until stopped: the service's
background chores (the terminal-order sweep) share one way to start, pace and stop.

The step runs first at once, then ``interval`` seconds after each run ends (a slow step is
never overlapped by the next). It handles its own errors: an exception escaping it is logged
and the next run goes ahead, so one bad tick never ends the chore.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

CANCEL_AGAIN_S = 0.1   # how long a stop waits for a cancelled step before cancelling it again


class Periodic:
    """``step`` every ``interval`` seconds; ``start`` and ``stop`` may be called repeatedly."""

    def __init__(self, name: str, step: Callable[[], Awaitable[None]], interval: float) -> None:
        self.name = name
        self.step = step
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Cancel the task and wait for it to end (a step in flight is cancelled with it).

        Cancelled again until it ends: Python 3.11's ``asyncio.wait_for`` (redis-py sends every
        command through it) drops a cancellation that arrives as the awaited call completes, and
        the step then went on and slept a whole interval (10 s of the sweep) before the stop
        could finish; seen with the Redis Cluster client's several start-up round trips."""
        if self._task is not None:
            task, self._task = self._task, None
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=CANCEL_AGAIN_S)
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self.step()
            except Exception:  # noqa: BLE001 - the chore outlives one failed step
                log.exception("%s: step failed; next in %g s", self.name, self.interval)
            await asyncio.sleep(self.interval)
