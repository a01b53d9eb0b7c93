"""Scenario (b): idle connection capacity. Open connections in steps (up to 50,000) on one
bridge process and read its resident memory, and the kernel's socket memory, at each step.

Each connection authenticates (a distinct user per connection, as real clients would be),
receives its welcome frame and then stays silent. RSS per connection is the growth over the
bridge's RSS before the first step, divided by the connections open. The kernel's part (socket
structures in slab, buffer pages in ``/proc/net/sockstat``) is not in any RSS and is reported
beside it (bench/sockstat.py), machine-wide.

The clients are bench/lean_connection.py connections (a Protocol and a frame parser: a few
hundred bytes each, no task), spread over worker processes, so 50,000 of them cost the load
side little next to the bridge. One client address has only the ephemeral port range (about
28,000 ports) towards the bridge's one port, so against a loopback bridge the clients bind to
127.0.0.2, 127.0.0.3, ... in turn, :data:`PORTS_PER_SOURCE` connections each at most.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import psutil

from bench.frames import decode
from bench.lean_connection import LeanConnection
from bench.procstats import MIB, ProcessSampler
from bench.rawws import OP_TEXT
from bench.scrape import scrape
from bench.sockstat import KernelSockets
from bench.stack import Endpoints
from bench.tokens import client_tokens
from bench.workers import WorkerPool, next_command, run_worker
from bench.wsclient import SessionError, ws_url
from bridge.open_files import RESERVED_FILES

CONNECT_CONCURRENCY = 100   # handshakes in flight per worker
SETTLE_S = 2.0
STEP_TIMEOUT_S = 900.0
OPEN_TIMEOUT_S = 30.0
PORTS_PER_SOURCE = 20_000   # connections per client address, below the ~28,000 ephemeral ports
FIRST_SOURCE = ipaddress.ip_address("127.0.0.2")


@dataclass
class CapacityJob:
    worker: int
    urls: list[str]
    timeout_s: float
    compression: str | None = None   # "deflate": offer permessage-deflate, as browsers do
    sources: list[str | None] | None = None   # the client address of each url's socket


class IdleClient:
    """One silent client: it waits for the welcome frame and then only answers the server's
    control frames (pings, the close), which the frame reader does by itself."""

    def __init__(self) -> None:
        self.conn: LeanConnection | None = None
        self.welcomed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_message(self, opcode: int, buf: bytes | bytearray, start: int, stop: int) -> None:
        if self.welcomed.done() or opcode != OP_TEXT:
            return
        frame = decode(bytes(buf[start:stop]))
        if frame.get("type") == "connection" and frame.get("status") == "connected":
            self.welcomed.set_result(None)
        else:
            self.welcomed.set_exception(SessionError(f"unexpected first frame: {frame}"))

    async def open(self, url: str, timeout: float, deflate: bool, source: str | None) -> None:
        self.conn = await LeanConnection.open(url, self.on_message, timeout, deflate, source)
        try:
            async with asyncio.timeout(timeout):
                await asyncio.wait({self.welcomed, self.conn.closed},
                                   return_when=asyncio.FIRST_COMPLETED)
            if not self.welcomed.done():
                raise SessionError(f"closed before the welcome ({self.conn.close_code})")
            self.welcomed.result()
        except BaseException:
            self.conn.abort()
            raise


async def _worker_main(job: CapacityJob, ctrl: Any, results: Any) -> None:
    clients: list[IdleClient] = []
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    failures: Counter[str] = Counter()
    sources = job.sources or [None] * len(job.urls)
    deflate = job.compression == "deflate"

    async def open_one(url: str, source: str | None) -> None:
        async with gate:
            client = IdleClient()
            try:
                await client.open(url, job.timeout_s, deflate, source)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                failures[type(exc).__name__ + ": " + str(exc)[:100]] += 1
                return
            clients.append(client)

    opened = 0
    while True:
        command = await next_command(ctrl, timeout=STEP_TIMEOUT_S)
        if not command or "grow" not in command:
            break
        target = min(command["grow"], len(job.urls))
        started = time.monotonic()
        await asyncio.gather(*(open_one(u, s) for u, s in
                               zip(job.urls[opened:target], sources[opened:target], strict=True)))
        opened = max(opened, target)
        alive = sum(1 for c in clients if c.conn is not None and c.conn.close_code is None)
        results.put(
            {
                "kind": "grown",
                "worker": job.worker,
                "open": alive,
                "seconds": time.monotonic() - started,
                "failures": dict(failures),
            }
        )
    await asyncio.gather(*(c.conn.close() for c in clients if c.conn is not None),
                         return_exceptions=True)
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


def client_sources(bridge_ws: str, count: int) -> list[str | None]:
    """The client address of each of ``count`` connections: 127.0.0.2, .3, ... in turn (as
    many as ``count`` needs at :data:`PORTS_PER_SOURCE` each) for a loopback bridge; the
    kernel's choice (None) for any other."""
    host = urlsplit(bridge_ws).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        return [None] * count
    addresses = [str(FIRST_SOURCE + k) for k in range(max(1, math.ceil(count / PORTS_PER_SOURCE)))]
    return [addresses[i % len(addresses)] for i in range(count)]


def bridge_connection_limit(endpoints: Endpoints) -> int | None:
    """How many connections a local bridge process can hold: its open-files soft limit
    (RLIMIT_NOFILE, one file per connection) less its own files; None when not known."""
    pid = endpoints.pids.get("bridge")
    if pid is None:
        return None
    try:
        soft, _hard = psutil.Process(pid).rlimit(psutil.RLIMIT_NOFILE)
    except (psutil.Error, AttributeError):
        return None
    return None if soft < 0 else soft - RESERVED_FILES


def run(endpoints: Endpoints, steps: tuple[int, ...], workers: int,
        compression: str | None = None) -> dict[str, Any]:
    """Grow to each step in turn; returns the per-step table. Steps the bridge process cannot
    hold (its open-files limit) are not attempted, and the result says so: past the limit its
    accepts fail and the clients would only wait out their timeouts."""
    limit = bridge_connection_limit(endpoints)
    skipped = tuple(s for s in steps if limit is not None and s > limit)
    steps = tuple(s for s in steps if s not in skipped)
    if not steps:
        raise RuntimeError(f"every step is above the {limit} connections the bridge's open-files "
                           "limit (RLIMIT_NOFILE) allows")
    largest = max(steps)
    run_id = uuid.uuid4().hex[:6]
    urls = [
        ws_url(endpoints.bridge_ws, t)
        for t in client_tokens(endpoints.jwt_secret, f"idle-{run_id}", largest)
    ]
    sources = client_sources(endpoints.bridge_ws, largest)
    count = max(1, min(workers, largest))
    pool = WorkerPool.start(
        capacity_worker,
        [CapacityJob(i, urls[i::count], OPEN_TIMEOUT_S, compression, sources[i::count])
         for i in range(count)],
    )
    sampler = (
        ProcessSampler({"bridge": endpoints.pids["bridge"]}) if "bridge" in endpoints.pids else None
    )
    metrics_url = f"{endpoints.bridge_http}/metrics" if endpoints.bridge_http else None
    rss0 = _bridge_rss(sampler, metrics_url)
    kernel0 = KernelSockets.read()
    rows: list[dict[str, Any]] = []
    try:
        for step in sorted(steps):
            shares = [len(range(i, step, count)) for i in range(count)]
            for ctrl, share in zip(pool.ctrls, shares, strict=True):
                ctrl.put({"grow": share})
            reports = pool.gather("grown", timeout=STEP_TIMEOUT_S)
            time.sleep(SETTLE_S)
            row = _row(step, reports, _bridge_rss(sampler, metrics_url), rss0, metrics_url)
            kernel = KernelSockets.read()
            if kernel is not None and kernel0 is not None:
                row["kernel"] = kernel.growth(kernel0)
            rows.append(row)
        pool.broadcast(None)
        pool.gather("closed", timeout=300)
    finally:
        pool.broadcast(None)
        pool.close()
    return {"baseline_rss_mib": None if rss0 is None else round(rss0, 1), "compression": compression,
            "client_sources": sorted({s for s in sources if s is not None}),
            "open_seconds": round(sum(r["connect_seconds"] for r in rows), 1),
            "steps": rows,
            "not_attempted": None if not skipped else {
                "steps": list(skipped),
                "why": f"the bridge process can hold {limit} connections: its open-files limit "
                       "(RLIMIT_NOFILE) less its own files, and the harness may not raise it"}}


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
