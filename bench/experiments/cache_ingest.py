"""Cache service ingest benchmark: PublishTickers events/s into Redis, and one subscriber's
receive rate.

    python -m bench.experiments.cache_ingest [--tickers 100000] [--symbols 50] [--streams 1]
        [--per-message 100] [--stream batches|events] [--redis-url URL]

Starts its own redis-server (no persistence) and ``python -m cache_service`` on free loopback
ports unless ``--redis-url``/``--grpc-target`` are given. ``--per-message`` tickers go in each
PublishTickers message (1 = one ``ticker`` per message, the old way; more = ``tickers``).
The subscriber uses StreamTickerBatches (``--stream batches``) or StreamTickers (``events``,
one message per event); it runs in this process, opened before publishing; its rate is events
received / time from the first publish to the last event received. With a service it started,
the bench also reports the service's CPU seconds per ticker (user+system, from /proc) over the
run. ``--rate`` paces the publisher (ticks/s) instead of sending as fast as it can, to measure
CPU at a given load. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from devstack.ports import free_port
from devstack.probes import grpc_serving
from devstack.process import ServerProcess, wait_ready
from devstack.redis import ProcessRedis
from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.api.v1 import cache_pb2_grpc

EXCHANGE = "benchx"
READY_TIMEOUT_S = 60.0


@dataclass
class Stack:
    """What ``local_stack`` started: the gRPC target and the service's pid (None if not ours)."""

    target: str
    service_pid: int | None = None


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (Linux /proc), 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def local_stack(redis_url: str | None) -> Iterator[Stack]:
    """redis-server (no persistence; unless given) + a cache_service subprocess, ready."""
    with ExitStack() as stack:
        if redis_url is None:
            redis_server = ProcessRedis(fsync="no", extra_args=["--appendonly", "no"])
            stack.callback(redis_server.close)
            redis_url = redis_server.url
        log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cache-bench-")))
        target = f"127.0.0.1:{free_port()}"
        service = ServerProcess("cache_service", [
            sys.executable, "-m", "cache_service", "--redis-url", redis_url, "--host", "127.0.0.1",
            "--port", target.rsplit(":", 1)[1], "--metrics-port", "0", "--log-level", "WARNING",
        ], log_dir)
        stack.callback(service.stop)
        service.wait_ready(lambda: grpc_serving(target), READY_TIMEOUT_S)
        yield Stack(target, service.pid)


def ticker_requests(count: int, symbols: int, offset: int, per_message: int = 1,
                    rate: float = 0.0) -> AsyncIterator[pb.PublishTickerRequest]:
    """``count`` tickers, ``per_message`` per request (one in ``ticker`` when 1), paced at
    ``rate`` ticks/s when given."""

    async def generate() -> AsyncIterator[pb.PublishTickerRequest]:
        now = time.time()
        start = time.monotonic()
        for first in range(0, count, per_message):
            tickers = []
            for i in range(first, min(count, first + per_message)):
                price = 100.0 + (i % 1000) * 0.01
                tickers.append(pb.Ticker(
                    exchange=EXCHANGE,
                    symbol=f"S{(i + offset) % symbols:03d}/USDT",
                    price=price,
                    bid=price - 0.01,
                    ask=price + 0.01,
                    last=price,
                    volume=1000.0 + i,
                    change_24h=0.5,
                    time=now,
                ))
            if rate:
                due = start + first / rate
                if due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())
            if per_message == 1:
                yield pb.PublishTickerRequest(ticker=tickers[0])
            else:
                yield pb.PublishTickerRequest(tickers=tickers)

    return generate()


class Subscriber:
    """One StreamTickerBatches (or StreamTickers) subscriber that, like the bridge, resumes
    from its last seq when the service ends it for falling behind (RESOURCE_EXHAUSTED)."""

    def __init__(self, stub: cache_pb2_grpc.CacheServiceStub, batches: bool = True) -> None:
        self.stub = stub
        self.batches = batches
        self.received = 0
        self.messages = 0
        self.resumes = 0
        self.ready = asyncio.Event()

    def _call(self, last_seq: str) -> Any:
        request = pb.StreamTickersRequest(exchange=EXCHANGE, resume_from=last_seq)
        if self.batches:
            return self.stub.StreamTickerBatches(request)
        return self.stub.StreamTickers(request)

    async def run(self, expected: int) -> float:
        """Count ticker events until ``expected``; return the monotonic time of the last."""
        last_seq = ""
        while True:
            call = self._call(last_seq)
            try:
                async for message in call:
                    self.messages += 1
                    for event in (message.events if self.batches else (message,)):
                        kind = event.WhichOneof("event")
                        if kind == "live":
                            self.ready.set()
                        elif kind == "ticker":
                            self.received += 1
                            last_seq = event.seq
                    if self.received >= expected:
                        call.cancel()
                        return time.monotonic()
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                self.resumes += 1
                continue
            raise RuntimeError(f"stream ended after {self.received} events")


async def run(target: str, tickers: int, symbols: int, streams: int, per_message: int = 1,
              batches: bool = True, rate: float = 0.0, service_pid: int | None = None) -> dict[str, object]:
    await asyncio.to_thread(wait_ready, f"cache service at {target}", lambda: grpc_serving(target),
                            READY_TIMEOUT_S)
    async with grpc.aio.insecure_channel(target) as pub_channel, grpc.aio.insecure_channel(target) as sub_channel:
        publisher = cache_pb2_grpc.CacheServiceStub(pub_channel)
        # warm-up: connections, script load, reader
        await publisher.PublishTickers(ticker_requests(1000, symbols, 0, per_message))
        per_stream = tickers // streams
        total = per_stream * streams
        sub = Subscriber(cache_pb2_grpc.CacheServiceStub(sub_channel), batches)
        subscriber = asyncio.create_task(sub.run(total))
        await asyncio.wait_for(sub.ready.wait(), 30)
        cpu_start = cpu_seconds(service_pid)
        start = time.monotonic()
        results = await asyncio.gather(*(
            publisher.PublishTickers(ticker_requests(per_stream, symbols, s, per_message, rate / streams))
            for s in range(streams)))
        ingest_done = time.monotonic()
        try:
            last_event = await asyncio.wait_for(subscriber, 300)
        except TimeoutError:
            raise TimeoutError(f"subscriber got {sub.received}/{total} events ({sub.resumes} resumes)") from None
        cpu = cpu_seconds(service_pid) - cpu_start
    accepted = sum(r.accepted for r in results)
    result: dict[str, object] = {
        "tickers": accepted,
        "symbols": symbols,
        "streams": streams,
        "per_message": per_message,
        "stream": "batches" if batches else "events",
        "rate": rate or "max",
        "ingest_seconds": round(ingest_done - start, 3),
        "ingest_events_per_s": round(accepted / (ingest_done - start)),
        "subscriber_seconds": round(last_event - start, 3),
        "subscriber_events_per_s": round(accepted / (last_event - start)),
        "subscriber_messages": sub.messages,
        "subscriber_resumes": sub.resumes,
        "cpus": os.cpu_count(),
    }
    if service_pid is not None:
        result["service_cpu_s"] = round(cpu, 2)
        result["service_cpu_us_per_ticker"] = round(cpu / accepted * 1e6, 1)
        result["service_cpu_share_of_one_core"] = round(cpu / (last_event - start), 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickers", type=int, default=100_000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--per-message", type=int, default=100,
                        help="tickers per PublishTickers message (1: the old one-ticker messages)")
    parser.add_argument("--stream", choices=("batches", "events"), default="batches",
                        help="subscribe with StreamTickerBatches or StreamTickers")
    parser.add_argument("--rate", type=float, default=0.0, help="ticks/s to publish (default: as fast as possible)")
    parser.add_argument("--redis-url")
    parser.add_argument("--grpc-target", help="measure a running service instead of starting one")
    args = parser.parse_args()
    if args.per_message < 1:
        parser.error("--per-message must be >= 1")
    options = {"per_message": args.per_message, "batches": args.stream == "batches", "rate": args.rate}
    if args.grpc_target:
        result = asyncio.run(run(args.grpc_target, args.tickers, args.symbols, args.streams, **options))
    else:
        with local_stack(args.redis_url) as stack:
            result = asyncio.run(run(stack.target, args.tickers, args.symbols, args.streams,
                                     service_pid=stack.service_pid, **options))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
