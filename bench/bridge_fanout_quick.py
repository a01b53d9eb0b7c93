"""Quick fan-out measurement of ONE bridge process: N clients x S symbols, paced publish rates.

    python -m bench.bridge_fanout_quick --clients 100 --symbols 50 --rates 250,500,1000,2000
    python -m bench.bridge_fanout_quick --batch-ms 10

Starts redis-server, ``python -m cache_service`` and ``python -m bridge`` on free loopback
ports; client workers (separate processes) subscribe every client to the S symbols of one
exchange; the publisher streams tickers (``PublishTickers``) whose ``time`` is the wall clock at
publish, so publish-to-receive latency = receive time - ``result.time``. A rate is "sustained"
when at least 99 % of the expected updates arrive and p99 stays under 1 s. Everything runs on
the same machine, so the clients and publisher compete with the bridge for the CPUs; the
bridge's own CPU time per delivered update (from /proc) is reported too, as it depends much
less on that contention: one core / that cost is the bridge's ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from typing import Any

import grpc
import orjson
from websockets.asyncio.client import connect

from cache_service.pb.v1 import cache_pb2 as pb
from cache_service.pb.v1 import cache_pb2_grpc
from tests.infra.bridge_runner import BridgeProcess
from tests.infra.cache_service_runner import CacheServiceProcess
from tests.infra.redis_servers import ProcessRedis
from tests.infra.tokens import make_token

EXCHANGE = "bench"


def symbols(n: int) -> list[str]:
    return [f"S{i:03d}/USDT" for i in range(n)]


# ------------------------------------------------------------------ client workers


async def _client(
    url: str,
    syms: list[str],
    probe: bool,
    stats: dict[str, Any],
    ready: asyncio.Event,
    stop: asyncio.Event,
) -> None:
    async with connect(url, max_size=None, max_queue=None) as ws:
        await ws.recv()
        await ws.send(
            json.dumps(
                {
                    "action": "subscribe",
                    "request_id": 1,
                    "params": {
                        "channel": "tickers",
                        "exchange": EXCHANGE,
                        "symbols": syms,
                        "snapshot": False,
                    },
                }
            )
        )
        reply = orjson.loads(await ws.recv())
        assert reply.get("success"), reply
        stats["ready"] += 1
        if stats["ready"] == stats["clients"]:
            ready.set()
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            now = time.time()
            frame = orjson.loads(raw)
            updates = frame["updates"] if frame["type"] == "batch" else [frame]
            stats["received"] += len(updates)
            if probe:
                stats["latency"].extend(now - u["result"]["time"] for u in updates)


def _worker(url: str, syms: list[str], n: int, probe_every: int, conn: Any) -> None:
    async def main() -> None:
        stats: dict[str, Any] = {"clients": n, "ready": 0, "received": 0, "latency": []}
        ready, stop = asyncio.Event(), asyncio.Event()
        tasks = [
            asyncio.create_task(_client(url, syms, i % probe_every == 0, stats, ready, stop))
            for i in range(n)
        ]
        await asyncio.wait_for(ready.wait(), 60)
        conn.send("ready")
        while True:  # commands from the parent: "reset", "report", "stop"
            command = await asyncio.to_thread(conn.recv)
            if command == "reset":
                stats["received"], stats["latency"] = 0, []
                conn.send("ok")
            elif command == "report":
                conn.send({"received": stats["received"], "latency": stats["latency"]})
            else:
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                return

    asyncio.run(main())


# ------------------------------------------------------------------ publisher


async def publish(target: str, syms: list[str], rate: int, duration: float) -> int:
    """Paced PublishTickers stream: ``rate`` tickers/s round-robin over the symbols."""
    channel = grpc.aio.insecure_channel(target)
    stub = cache_pb2_grpc.CacheServiceStub(channel)
    tick_s = 0.01
    per_tick = max(1, round(rate * tick_s))
    sent = 0

    async def requests():  # type: ignore[no-untyped-def]
        nonlocal sent
        start = time.monotonic()
        i = 0
        while (elapsed := time.monotonic() - start) < duration:
            due = int(elapsed * rate) + per_tick
            while sent < due:
                sym = syms[i % len(syms)]
                i += 1
                sent += 1
                yield pb.PublishTickerRequest(
                    ticker=pb.Ticker(
                        exchange=EXCHANGE,
                        symbol=sym,
                        price=100.0 + i % 100,
                        bid=99.0,
                        ask=101.0,
                        last=100.0,
                        volume=1.0,
                        change_24h=0.5,
                        time=time.time(),
                    )
                )
            await asyncio.sleep(tick_s)

    await stub.PublishTickers(requests())
    await channel.close()
    return sent


# ------------------------------------------------------------------ driver


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), to cost the bridge per frame."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    syms = symbols(args.symbols)
    redis = ProcessRedis(fsync="no")
    cache = CacheServiceProcess(redis.url, extra_args=["--log-level", "warning"])
    cache.start()
    cache.wait_ready(30)
    bridge = BridgeProcess(
        cache.target,
        ["--log-level", "warning", "--max-connections-per-user", str(args.clients + 10)],
    )
    bridge.start()
    token = make_token("bench")
    query = f"?token={token}" + (f"&batch_ms={args.batch_ms}" if args.batch_ms else "")
    url = f"ws://127.0.0.1:{bridge.port}/ws{query}"
    pipes, procs = [], []
    results = []
    try:
        share = [
            args.clients // args.workers + (1 if i < args.clients % args.workers else 0)
            for i in range(args.workers)
        ]
        for n in share:
            parent, child = mp.Pipe()
            proc = mp.Process(target=_worker, args=(url, syms, n, args.probe_every, child))
            proc.start()
            pipes.append(parent)
            procs.append(proc)
        for p in pipes:
            assert p.recv() == "ready"
        for rate in args.rates:
            for p in pipes:
                p.send("reset")
                p.recv()
            assert bridge.proc is not None
            cpu_before = cpu_seconds(bridge.proc.pid)
            sent = asyncio.run(publish(cache.target, syms, rate, args.duration))
            time.sleep(args.drain)
            bridge_cpu = cpu_seconds(bridge.proc.pid) - cpu_before
            received, latency = 0, []
            for p in pipes:
                p.send("report")
                report = p.recv()
                received += report["received"]
                latency += report["latency"]
            expected = sent * args.clients
            row = {
                "mode": f"batch_ms={args.batch_ms}" if args.batch_ms else "plain",
                "clients": args.clients,
                "symbols": args.symbols,
                "rate": rate,
                "published": sent,
                "expected": expected,
                "received": received,
                "delivery_ratio": round(received / expected, 4) if expected else 0,
                "deliveries_per_s": round(received / args.duration),
                "p50_ms": round(percentile(latency, 0.50) * 1000, 1),
                "p99_ms": round(percentile(latency, 0.99) * 1000, 1),
                "mean_ms": round(statistics.fmean(latency) * 1000, 1) if latency else None,
            }
            row["bridge_cpu_s"] = round(bridge_cpu, 2)
            row["bridge_cpu_us_per_delivery"] = round(1e6 * bridge_cpu / received, 1) if received else None
            row["sustained"] = row["delivery_ratio"] >= 0.99 and row["p99_ms"] < 1000
            print(json.dumps(row), flush=True)
            results.append(row)
    finally:
        for p in pipes:
            p.send("stop")
        for proc in procs:
            proc.join(10)
        bridge.stop()
        cache.stop()
        redis.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bridge_fanout_quick")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument(
        "--rates", default="250,500,1000,2000", type=lambda s: [int(x) for x in s.split(",")]
    )
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--drain", type=float, default=2.0)
    parser.add_argument("--batch-ms", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--probe-every", type=int, default=5)
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    results = run(args)
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as handle:
            json.dump(
                {"machine": f"{os.cpu_count()} cores, shared", "results": results}, handle, indent=2
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
