"""The Python client's CPU per update at 10,000 ticks/s in batch mode.

A local stack (Redis, cache service, bridge: processes, bench/stack.py); the client runs in a
child process of its own (``--child``), so that ``time.process_time()`` counts only the
client: the websockets library's reading, JSON parsing, batch unwrapping, routing, the
subscription's bookkeeping (latest ticker per symbol, last seq) and a consumer that iterates
the subscription (``async for``) and keeps the latest price per symbol. The parent publishes
``--rate`` ticks/s for ``--duration`` s over ``--symbols`` symbols (``PublishTickers``,
bench/publisher.py); the child reports its CPU between its first and its last update.

``python -m bench.python_client [--rate 10000 --duration 10 --batch-ms 10 --symbols 100
--out docs/benchmarks/python_client.json]``
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from bench.client_runs import bench_token, run_main
from bench.publisher import PublishPlan, publish_grpc
from bench.stack import LocalStack, StackOptions

EXCHANGE = "pybench"


async def child(url: str, token: str, batch_ms: int, expected: int, timeout: float) -> dict[str, Any]:
    """Consume until ``expected`` updates (or ``timeout``); CPU from the first update to the last."""
    from marketbridge_client import Client

    latest: dict[str, float] = {}
    updates, cpu_start, wall_start, last_wall = 0, 0.0, 0.0, 0.0
    async with Client(url, token, batch_ms=batch_ms, heartbeat_s=10) as client:
        stream = client.subscribe("tickers", exchange=EXCHANGE)
        await stream.wait_for(lambda s: s.last_seq is not None, 30)
        print("ready", flush=True)
        last_at = time.process_time()
        try:   # plain ``async for``: a timer per update would be measured too
            async with asyncio.timeout(timeout):
                async for update in stream:
                    if update.kind != "update":
                        continue
                    if updates == 0:
                        cpu_start, wall_start = time.process_time(), time.monotonic()
                    latest[update.data["symbol"]] = update.data["price"]
                    updates += 1
                    if updates >= expected:
                        break
        except TimeoutError:
            pass    # the publisher fell short: report what came
        last_at, last_wall = time.process_time(), time.monotonic()
        cpu = last_at - cpu_start
        wall = last_wall - wall_start
    return {"updates": updates, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
            "symbols_seen": len(latest), "dropped": stream.dropped}


async def run(rate: int, duration: float, batch_ms: int, symbols: int) -> dict[str, Any]:
    stack = LocalStack(StackOptions(with_baseline=False))
    endpoints = stack.start()
    try:
        token = bench_token(endpoints.jwt_secret)
        plan = PublishPlan(EXCHANGE, [f"S{i:03d}/USDT" for i in range(symbols)], float(rate), duration)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.python_client", "--child", endpoints.bridge_ws, token,
            str(batch_ms), str(plan.total), str(duration * 3 + 30), stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        if (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() != b"ready":
            raise RuntimeError("the client did not start")
        published = await publish_grpc(endpoints.grpc_target, plan, deadline_s=duration * 3 + 30)
        out, _ = await asyncio.wait_for(proc.communicate(), duration * 3 + 60)
        stats = json.loads(out)
    finally:
        stack.close()
    updates = max(1, stats["updates"])
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rate": rate, "duration_s": duration, "batch_ms": batch_ms, "symbols": symbols,
        "published": published.as_dict(), "received": stats["updates"],
        "all_received": stats["updates"] >= published.sent, "dropped": stats["dropped"],
        "cpu_s": stats["cpu_s"], "wall_s": stats["wall_s"],
        "cpu_us_per_update": round(stats["cpu_s"] * 1e6 / updates, 2),
        "share_of_one_core": round(stats["cpu_s"] / max(1e-9, stats["wall_s"]), 3),
        "python": sys.version.split()[0], "cpus": os.cpu_count(),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, token, batch_ms, expected, timeout = sys.argv[2:7]
        work = child(url, token, int(batch_ms), int(expected), float(timeout))
        if os.environ.get("BENCH_PROFILE"):      # where the client's CPU goes (cProfile, to a file)
            import cProfile
            with cProfile.Profile() as profile:
                stats = asyncio.run(work)
            profile.dump_stats(os.environ["BENCH_PROFILE"])
        else:
            stats = asyncio.run(work)
        print(json.dumps(stats))
        return
    run_main(__doc__.split("\n\n")[0], run, batch_ms=10)


if __name__ == "__main__":
    main()
