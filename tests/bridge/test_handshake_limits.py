"""The opening handshake's bounds over real sockets: silent and trickling clients dropped at
``--handshake-timeout-s``, ``--max-handshakes`` in progress at once, ``--max-header-bytes``.

The figure for 2,000 such sockets (a normal client's connect time while they are open) is the
benchmark's, ``python -m bench.handshakes`` (docs/benchmarks.md); here the behaviour is checked
with short bounds, so a test takes a second or two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from bridge.handshake_guard import DEADLINE_SPREAD
from tests.bridge.client import client
from tests.infra.bridge_runner import RunningBridge, running_bridge
from tests.infra.eventually import eventually
from tests.infra.tokens import make_token

ALICE = make_token("alice")
TIMEOUT_S = 1.0          # the test bridges' --handshake-timeout-s
SLACK_S = 3.0            # how much later than the bound a drop may be seen on a busy machine
HEAD_START = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@contextlib.asynccontextmanager
async def raw_sockets(bridge: RunningBridge, count: int) -> AsyncIterator[list[Stream]]:
    """``count`` TCP connections to the bridge that send nothing unless told; closed on exit."""
    streams = [await asyncio.open_connection("127.0.0.1", bridge.port) for _ in range(count)]
    try:
        yield streams
    finally:
        for _, writer in streams:
            writer.close()


async def answer_and_close(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before it closed the socket (a reset counts as a close)."""
    try:
        return await reader.read()
    except ConnectionResetError:
        return b""


async def trickle(writer: asyncio.StreamWriter, data: bytes, every_s: float) -> None:
    """Send ``data`` a byte at a time (slowloris); ends when the server drops the socket."""
    for byte in data:
        try:
            writer.write(bytes([byte]))
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(every_s)   # the trickle's pace (the scenario), not synchronisation


def in_progress(bridge: RunningBridge) -> float:
    return bridge.app.metrics.value("bridge_handshakes_in_progress")


def rejected(bridge: RunningBridge, reason: str) -> float:
    return bridge.app.metrics.value("bridge_handshakes_rejected_total", {"reason": reason})


async def test_a_silent_and_a_trickling_socket_are_dropped_at_the_timeout(cache, caplog) -> None:
    caplog.set_level(logging.INFO, logger="bridge.handshakes")
    async with (running_bridge(cache.target, handshake_timeout_s=TIMEOUT_S) as b,
                raw_sockets(b, 2) as [(silent, _), (slow, slow_writer)]):
        loop = asyncio.get_running_loop()
        started = loop.time()
        dripping = asyncio.create_task(trickle(slow_writer, HEAD_START * 20, every_s=0.1))
        async with asyncio.timeout(TIMEOUT_S + SLACK_S):
            answers = await asyncio.gather(answer_and_close(silent), answer_and_close(slow))
        # dropped in the timeout's last fifth (spread, so a crowd is not dropped all at once)
        assert TIMEOUT_S * (1 - DEADLINE_SPREAD) <= loop.time() - started < TIMEOUT_S + SLACK_S
        assert answers == [b"", b""]   # dropped, no answer
        async with asyncio.timeout(5):
            await dripping             # the trickler saw its socket go
        await eventually(lambda: rejected(b, "timeout") == 2)
        assert in_progress(b) == 0
        dropped = [r for r in caplog.records if "handshakes dropped (timeout" in r.getMessage()]
        assert len(dropped) == 1 and dropped[0].levelname == "INFO"   # one line, not one each
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]   # nor a traceback
        async with client(b.ws_url(ALICE)) as c:
            assert c.welcome is not None


async def test_handshakes_beyond_the_bound_are_refused_at_once_and_logged_once(
        cache, caplog) -> None:
    async with running_bridge(cache.target, max_handshakes=3, handshake_timeout_s=60) as b:
        async with raw_sockets(b, 3):
            await eventually(lambda: in_progress(b) == 3)
            async with raw_sockets(b, 4) as beyond:
                async with asyncio.timeout(SLACK_S):   # far under the 60 s handshake timeout
                    answers = await asyncio.gather(*(answer_and_close(r) for r, _ in beyond))
            assert all(a.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") for a in answers)
            assert rejected(b, "busy") == 4 and in_progress(b) == 3
            busy = [r for r in caplog.records if "handshakes refused (busy" in r.getMessage()]
            assert len(busy) == 1 and busy[0].levelname == "WARNING"   # one line, not four
            assert "1 since the last such line" in busy[0].getMessage()
        await eventually(lambda: in_progress(b) == 0)   # the three held ones closed: room again
        async with client(b.ws_url(ALICE)) as c:
            assert c.welcome is not None


@pytest.mark.parametrize("max_header_bytes, head", [
    (4096, HEAD_START + b"X-Pad: " + b"a" * 6000 + b"\r\n\r\n"),       # over --max-header-bytes
    (16384, HEAD_START + b"X-Pad: " + b"a" * 9000 + b"\r\n\r\n"),      # one line over 8 KiB
    (16384, HEAD_START + b"X-A: b\r\n" * 129 + b"\r\n"),               # over 128 headers
], ids=["total", "line", "count"])
async def test_an_oversized_request_head_is_refused_431(cache, max_header_bytes: int,
                                                        head: bytes) -> None:
    async with running_bridge(cache.target, max_header_bytes=max_header_bytes) as b:
        async with raw_sockets(b, 1) as [(reader, writer)]:
            writer.write(head)
            async with asyncio.timeout(SLACK_S):
                answer = await answer_and_close(reader)
            assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        assert rejected(b, "header_too_large") == 1
        await eventually(lambda: in_progress(b) == 0)
        # a head under the limits is served as before
        async with client(b.ws_url(ALICE), additional_headers={"X-Pad": "a" * 2000}) as c:
            assert c.welcome is not None


async def test_a_normal_client_connects_while_200_idle_sockets_are_open(cache) -> None:
    async with (running_bridge(cache.target, handshake_timeout_s=60) as b,
                raw_sockets(b, 200)):
        await eventually(lambda: in_progress(b) == 200)
        async with client(b.ws_url(ALICE)) as c:
            assert (await c.request("ping"))["type"] == "pong"
            assert in_progress(b) == 200   # its own handshake is over, the idle ones are not
        assert rejected(b, "busy") == rejected(b, "timeout") == 0
