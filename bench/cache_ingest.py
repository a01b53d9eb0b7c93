"""Cache service ingest benchmark: PublishTickers events/s into Redis, and one StreamTickers
subscriber's receive rate.

    python -m bench.cache_ingest [--tickers 100000] [--symbols 50] [--streams 1] [--redis-url URL]

Starts its own redis-server (no persistence) and ``python -m cache_service`` on free loopback
ports unless ``--redis-url``/``--grpc-target`` are given. The subscriber runs in this process,
opened before publishing; its rate is events received / time from the first publish to the
last event received. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cache_service.pb.v1 import cache_pb2 as pb
from cache_service.pb.v1 import cache_pb2_grpc

EXCHANGE = "benchx"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def local_stack(redis_url: str | None) -> Iterator[str]:
    """redis-server (unless given) + cache_service subprocesses; yields the gRPC target."""
    procs: list[subprocess.Popen[bytes]] = []
    workdir = tempfile.mkdtemp(prefix="cache-bench-")
    try:
        if redis_url is None:
            port = free_port()
            procs.append(
                subprocess.Popen(
                    [
                        shutil.which("redis-server") or "redis-server",
                        "--port",
                        str(port),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        workdir,
                    ],
                    stdout=subprocess.DEVNULL,
                )
            )
            redis_url = f"redis://127.0.0.1:{port}/0"
        grpc_port = free_port()
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cache_service",
                    "--redis-url",
                    redis_url,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(grpc_port),
                    "--metrics-port",
                    "0",
                    "--log-level",
                    "WARNING",
                ]
            )
        )
        yield f"127.0.0.1:{grpc_port}"
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)


async def wait_serving(target: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"cache service at {target} not SERVING")
            await asyncio.sleep(0.1)


def ticker_requests(
    count: int, symbols: int, offset: int
) -> AsyncIterator[pb.PublishTickerRequest]:
    async def generate() -> AsyncIterator[pb.PublishTickerRequest]:
        now = time.time()
        for i in range(count):
            price = 100.0 + (i % 1000) * 0.01
            yield pb.PublishTickerRequest(
                ticker=pb.Ticker(
                    exchange=EXCHANGE,
                    symbol=f"S{(i + offset) % symbols:03d}/USDT",
                    price=price,
                    bid=price - 0.01,
                    ask=price + 0.01,
                    last=price,
                    volume=1000.0 + i,
                    change_24h=0.5,
                    time=now,
                )
            )

    return generate()


class Subscriber:
    """One StreamTickers subscriber that, like the bridge, resumes from its last seq when the
    service ends it for falling behind (RESOURCE_EXHAUSTED)."""

    def __init__(self, stub: cache_pb2_grpc.CacheServiceStub) -> None:
        self.stub = stub
        self.received = 0
        self.resumes = 0
        self.ready = asyncio.Event()

    async def run(self, expected: int) -> float:
        """Count ticker events until ``expected``; return the monotonic time of the last."""
        last_seq = ""
        while True:
            call = self.stub.StreamTickers(pb.StreamTickersRequest(exchange=EXCHANGE, resume_from=last_seq))
            try:
                async for event in call:
                    kind = event.WhichOneof("event")
                    if kind == "live":
                        self.ready.set()
                    elif kind == "ticker":
                        self.received += 1
                        last_seq = event.seq
                        if self.received == expected:
                            call.cancel()
                            return time.monotonic()
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                self.resumes += 1
                continue
            raise RuntimeError(f"stream ended after {self.received} events")


async def run(target: str, tickers: int, symbols: int, streams: int) -> dict[str, object]:
    await wait_serving(target)
    async with grpc.aio.insecure_channel(target) as pub_channel, grpc.aio.insecure_channel(target) as sub_channel:
        publisher = cache_pb2_grpc.CacheServiceStub(pub_channel)
        # warm-up: connections, script load, reader
        await publisher.PublishTickers(ticker_requests(1000, symbols, 0))
        per_stream = tickers // streams
        total = per_stream * streams
        sub = Subscriber(cache_pb2_grpc.CacheServiceStub(sub_channel))
        subscriber = asyncio.create_task(sub.run(total))
        await asyncio.wait_for(sub.ready.wait(), 30)
        start = time.monotonic()
        results = await asyncio.gather(*(publisher.PublishTickers(ticker_requests(per_stream, symbols, s))
                                         for s in range(streams)))
        ingest_done = time.monotonic()
        try:
            last_event = await asyncio.wait_for(subscriber, 300)
        except TimeoutError:
            raise TimeoutError(f"subscriber got {sub.received}/{total} events ({sub.resumes} resumes)") from None
    accepted = sum(r.accepted for r in results)
    return {
        "tickers": accepted,
        "symbols": symbols,
        "streams": streams,
        "ingest_seconds": round(ingest_done - start, 3),
        "ingest_events_per_s": round(accepted / (ingest_done - start)),
        "subscriber_seconds": round(last_event - start, 3),
        "subscriber_events_per_s": round(accepted / (last_event - start)),
        "subscriber_resumes": sub.resumes,
        "cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickers", type=int, default=100_000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--redis-url")
    parser.add_argument("--grpc-target", help="measure a running service instead of starting one")
    args = parser.parse_args()
    if args.grpc_target:
        result = asyncio.run(run(args.grpc_target, args.tickers, args.symbols, args.streams))
    else:
        with local_stack(args.redis_url) as target:
            result = asyncio.run(run(target, args.tickers, args.symbols, args.streams))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
