"""Continuous publishing through the real gRPC API, every acknowledged write into the ledger.

One task per channel writes at a steady rate: tickers of one exchange, orders and bots of a few
users. A write counts only when the service returned its ``seq`` (the ack); a failed call
(UNAVAILABLE during an outage, DEADLINE_EXCEEDED while Redis hangs) is counted, not recorded:
it may or may not have been applied, so a client may or may not see it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc

from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.api.v1 import cache_pb2_grpc
from tests.factories import BotFactory, OrderFactory, TickerFactory
from tests.infra.ledger import Ledger

USERS = ("alice", "bob")
KINDS = ("tickers", "orders", "bots")
EXCHANGE = "binance"
ORDER_STATUSES = ("new", "open", "partially_filled", "filled")
CALL_TIMEOUT_S = 2.0
RETRY_PAUSE_S = 0.05


def grpc_target(targets: list[str]) -> str:
    """One target for one or several cache_service replicas (round-robin, like dns:///)."""
    if len(targets) == 1:
        return targets[0]
    return "ipv4:" + ",".join(targets)


def open_channel(targets: list[str]) -> grpc.aio.Channel:
    config = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
    return grpc.aio.insecure_channel(grpc_target(targets), options=[
        ("grpc.service_config", config),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ])


@dataclass
class PublisherStats:
    attempted: int = 0
    acked: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    slowest_failure_s: float = 0.0   # how long the slowest failed call took (deadline check)


class Publisher:
    """Writes tickers, orders and bots at ``rate`` per channel per second until stopped."""

    def __init__(self, ledger: Ledger, targets: list[str], rate: float = 40.0) -> None:
        self.ledger = ledger
        self.channel = open_channel(targets)
        self.stub = cache_pb2_grpc.CacheServiceStub(self.channel)
        self.interval = 1.0 / rate
        self.stats = PublisherStats()
        self.stopping = asyncio.Event()
        self.acked = asyncio.Condition()
        self.tasks: list[asyncio.Task[None]] = []
        self._orders = [OrderFactory(user_id=USERS[n % len(USERS)]) for n in range(8)]
        self._bots = [BotFactory(user_id=USERS[n % len(USERS)]) for n in range(4)]

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self._loop(kind), name=f"publish-{kind}")
                      for kind in KINDS]

    async def stop(self) -> None:
        self.stopping.set()
        await asyncio.gather(*self.tasks)
        await self.channel.close()

    async def _loop(self, kind: str) -> None:
        counter = itertools.count()
        next_at = time.monotonic()
        while not self.stopping.is_set():
            n = next(counter)
            await self.write(kind, n)
            next_at = max(next_at + self.interval, time.monotonic() - 1.0)
            delay = next_at - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self.stopping.wait(), delay)
                except TimeoutError:
                    pass

    async def write(self, kind: str, n: int) -> str | None:
        """One write of ``kind``; returns its seq, or None when it was not acknowledged."""
        if kind == "tickers":
            entity = TickerFactory(exchange=EXCHANGE)
            call = self.stub.PublishTicker(pb.PublishTickerRequest(ticker=entity), timeout=CALL_TIMEOUT_S)
        elif kind == "orders":
            entity = self._orders[n % len(self._orders)]
            entity.status = ORDER_STATUSES[n % len(ORDER_STATUSES)]
            entity.updated_at = time.time()
            call = self.stub.UpsertOrder(pb.UpsertOrderRequest(order=entity), timeout=CALL_TIMEOUT_S)
        else:
            entity = self._bots[n % len(self._bots)]
            entity.pnl = float(n)
            entity.updated_at = time.time()
            call = self.stub.UpsertBot(pb.UpsertBotRequest(bot=entity), timeout=CALL_TIMEOUT_S)
        sent_at = time.monotonic()
        self.stats.attempted += 1
        try:
            reply = await call
        except grpc.aio.AioRpcError as exc:
            self.stats.failures[exc.code().name] += 1
            self.stats.slowest_failure_s = max(self.stats.slowest_failure_s, time.monotonic() - sent_at)
            await asyncio.sleep(RETRY_PAUSE_S)
            return None
        self.ledger.record_write(kind, entity, reply.seq, sent_at)
        async with self.acked:
            self.stats.acked += 1
            self.acked.notify_all()
        return str(reply.seq)

    async def wait_acked(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` more writes have been acknowledged (the system is writing again)."""
        target = self.stats.acked + count
        async with asyncio.timeout(timeout), self.acked:
            await self.acked.wait_for(lambda: self.stats.acked >= target)
