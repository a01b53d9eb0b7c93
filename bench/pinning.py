"""One core for the servers, the other for the load generator (issue 17 part 4).

``--pin-servers`` measures what one server core carries: Redis, the cache service and the
bridge (every thread of each: gRPC's polling threads too) are bound to CPU 0, and this process,
with every worker and publisher process it starts afterwards, to the other CPUs. The per-process
CPU figures of each scenario then add up to at most one core for the servers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

SERVER_CPU = 0


def _threads(pid: int) -> list[int]:
    """Every thread of ``pid`` (affinity is per thread; a process's later threads inherit)."""
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except FileNotFoundError:
        return []


def pin_servers(pids: Iterable[int]) -> dict[str, list[int]]:
    """Bind the servers' threads to :data:`SERVER_CPU` and this process to the rest; what was
    bound where. Needs at least two CPUs (ValueError otherwise, said in one line)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2 or SERVER_CPU not in cpus:
        raise ValueError(f"--pin-servers needs CPU {SERVER_CPU} and another; this process may use {cpus}")
    rest = {cpu for cpu in cpus if cpu != SERVER_CPU}
    for pid in pids:
        for tid in _threads(pid):
            os.sched_setaffinity(tid, {SERVER_CPU})
    os.sched_setaffinity(0, rest)
    return {"servers": [SERVER_CPU], "load_generator": sorted(rest)}

