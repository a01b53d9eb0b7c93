"""Retry pacing (marketbridge/backoff.py): doubling, capped, reset, jittered within bounds."""

from __future__ import annotations

import random

from marketbridge.backoff import Backoff


def test_delays_double_up_to_the_cap_and_start_over_after_a_reset() -> None:
    backoff = Backoff(first=0.1, cap=0.5)
    assert [backoff.delay() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    backoff.reset()
    assert backoff.delay() == 0.1


def test_a_first_delay_above_the_cap_is_waited_once_then_capped() -> None:
    backoff = Backoff(first=0.1, cap=0.05)
    assert [backoff.delay() for _ in range(3)] == [0.1, 0.05, 0.05]


def test_jitter_stays_within_its_factors_and_never_exceeds_the_cap() -> None:
    backoff = Backoff(first=1.0, cap=4.0, jitter=(0.8, 1.2), rng=random.Random(3))
    delays = [backoff.delay() for _ in range(20)]
    assert 0.8 <= delays[0] <= 1.2 and 1.6 <= delays[1] <= 2.4
    assert all(3.2 <= d <= 4.0 for d in delays[3:])


def test_the_same_seed_gives_the_same_delays() -> None:
    def run() -> list[float]:
        backoff = Backoff(first=0.5, cap=8.0, jitter=(0.5, 1.0), rng=random.Random(9))
        return [backoff.delay() for _ in range(6)]

    assert run() == run()
