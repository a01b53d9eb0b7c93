"""A measurement window over a closed-loop scenario: sample the servers while workers run.

Churn and unary both start their workers, then wait for each worker's single result; this is
the part they share: CPU and RSS of the server processes over the wait, and optionally py-spy
profiles of the bridge and the cache service for the scenario's duration.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.procstats import ProcessSampler
from bench.profiling import Profiler
from bench.stack import Endpoints
from bench.workers import WorkerPool

PROFILED = ("bridge", "cache_service")


def measure(
    endpoints: Endpoints,
    pool: WorkerPool,
    duration_s: float,
    profile_dir: Path | None = None,
    label: str = "",
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any] | None]:
    """Workers' results, server usage over the window, and the profile tables (if asked)."""
    servers = {k: v for k, v in endpoints.pids.items() if k != "baseline"}
    sampler = ProcessSampler(servers)
    profiler = None
    if profile_dir is not None:
        targets = {k: v for k, v in servers.items() if k in PROFILED}
        profiler = Profiler(targets, duration_s, profile_dir, label) if targets else None
    started = time.time()
    sampler.start()
    if profiler:
        profiler.start()
    reports = pool.gather("result", timeout=duration_s + 120)
    usage = sampler.stop(time.time() - started)
    return reports, usage, profiler.finish() if profiler else None
