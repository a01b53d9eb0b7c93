"""A local server as a child process: its log in a file, a readiness wait, a clean stop.

Used where a server must be its own process (the benchmarks measure its CPU and memory from
outside; Redis is a separate program anyway). The wait is bounded and fails with the tail of
the server's log, or with how it ended (``killed by SIGKILL``) when it died while starting.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from devstack.exits import describe_exit

REPO_ROOT = Path(__file__).resolve().parent.parent
POLL_S = 0.1


class StackError(RuntimeError):
    """A local server did not start; the message says which, why, and the tail of its log."""


class ServerProcess:
    """One server subprocess with its log file; stopped with SIGTERM, then SIGKILL.

    Secrets go in ``env``, never in ``argv``: anyone on the machine can read a command line.
    """

    def __init__(self, name: str, argv: list[str], log_dir: Path,
                 env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=dict(env) if env is not None else None,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        """Raise with the log's tail if the process already ended."""
        if self.proc.poll() is not None:
            raise StackError(f"{self.name} {describe_exit(self.proc.returncode)}: {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        if not self._log.closed:
            self._log.flush()
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def wait_ready(self, probe: Callable[[], bool], timeout: float) -> None:
        """Block until ``probe()`` is true; StackError if the process ends or time runs out."""
        wait_ready(self.name, probe, timeout, self)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM and wait (coverage and graceful drains need it), SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def wait_ready(name: str, probe: Callable[[], bool], timeout: float,
               server: ServerProcess | None = None) -> None:
    """Poll ``probe`` (it answers within about a second, devstack/probes.py) until it is true;
    StackError naming ``name`` when ``server`` ended meanwhile or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while True:
        if server is not None:
            server.check_alive()
        if probe():
            return
        if time.monotonic() >= deadline:
            tail = f": {server.log_tail()}" if server is not None else ""
            raise StackError(f"{name} not ready after {timeout:g}s{tail}")
        time.sleep(POLL_S)
