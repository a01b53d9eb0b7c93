"""Worker processes for the load clients, and the plumbing to start and hear from them.

One Python process cannot read a million updates a second, so clients are spread over
spawned processes, each running its own event loop (uvloop when installed). A worker gets a
picklable job, talks to the coordinator over two queues (``ctrl`` in, ``results`` out) and
always ends: every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing as mp
import queue
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

_CTX = mp.get_context("spawn")


def run_loop(main: Coroutine[Any, Any, Any]) -> Any:
    """Run ``main`` on uvloop when available (cheaper per frame), else on asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(main)
    return uvloop.run(main)


async def next_command(ctrl: Any, timeout: float) -> Any:
    """The next message from the coordinator, or None after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(None, ctrl.get, True, timeout)
    except queue.Empty:
        return None


@dataclass
class WorkerPool:
    """Started worker processes with one control queue each and a shared result queue."""

    procs: list[Any]
    ctrls: list[Any]
    results: Any

    @classmethod
    def start(cls, target: Callable[..., None], jobs: list[Any]) -> WorkerPool:
        """Spawn one process per job running ``target(job, ctrl, results)``."""
        results = _CTX.Queue()
        ctrls = [_CTX.Queue() for _ in jobs]
        procs = [
            _CTX.Process(target=_frozen_main, args=(target, job, ctrl, results), daemon=True)
            for job, ctrl in zip(jobs, ctrls, strict=True)
        ]
        for proc in procs:
            proc.start()
        return cls(procs, ctrls, results)

    @property
    def pids(self) -> dict[str, int]:
        return {f"client_worker_{i}": p.pid for i, p in enumerate(self.procs) if p.pid}

    def broadcast(self, message: Any) -> None:
        """Send the same command to every worker."""
        for ctrl in self.ctrls:
            ctrl.put(message)

    def gather(self, kind: str, timeout: float) -> list[dict[str, Any]]:
        """One ``kind`` message from each worker; raises TimeoutError naming who is missing."""
        deadline = time.monotonic() + timeout
        got: list[dict[str, Any]] = []
        while len(got) < len(self.procs):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"{len(self.procs) - len(got)} worker(s) sent no {kind!r} in {timeout:.0f}s"
                )
            try:
                message = self.results.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                if not any(p.is_alive() for p in self.procs):
                    raise RuntimeError(f"every worker exited before sending {kind!r}") from None
                continue
            if message.get("kind") == "crash":
                raise RuntimeError(
                    f"worker {message.get('worker')} crashed: {message.get('error')}"
                )
            if message.get("kind") == kind:
                got.append(message)
        return got

    def close(self) -> None:
        """Wait briefly for the workers to exit, then terminate the stragglers."""
        for proc in self.procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)


def crash_report(worker: int, exc: BaseException) -> dict[str, Any]:
    """The message a worker sends instead of hanging when it fails."""
    return {"kind": "crash", "worker": worker, "error": f"{type(exc).__name__}: {exc}"}


def _frozen_main(target: Callable[..., None], *args: Any) -> None:
    """Every helper process's entry: ``gc.freeze()``, then ``target(*args)``.

    A full collection had to walk every object the imports made: it paused a client worker
    30-54 ms and the publisher 28 ms (measured with ``gc.callbacks``), which the probes then
    recorded as latency the servers never caused. Frozen objects are skipped by collections.
    """
    gc.freeze()
    target(*args)


def run_worker(worker: int, main: Coroutine[Any, Any, Any], results: Any) -> None:
    """A worker process's body: run ``main``; any failure goes to the coordinator as a crash
    report (which :meth:`WorkerPool.gather` raises) instead of a silent exit it would wait on.
    """
    try:
        run_loop(main)
    except BaseException as exc:  # noqa: BLE001 - forwarded to the coordinator
        results.put(crash_report(worker, exc))


def start_process(target: Callable[..., None], *args: Any) -> Any:
    """Spawn one helper process (the publisher) running ``target(*args)``."""
    proc = _CTX.Process(target=_frozen_main, args=(target, *args), daemon=True)
    proc.start()
    return proc


def new_queue() -> Any:
    return _CTX.Queue()
