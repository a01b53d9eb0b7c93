"""SPEC §9.6: a pipe that stalls silently takes the bridge out of rotation, and back.

The cache service is SIGSTOPped: its process, its health and its streams freeze without a
reset, the failure mode of Centrifugo #1189 and AnyCable #275. The bridge's canary stops
arriving, so /readyz turns 503 within 3 canary intervals (before the health checks, which
need about 3 s of failures, could say so) and turns 200 again once the process runs on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from tests.infra.bridge_runner import BridgeProcess, http_get
from tests.infra.cache_service_runner import CacheServiceProcess
from tests.infra.eventually import eventually
from tests.resilience.stack import metric_sum

pytestmark = [pytest.mark.resilience, pytest.mark.timeout(120), pytest.mark.cluster_too]  # §9.6 on a cluster too

CANARY_S = 0.5
STALE_S = 3 * CANARY_S
SLACK_S = 1.0   # probe interval, scheduling on a shared machine


def readyz(bridge: BridgeProcess) -> tuple[int, str]:
    status, body, _headers = http_get(f"http://127.0.0.1:{bridge.port}/readyz", timeout=2.0)
    return status, body.strip()


def metrics(bridge: BridgeProcess) -> str:
    return http_get(f"http://127.0.0.1:{bridge.port}/metrics", timeout=2.0)[1]


async def test_a_sigstopped_cache_service_turns_readiness_503_then_200(redis_url: str) -> None:
    cache = CacheServiceProcess(redis_url, extra_args=["--canary-s", str(CANARY_S)])
    cache.start()
    bridge = BridgeProcess(cache.target, extra_args=["--canary-s", str(CANARY_S), "--auth", "none"])
    try:
        await asyncio.to_thread(cache.wait_ready)
        await asyncio.to_thread(bridge.start)
        await eventually(lambda: readyz(bridge)[0] == 200, 20, what="bridge ready", ignore=(OSError,))
        await eventually(lambda: metric_sum(metrics(bridge), "bridge_upstream_lag_seconds_count") >= 2,
                         10, what="canary messages observed as upstream lag")
        assert metric_sum(metrics(bridge), "bridge_canary_age_seconds") < STALE_S

        assert cache.proc is not None
        os.kill(cache.proc.pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            status, reason = await eventually(
                lambda: (r := readyz(bridge))[0] == 503 and r, STALE_S + SLACK_S, interval=0.05,
                what="/readyz 503 after the cache service froze")
            took = time.monotonic() - stopped_at
            assert "canary" in reason, reason
            assert took <= STALE_S + SLACK_S, took
            assert metric_sum(metrics(bridge), "bridge_canary_age_seconds") > STALE_S - CANARY_S
        finally:
            os.kill(cache.proc.pid, signal.SIGCONT)
        await eventually(lambda: readyz(bridge)[0] == 200, 20, interval=0.05,
                         what="/readyz 200 once the cache service runs again")
        assert metric_sum(metrics(bridge), "bridge_canary_age_seconds") < STALE_S
    finally:
        await asyncio.to_thread(bridge.stop)
        await asyncio.to_thread(cache.stop)
