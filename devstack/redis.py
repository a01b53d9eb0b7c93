"""``redis-server`` as a child process on a loopback port: the benchmarks' Redis, and the tests'
when no container engine can start (tests/infra/redis_servers.py chooses)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile

from devstack.ports import free_port
from devstack.probes import redis_loaded
from devstack.process import wait_ready

READY_TIMEOUT_S = 30.0


def redis_args(port: int, data_dir: str, fsync: str) -> list[str]:
    """Arguments of every local Redis: reachable by replicas and sentinels, with an append-only
    file (so a restart keeps the data, as a production Redis would) and no RDB snapshots."""
    return [
        "--port", str(port), "--bind", "0.0.0.0", "--protected-mode", "no",
        "--dir", data_dir, "--appendonly", "yes", "--appendfsync", fsync, "--save", "",
    ]


class ProcessRedis:
    """``redis-server`` as a child process on a fixed loopback port (kept across restarts)."""

    def __init__(self, fsync: str = "always", extra_args: list[str] | None = None,
                 port: int | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._dir = tempfile.mkdtemp(prefix="redis-test-")
        self._fsync = fsync
        self._extra = extra_args or []
        self._proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def peer_address(self) -> tuple[str, int]:
        """Where other Redis nodes (a replica, a sentinel) reach this one: loopback."""
        return (self.host, self.port)

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: apt-get install redis-server")
        args = [binary, *redis_args(self.port, self._dir, self._fsync), *self._extra]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ready(f"Redis at {self.host}:{self.port}", lambda: redis_loaded(self.url), READY_TIMEOUT_S)

    def _signal_and_wait(self, sig: signal.Signals) -> None:
        if self._proc is None:
            return
        self._proc.send_signal(signal.SIGCONT)
        self._proc.send_signal(sig)
        self._proc.wait(timeout=15)
        self._proc = None

    def stop(self) -> None:
        self._signal_and_wait(signal.SIGTERM)

    def kill(self) -> None:
        self._signal_and_wait(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def unpause(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)
