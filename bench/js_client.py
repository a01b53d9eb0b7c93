"""The JavaScript client's CPU per update in Chromium at 10,000 ticks/s in batch mode.

A local stack (Redis, cache service, bridge: processes, bench/stack.py) and a headless Chromium
page of the bridge's origin running clients/js/marketbridge.js (as the live page imports it,
``/marketbridge.js``) with one tickers subscription over ``?batch_ms``; each update goes to a
consumer that keeps the latest ticker per symbol (a Map), the least any application does. The
publisher sends ``--rate`` ticks/s for ``--duration`` s over ``--symbols`` symbols
(``PublishTickers``, bench/publisher.py). Two measures, over the publishing window:

- ``busy``: ``performance.now()`` around the client's handling of each frame (JSON parse,
  batch unwrap, routing, the subscription's bookkeeping, the consumer), summed;
- CDP ``Performance.getMetrics``: ``ScriptDuration`` (all JavaScript of the page) and
  ``TaskDuration`` (all main-thread tasks: also the WebSocket's own work), deltas.

Each is divided by the updates received. ``python -m bench.js_client [--rate 10000 --duration 10
--batch-ms 100 --symbols 100 --out docs/benchmarks/js_client.json]``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from bench.client_runs import bench_token, run_main
from bench.publisher import PublishPlan, publish_grpc
from bench.stack import LocalStack, StackOptions
from tests.e2e.chromium import Chromium, Page

EXCHANGE = "jsbench"

SETUP = """
(async () => {
  const MB = await import('/marketbridge.js');
  const client = new MB.Client(%(url)s, { token: %(token)s, batchMs: %(batch_ms)d, heartbeatS: 10 });
  const stats = window.__bench = { updates: 0, frames: 0, busyMs: 0, maxFrameMs: 0, snapshot: false };
  const latest = new Map();
  const handle = client._receive.bind(client);
  client._receive = (data) => {   // the client's whole handling of a frame, consumer included
    const t0 = performance.now();
    handle(data);
    const ms = performance.now() - t0;
    stats.busyMs += ms;
    stats.frames += 1;
    if (ms > stats.maxFrameMs) stats.maxFrameMs = ms;
  };
  await client.connect();
  const sub = client.subscribe({ channel: 'tickers', exchange: %(exchange)s }, { onEvent: (e) => {
    if (e.type === 'update') { latest.set(e.result.symbol, e.result); stats.updates += 1; }
    else if (e.type === 'snapshot') stats.snapshot = true;
  } });
  window.__client = client;
  window.__reset = () => { stats.updates = 0; stats.frames = 0; stats.busyMs = 0; stats.maxFrameMs = 0; };
  return true;
})()
"""


async def metrics(page: Page) -> dict[str, float]:
    reply = await page.send("Performance.getMetrics")
    return {m["name"]: m["value"] for m in reply["metrics"]}


async def wait_for(page: Page, expression: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await page.evaluate(expression)
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.2)


async def run(rate: int, duration: float, batch_ms: int, symbols: int) -> dict[str, Any]:
    stack = LocalStack(StackOptions(with_baseline=False))
    endpoints = stack.start()
    try:
        token = bench_token(endpoints.jwt_secret)
        async with Chromium.launch() as browser:
            page = await browser.open(f"{endpoints.bridge_http}/healthz")
            await page.send("Runtime.evaluate", expression=SETUP % {
                "url": json.dumps(endpoints.bridge_ws), "token": json.dumps(token), "batch_ms": batch_ms,
                "exchange": json.dumps(EXCHANGE)}, awaitPromise=True, returnByValue=True)
            if not await wait_for(page, "window.__bench && window.__bench.snapshot", 30):
                raise RuntimeError("the page's subscription did not start")
            await page.send("Performance.enable", timeMode="threadTicks")
            await page.evaluate("window.__reset()")
            before = await metrics(page)
            plan = PublishPlan(EXCHANGE, [f"S{i:03d}/USDT" for i in range(symbols)], float(rate), duration)
            published = await publish_grpc(endpoints.grpc_target, plan, deadline_s=duration * 3 + 30)
            received = await wait_for(
                page, f"window.__bench.updates >= {published.sent} && window.__bench.updates",
                duration + 30)
            after = await metrics(page)
            stats = await page.evaluate("window.__bench")
    finally:
        stack.close()
    updates = max(1, stats["updates"])
    script_s = after["ScriptDuration"] - before["ScriptDuration"]
    task_s = after["TaskDuration"] - before["TaskDuration"]
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rate": rate, "duration_s": duration, "batch_ms": batch_ms, "symbols": symbols,
        "published": published.as_dict(), "received": stats["updates"], "all_received": bool(received),
        "frames": stats["frames"],
        "updates_per_frame": round(stats["updates"] / max(1, stats["frames"]), 1),
        "busy_us_per_update": round(stats["busyMs"] * 1000 / updates, 3),
        "script_us_per_update": round(script_s * 1e6 / updates, 3),
        "task_us_per_update": round(task_s * 1e6 / updates, 3),
        "busy_share_of_one_core": round(stats["busyMs"] / 1000 / max(1e-9, published.duration_s), 4),
        "max_frame_ms": round(stats["maxFrameMs"], 2),
        "chromium": "Debian chromium, headless", "cpus": os.cpu_count(),
    }


def main() -> None:
    run_main(__doc__.split("\n\n")[0], run, batch_ms=100)


if __name__ == "__main__":
    main()
