"""Market-data ingest cost: the cache service's CPU per item for book deltas and trades, beside
tickers, each written through its bulk call with no subscriber (issue 14: "bulk ingest is as
cheap per item as tickers are today").

    python -m bench.experiments.market_ingest [--items 50000] [--books 50] [--per-message 100]

Starts redis-server and ``python -m cache_service`` as :mod:`bench.experiments.cache_ingest`
does, then, one kind after the other on the same service: ``--items`` tickers through
PublishTickers (``--per-message`` per message), the same number of book deltas through
PublishBook (one delta per message, over ``--books`` books, each delta changing two levels near
the top), the same deltas through PublishBookBatches (``--per-message`` per message), and the
same number of trades through PublishTrades (``--per-message`` per message). Prints one JSON object: items/s and service CPU us per item
for each kind, and the ratios to tickers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc

from bench.experiments.cache_ingest import cpu_seconds, local_stack, ticker_requests
from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.api.v1 import cache_pb2_grpc

EXCHANGE = "benchx"
LEVELS = 30


def _levels(best: float, step: float, count: int) -> list[pb.BookLevel]:
    return [pb.BookLevel(price=f"{best + step * i:.1f}", qty="1.00000000") for i in range(count)]


def book_requests(items: int, books: int) -> AsyncIterator[pb.PublishBookRequest]:
    """A snapshot per book, then ``items`` deltas round-robin over the books."""

    async def generate() -> AsyncIterator[pb.PublishBookRequest]:
        now = time.time()
        for b in range(books):
            yield pb.PublishBookRequest(exchange=EXCHANGE, symbol=f"B{b:03d}/USDT", snapshot=True,
                                        bids=_levels(999.9, -0.1, LEVELS), asks=_levels(1000.1, 0.1, LEVELS),
                                        sequence=1, time=now)
        for i in range(items):
            b, n = i % books, i // books
            qty = f"{1 + n % 97}.{n % 1000:03d}00000"
            yield pb.PublishBookRequest(
                exchange=EXCHANGE, symbol=f"B{b:03d}/USDT", sequence=2 + n, time=now,
                bids=[pb.BookLevel(price=f"{999.9 - 0.1 * (n % 5):.1f}", qty=qty)],
                asks=[pb.BookLevel(price=f"{1000.1 + 0.1 * (n % 7):.1f}", qty=qty)])

    return generate()


def book_batches(items: int, books: int, per_message: int) -> AsyncIterator[pb.PublishBookBatch]:
    """The same messages as :func:`book_requests`, ``per_message`` per PublishBookBatch."""

    async def generate() -> AsyncIterator[pb.PublishBookBatch]:
        batch: list[pb.PublishBookRequest] = []
        async for request in book_requests(items, books):
            batch.append(request)
            if len(batch) == per_message:
                yield pb.PublishBookBatch(messages=batch)
                batch = []
        if batch:
            yield pb.PublishBookBatch(messages=batch)

    return generate()


def trade_requests(items: int, per_message: int) -> AsyncIterator[pb.PublishTradesRequest]:
    async def generate() -> AsyncIterator[pb.PublishTradesRequest]:
        now = time.time()
        for first in range(0, items, per_message):
            yield pb.PublishTradesRequest(trades=[
                pb.Trade(exchange=EXCHANGE, symbol=f"T{i % 50:03d}/USDT", trade_id=str(i),
                         price=f"{1000 + i % 13}.5", amount="0.01000000", side=("buy", "sell")[i % 2],
                         time=now + i * 1e-4)
                for i in range(first, min(items, first + per_message))])

    return generate()


async def measure(name: str, call: Callable[[], Awaitable[object]], items: int,
                  pid: int | None) -> dict[str, float]:
    cpu, start = cpu_seconds(pid), time.monotonic()
    await call()
    seconds, used = time.monotonic() - start, cpu_seconds(pid) - cpu
    return {"items_per_s": round(items / seconds), "service_cpu_us_per_item": round(used / items * 1e6, 1)}


async def run(target: str, items: int, books: int, per_message: int, pid: int | None) -> dict[str, object]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        # warm-up: connections, scripts, the service's first allocations
        await stub.PublishTickers(ticker_requests(2000, 50, 0, per_message))
        await stub.PublishTrades(trade_requests(2000, per_message))
        result: dict[str, object] = {"items": items, "books": books, "per_message": per_message,
                                     "cpus": os.cpu_count()}
        result["tickers"] = await measure(
            "tickers", lambda: stub.PublishTickers(ticker_requests(items, 50, 0, per_message)), items, pid)
        result["book_deltas"] = await measure(
            "book", lambda: stub.PublishBook(book_requests(items, books)), items, pid)
        result["book_delta_batches"] = await measure(
            "book batches", lambda: stub.PublishBookBatches(book_batches(items, books, per_message)), items, pid)
        result["trades"] = await measure(
            "trades", lambda: stub.PublishTrades(trade_requests(items, per_message)), items, pid)
    base = result["tickers"]["service_cpu_us_per_item"]  # type: ignore[index]
    for kind in ("book_deltas", "book_delta_batches", "trades"):
        result[f"{kind}_cpu_vs_tickers"] = round(result[kind]["service_cpu_us_per_item"] / base, 2)  # type: ignore[index]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--books", type=int, default=50)
    parser.add_argument("--per-message", type=int, default=100)
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    with local_stack(args.redis_url) as stack:
        result = asyncio.run(run(stack.target, args.items, args.books, args.per_message, stack.service_pid))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
