"""Scenario (c): connect churn. Concurrent loops connect, authenticate, read the welcome and
close, as fast as they can for a fixed time: the connects per second one bridge sustains.

Every connection uses a fresh token for its own user, so the bridge pays the full price of a
new session (TCP + upgrade + JWT verification + welcome + close handshake).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.latency import LatencyHistogram
from bench.stack import Endpoints
from bench.tokens import make_token
from bench.window import measure
from bench.workers import WorkerPool, run_worker
from bench.wsclient import open_session, ws_url

TOKEN_POOL = 256


@dataclass
class ChurnJob:
    worker: int
    base_url: str
    secret: str | None
    prefix: str
    loops: int
    duration_s: float


async def _worker_main(job: ChurnJob, results: Any) -> None:
    tokens = [
        make_token(job.secret, f"{job.prefix}-{job.worker}-{i}") if job.secret else None
        for i in range(TOKEN_POOL)
    ]
    hist, errors, done = LatencyHistogram(), Counter[str](), [0]
    deadline = time.monotonic() + job.duration_s

    async def loop(index: int) -> None:
        n = index
        while time.monotonic() < deadline:
            url = ws_url(job.base_url, tokens[n % TOKEN_POOL])
            n += job.loops
            started = time.perf_counter()
            try:
                ws = await open_session(url, timeout=10.0)
                hist.record(time.perf_counter() - started)
                await ws.close()
                done[0] += 1
            except Exception as exc:  # noqa: BLE001 - counted; the loop goes on until its deadline
                errors[type(exc).__name__ + ": " + str(exc)[:100]] += 1
                await asyncio.sleep(0.05)

    await asyncio.gather(*(loop(i) for i in range(job.loops)))
    results.put(
        {
            "kind": "result",
            "worker": job.worker,
            "connects": done[0],
            "errors": dict(errors),
            "hist": hist.to_wire(),
            "cpu_s": time.process_time(),
        }
    )


def churn_worker(job: ChurnJob, ctrl: Any, results: Any) -> None:
    """Process entry point (``ctrl`` unused: the run is bounded by its own deadline)."""
    run_worker(job.worker, _worker_main(job, results), results)


def run(
    endpoints: Endpoints,
    duration_s: float,
    concurrency: int,
    workers: int,
    profile_dir: Path | None = None,
) -> dict[str, Any]:
    """Churn for ``duration_s`` with ``concurrency`` loops over ``workers`` processes."""
    count = max(1, min(workers, concurrency))
    prefix = f"churn-{uuid.uuid4().hex[:6]}"
    jobs = [
        ChurnJob(
            i,
            endpoints.bridge_ws,
            endpoints.jwt_secret,
            prefix,
            len(range(i, concurrency, count)),
            duration_s,
        )
        for i in range(count)
    ]
    pool = WorkerPool.start(churn_worker, jobs)
    try:
        reports, usage, profile = measure(endpoints, pool, duration_s, profile_dir, "churn")
    finally:
        pool.close()
    hist = LatencyHistogram.merged(r["hist"] for r in reports)
    errors: Counter[str] = Counter()
    for r in reports:
        errors.update(r["errors"])
    connects = sum(r["connects"] for r in reports)
    return {
        "duration_s": duration_s,
        "concurrency": concurrency,
        "connects": connects,
        "connects_per_s": round(connects / duration_s, 1),
        "errors": dict(errors),
        "connect_latency": hist.summary_ms(),
        "processes": usage,
        "load_generator_cpu_s": round(sum(r["cpu_s"] for r in reports), 2),
        "profile": profile,
    }
