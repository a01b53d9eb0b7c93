"""Scenario (b): idle connection capacity. Open connections in steps up to 10,000 on one
bridge process and read its resident memory at each step.

Each connection authenticates (a distinct user per connection, as real clients would be),
receives its welcome frame and then stays silent. RSS per connection is the growth over the
bridge's RSS before the first step, divided by the connections open.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection

from bench.procstats import MIB, ProcessSampler
from bench.scrape import scrape
from bench.stack import Endpoints
from bench.tokens import client_tokens
from bench.workers import WorkerPool, next_command, run_worker
from bench.wsclient import open_session, ws_url

CONNECT_CONCURRENCY = 100
SETTLE_S = 2.0
STEP_TIMEOUT_S = 600.0


@dataclass
class CapacityJob:
    worker: int
    urls: list[str]
    timeout_s: float
    compression: str | None = None   # "deflate": offer permessage-deflate, as browsers do


async def _worker_main(job: CapacityJob, ctrl: Any, results: Any) -> None:
    sockets: list[ClientConnection] = []
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    failures: Counter[str] = Counter()

    async def open_one(url: str) -> None:
        async with gate:
            try:
                sockets.append(await open_session(url, job.timeout_s, compression=job.compression))
            except Exception as exc:  # noqa: BLE001 - counted and reported
                failures[type(exc).__name__ + ": " + str(exc)[:100]] += 1

    opened = 0
    while True:
        command = await next_command(ctrl, timeout=STEP_TIMEOUT_S)
        if not command or "grow" not in command:
            break
        target = min(command["grow"], len(job.urls))
        started = time.monotonic()
        await asyncio.gather(*(open_one(u) for u in job.urls[opened:target]))
        opened = max(opened, target)
        alive = sum(1 for ws in sockets if ws.close_code is None)
        results.put(
            {
                "kind": "grown",
                "worker": job.worker,
                "open": alive,
                "seconds": time.monotonic() - started,
                "failures": dict(failures),
            }
        )
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    results.put({"kind": "closed", "worker": job.worker})


def capacity_worker(job: CapacityJob, ctrl: Any, results: Any) -> None:
    """Process entry point."""
    run_worker(job.worker, _worker_main(job, ctrl, results), results)


def _bridge_rss(sampler: ProcessSampler | None, metrics_url: str | None) -> float | None:
    """Bridge RSS in MiB: from /proc locally, from its process collector when deployed."""
    if sampler is not None:
        return sampler.rss("bridge") / MIB
    if metrics_url:
        value = scrape(metrics_url).get("process_resident_memory_bytes")
        return None if value is None else value / MIB
    return None


def run(endpoints: Endpoints, steps: tuple[int, ...], workers: int,
        compression: str | None = None) -> dict[str, Any]:
    """Grow to each step in turn; returns the per-step table."""
    largest = max(steps)
    run_id = uuid.uuid4().hex[:6]
    urls = [
        ws_url(endpoints.bridge_ws, t)
        for t in client_tokens(endpoints.jwt_secret, f"idle-{run_id}", largest)
    ]
    count = max(1, min(workers, largest))
    pool = WorkerPool.start(
        capacity_worker, [CapacityJob(i, urls[i::count], 30.0, compression) for i in range(count)]
    )
    sampler = (
        ProcessSampler({"bridge": endpoints.pids["bridge"]}) if "bridge" in endpoints.pids else None
    )
    metrics_url = f"{endpoints.bridge_http}/metrics" if endpoints.bridge_http else None
    rss0 = _bridge_rss(sampler, metrics_url)
    rows: list[dict[str, Any]] = []
    try:
        for step in sorted(steps):
            shares = [len(range(i, step, count)) for i in range(count)]
            for ctrl, share in zip(pool.ctrls, shares, strict=True):
                ctrl.put({"grow": share})
            reports = pool.gather("grown", timeout=STEP_TIMEOUT_S)
            time.sleep(SETTLE_S)
            rows.append(_row(step, reports, _bridge_rss(sampler, metrics_url), rss0, metrics_url))
        pool.broadcast(None)
        pool.gather("closed", timeout=120)
    finally:
        pool.broadcast(None)
        pool.close()
    return {"baseline_rss_mib": None if rss0 is None else round(rss0, 1), "compression": compression,
            "steps": rows}


def _row(
    step: int,
    reports: list[dict[str, Any]],
    rss: float | None,
    rss0: float | None,
    metrics_url: str | None,
) -> dict[str, Any]:
    open_now = sum(r["open"] for r in reports)
    failures: Counter[str] = Counter()
    for r in reports:
        failures.update(r["failures"])
    gauge = scrape(metrics_url).get("bridge_active_connections") if metrics_url else None
    per_conn = None
    if rss is not None and rss0 is not None and open_now:
        per_conn = round((rss - rss0) * 1024 / open_now, 1)
    return {
        "target": step,
        "open": open_now,
        "bridge_active_connections": gauge,
        "connect_seconds": round(max(r["seconds"] for r in reports), 2),
        "bridge_rss_mib": None if rss is None else round(rss, 1),
        "rss_per_connection_kib": per_conn,
        "failures": dict(failures),
    }
