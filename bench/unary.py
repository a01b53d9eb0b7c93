"""Scenario (d): unary ``get_ticker`` through the bridge (WebSocket JSON -> gRPC -> Redis).

Closed loop: each connection keeps ``depth`` requests in flight (one reader per connection
matches replies to requests by ``request_id``), for a fixed time. Reports requests/s, the
round-trip latency a client sees, and errors by code.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bench.frames import decode
from bench.latency import LatencyHistogram
from bench.publisher import PublishPlan, publish_grpc
from bench.stack import Endpoints
from bench.ticks import symbol_names
from bench.tokens import client_tokens
from bench.window import measure
from bench.workers import WorkerPool, run_loop, run_worker
from bench.wsclient import encode, open_session, ws_url

SYMBOLS = 50


@dataclass
class UnaryJob:
    worker: int
    urls: list[str]
    exchange: str
    depth: int
    duration_s: float


class Pending:
    """Requests in flight on one connection, resolved by the connection's reader."""

    def __init__(self) -> None:
        self.futures: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.ids = itertools.count(1)

    async def read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                frame = decode(raw)
                future = self.futures.pop(frame.get("request_id"), None)  # type: ignore[arg-type]
                if future is not None and not future.done():
                    future.set_result(frame)
        except ConnectionClosed:
            pass
        for future in self.futures.values():
            if not future.done():
                future.set_exception(ConnectionError("connection closed"))


async def _connection(
    job: UnaryJob, url: str, hist: LatencyHistogram, outcome: Counter[str]
) -> None:
    ws = await open_session(url, timeout=30.0)
    pending = Pending()
    reader = asyncio.create_task(pending.read(ws))
    symbols = symbol_names(SYMBOLS)
    deadline = time.monotonic() + job.duration_s

    async def sender(offset: int) -> None:
        n = offset
        while time.monotonic() < deadline:
            request_id = next(pending.ids)
            future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            pending.futures[request_id] = future
            params = {"exchange": job.exchange, "symbol": symbols[n % SYMBOLS]}
            n += 7
            started = time.perf_counter()
            await ws.send(
                encode({"action": "get_ticker", "request_id": request_id, "params": params})
            )
            reply = await asyncio.wait_for(future, timeout=10.0)
            hist.record(time.perf_counter() - started)
            outcome["ok" if reply.get("success") else str(reply.get("error", {}).get("code"))] += 1

    try:
        await asyncio.gather(*(sender(i) for i in range(job.depth)))
    finally:
        await ws.close()
        await asyncio.gather(reader, return_exceptions=True)


async def _worker_main(job: UnaryJob, results: Any) -> None:
    hist, outcome = LatencyHistogram(), Counter[str]()
    runs = await asyncio.gather(
        *(_connection(job, u, hist, outcome) for u in job.urls), return_exceptions=True
    )
    for failure in (r for r in runs if isinstance(r, BaseException)):
        outcome[f"{type(failure).__name__}: {str(failure)[:100]}"] += 1
    results.put(
        {
            "kind": "result",
            "worker": job.worker,
            "outcome": dict(outcome),
            "hist": hist.to_wire(),
            "cpu_s": time.process_time(),
        }
    )


def unary_worker(job: UnaryJob, ctrl: Any, results: Any) -> None:
    """Process entry point."""
    run_worker(job.worker, _worker_main(job, results), results)


def run(
    endpoints: Endpoints,
    duration_s: float,
    connections: int,
    depth: int,
    workers: int,
    profile_dir: Path | None = None,
) -> dict[str, Any]:
    """Preload the tickers, then hammer ``get_ticker`` for ``duration_s``."""
    exchange = f"unary-{uuid.uuid4().hex[:6]}"
    plan = PublishPlan(exchange=exchange, symbols=symbol_names(SYMBOLS), rate=5000, duration_s=0.01)
    preload = run_loop(publish_grpc(endpoints.grpc_target, plan, deadline_s=30))
    if preload.error:
        raise RuntimeError(f"could not preload tickers: {preload.error}")
    urls = [
        ws_url(endpoints.bridge_ws, t)
        for t in client_tokens(endpoints.jwt_secret, exchange, connections)
    ]
    count = max(1, min(workers, connections))
    jobs = [UnaryJob(i, urls[i::count], exchange, depth, duration_s) for i in range(count)]
    pool = WorkerPool.start(unary_worker, jobs)
    try:
        reports, usage, profile = measure(endpoints, pool, duration_s, profile_dir, "unary")
    finally:
        pool.close()
    hist, outcome = LatencyHistogram.merged(r["hist"] for r in reports), Counter[str]()
    for r in reports:
        outcome.update(r["outcome"])
    return {
        "duration_s": duration_s,
        "connections": connections,
        "depth": depth,
        "requests": hist.total,
        "requests_per_s": round(hist.total / duration_s, 1),
        "outcomes": dict(outcome),
        "latency": hist.summary_ms(),
        "processes": usage,
        "load_generator_cpu_s": round(sum(r["cpu_s"] for r in reports), 2),
        "profile": profile,
    }
