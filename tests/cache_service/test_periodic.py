"""The service's background chores (cache_service/periodic.py): paced, outliving a failed step."""

from __future__ import annotations

import asyncio

import pytest

from cache_service.periodic import Periodic

pytestmark = pytest.mark.timeout(30)


async def test_a_failing_step_does_not_end_the_chore_and_stop_ends_it() -> None:
    runs: list[int] = []
    third = asyncio.Event()

    async def step() -> None:
        runs.append(len(runs))
        if len(runs) == 3:
            third.set()
        if len(runs) == 1:
            raise RuntimeError("first run fails")

    chore = Periodic("test-chore", step, 0.01)
    chore.start()
    chore.start()  # already running: still one task
    await asyncio.wait_for(third.wait(), timeout=10)
    await chore.stop()
    assert not chore.running
    count = len(runs)
    await chore.stop()  # stopping twice is harmless
    assert len(runs) == count
