"""The whole system as real processes: Redis, cache_service replicas, a bridge, clients, a publisher.

Every blocking fault (killing Redis, restarting a process) runs in a worker thread so that the
WebSocket clients keep reading while it happens, exactly as real clients would.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import urlsplit

import redis

from cache_service.store import BOTS, ORDERS, ticker_stream
from cache_service.trade_store import trade_stream
from marketbridge.api.v1 import cache_pb2 as pb
from tests.infra.bridge_runner import BridgeProcess, http_get
from tests.infra.cache_service_runner import CacheServiceProcess
from tests.infra.eventually import eventually
from tests.infra.ledger import Ledger, Verdict, Write, entity_key, percentile, stream_of
from tests.infra.redis_faults import RedisFault
from tests.infra.tokens import make_token
from tests.resilience.publisher import EXCHANGE, Publisher, grpc_target
from tests.resilience.wsclient import LedgerClient, SubSpec, settle

READY_TIMEOUT_S = 30.0
Address = tuple[str, int]


class LogTail:
    """Keep reading a child's output so it never blocks on a full pipe; keep the last lines."""

    def __init__(self, stream: IO[bytes] | None, lines: int = 200) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=lines)
        if stream is not None:
            threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.lines.append(raw.decode(errors="replace").rstrip())

    def text(self) -> str:
        return "\n".join(self.lines)


def follow_output(proc: Any) -> list[LogTail]:
    """Drain stdout and stderr of a runner's ``proc`` (CacheServiceProcess/BridgeProcess)."""
    return [LogTail(proc.proc.stdout), LogTail(proc.proc.stderr)]


def metric_sum(body: str, name: str) -> float:
    """Sum of every sample of metric ``name`` in a Prometheus text exposition."""
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


class CacheReplica:
    """One ``python -m cache_service`` that can be killed and started again on its port."""

    def __init__(self, redis_url: str) -> None:
        self.runner = CacheServiceProcess(redis_url, env={"CACHE_LOG_LEVEL": "INFO"})
        self.logs: list[LogTail] = []

    @property
    def target(self) -> str:
        return self.runner.target

    def start(self) -> None:
        self.runner.start()
        self.logs = follow_output(self.runner)
        self.runner.wait_ready(READY_TIMEOUT_S)

    def kill(self) -> None:
        self.runner.kill()

    def stream_subscribers(self) -> float:
        """How many gRPC streams this replica serves now (``cache_stream_subscribers``)."""
        _, body, _ = http_get(f"http://127.0.0.1:{self.runner.metrics_port}/metrics", timeout=5.0)
        return metric_sum(body, "cache_stream_subscribers")

    def stop(self) -> None:
        self.runner.stop()

    def restart(self, crash: bool = True) -> None:
        self.kill() if crash else self.stop()
        self.start()


class BridgeNode:
    """``python -m bridge`` on a fixed port, restartable."""

    def __init__(self, target: str, extra_args: list[str]) -> None:
        self.runner = BridgeProcess(target, extra_args=extra_args)
        self.logs: list[LogTail] = []

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.runner.port}"

    @property
    def pid(self) -> int:
        assert self.runner.proc is not None
        return self.runner.proc.pid

    def start(self) -> None:
        self.runner.start()
        self.logs = follow_output(self.runner)

    def stop(self) -> None:
        self.runner.stop()

    def readyz(self) -> int:
        try:
            return http_get(self.http + "/readyz", timeout=2.0)[0]
        except OSError:
            return 0

    def metric(self, name: str) -> float:
        """Sum of every sample of ``name`` on /metrics."""
        _, body, _ = http_get(self.http + "/metrics", timeout=5.0)
        return metric_sum(body, name)

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """A cheap external condition (HTTP status, process state) that blocks, probed in a thread;
    a busy server not answering a probe in time (OSError) is probed again."""
    await eventually(lambda: asyncio.to_thread(predicate), timeout, interval=0.1, what=what,
                     ignore=(OSError,))


def retained_in(client: redis.Redis | redis.RedisCluster) -> dict[str, set[str]]:
    """Every seq Redis still holds, per ledger stream (what can be delivered); for the trade
    stream, the trade ids it holds (trades are known by id: tests/infra/ledger.py)."""
    keys = {"orders": ORDERS.stream, "bots": BOTS.stream, f"tickers:{EXCHANGE}": ticker_stream(EXCHANGE)}
    held = {stream: {(i.decode() if isinstance(i, bytes) else i) for i, _ in client.xrange(key)}
            for stream, key in keys.items()}
    trades = (pb.Trade.FromString(fields[b"d"]) for _, fields in client.xrange(trade_stream(EXCHANGE)))
    held[stream_of("trades", EXCHANGE)] = {entity_key("trades", {"symbol": t.symbol, "trade_id": t.trade_id})
                                            for t in trades}
    return held


def replayed_events(ledger: Ledger) -> int:
    """Deliveries a resume replayed: on each client's stream, events received after an
    ``interrupted`` that were written before the ``resumed`` ending it (retained in the stream
    while the subscription was interrupted, and delivered by its catch-up)."""
    count = 0
    for record in ledger.clients.values():
        for stream, items in record.received.items():
            windows, began = [], None
            for status_stream, status, _, at in record.statuses:
                if status_stream != stream:
                    continue
                if status == "interrupted" and began is None:
                    began = at
                elif status == "resumed" and began is not None:
                    windows.append((began, at))
                    began = None
            for item in items:
                write = ledger.by_seq.get((stream, item.ident(stream)))
                if write is not None and any(began < item.at and write.sent_at < ended
                                             for began, ended in windows):
                    count += 1
    return count


@dataclass
class Stack:
    ledger: Ledger
    caches: list[CacheReplica]
    bridge: BridgeNode
    publisher: Publisher
    primary: Callable[[], Address]
    # a client of the Redis that holds the data now (default: of ``primary()``; a cluster's)
    store: Callable[[], redis.Redis | redis.RedisCluster]
    clients: list[LedgerClient] = field(default_factory=list)
    lost_in_redis: list[Write] = field(default_factory=list)

    def retained(self) -> dict[str, set[str]]:
        """Every seq Redis holds now, per ledger stream (:func:`retained_in`)."""
        client = self.store()
        try:
            return retained_in(client)
        finally:
            client.close()

    def logs(self) -> str:
        parts = ["--- bridge\n" + "\n".join(t.text() for t in self.bridge.logs)]
        parts += [f"--- cache {c.target}\n" + "\n".join(t.text() for t in c.logs) for c in self.caches]
        return "\n".join(parts)[-20000:]

    def token(self, user: str, scope: str = "") -> str:
        return make_token(sub=user, scope=scope)

    async def add_client(self, name: str, user: str, subs: list[SubSpec], admin: bool = False,
                         reconnect_on: frozenset[int] = frozenset(), recv_buffer: int | None = None,
                         max_queue: int = 16, **query: Any) -> LedgerClient:
        token = self.token(user, "admin" if admin else "")
        client = LedgerClient(self.ledger, name, lambda: self.bridge.runner.ws_url(token, **query),
                              subs, user, admin, reconnect_on, recv_buffer, max_queue)
        await client.start()
        self.clients.append(client)
        return client

    async def add_standard_clients(self, reconnect_on: frozenset[int] = frozenset()) -> None:
        """Four clients covering every channel, both users, an admin, batch mode and filters."""
        tickers = SubSpec("tickers", EXCHANGE)
        await self.add_client("alice", "alice", [SubSpec("orders"), SubSpec("bots"), tickers],
                              reconnect_on=reconnect_on)
        await self.add_client("bob-batched", "bob", [SubSpec("orders"), SubSpec("bots")],
                              reconnect_on=reconnect_on, batch_ms=50)
        await self.add_client("ops-admin", "ops", [SubSpec("orders"), SubSpec("bots")], admin=True,
                              reconnect_on=reconnect_on)
        await self.add_client("eth-watcher", "carol", [SubSpec("tickers", EXCHANGE, ("ETH/USDT",))],
                              reconnect_on=reconnect_on)

    async def finish(self, allowed_closes: dict[str, set[int]] | None = None,
                     timeout: float = 45.0,
                     explain: Callable[[Write], bool] | None = None) -> list[Verdict]:
        """Stop publishing, let every client catch up, and check the ledger for each.

        First every acknowledged write is looked up in Redis: one Redis lost (it can happen in
        a Sentinel failover, see docs/reliability.md) is not owed to clients, but it fails the
        scenario unless ``explain`` accounts for it.
        """
        await self.publisher.stop()
        retained = await asyncio.to_thread(self.retained)
        self.lost_in_redis = self.ledger.reconcile(retained)
        unexplained = [w for w in self.lost_in_redis if explain is None or not explain(w)]
        assert not unexplained, (
            f"{len(unexplained)} acknowledged writes are not in Redis any more: "
            f"{[(w.stream, w.seq, w.key) for w in unexplained[:5]]}")
        await settle(self.ledger, self.clients, timeout)
        allowed = {c.name: set(c.reconnect_on) for c in self.clients}
        for name, codes in (allowed_closes or {}).items():
            allowed[name] = allowed.get(name, set()) | codes
        try:
            return self.ledger.assert_all_complete(allowed)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.describe()}\n{self.logs()}") from None

    def assert_failures_retryable(self) -> None:
        """SPEC §7: a write that fails in an outage fails ``UNAVAILABLE`` (or
        ``DEADLINE_EXCEEDED`` at the caller's deadline), which clients retry; never ``INTERNAL``
        or ``UNKNOWN`` (an error the service did not recognise as an outage)."""
        odd = {code: n for code, n in self.publisher.stats.failures.items()
               if code not in ("UNAVAILABLE", "DEADLINE_EXCEEDED")}
        assert not odd, f"writes failed with a status that is not an outage's: {odd}\n{self.logs()}"

    def describe(self) -> str:
        """Per-client facts for a failure message: connections, closes, statuses, receipts."""
        lines = []
        for client in self.clients:
            record = client.record
            got = {stream: len(items) for stream, items in record.received.items()}
            verdict = self.ledger.check(client.name)
            if verdict.missing:
                bots = record.received.get("bots", [])
                for code, _, at in record.closes:
                    before = [i.seq for i in bots if i.at <= at][-3:]
                    after = [i.seq for i in bots if i.at > at][:3]
                    lines.append(f"  close at {at}: bots before {before} after {after}")
                lines.append(f"  missing first {verdict.missing[:3]} last {verdict.missing[-3:]}")
            lines.append(f"{client.name}: connections={client.connections} closes={record.closes} "
                         f"statuses={[(s, st, r) for s, st, r, _ in record.statuses]} "
                         f"received={got} errors={client.errors[:3]}")
        return "\n".join(lines)

    def measures(self, fault_at: float, repaired_at: float) -> dict[str, Any]:
        """Delivered %, time to recover and p99 latency around the fault, for the report."""
        recovery = self.ledger.recovery_time(repaired_at)
        window_end = repaired_at + (recovery or 0.0) + 5.0
        latencies = self.ledger.latencies(fault_at, window_end)
        disruption = self.ledger.recovery_time(fault_at)
        return {
            "delivered_pct": round(100.0 * self.ledger.delivered_fraction(), 3),
            "fault_to_repair_s": round(repaired_at - fault_at, 3),
            "recovery_s": None if recovery is None else round(recovery, 3),
            "disruption_s": None if disruption is None else round(disruption, 3),
            "p99_latency_recovery_ms": round(1000 * percentile(latencies, 99), 1),
            "p50_latency_all_ms": round(1000 * percentile(self.ledger.latencies(), 50), 1),
            "acked_writes": self.publisher.stats.acked,
            "acked_writes_lost_by_redis": len(self.lost_in_redis),
            "stream_statuses": sum(len(r.statuses) for r in self.ledger.clients.values()),
            "replayed_events": replayed_events(self.ledger),
            "failed_writes": dict(self.publisher.stats.failures),
        }


@asynccontextmanager
async def running_stack(redis_url: str, replicas: int = 1, bridge_args: list[str] | None = None,
                        rate: float = 40.0,
                        primary: Callable[[], Address] | None = None,
                        store: Callable[[], redis.Redis | redis.RedisCluster] | None = None,
                        ) -> AsyncIterator[Stack]:
    """Start cache_service replica(s) and a bridge as processes, a publisher; stop all on exit.

    ``primary`` says where Redis is now (a Sentinel topology's primary); default: the URL's.
    ``store`` opens a client of what Redis holds (a cluster's data is on several nodes: its
    ``RedisClusterNodes.client``); default: a client of ``primary()``.
    """
    caches = [CacheReplica(redis_url) for _ in range(replicas)]
    started: list[Any] = []
    bridge: BridgeNode | None = None
    publisher: Publisher | None = None
    stack: Stack | None = None
    try:
        for cache in caches:
            await asyncio.to_thread(cache.start)
            started.append(cache)
        targets = [c.target for c in caches]
        bridge = BridgeNode(grpc_target(targets), ["--log-level", "INFO", *(bridge_args or [])])
        await asyncio.to_thread(bridge.start)
        started.append(bridge)
        await wait_for(lambda: bridge.readyz() == 200, READY_TIMEOUT_S, "bridge /readyz 200")
        ledger = Ledger()
        publisher = Publisher(ledger, targets, rate)
        parts = urlsplit(redis_url)
        where = primary or (lambda: (parts.hostname or "127.0.0.1", parts.port or 6379))
        stack = Stack(ledger, caches, bridge, publisher, where,
                      store or (lambda: redis.Redis(*where(), socket_timeout=10, socket_connect_timeout=5)))
        yield stack
    finally:
        if stack is not None:
            for client in stack.clients:
                await client.close()
        if publisher is not None and not publisher.stopping.is_set():
            await publisher.stop()
        for proc in reversed(started):
            await asyncio.to_thread(proc.stop)


@dataclass
class BreakableRedis:
    """The Redis a fault scenario runs on and breaks (the ``breakable_redis`` fixture): a single
    Redis of the test's own, or the session's Redis Cluster, whose "Redis" is every master at
    once (tests/infra/redis_faults.py, ``ClusterFault.every_master``: killed or paused
    together, so no replica is promoted and each comes back as the master of its slots; a
    single master's failover is C1)."""

    topology: str                    # "single" or "cluster"
    fault: RedisFault                # kill (SIGKILL), start, pause (a hang), unpause, notes
    # a client of what Redis holds (running_stack's ``store``): None, of the single Redis at ``url``
    store: Callable[[], redis.Redis | redis.RedisCluster] | None = None

    @property
    def url(self) -> str:
        return self.fault.url

    def named(self, scenario: str) -> str:
        """The report's name of ``scenario`` on this topology."""
        return scenario if self.topology == "single" else f"{scenario} [cluster]"


def environment_note() -> str:
    return f"{os.cpu_count()} cores (shared, noisy), redis backend {os.environ.get('REDIS_BACKEND', 'docker')}"
