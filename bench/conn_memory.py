"""Where a bridge's memory per idle connection goes: ``python -m bench.conn_memory``.

The capacity scenario (bench/capacity.py) says how much an idle connection costs; this says
what it is made of. A bridge runs in this process under ``tracemalloc``, the capacity
scenario's clients (worker processes) open N idle authenticated connections, then N more, and
the two snapshots are compared: growth divided by N, by allocating line (and by object type,
from the garbage collector's view), so what happens once (the first connection's caches) drops
out. No cache service is needed: an idle connection never calls it.

It is a study tool (tracemalloc slows the bridge and adds its own bytes per allocation), not a
figure for docs/benchmarks.md's tables; the RSS figures come from the capacity scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tracemalloc
import uuid
from collections import Counter
from collections.abc import Sequence

from bench.capacity import CapacityJob, capacity_worker, client_sources
from devstack.ports import free_port
from bench.tokens import client_tokens
from bench.workers import WorkerPool
from bench.wsclient import ws_url
from bridge.app import BridgeApp
from bridge.config import load_config

SECRET = "conn-memory-study-secret-not-for-production"
FRAMES = 12
STEP_TIMEOUT_S = 300.0


def _types() -> Counter[str]:
    gc.collect()
    return Counter(type(o).__qualname__ for o in gc.get_objects())


async def _grow(pool: WorkerPool, share: int) -> int:
    """Ask every worker for ``share`` connections in all; the number open."""
    for ctrl in pool.ctrls:
        ctrl.put({"grow": share})
    reports = await asyncio.to_thread(pool.gather, "grown", STEP_TIMEOUT_S)
    failures = sum(sum(r["failures"].values()) for r in reports)
    if failures:
        raise RuntimeError(f"{failures} connections failed: {reports}")
    return sum(r["open"] for r in reports)


async def study(connections: int, workers: int, top: int, compression: str | None) -> None:
    tracemalloc.start(FRAMES)
    port = free_port()
    config = load_config([], {}, host="127.0.0.1", port=port, grpc_target=f"127.0.0.1:{free_port()}",
                         jwt_secret=SECRET, auth="jwt", canary_s=0.0, log_level="WARNING",
                         max_connections=4 * connections + 100,
                         max_connections_per_user=1_000_000)
    app = BridgeApp(config)
    await app.start()
    base = f"ws://127.0.0.1:{port}/ws"
    urls = [ws_url(base, t) for t in client_tokens(SECRET, f"mem-{uuid.uuid4().hex[:6]}", 2 * connections)]
    sources = client_sources(base, len(urls))
    pool = WorkerPool.start(capacity_worker, [
        CapacityJob(i, urls[i::workers], 30.0, compression, sources[i::workers]) for i in range(workers)])
    try:
        per_worker = connections // workers
        first = await _grow(pool, per_worker)
        types0, snap0 = _types(), tracemalloc.take_snapshot()
        second = await _grow(pool, 2 * per_worker)
        types1, snap1 = _types(), tracemalloc.take_snapshot()
        added = second - first
        _print(added, snap0, snap1, types0, types1, top)
    finally:
        pool.broadcast(None)
        await asyncio.to_thread(pool.close)
        await app.close()


def _print(added: int, snap0: tracemalloc.Snapshot, snap1: tracemalloc.Snapshot,
           types0: Counter[str], types1: Counter[str], top: int) -> None:
    stats = snap1.compare_to(snap0, "lineno")
    total = sum(s.size_diff for s in stats)
    print(f"{added} connections added: traced growth {total / added:.0f} B per connection")
    print("-- by line (bytes per connection, blocks per connection)")
    for stat in stats[:top]:
        frame = stat.traceback[0]
        print(f"{stat.size_diff / added:8.0f} B {stat.count_diff / added:6.2f}  "
              f"{frame.filename.split('site-packages/')[-1]}:{frame.lineno}")
    print("-- by object type (objects per connection)")
    grown = Counter({k: types1[k] - types0.get(k, 0) for k in types1})
    for name, count in grown.most_common(top):
        print(f"{count / added:8.2f}  {name}")
    print("-- largest by traceback")
    for stat in snap1.compare_to(snap0, "traceback")[:max(3, top // 5)]:
        print(f"{stat.size_diff / added:8.0f} B per connection")
        for line in stat.traceback.format()[-8:]:
            print("    " + line)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000, help="N (then N more)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--compression", choices=("deflate",), default=None)
    args = parser.parse_args(argv)
    asyncio.run(study(args.connections, args.workers, args.top, args.compression))
    return 0


if __name__ == "__main__":
    sys.exit(main())
