"""Redis servers the tests can stop, kill, pause and restart on the same host port.

Two backends with one interface, chosen by ``REDIS_BACKEND`` (set by scripts/test_env.sh):

- ``docker``: a testcontainers container from ``REDIS_IMAGE``, its port bound to a fixed host
  port so a restart keeps the URL; ``pause`` is ``docker pause`` (a hang, not a refusal).
- ``process``: a ``redis-server`` child process; ``pause`` is SIGSTOP.

Both run with an append-only file so a restart keeps the data, as a production Redis would.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from typing import Protocol

import redis

from tests.infra.eventually import eventually_sync
from tests.infra.ports import free_port

DEFAULT_IMAGE = "redis:7-alpine"
READY_TIMEOUT_S = 30.0


def backend() -> str:
    """The backend in force: ``docker`` or ``process`` (``REDIS_BACKEND``, default ``docker``)."""
    return os.environ.get("REDIS_BACKEND", "docker")


class RedisServer(Protocol):
    """A Redis the test controls. ``url`` stays the same across stop/start/restart."""

    host: str
    port: int

    @property
    def url(self) -> str: ...
    @property
    def peer_address(self) -> tuple[str, int]: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...
    def restart(self) -> None: ...
    def pause(self) -> None: ...
    def unpause(self) -> None: ...
    def close(self) -> None: ...


def wait_until_ready(host: str, port: int, timeout: float = READY_TIMEOUT_S) -> None:
    """Block until Redis answers PING and has loaded its data, or raise TimeoutError."""
    def loaded() -> bool:
        client = redis.Redis(host=host, port=port, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping()) and client.info("persistence").get("loading") == 0
        finally:
            client.close()

    eventually_sync(loaded, timeout, interval=0.05, what=f"Redis at {host}:{port} ready",
                    ignore=(redis.RedisError, OSError))


def redis_args(port: int, data_dir: str, fsync: str) -> list[str]:
    """Command-line arguments shared by both backends."""
    return [
        "--port", str(port), "--bind", "0.0.0.0", "--protected-mode", "no",
        "--dir", data_dir, "--appendonly", "yes", "--appendfsync", fsync, "--save", "",
    ]


class ProcessRedis:
    """``redis-server`` as a child process on a fixed loopback port."""

    def __init__(self, fsync: str = "always", extra_args: list[str] | None = None) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
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
        wait_until_ready(self.host, self.port)

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


class ContainerRedis:
    """A Redis container (testcontainers) whose port is bound to a fixed host port."""

    def __init__(self, fsync: str = "always", extra_args: list[str] | None = None) -> None:
        from testcontainers.core.container import DockerContainer

        self.host = "127.0.0.1"
        self.port = free_port()
        image = os.environ.get("REDIS_IMAGE", DEFAULT_IMAGE)
        command = ["redis-server", *redis_args(6379, "/data", fsync), *(extra_args or [])]
        self.container = DockerContainer(image).with_bind_ports(6379, self.port).with_command(command)
        self.container.start()
        wait_until_ready(self.host, self.port)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def peer_address(self) -> tuple[str, int]:
        """Where other Redis containers (a replica, a sentinel) reach this one: its address on
        Docker's bridge network (reachable from the host too), read anew since a restart may
        change it. The host-mapped port is no use to them: their 127.0.0.1 is their own."""
        self._docker.reload()
        return (self._docker.attrs["NetworkSettings"]["IPAddress"], 6379)

    @property
    def _docker(self):  # type: ignore[no-untyped-def]
        return self.container.get_wrapped_container()

    def start(self) -> None:
        self._docker.start()
        wait_until_ready(self.host, self.port)

    def stop(self) -> None:
        self._docker.stop(timeout=10)

    def kill(self) -> None:
        self._docker.kill()
        self._docker.wait(timeout=15)

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        self._docker.pause()

    def unpause(self) -> None:
        self._docker.unpause()

    def close(self) -> None:
        self.container.stop()


def start_redis(fsync: str = "always", extra_args: list[str] | None = None) -> RedisServer:
    """Start a Redis on the backend in force (never silently skipped: failures raise)."""
    if backend() == "process":
        return ProcessRedis(fsync, extra_args)
    return ContainerRedis(fsync, extra_args)
