"""The upstream health poller's verdicts (sans-I/O)."""

from __future__ import annotations

from bridge.upstream import HealthTracker


def test_health_tracker_needs_consecutive_failures() -> None:
    health = HealthTracker(failures=3)
    assert not health.record(False)             # not serving before the first SERVING
    assert health.record(True)
    assert health.record(False) and health.record(False)   # two slow checks: still ready
    assert health.record(True) and health.failed == 0      # a success resets the count
    assert health.record(False) and health.record(False)
    assert not health.record(False)             # the third in a row: not serving
    assert not health.record(False)
    assert health.record(True)                  # recovers on the first SERVING
