"""Redis servers the tests can stop, kill, pause and restart on the same host port.

Two backends with one interface, chosen by ``REDIS_BACKEND`` (set by scripts/test_env.sh):

- ``docker``: a testcontainers container from ``REDIS_IMAGE``, its port bound to a fixed host
  port so a restart keeps the URL; ``pause`` is ``docker pause`` (a hang, not a refusal).
- ``process``: a ``redis-server`` child process; ``pause`` is SIGSTOP.

Both run with an append-only file so a restart keeps the data, as a production Redis would.
"""

from __future__ import annotations

import os
from typing import Protocol

from devstack.ports import free_port
from devstack.probes import redis_loaded
from devstack.process import wait_ready
from devstack.redis import ProcessRedis, redis_args

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
    """Block until Redis at ``host:port`` answers PING and has loaded its data."""
    wait_ready(f"Redis at {host}:{port}", lambda: redis_loaded(f"redis://{host}:{port}/0"), timeout)


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
