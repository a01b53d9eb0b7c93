"""The handshake bounds without sockets: slots, the head meter, deadlines, the log throttle."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from websockets.http11 import MAX_LINE_LENGTH, MAX_NUM_HEADERS

from bridge.handshake_guard import (BUSY_RESPONSE, DEADLINE_SPREAD, HEADER_TOO_LARGE_RESPONSE,
                                    HandshakeGuard, RequestHead, RequestLimits, Throttle, drop_at)

UPGRADE = (b"GET /ws?token=abc HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")


def test_the_guard_admits_up_to_its_bound_and_again_after_a_release() -> None:
    guard = HandshakeGuard(2)
    assert [guard.admit() for _ in range(3)] == [True, True, False]
    assert guard.in_progress == 2
    guard.release()
    assert guard.admit() and guard.in_progress == 2


def test_a_normal_upgrade_is_within_the_limits_and_complete() -> None:
    head = RequestHead(RequestLimits(1024))
    assert not head.feed(UPGRADE)
    assert head.complete and head.size == len(UPGRADE) and head.lines == 6


def test_bytes_after_the_head_are_not_counted() -> None:
    head = RequestHead(RequestLimits(len(UPGRADE)))
    assert not head.feed(UPGRADE + b"\x81\x05hello" * 500)
    assert head.size == len(UPGRADE)


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=60))
def test_the_head_measures_the_same_however_it_is_split(cuts: list[int]) -> None:
    head, start = RequestHead(RequestLimits(1024)), 0
    for cut in cuts:
        assert not head.feed(UPGRADE[start:start + cut])
        start += cut
    head.feed(UPGRADE[start:])
    assert head.complete and head.size == len(UPGRADE) and head.lines == 6


@pytest.mark.parametrize("request_head", [
    UPGRADE[:-2] + b"X-Pad: " + b"a" * 1100 + b"\r\n\r\n",                   # over the total
    b"GET /ws HTTP/1.1\r\nX-Pad: " + b"a" * 1100,                           # ... not yet ended
    b"GET /ws HTTP/1.1\r\n" + b"X-A: b\r\n" * 9 + b"\r\n",                  # too many headers
    b"GET /ws?token=" + b"t" * 200 + b" HTTP/1.1\r\n\r\n",                  # one line too long
])
def test_a_head_over_any_limit_is_too_large(request_head: bytes) -> None:
    head = RequestHead(RequestLimits(max_bytes=1024, max_line=128, max_headers=8))
    assert head.feed(request_head) and head.too_large
    assert head.feed(b"more")   # and stays so


def test_the_line_and_header_limits_default_to_websockets_own() -> None:
    limits = RequestLimits(16384)
    assert (limits.max_line, limits.max_headers) == (MAX_LINE_LENGTH, MAX_NUM_HEADERS)
    head = RequestHead(limits)
    assert not head.feed(b"GET /ws HTTP/1.1\r\n" + b"X-A: b\r\n" * MAX_NUM_HEADERS + b"\r\n")
    assert head.complete


def test_refusals_are_complete_http_responses() -> None:
    assert BUSY_RESPONSE.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Retry-After: 1\r\n" in BUSY_RESPONSE and b"Connection: close\r\n" in BUSY_RESPONSE
    status, _, body = HEADER_TOO_LARGE_RESPONSE.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    assert f"Content-Length: {len(body)}".encode() in status


def test_the_throttle_lets_one_line_per_interval_carry_the_held_events() -> None:
    throttle = Throttle(interval_s=10.0)
    assert throttle.note("busy", 100.0) == 1       # the first is logged at once
    assert [throttle.note("busy", 100.0 + t) for t in (1, 2, 9)] == [0, 0, 0]
    assert throttle.note("timeout", 101.0) == 1    # each reason on its own
    assert throttle.note("busy", 110.5) == 4       # the next line carries the three held back
    assert throttle.note("busy", 111.0) == 0


@given(st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_a_handshake_is_dropped_within_the_timeout_in_its_last_fifth(draw: float) -> None:
    deadline = drop_at(100.0, 10.0, draw)
    assert 100.0 + 10.0 * (1 - DEADLINE_SPREAD) <= deadline <= 110.0
