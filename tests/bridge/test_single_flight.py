"""Single flight (bridge/single_flight.py): who makes the call, who shares its outcome.

The calls here are coroutines gated by events, so each test decides exactly when a call is in
flight and when it ends; the object does no I/O of its own.
"""

from __future__ import annotations

import asyncio

import pytest

from bridge.single_flight import SingleFlight

pytestmark = pytest.mark.timeout(10)


class GatedCall:
    """A call that stays in flight until ``release`` (or ``fail``); counts how often it ran."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.calls = 0
        self.started = asyncio.Event()
        self.gate = asyncio.Event()
        self.error: Exception | None = None

    async def __call__(self) -> str:
        self.calls += 1
        self.started.set()
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return f"{self.answer}#{self.calls}"

    def release(self, error: Exception | None = None) -> None:
        self.error = error
        self.gate.set()


async def _let_callers_arrive() -> None:
    """Give the event loop turns, so every started caller reaches its flight (no clock)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def _a_call_in_flight() -> tuple[SingleFlight[str], GatedCall, asyncio.Task[str]]:
    """Flights with one "btc" call started by its first caller and held at its gate."""
    flights: SingleFlight[str] = SingleFlight()
    call = GatedCall("btc")
    leader = asyncio.create_task(flights.run("btc", call))
    await call.started.wait()
    return flights, call, leader


async def test_concurrent_callers_with_one_key_share_one_call() -> None:
    flights: SingleFlight[str] = SingleFlight()
    call, other = GatedCall("btc"), GatedCall("eth")
    same = [asyncio.create_task(flights.run("btc", call)) for _ in range(5)]
    different = asyncio.create_task(flights.run("eth", other))
    await call.started.wait()
    await other.started.wait()
    await _let_callers_arrive()
    assert len(flights) == 2
    call.release()
    other.release()
    assert await asyncio.gather(*same) == ["btc#1"] * 5
    assert await different == "eth#1"
    assert (call.calls, other.calls, flights.shared, len(flights)) == (1, 1, 4, 0)
    # once it has ended, the next caller makes a fresh call
    assert await flights.run("btc", call) == "btc#2"


async def test_an_error_reaches_every_caller_of_the_flight() -> None:
    flights: SingleFlight[str] = SingleFlight()
    call = GatedCall("btc")
    tasks = [asyncio.create_task(flights.run("btc", call)) for _ in range(3)]
    await call.started.wait()
    await _let_callers_arrive()
    call.release(LookupError("no ticker"))
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(o) for o in outcomes] == [LookupError] * 3
    assert (call.calls, flights.shared, len(flights)) == (1, 2, 0)


async def test_when_the_caller_making_the_call_is_cancelled_a_waiter_calls_again() -> None:
    flights, call, leader = await _a_call_in_flight()
    waiters = [asyncio.create_task(flights.run("btc", call)) for _ in range(2)]
    await _let_callers_arrive()
    call.started.clear()
    leader.cancel()
    await call.started.wait()  # one of the waiters made the call again
    call.release()
    assert await asyncio.gather(*waiters) == ["btc#2", "btc#2"]
    assert leader.cancelled()
    assert (call.calls, flights.shared, len(flights)) == (2, 1, 0)


async def test_a_cancelled_waiter_leaves_the_call_to_the_others() -> None:
    flights, call, leader = await _a_call_in_flight()
    quitter = asyncio.create_task(flights.run("btc", call))
    stayer = asyncio.create_task(flights.run("btc", call))
    await _let_callers_arrive()
    quitter.cancel()
    await asyncio.gather(quitter, return_exceptions=True)
    call.release()
    assert (await leader, await stayer) == ("btc#1", "btc#1")
    assert quitter.cancelled() and call.calls == 1
