"""The canary's freshness decision (bridge/canary.py), on an injected clock: when /readyz
turns 503 for a stuck pipe, and what bridge_canary_age_seconds says."""

from __future__ import annotations

from bridge.canary import STALE_INTERVALS, CanaryFreshness
from bridge.channels import ALIASES, CHANNELS

INTERVAL_S = 5.0
LIMIT_S = STALE_INTERVALS * INTERVAL_S


def test_a_bridge_that_just_started_has_a_grace_of_three_intervals() -> None:
    fresh = CanaryFreshness(INTERVAL_S, started=100.0)
    assert fresh.stale_reason(100.0 + LIMIT_S) is None
    reason = fresh.stale_reason(100.0 + LIMIT_S + 0.1)
    assert reason is not None and reason.startswith("no canary yet for 15.1 s")
    assert "--canary-s 5 s" in reason


def test_stale_after_three_intervals_without_a_canary_and_fresh_again_when_one_arrives() -> None:
    fresh = CanaryFreshness(INTERVAL_S, started=0.0)
    fresh.arrived(now=10.0, event_ms=1_700_000_010_000)
    assert fresh.stale_reason(10.0 + LIMIT_S) is None
    reason = fresh.stale_reason(10.0 + LIMIT_S + 1.0)
    assert reason is not None and reason.startswith("no canary for 16.0 s")
    assert "pipe is stuck" in reason
    fresh.arrived(now=40.0, event_ms=1_700_000_040_000)
    assert fresh.stale_reason(40.0) is None
    assert fresh.count == 2


def test_age_is_the_newest_canary_s_own_time_and_grows_while_none_comes() -> None:
    fresh = CanaryFreshness(INTERVAL_S, started=50.0)
    assert fresh.age_s(now=53.0, wall_now_s=1_000.0) == 3.0   # none yet: since start
    fresh.arrived(now=60.0, event_ms=999_000)
    assert fresh.age_s(now=60.0, wall_now_s=1_000.0) == 1.0
    assert fresh.age_s(now=70.0, wall_now_s=1_010.0) == 11.0
    fresh.arrived(now=71.0, event_ms=998_000)   # a replayed, older canary never ages it back
    assert fresh.event_ms == 999_000


def test_age_never_goes_below_zero_with_a_clock_behind_redis() -> None:
    fresh = CanaryFreshness(INTERVAL_S, started=0.0)
    fresh.arrived(now=1.0, event_ms=2_000_000)
    assert fresh.age_s(now=1.0, wall_now_s=1_999.0) == 0.0
    assert fresh.stale_reason(1.0) is None   # readiness uses arrivals, not the skewed clocks


def test_no_client_can_subscribe_to_the_canary() -> None:
    assert "canary" not in CHANNELS and "" not in ALIASES and "stream_canary" not in ALIASES
