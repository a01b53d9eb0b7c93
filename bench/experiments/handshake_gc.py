"""Where the slowest connects under a handshake crowd go: the bridge's garbage collections.

    python -m bench.experiments.handshake_gc [--sockets 2000] [--connects 60]

``python -m bench.handshakes`` sees most connects take as long with 2,000 sockets held in
their handshake as without, and one or two take 10-30 times longer. This runs a bridge in this
process (``--auth none``, no cache service: the welcome needs none) with ``gc.callbacks``
timing every collection, the same crowd from another process (bench/handshakes.py), and a
connect every 0.25 s; it prints the collections over 5 ms and the connects over 20 ms, both
in seconds since the start, so the two can be lined up, and the tracked objects one pending
handshake holds (what a full collection walks). Loopback only, bounded by ``--connects``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from typing import Any

from websockets.asyncio.client import connect

from bench.handshakes import MAX_CONNECTS, MAX_SOCKETS, CrowdJob, crowd_worker
from bench.workers import WorkerPool
from bridge.app import BridgeApp
from bridge.config import BridgeConfig

SLOW_GC_S = 0.005
SLOW_CONNECT_S = 0.020


class GcTimer:
    """Every collection longer than ``SLOW_GC_S``: (seconds since start, generation, ms)."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.began = 0.0
        self.slow: list[tuple[float, int, float]] = []

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self.began = now
        elif now - self.began > SLOW_GC_S:
            self.slow.append((round(now - self.started, 2), info["generation"],
                              round((now - self.began) * 1000, 1)))


async def run(sockets: int, connects: int) -> None:
    app = BridgeApp(BridgeConfig(grpc_target="127.0.0.1:1", host="127.0.0.1", port=0, auth="none"))
    await app.start()
    gc.collect()
    gc.freeze()   # as bridge/__main__.py does once started
    before = len(gc.get_objects())
    started = time.perf_counter()
    timer = GcTimer(started)
    gc.callbacks.append(timer)
    pool = WorkerPool.start(crowd_worker, [CrowdJob("127.0.0.1", app.port, sockets, 0.5, 1.0, 300)])
    try:
        await asyncio.to_thread(pool.gather, "ready", 70.0)
        held = (len(gc.get_objects()) - before) / max(1, app.handshakes.guard.in_progress)
        slow = []
        for _ in range(connects):
            began = time.perf_counter()
            async with connect(f"ws://127.0.0.1:{app.port}/ws", open_timeout=10) as ws:
                await ws.recv()
            took = time.perf_counter() - began
            if took > SLOW_CONNECT_S:
                slow.append((round(began - started, 2), round(took * 1000, 1)))
            await asyncio.sleep(0.25)   # the probe's pace
        pool.broadcast("stop")
        await asyncio.to_thread(pool.gather, "result", 60.0)
    finally:
        gc.callbacks.remove(timer)
        pool.close()
        await app.close()
    print(f"tracked objects per pending handshake: {held:.0f}")
    print(f"connects over {SLOW_CONNECT_S * 1000:g} ms (s, ms): {slow}")
    print(f"collections over {SLOW_GC_S * 1000:g} ms (s, generation, ms): {timer.slow}")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.experiments.handshake_gc",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=2000,
                        help=f"crowd size, 1..{MAX_SOCKETS}")
    parser.add_argument("--connects", type=int, default=60,
                        help=f"probe connects, 1..{MAX_CONNECTS}")
    args = parser.parse_args()
    if not (0 < args.sockets <= MAX_SOCKETS and 0 < args.connects <= MAX_CONNECTS):
        parser.error(f"--sockets must be 1..{MAX_SOCKETS} and --connects 1..{MAX_CONNECTS}")
    asyncio.run(run(args.sockets, args.connects))


if __name__ == "__main__":
    main()
