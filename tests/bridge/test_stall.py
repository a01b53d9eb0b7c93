"""Stall detection without I/O (bridge/stall.py), its asyncio guard, and its flag."""

from __future__ import annotations

import asyncio

import pytest

from bridge.config import BridgeConfig, ConfigError, load_config
from bridge.stall import StallWatch, StreamStalled, stall_guard


def test_a_stream_is_watched_until_its_first_message() -> None:
    """Any version of the service answers a stream request at once: no answer is a stall."""
    watch = StallWatch(3.0, opened=100.0)
    assert watch.watching
    assert watch.due_in(101.0) == pytest.approx(2.0)
    assert watch.due_in(103.0) is None


def test_an_answered_stream_without_heartbeats_is_never_stalled() -> None:
    """An older service sends no heartbeats; its idle streams are healthy."""
    watch = StallWatch(3.0, opened=100.0)
    watch.last = 100.5
    assert not watch.watching
    assert watch.due_in(10_000.0) == 3.0   # looked at again later, never stalled


def test_a_heartbeating_stream_stalls_after_the_bound_since_its_last_message() -> None:
    watch = StallWatch(3.0, opened=100.0)
    watch.last, watch.beating = 101.0, True
    assert watch.due_in(103.5) == pytest.approx(0.5)
    watch.last = 103.9   # a message (event or heartbeat) resets the clock
    assert watch.due_in(104.0) == pytest.approx(2.9)
    assert watch.due_in(106.9) is None


async def test_guard_raises_stalled_on_a_silent_wait() -> None:
    loop = asyncio.get_running_loop()
    watch = StallWatch(0.2, loop.time())
    started = loop.time()
    with pytest.raises(StreamStalled, match="nothing received for 0.2 s"):
        async with stall_guard(watch):
            await asyncio.Event().wait()
    assert 0.2 <= loop.time() - started < 5.0


async def test_guard_follows_messages_and_lets_a_finished_block_through() -> None:
    """Messages that keep coming keep the block alive past the bound; a normal end is kept."""
    loop = asyncio.get_running_loop()
    watch = StallWatch(0.3, loop.time())
    watch.beating = True
    messages = 0
    async with stall_guard(watch):
        end = loop.time() + 1.0
        while loop.time() < end:
            await asyncio.sleep(0.05)
            watch.last = loop.time()
            messages += 1
    assert messages >= 5


async def test_guard_does_not_take_a_real_cancellation_for_a_stall() -> None:
    loop = asyncio.get_running_loop()
    watch = StallWatch(60.0, loop.time())
    entered = asyncio.Event()

    async def guarded() -> None:
        async with stall_guard(watch):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(guarded())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_guard_passes_other_timeouts_on() -> None:
    """A TimeoutError of the block's own is not a stall."""
    loop = asyncio.get_running_loop()
    watch = StallWatch(60.0, loop.time())
    with pytest.raises(TimeoutError):
        async with stall_guard(watch):
            async with asyncio.timeout(0.01):
                await asyncio.Event().wait()


def test_upstream_stall_flag_default_env_and_validation() -> None:
    assert BridgeConfig(auth="none").upstream_stall_s == 3.0
    config = load_config(["--auth", "none", "--upstream-stall-s", "1.5"], environ={})
    assert config.upstream_stall_s == 1.5
    config = load_config(["--auth", "none"], environ={"BRIDGE_UPSTREAM_STALL_S": "7"})
    assert config.upstream_stall_s == 7.0
    with pytest.raises(ConfigError, match=r"^--upstream-stall-s must be > 0, got 0.0$"):
        load_config(["--auth", "none", "--upstream-stall-s", "0"], environ={})
    with pytest.raises(ConfigError, match="BRIDGE_UPSTREAM_STALL_S: expected a number, got 'soon'"):
        load_config(["--auth", "none"], environ={"BRIDGE_UPSTREAM_STALL_S": "soon"})
