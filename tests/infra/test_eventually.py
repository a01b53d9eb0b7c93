"""The suite's one polling wait (tests/infra/eventually.py): returns what it waited for, and
fails naming the condition and the last value or error it saw."""

from __future__ import annotations

import asyncio

import pytest

from tests.infra.eventually import NotReached, eventually, eventually_sync


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def tick(self) -> int:
        self.calls += 1
        return self.calls if self.calls >= 3 else 0


async def test_returns_the_first_truthy_value() -> None:
    counter = Counter()
    assert await eventually(counter.tick, 5.0, interval=0.001) == 3


async def test_awaits_a_coroutine_check() -> None:
    counter = Counter()

    async def check() -> int:
        return counter.tick()

    assert await eventually(check, 5.0, interval=0.001) == 3


async def test_fails_with_the_last_value_and_the_condition() -> None:
    values = iter(range(100))
    with pytest.raises(NotReached, match=r"the count not true within 0.05 s \(\d+ checks; last value 0\)"):
        await eventually(lambda: next(values) * 0, 0.05, what="the count")


async def test_a_failure_is_both_an_assertion_and_a_timeout() -> None:
    with pytest.raises(AssertionError):
        await eventually(lambda: 0, 0.02)
    with pytest.raises(TimeoutError):
        await eventually(lambda: 0, 0.02)


async def test_an_ignored_error_means_not_yet_and_is_reported() -> None:
    def refused() -> bool:
        raise ConnectionRefusedError("nobody home")

    with pytest.raises(NotReached, match="last error ConnectionRefusedError: nobody home"):
        await eventually(refused, 0.05, ignore=(OSError,))


async def test_any_other_error_fails_at_once() -> None:
    def broken() -> bool:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await eventually(broken, 5.0, ignore=(OSError,))


async def test_a_check_that_hangs_is_cut_at_the_bound() -> None:
    async def hangs() -> bool:
        await asyncio.Event().wait()
        return True

    with pytest.raises(NotReached, match="hangs not true within 0.05 s"):
        await eventually(hangs, 0.05)


def test_the_sync_form_behaves_the_same() -> None:
    counter = Counter()
    assert eventually_sync(counter.tick, 5.0, interval=0.001) == 3
    with pytest.raises(NotReached, match="last value ''"):
        eventually_sync(lambda: "", 0.05, interval=0.01)
