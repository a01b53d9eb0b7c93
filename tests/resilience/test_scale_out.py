"""Scale-out on one machine (issue 18): 2 bridges and 2 cache services over a Redis Cluster of 3
masters and 3 replicas, 1,000 WebSocket clients spread over both bridges.

Clients reach a bridge the way they would through a load balancer: each has a home bridge, and
its reconnects go to whichever bridge is alive. Both bridges reach both cache services
(round-robin over the two, as a Kubernetes Service does). Under a steady load of tickers,
orders and bots:

1. one bridge is killed (SIGKILL, no drain): its clients see the connection drop, reconnect to
   the other bridge and resubscribe with ``resume_from`` = the last seq they got;
2. then one cache service is killed (SIGKILL): the surviving bridge's upstream streams are
   interrupted and re-opened on the other replica with ``resume_from``; clients stay connected
   and see ``interrupted`` then ``resumed`` (recovered).

Every client ends with every acknowledged event of its subscriptions, none twice, none out of
order (the ledger), and no acknowledged write is lost. The figures (reconnect time of the
moved clients, recovery, delivery) are printed in the resilience report and quoted in
docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.infra.bridge_runner import http_get
from tests.infra.redis_cluster import RedisClusterNodes
from tests.resilience.publisher import EXCHANGE, USERS, grpc_target
from tests.resilience.stack import READY_TIMEOUT_S, BridgeNode, Stack, running_stack, wait_for
from tests.resilience.test_process_restarts import statuses_are_interrupted_then_resumed
from tests.resilience.wsclient import LedgerClient, SubSpec

pytestmark = [pytest.mark.resilience, pytest.mark.timeout(420)]

CLIENTS = 1000
OPENING = 50            # clients connecting at once
DROPPED = frozenset({1006, 1001, 1011, 1012})   # what a killed or going-away bridge looks like
BATCH_MS = 50
RATE = 15.0             # writes/s per channel (tickers, orders, bots): about 12,000 client updates/s
# every client of one user may land on one bridge (the publisher writes two users' orders and bots)
BRIDGE_ARGS = ["--log-level", "INFO", "--max-connections-per-user", str(CLIENTS)]



class Balancer:
    """Where a client (re)connects: its home bridge while that is alive, else another."""

    def __init__(self, bridges: list[BridgeNode]) -> None:
        self.bridges = bridges
        self.alive = [True] * len(bridges)

    def url(self, home: int, token: str) -> Callable[[], str]:
        def pick() -> str:
            index = next(i for i in [home, *range(len(self.bridges))] if self.alive[i])
            return self.bridges[index].runner.ws_url(token, batch_ms=BATCH_MS)
        return pick

    def kill(self, index: int) -> None:
        """SIGKILL the bridge (no drain, no close frames) and wait for it to be gone."""
        self.alive[index] = False
        node = self.bridges[index]
        os.kill(node.pid, signal.SIGKILL)
        assert node.runner.proc is not None
        node.runner.proc.wait(timeout=30)


def failed_upstream_calls(bridge: BridgeNode) -> dict[str, float]:
    """The bridge's gRPC calls that did not end OK, by method and code."""
    _, body, _ = http_get(bridge.http + "/metrics", timeout=5.0)
    failed: dict[str, float] = {}
    for line in body.splitlines():
        match = re.match(r'bridge_grpc_requests_total\{method="(\w+)",code="(\w+)"\} (\S+)', line)
        if match and match[2] != "OK" and float(match[3]):
            failed[f"{match[1]} {match[2]}"] = float(match[3])
    return failed


def subscriptions(n: int) -> list[SubSpec]:
    """Every client follows its user's orders and bots; one in four also ETH tickers."""
    subs = [SubSpec("orders"), SubSpec("bots")]
    if n % 4 == 0:
        subs.append(SubSpec("tickers", EXCHANGE, ("ETH/USDT",)))
    return subs


async def open_clients(stack: Stack, balancer: Balancer) -> list[list[LedgerClient]]:
    """CLIENTS clients, alternately homed on each bridge; per bridge, the clients homed there."""
    homed: list[list[LedgerClient]] = [[] for _ in balancer.bridges]
    for start in range(0, CLIENTS, OPENING):
        batch = []
        for n in range(start, min(CLIENTS, start + OPENING)):
            home, user = n % len(balancer.bridges), USERS[n % len(USERS)]
            client = LedgerClient(stack.ledger, f"c{n:04d}", balancer.url(home, stack.token(user)),
                                  subscriptions(n), user, reconnect_on=DROPPED)
            homed[home].append(client)
            stack.clients.append(client)
            batch.append(client)
        await asyncio.gather(*(client.start() for client in batch))
    return homed


async def test_one_bridge_then_one_cache_service_killed_under_load_every_client_ends_complete(
        redis_cluster: RedisClusterNodes, report: Callable[[str, dict[str, Any]], None]) -> None:
    await asyncio.to_thread(redis_cluster.flush)
    async with running_stack(redis_cluster.url, replicas=2, rate=RATE, bridge_args=BRIDGE_ARGS[2:],
                             store=redis_cluster.client) as stack:
        second = BridgeNode(grpc_target([c.target for c in stack.caches]), BRIDGE_ARGS)
        await asyncio.to_thread(second.start)
        try:
            await wait_for(lambda: second.readyz() == 200, READY_TIMEOUT_S, "second bridge /readyz 200")
            balancer = Balancer([stack.bridge, second])
            opened_at = time.monotonic()
            homed = await open_clients(stack, balancer)
            open_s = time.monotonic() - opened_at
            stack.publisher.start()
            await stack.publisher.wait_acked(150, timeout=60.0)

            bridge_killed_at = time.monotonic()
            await asyncio.to_thread(balancer.kill, 0)
            moved = homed[0]
            await wait_for(lambda: all(c.connections >= 2 for c in moved), 120.0,
                           f"the {len(moved)} clients of the killed bridge reconnected")
            moved_s = time.monotonic() - bridge_killed_at
            await stack.publisher.wait_acked(150, timeout=60.0)

            cache_killed_at = time.monotonic()
            await asyncio.to_thread(stack.caches[0].kill)
            await stack.publisher.wait_acked(150, timeout=60.0)   # writes go on through the other
            repaired_at = time.monotonic()

            await stack.finish(timeout=120.0)
            measures = stack.measures(cache_killed_at, repaired_at)
            measures.update({
                "clients": CLIENTS, "bridges": 2, "cache_services": 2,
                "open_all_s": round(open_s, 2),
                "moved_clients": len(moved),
                "moved_clients_reconnected_s": round(moved_s, 2),
                "bridge_kill_to_cache_kill_s": round(cache_killed_at - bridge_killed_at, 2),
                "connections_on_survivor": second.metric("bridge_active_connections"),
                # subscribes answered "try again" (a catch-up replay that waited past the stall
                # limit in the reconnect storm: bridge_upstream_stalls_total), then retried
                "subscribe_retries": sum(c.subscribe_retries for c in stack.clients),
                "survivor_upstream_stalls": second.metric("bridge_upstream_stalls_total"),
                "survivor_failed_upstream_calls": failed_upstream_calls(second),
            })
            report("scale-out: 2 bridges + 2 cache services on a cluster, one of each killed", measures)
            statuses_are_interrupted_then_resumed(stack.ledger)
            assert all(c.connections == 1 for c in homed[1]), "the survivor's own clients stayed connected"
            assert measures["acked_writes_lost_by_redis"] == 0
        finally:
            await asyncio.to_thread(second.stop)
