"""Sampling profiles of the server processes during a run (py-spy), reduced to a table.

py-spy attaches from outside (no change to the servers, little overhead at 100 Hz) and writes
collapsed stacks ("frame;frame;frame count" per line). The table ranks functions by self time
(where the CPU actually went) and by inclusive time (what it was for), which is the evidence
the owners of the hot path act on. The raw files stay beside the results for flame graphs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAMPLE_RATE_HZ = 100
TOP = 20
_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def available() -> bool:
    """True when py-spy is installed (it is in the bench extra)."""
    return shutil.which("py-spy") is not None


def _site(frame: str) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py)``: lines merged, paths shortened."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    parts = path.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{match.group('func')} ({short})"


def top_functions(collapsed: str, top: int = TOP) -> dict[str, Any]:
    """Self and inclusive sample shares per function from collapsed stacks."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_site(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for site in set(frames):
            inclusive[site] += count

    def table(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": name, "pct": round(100.0 * n / total, 1)}
            for name, n in counter.most_common(top)
        ]

    return {
        "samples": total,
        "self": table(own) if total else [],
        "inclusive": table(inclusive) if total else [],
    }


@dataclass
class Profiler:
    """py-spy recorders attached to named pids for ``duration_s``."""

    pids: dict[str, int]
    duration_s: float
    out_dir: Path
    label: str
    _procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = field(default_factory=dict)

    def start(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            path = self.out_dir / f"{self.label}-{name}.collapsed.txt"
            argv = [
                "py-spy",
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, int(self.duration_s))),
                "--rate",
                str(SAMPLE_RATE_HZ),
                "--format",
                "raw",
                "--output",
                str(path),
                "--nonblocking",
            ]
            self._procs[name] = (
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
                path,
            )

    def finish(self) -> dict[str, Any]:
        """Wait for the recorders and summarise each profile."""
        summary: dict[str, Any] = {}
        for name, (proc, path) in self._procs.items():
            try:
                proc.wait(timeout=self.duration_s + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            if path.exists():
                summary[name] = {"file": path.name, **top_functions(path.read_text())}
            else:
                summary[name] = {"error": f"py-spy exited {proc.returncode} without a profile"}
        return summary
