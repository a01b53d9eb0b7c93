"""CPU seconds and resident memory of the server processes over a measurement window.

CPU is the (user + system) time a process spent between ``start()`` and ``stop()``; RSS is
sampled in a background thread and the peak is reported, because the end-of-run value misses
the bursts (a backlog that built up and drained). Linux /proc via psutil; local processes only.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psutil

SAMPLE_INTERVAL_S = 0.25
MIB = 1024 * 1024


@dataclass
class ProcessWindow:
    """Usage of one process over the window."""

    cpu_start: float = 0.0
    cpu_end: float = 0.0
    rss_start: int = 0
    rss_end: int = 0
    rss_peak: int = 0

    def as_dict(self, wall_s: float) -> dict[str, float]:
        cpu = max(0.0, self.cpu_end - self.cpu_start)
        return {
            "cpu_s": round(cpu, 2),
            "cpu_pct_of_one_core": round(100.0 * cpu / max(wall_s, 1e-9), 1),
            "rss_mib": round(self.rss_end / MIB, 1),
            "rss_peak_mib": round(self.rss_peak / MIB, 1),
        }


IDLE_CPU_SHARE = 0.05
IDLE_SAMPLE_S = 0.5


def wait_until_idle(pids: dict[str, int], timeout: float) -> bool:
    """Block until every process uses under 5 % of a core over half a second (or timeout)."""
    procs = []
    for pid in pids.values():
        try:
            procs.append(psutil.Process(pid))
        except psutil.Error:
            continue
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            before = [_cpu(p) for p in procs]
            time.sleep(IDLE_SAMPLE_S)
            busy = [_cpu(p) - b for p, b in zip(procs, before, strict=True)]
        except psutil.Error:
            return False
        if max(busy, default=0.0) < IDLE_CPU_SHARE * IDLE_SAMPLE_S:
            return True
    return False


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


@dataclass
class ProcessSampler:
    """Measures named pids; processes that vanish keep their last reading."""

    pids: dict[str, int]
    windows: dict[str, ProcessWindow] = field(default_factory=dict)
    _procs: dict[str, psutil.Process] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Read every process's CPU time and RSS, and begin sampling RSS peaks."""
        for name, pid in self.pids.items():
            try:
                proc = psutil.Process(pid)
                rss = proc.memory_info().rss
                self._procs[name] = proc
                self.windows[name] = ProcessWindow(
                    cpu_start=_cpu(proc), rss_start=rss, rss_peak=rss
                )
            except psutil.Error:
                continue
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self._read(final=False)

    def _read(self, final: bool) -> None:
        for name, proc in self._procs.items():
            window = self.windows[name]
            try:
                rss = proc.memory_info().rss
                window.rss_peak = max(window.rss_peak, rss)
                if final:
                    window.rss_end = rss
                    window.cpu_end = _cpu(proc)
            except psutil.Error:
                continue

    def rss(self, name: str) -> int:
        """The current RSS of one process in bytes (0 if it is gone)."""
        try:
            proc = self._procs.get(name) or psutil.Process(self.pids[name])
            return int(proc.memory_info().rss)
        except (KeyError, psutil.Error):
            return 0

    def stop(self, wall_s: float) -> dict[str, dict[str, float]]:
        """End the window and return each process's usage over it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._read(final=True)
        return {name: w.as_dict(wall_s) for name, w in self.windows.items()}
