"""Scenario 6: one client stops reading.

Promise (docs/protocol.md, docs/reliability.md): a slow reader does not slow the others (their delivery latency stays
within 2x of the same traffic without it), and when its backlog is over ``--max-backlog`` it is
closed 1013 ``slow consumer``; it then reconnects with ``resume_from`` and misses no order or bot
event.

The kernel buffers megabytes on loopback before a stalled reader pushes back, so the slow
client multiplies its traffic: besides its recorded subscriptions it holds extra, unrecorded
subscriptions to the same channels (every event is one frame per subscription). That fills the
buffers within seconds without loading Redis or the other clients. Run on a single Redis and
on the Redis Cluster (``breakable_redis``; SPEC §9.4: §7 holds there).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.infra.ledger import percentile
from tests.resilience.publisher import EXCHANGE
from tests.resilience.stack import BreakableRedis, running_stack, wait_for
from tests.resilience.wsclient import SubSpec

pytestmark = [pytest.mark.resilience, pytest.mark.timeout(180)]

MAX_BACKLOG = 200
EXTRA_SUBSCRIPTIONS = 20       # per channel, on the slow client's first connection
FLOOR_S = 0.025                # below this, latency differences are scheduler noise
SLOW_CLOSED = 'bridge_disconnects_total{code="1013"}'


def slow_subscriptions() -> list[SubSpec]:
    recorded = [SubSpec("orders"), SubSpec("bots"), SubSpec("tickers", EXCHANGE)]
    extra = [SubSpec(channel, recorded=False) for channel in ("orders", "bots")] * EXTRA_SUBSCRIPTIONS
    return recorded + extra


async def test_slow_consumer_is_closed_and_does_not_slow_others(
        breakable_redis: BreakableRedis, report: Callable[[str, dict[str, Any]], None]) -> None:
    redis = breakable_redis
    bridge_args = ["--max-backlog", str(MAX_BACKLOG)]
    async with running_stack(redis.url, bridge_args=bridge_args, rate=50.0, store=redis.store) as stack:
        await stack.add_standard_clients()
        others = [c.name for c in stack.clients]
        stack.publisher.start()
        await stack.publisher.wait_acked(30)
        baseline_from = time.monotonic()
        await stack.publisher.wait_acked(300)
        baseline_until = time.monotonic()

        slow = await stack.add_client("slow-admin", "slowpoke", slow_subscriptions(), admin=True,
                                      reconnect_on=frozenset({1013, 1006}), recv_buffer=4096,
                                      max_queue=1)
        slow.stall()
        slow_from = time.monotonic()
        await wait_for(lambda: stack.bridge.metric(SLOW_CLOSED) >= 1, 60.0, "a 1013 close")
        closed_at = time.monotonic()
        await stack.publisher.wait_acked(100)
        slow_until = time.monotonic()
        slow.unstall()
        await stack.publisher.wait_acked(100)
        await stack.finish()

        before = stack.ledger.latencies(baseline_from, baseline_until, others)
        during = stack.ledger.latencies(slow_from, slow_until, others)
        measures = {
            "others_p50_ms_without_slow": round(1000 * percentile(before, 50), 1),
            "others_p50_ms_with_slow": round(1000 * percentile(during, 50), 1),
            "others_p99_ms_without_slow": round(1000 * percentile(before, 99), 1),
            "others_p99_ms_with_slow": round(1000 * percentile(during, 99), 1),
            # until the bridge counted the 1013 close: includes its 10 s closing handshake timeout
            "time_to_1013_s": round(closed_at - slow_from, 2),
            "delivered_pct": round(100.0 * stack.ledger.delivered_fraction(), 3),
        }
        report(redis.named("6 slow consumer"), measures)
        # The bridge closes with 1013; a reader that is not reading may only see the TCP abort.
        assert slow.record.closes and slow.record.closes[0][0] in (1013, 1006), slow.record.closes
        assert slow.connections >= 2
        assert all(c.connections == 1 and not c.record.closes for c in stack.clients if c is not slow)
        assert percentile(during, 50) <= 2 * max(percentile(before, 50), FLOOR_S), measures
