"""Paced tick publishers: gRPC ``PublishTickers`` (the product) and Redis PUBLISH (the baseline).

Each runs open-loop at the target rate over the given symbols, numbering each symbol's ticks
from 1 and stamping each with its send time, and reports what it really sent. The gRPC one can
split the symbols over several client streams (each symbol stays on one stream, so its order
is kept) when one stream cannot carry the rate; it sends the ticks of one pacer burst as one
message (``tickers``, up to ``GRPC_MESSAGE_MAX``): the service's cost is per message.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from bench.pacing import Pacer
from bench.ticks import SequenceCounter, baseline_frame, ticker_fields

TICK_SLOT_S = 0.002
GRPC_MESSAGE_MAX = 500  # tickers per PublishTickers message: a burst that falls due is one message
# One PublishTickers stream carries 10,000 ticks/s here with room to spare, and fewer, fuller
# messages cost the cache service less (its cost is per message: one stream instead of two at
# 10,000 ticks/s took 5-10 % off its CPU and 4-7 ms off p99); at 20,000 one stream fell behind.
TICKS_PER_STREAM = 10_000
OVERRUN = 1.5  # a publisher held back by flow control stops at 1.5x the planned duration


@dataclass
class PublishPlan:
    """What to publish: ``rate`` ticks/s in total for ``duration_s`` over ``symbols``."""

    exchange: str
    symbols: list[str]
    rate: float
    duration_s: float
    streams: int | None = None  # None: one stream per TICKS_PER_STREAM ticks/s

    @property
    def stop_at_offset_s(self) -> float:
        """Publishing stops this long after the start even if the plan is not fully sent."""
        return self.duration_s * OVERRUN + 1.0

    @property
    def total(self) -> int:
        """Ticks in the whole run: a whole number per symbol, so every symbol ends even."""
        per_symbol = max(1, round(self.rate * self.duration_s / len(self.symbols)))
        return per_symbol * len(self.symbols)

    def final(self) -> dict[str, int]:
        """Each symbol's last sequence number once the plan is fully sent."""
        per_symbol = self.total // len(self.symbols)
        return {symbol: per_symbol for symbol in self.symbols}

    @property
    def stream_count(self) -> int:
        """The streams asked for, else as many as the rate needs."""
        return self.streams or max(1, math.ceil(self.rate / TICKS_PER_STREAM))

    def partitions(self) -> list[list[str]]:
        """The symbols of each publishing stream (round-robin, none empty)."""
        count = max(1, min(self.stream_count, len(self.symbols)))
        return [self.symbols[i::count] for i in range(count)]


@dataclass
class PublishResult:
    """What a publisher really did."""

    sent: int = 0
    streams: int = 1
    started_at: float = 0.0
    finished_at: float = 0.0
    final: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    # The publisher process's CPU time while publishing (it is gone before it can be sampled);
    # starting Python and importing gRPC come before, and are not part of the load.
    cpu_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return max(1e-9, self.finished_at - self.started_at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "streams": self.streams,
            "duration_s": round(self.duration_s, 3),
            "achieved_rate": round(self.sent / self.duration_s, 1),
            "cpu_s": round(self.cpu_s, 2),
            "error": self.error,
        }


async def _paced(pacer: Pacer, emit: Any, stop_at: float) -> None:
    """Call ``emit(n)`` with each burst that falls due until the pacer is done, or until
    ``stop_at`` when the receiving end cannot keep up (the result says how much went out)."""
    while not pacer.done:
        now = time.time()
        if now >= stop_at:
            return
        count = pacer.due(now)
        if count:
            await emit(count)
            pacer.mark(count)
        else:
            await asyncio.sleep(max(TICK_SLOT_S, pacer.next_wakeup(now)))


def trade_fields(exchange: str, symbol: str, seq: int, sent_at: float) -> dict[str, Any]:
    """A Trade numbered ``seq`` for its symbol (``trade_id``), stamped ``sent_at``; decimal
    strings as an exchange writes them."""
    return {
        "exchange": exchange,
        "symbol": symbol,
        "trade_id": str(seq),
        "price": f"{100 + (seq % 1000) * 0.01:.2f}",
        "amount": "0.25000000",
        "side": "buy" if seq % 2 else "sell",
        "time": sent_at,
    }


async def publish_grpc(
    target: str, plan: PublishPlan, deadline_s: float, trades: bool = False
) -> PublishResult:
    """Publish the plan through ``PublishTickers`` client streams, one per symbol partition
    (``trades``: ``PublishTrades``, each symbol's trade ids 1, 2, 3...)."""
    import grpc

    from marketbridge.api.v1 import cache_pb2, cache_pb2_grpc

    cpu_start = time.process_time()
    result = PublishResult(started_at=time.time())
    parts = plan.partitions()
    result.streams = len(parts)
    share = plan.total // len(plan.symbols)
    if trades:
        item, fields_of, request = cache_pb2.Trade, trade_fields, cache_pb2.PublishTradesRequest
        method, field_name = "PublishTrades", "trades"
    else:
        item, fields_of, request = cache_pb2.Ticker, ticker_fields, cache_pb2.PublishTickerRequest
        method, field_name = "PublishTickers", "tickers"

    async def one_stream(stub: Any, symbols: list[str]) -> None:
        counter = SequenceCounter(symbols)
        pacer = Pacer(
            rate=plan.rate * len(symbols) / len(plan.symbols),
            total=share * len(symbols),
            start=result.started_at,
        )
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=4)

        async def emit(count: int) -> None:
            tickers = []
            for _ in range(count):
                symbol, seq = counter.next()
                fields = fields_of(plan.exchange, symbol, seq, time.time())
                tickers.append(item(**fields))
            for start in range(0, count, GRPC_MESSAGE_MAX):
                batch = tickers[start : start + GRPC_MESSAGE_MAX]
                await queue.put(request(**{field_name: batch}))
            result.sent += count

        async def requests() -> AsyncIterator[Any]:
            while True:
                item = await queue.get()
                if item is None:
                    return
                yield item

        call = getattr(stub, method)(requests(), timeout=deadline_s)
        await _paced(pacer, emit, result.started_at + plan.stop_at_offset_s)
        await queue.put(None)
        await call
        result.final.update(counter.final())

    async with grpc.aio.insecure_channel(target) as channel:
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        try:
            await asyncio.gather(*(one_stream(stub, part) for part in parts))
        except grpc.aio.AioRpcError as exc:
            result.error = f"{exc.code().name}: {exc.details()}"
    result.finished_at = time.time()
    result.cpu_s = time.process_time() - cpu_start
    return result


async def publish_pubsub(redis_url: str, channel: str, plan: PublishPlan) -> PublishResult:
    """Publish the plan as bridge-shaped update frames on one Redis pub/sub channel."""
    import redis.asyncio as aioredis

    try:
        from orjson import dumps
    except ImportError:  # pragma: no cover
        from json import dumps as _dumps

        def dumps(value: Any) -> bytes:  # type: ignore[misc]
            return _dumps(value).encode()

    cpu_start = time.process_time()
    result = PublishResult(started_at=time.time())
    counter = SequenceCounter(plan.symbols)
    pacer = Pacer(rate=plan.rate, total=plan.total, start=result.started_at)
    client = aioredis.Redis.from_url(redis_url)

    async def emit(count: int) -> None:
        pipe = client.pipeline(transaction=False)
        for _ in range(count):
            symbol, seq = counter.next()
            frame = baseline_frame(ticker_fields(plan.exchange, symbol, seq, time.time()))
            pipe.publish(channel, dumps(frame))
        await pipe.execute()
        result.sent += count

    try:
        await _paced(pacer, emit, result.started_at + plan.stop_at_offset_s)
    except Exception as exc:  # noqa: BLE001 - reported in the results, the run goes on
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        await client.aclose()
    result.final = counter.final()
    result.finished_at = time.time()
    result.cpu_s = time.process_time() - cpu_start
    return result
