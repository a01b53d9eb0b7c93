"""The metadata contract between the services (marketbridge/metadata.py)."""

from __future__ import annotations

from marketbridge.metadata import HEARTBEAT_HEADER, heartbeat_interval


def test_a_stream_announcing_heartbeats_gives_their_interval() -> None:
    assert heartbeat_interval([("content-type", "x"), (HEARTBEAT_HEADER, "1.5")]) == 1.5
    assert heartbeat_interval([(HEARTBEAT_HEADER, b"2")]) == 2.0


def test_a_stream_without_the_header_or_with_a_bad_value_carries_none() -> None:
    assert heartbeat_interval(None) is None
    assert heartbeat_interval([("x-user-id", "alice")]) is None
    assert heartbeat_interval([(HEARTBEAT_HEADER, "soon")]) is None
