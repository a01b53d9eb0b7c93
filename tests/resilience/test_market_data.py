"""Scenarios M1-M3: trades and order books through a Redis restart, a Sentinel failover and a
cache service restart (issue 14, "the ledger-based resilience scenarios, extended"). M1 and M3
run on a single Redis and on the Redis Cluster too (``breakable_redis``: SPEC §9.4, §9 holds
on a cluster; a cluster master's failover under load is C1, tests/resilience/test_cluster_failover.py).

The faults, fixtures and stack are those of scenarios 1, 3 and 4; the publishers are the market
ones (tests/resilience/market.py): trades streamed with ``PublishTrades``, each call's trades
acknowledged when it returns (a failed call's trades are retried with the same ``trade_id``),
and two books streamed with ``PublishBook``, re-snapshotted after a refusal or a failed call.

Promises checked (docs/protocol.md section 10, docs/reliability.md):

- trades: every acknowledged trade reaches every client subscribed to it (all symbols, or one,
  batched), seqs unique and in order; a trade id arrives twice only if a call carrying it
  failed and it was sent again; Redis holds every acknowledged trade;
- books: every update's checksum verifies on every client's copy (``ClientBook``), a
  ``snapshot: true`` update replaces it, nothing arrives while it is stale; after the fault (the
  publisher held after an accepted call) and at the end, every copy equals ``GetBook`` at its
  depth, whose checksum verifies and whose levels are exactly the publisher's own book; the
  bridge's ``bridge_book_checksum_failures_total`` stays 0;
- no client is disconnected; no subscription is left interrupted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from cache_service.trade_store import trade_stream
from marketbridge.api.v1 import cache_pb2 as pb

from tests.infra.ledger import percentile
from tests.infra.sentinel import SentinelTopology
from tests.resilience.market import SYMBOLS, BookComparison, MarketFeed, compare_books
from tests.resilience.publisher import EXCHANGE
from tests.resilience.stack import BreakableRedis, Stack, running_stack
from tests.resilience.test_process_restarts import statuses_are_interrupted_then_resumed
from tests.resilience.wsclient import SubSpec

pytestmark = [pytest.mark.resilience, pytest.mark.timeout(240)]

Report = Callable[[str, dict[str, Any]], None]
# Acknowledged before the fault, after the repair, and again after the mid-run book check:
# about one second of traffic each at 100 trades/s and 100 deltas/s.
TRADES_STEP, DELTAS_STEP = 100, 100


async def add_market_clients(stack: Stack) -> None:
    """Trades of every symbol, of one symbol batched; books at depths 10 and 25, one batched."""
    await stack.add_client("tape", "alice", [SubSpec("trades", EXCHANGE),
                                             SubSpec("book", EXCHANGE, symbol="BTC/USDT", depth=25)])
    await stack.add_client("eth-tape-batched", "bob", [SubSpec("trades", EXCHANGE, symbols=("ETH/USDT",))],
                           batch_ms=50)
    await stack.add_client("books-10", "carol", [SubSpec("book", EXCHANGE, symbol=s, depth=10) for s in SYMBOLS])
    await stack.add_client("eth-book-25-batched", "dave",
                           [SubSpec("book", EXCHANGE, symbol="ETH/USDT", depth=25)], batch_ms=50)


async def run_market_scenario(stack: Stack, name: str, fault: Callable[[], Awaitable[float]],
                              report: Report) -> dict[str, Any]:
    """Publish, fault (``fault`` returns when it was repaired), check books, publish, check all."""
    started = time.monotonic()
    feed = MarketFeed(stack.ledger, [c.target for c in stack.caches])
    try:
        await add_market_clients(stack)
        feed.start()
        await feed.wait_acked(TRADES_STEP, DELTAS_STEP)
        fault_at = time.monotonic()
        repaired_at = await fault()
        await feed.wait_acked(TRADES_STEP, DELTAS_STEP, timeout=60.0)
        after_fault = await compare_books(feed, stack.clients)
        await feed.wait_acked(TRADES_STEP, DELTAS_STEP)
        await feed.stop()
        final = await compare_books(feed, stack.clients)
        verdicts = await stack.finish()   # trades: every acknowledged one, in Redis and at every client
        checksum_failures = await asyncio.to_thread(stack.bridge.metric, "bridge_book_checksum_failures_total")
        measures = market_measures(stack, feed, verdicts, after_fault, final, fault_at, repaired_at)
        measures["bridge_book_checksum_failures"] = checksum_failures
        measures["scenario_s"] = round(time.monotonic() - started, 1)
        measures["cache_unexpected_errors"] = unexpected_errors(stack)
        measures["trade_copies"] = await trade_copies(stack, feed)
        report(name, measures)
        assert checksum_failures == 0
        assert not feed.trades.stats.mismatched_replies and not feed.books.stats.mismatched_replies
        assert "INVALID_ARGUMENT" not in feed.trades.stats.failures | feed.books.stats.failures
        assert all(c.connections == 1 for c in stack.clients)
        return measures
    finally:
        await feed.close()


async def trade_copies(stack: Stack, feed: MarketFeed) -> dict[str, dict[str, int]]:
    """Per symbol: trade entries Redis holds, distinct trade ids among them, and trades the 1m
    candles counted (a trade stored twice, after a retry, is counted twice by the candles)."""
    def stored() -> dict[str, list[str]]:
        client = stack.store()
        try:
            out: dict[str, list[str]] = {s: [] for s in SYMBOLS}
            for _, fields in client.xrange(trade_stream(EXCHANGE)):
                trade = pb.Trade.FromString(fields[b"d"])
                out[trade.symbol].append(trade.trade_id)
            return out
        finally:
            client.close()

    ids = await asyncio.to_thread(stored)
    result = {}
    for symbol in SYMBOLS:
        candles = await feed.stub.ListCandles(pb.ListCandlesRequest(
            exchange=EXCHANGE, symbol=symbol, interval="1m", limit=1000), timeout=10)
        result[symbol] = {"entries": len(ids[symbol]), "distinct": len(set(ids[symbol])),
                          "counted_by_1m_candles": sum(c.trades for c in candles.candles)}
    return result


def unexpected_errors(stack: Stack) -> list[str]:
    """The cache service's "unexpected error" log records (what a call answered INTERNAL for):
    the record and the last line of its traceback."""
    found = []
    for cache in stack.caches:
        for tail in cache.logs:
            lines = list(tail.lines)
            for n, line in enumerate(lines):
                if "unexpected error" in line:
                    end = next((m for m in range(n + 1, len(lines)) if lines[m] and not lines[m][0].isspace()
                                and not lines[m].startswith("Traceback")), len(lines) - 1)
                    found.append(f"{line} ... {lines[end]}")
    return found


def market_measures(stack: Stack, feed: MarketFeed, verdicts: list[Any], after_fault: list[BookComparison],
                    final: list[BookComparison], fault_at: float, repaired_at: float) -> dict[str, Any]:
    ledger = stack.ledger
    trade_clients = [c.name for c in stack.clients if any(s.channel == "trades" for s in c.subs)]
    copies = [copy for c in stack.clients for copy in c.books.values()]
    recovery = ledger.recovery_time(repaired_at)
    latencies = ledger.latencies(fault_at, repaired_at + (recovery or 0.0) + 5.0, trade_clients)
    return {
        "fault_to_repair_s": round(repaired_at - fault_at, 3),
        "trade_recovery_s": None if recovery is None else round(recovery, 3),
        "p99_trade_latency_recovery_ms": round(1000 * percentile(latencies, 99), 1),
        "trades": feed.trades.stats.as_dict(),
        "trades_owed": sum(v.expected for v in verdicts),
        "trades_delivered": sum(v.delivered for v in verdicts),
        "trades_received": {n: sum(len(i) for s, i in ledger.clients[n].received.items() if s.startswith("trades:"))
                            for n in trade_clients},
        "trades_redelivered_after_retry": sum(v.redelivered for v in verdicts),
        "books": feed.books.stats.as_dict(),
        "book_refusals": len(feed.books.refusals),
        "book_updates_applied": sum(c.updates for c in copies),
        "book_snapshots_replaced": sum(c.snapshots for c in copies),
        "books_compared": len(after_fault) + len(final),
        "book_levels_compared": sum(b.levels for b in after_fault + final),
        "book_converge_max_s": max(b.waited_s for b in after_fault + final),
        "client_book_problems": sum(len(r.book_problems) for r in ledger.clients.values()),
        "stream_statuses": sum(len(r.statuses) for r in ledger.clients.values()),
        "failure_details": {"trades": feed.trades.stats.failure_details,
                            "books": feed.books.stats.failure_details},
    }


async def test_market_data_through_a_redis_restart(breakable_redis: BreakableRedis, report: Report) -> None:
    """On the cluster, "Redis" is every master at once (``breakable_redis``)."""
    redis = breakable_redis

    async def fault() -> float:
        await asyncio.to_thread(redis.fault.kill)
        await asyncio.to_thread(redis.fault.start)
        return time.monotonic()

    async with running_stack(redis.url, store=redis.store) as stack:
        await run_market_scenario(stack, redis.named("M1 market data, redis kill+restart"), fault, report)


async def test_market_data_through_a_sentinel_failover(sentinel_topology: SentinelTopology,
                                                       report: Report) -> None:
    async def fault() -> float:
        old = await asyncio.to_thread(sentinel_topology.kill_primary)
        new = await asyncio.to_thread(sentinel_topology.wait_for_promotion)
        assert new != old
        repaired_at = time.monotonic()
        # The new primary has no replica until the old one rejoins: writes are refused till then.
        await asyncio.to_thread(sentinel_topology.restart_killed)
        return repaired_at

    async with running_stack(sentinel_topology.sentinel_url, primary=sentinel_topology.primary) as stack:
        await run_market_scenario(stack, "M2 market data, sentinel failover", fault, report)


async def test_market_data_through_a_cache_service_restart(breakable_redis: BreakableRedis,
                                                            report: Report) -> None:
    redis = breakable_redis
    async with running_stack(redis.url, store=redis.store) as stack:
        async def fault() -> float:
            await asyncio.to_thread(stack.caches[0].restart)
            return time.monotonic()

        measures = await run_market_scenario(stack, redis.named("M3 market data, cache_service kill+restart"),
                                             fault, report)
        statuses_are_interrupted_then_resumed(stack.ledger)
        assert measures["stream_statuses"] > 0, "the bridge's upstream streams should have been interrupted"
