"""A Redis Sentinel topology the tests can fail over: one primary, one replica, three sentinels.

Two backends with one interface, chosen like tests/infra/redis_servers.py (``REDIS_BACKEND``):

- ``docker``: every node is a container from ``REDIS_IMAGE`` on a Docker network of its own, on a
  fixed address (a random /24 subnet, static IPs), so a killed node restarts on the same address
  and the sentinels still know it. Container IPs are reachable from the host, so the addresses the
  sentinels hand out work for processes on the host.
- ``process``: ``redis-server`` and ``redis-sentinel`` child processes on loopback ports.

``sentinel_url`` is what ``--redis-url`` takes (``redis+sentinel://h:p,h:p,h:p/mymaster``).
``kill_primary()`` kills whichever node the sentinels call primary now; ``wait_for_promotion()``
waits until they agree on another one that really is a primary; ``restart_killed()`` brings the
killed node back as a replica, so a test can fail over again. Nodes are started without
``--replicaof`` and pointed at the primary at run time, like a Redis pod whose start script asks
the sentinels: a node restarted with a fixed ``--replicaof`` could sync from a stale peer.

Timings are short (``down-after-milliseconds`` 1000, ``failover-timeout`` 3000) so a failover
completes in a few seconds. Waits are long (90 s) on purpose: a sentinel that is not scheduled
for 2 s (an overloaded machine) enters TILT mode and does nothing for 30 s.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import redis
from docker.errors import DockerException

from tests.infra.eventually import eventually_sync
from devstack.ports import free_port
from tests.infra.redis_servers import (
    DEFAULT_IMAGE,
    ProcessRedis,
    RedisServer,
    backend,
    redis_args,
    wait_until_ready,
)

MASTER_NAME = "mymaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
QUORUM = 2
SENTINELS = 3
WAIT_S = 90.0   # rides out a TILT period (30 s) on a starved machine

Address = tuple[str, int]


def sentinel_config(master: Address, port: int) -> str:
    """The sentinel.conf every sentinel starts from (sentinels rewrite it as they learn)."""
    host, master_port = master
    return "\n".join([
        f"port {port}",
        "protected-mode no",
        f"sentinel monitor {MASTER_NAME} {host} {master_port} {QUORUM}",
        f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
        f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {MASTER_NAME} 1",
        "",
    ])


def _role(address: Address) -> str | None:
    """``master``/``slave`` as the node itself reports it, None when it does not answer."""
    client = redis.Redis(host=address[0], port=address[1], socket_timeout=1, socket_connect_timeout=1)
    try:
        return str(client.info("replication").get("role"))
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def _pairs(flat: list[bytes]) -> dict[str, str]:
    """A sentinel reply's flat ``[key, value, ...]`` list as a dict of strings."""
    text = [item.decode() if isinstance(item, bytes) else str(item) for item in flat]
    return dict(zip(text[::2], text[1::2]))


def _replicate(node: Address, primary: Address) -> None:
    """Make ``node`` a replica of ``primary`` (what a Redis pod's start script does)."""
    client = redis.Redis(*node, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.execute_command("REPLICAOF", primary[0], str(primary[1]))
    finally:
        client.close()


def _wait_ping(address: Address, timeout: float = WAIT_S) -> None:
    """Block until the node answers PING (sentinels have no persistence section to check)."""

    def pong() -> bool:
        client = redis.Redis(*address, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    eventually_sync(pong, timeout, what=f"PING from {address}")


class Node(Protocol):
    """One redis-server or redis-sentinel the topology controls."""

    @property
    def address(self) -> Address: ...
    def kill(self) -> None: ...
    def start(self) -> None: ...
    def pause(self) -> None: ...
    def unpause(self) -> None: ...
    def log_tail(self, lines: int = 12) -> str: ...
    def close(self) -> None: ...


# ------------------------------------------------------------------------------ process backend


class ProcessNode(ProcessRedis):
    """A redis-server (or, with ``sentinel_conf``, a redis-sentinel) child process on loopback.

    Stop, kill, pause and close are ProcessRedis's; this adds the sentinel mode and a log file.
    """

    def __init__(self, sentinel_conf: str | None = None) -> None:
        self._sentinel_conf = sentinel_conf
        super().__init__(fsync="always")

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    def _args(self) -> list[str]:
        if self._sentinel_conf is None:
            binary = shutil.which("redis-server") or "redis-server"
            return [binary, *redis_args(self.port, self._dir, self._fsync)]
        conf = os.path.join(self._dir, "sentinel.conf")
        if not os.path.exists(conf):
            with open(conf, "w", encoding="utf-8") as fh:
                fh.write(self._sentinel_conf.replace("port 26379", f"port {self.port}"))
        binary = shutil.which("redis-sentinel") or "redis-sentinel"
        return [binary, conf, "--bind", "127.0.0.1", "--dir", self._dir]

    def log_tail(self, lines: int = 12) -> str:
        try:
            with open(os.path.join(self._dir, "node.log"), encoding="utf-8", errors="replace") as fh:
                return "\n".join(fh.read().splitlines()[-lines:])
        except OSError:
            return ""

    def start(self) -> None:
        with open(os.path.join(self._dir, "node.log"), "ab") as log:
            self._proc = subprocess.Popen(self._args(), stdout=log, stderr=subprocess.STDOUT)
        if self._sentinel_conf is None:
            wait_until_ready(*self.address)
        else:
            _wait_ping(self.address)


# ------------------------------------------------------------------------------- docker backend


class DockerNetwork:
    """A user-defined bridge network on a random /24, so nodes can keep fixed addresses."""

    def __init__(self) -> None:
        from docker.types import IPAMConfig, IPAMPool
        from testcontainers.core.docker_client import DockerClient

        self.client = DockerClient().client
        last_error: Exception | None = None
        for _ in range(20):
            prefix = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
            ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=f"{prefix}.0/24")])
            name = f"marketbridge-sentinel-{os.getpid()}-{random.randint(0, 1 << 30)}"
            try:
                self.network = self.client.networks.create(name, driver="bridge", ipam=ipam)
            except DockerException as exc:  # overlapping pool: another test run holds it
                last_error = exc
                continue
            self.prefix = prefix
            self._next = 10
            return
        raise RuntimeError(f"could not create a Docker network for Sentinel: {last_error}")

    def next_ip(self) -> str:
        self._next += 1
        return f"{self.prefix}.{self._next}"

    def close(self) -> None:
        self.network.remove()


class ContainerNode:
    """A container on ``network`` with a static IP that survives kill/start."""

    def __init__(self, network: DockerNetwork, command: list[str], port: int, sentinel: bool = False) -> None:
        self._sentinel = sentinel
        image = os.environ.get("REDIS_IMAGE", DEFAULT_IMAGE)
        self.ip = network.next_ip()
        self.port = port
        client = network.client
        self.container = client.containers.create(image, command=command, detach=True)
        client.networks.get("bridge").disconnect(self.container)
        network.network.connect(self.container, ipv4_address=self.ip)
        self.start()

    @property
    def address(self) -> Address:
        return (self.ip, self.port)

    def start(self) -> None:
        self.container.start()
        if self._sentinel:
            _wait_ping(self.address)
        else:
            wait_until_ready(*self.address)

    def kill(self) -> None:
        self.container.kill()
        self.container.wait(timeout=15)

    def log_tail(self, lines: int = 12) -> str:
        try:
            return self.container.logs(tail=lines).decode(errors="replace")
        except DockerException:  # the container may be gone
            return ""

    def pause(self) -> None:
        self.container.pause()

    def unpause(self) -> None:
        self.container.unpause()

    def close(self) -> None:
        self.container.remove(force=True)


def container_sentinel_command(conf: str) -> list[str]:
    """Write the config inside the container (sentinels need a writable file), then exec."""
    return ["sh", "-c", f"printf '%s' '{conf}' > /tmp/sentinel.conf && exec redis-sentinel /tmp/sentinel.conf"]


# ------------------------------------------------------------------------------------ topology


@dataclass
class SentinelTopology:
    """Primary + replica + three sentinels, on either backend."""

    redis_nodes: list[Node]
    sentinels: list[Node]
    network: DockerNetwork | None = None
    killed: Node | None = field(default=None)

    @property
    def sentinel_url(self) -> str:
        hosts = ",".join(f"{h}:{p}" for h, p in (s.address for s in self.sentinels))
        return f"redis+sentinel://{hosts}/{MASTER_NAME}"

    def sentinel_views(self) -> list[Address | None]:
        """What each sentinel calls the primary now (None when it does not answer)."""
        views: list[Address | None] = []
        for sentinel in self.sentinels:
            client = redis.Redis(*sentinel.address, socket_timeout=1, socket_connect_timeout=1)
            try:
                host, port = client.execute_command("SENTINEL", "get-master-addr-by-name", MASTER_NAME)
                views.append((host.decode(), int(port)))
            except (redis.RedisError, OSError, TypeError, ValueError):
                views.append(None)
            finally:
                client.close()
        return views

    def primary(self) -> Address:
        """The primary the sentinels agree on (majority), checked to really be a primary."""
        views = [v for v in self.sentinel_views() if v is not None]
        for view in views:
            if views.count(view) >= QUORUM and _role(view) == "master":
                return view
        raise RuntimeError(f"sentinels do not agree on a primary: {views}")

    def node_at(self, address: Address) -> Node:
        for node in self.redis_nodes:
            if node.address == address:
                return node
        raise KeyError(address)

    def kill_primary(self) -> Address:
        """SIGKILL the current primary (no graceful shutdown) and return its address."""
        node = self.node_at(self.primary())
        node.kill()
        self.killed = node
        return node.address

    def wait_for_promotion(self, timeout: float = WAIT_S) -> Address:
        """Wait until every sentinel names a new, live primary; return its address."""
        assert self.killed is not None, "kill_primary() first"
        old = self.killed.address

        def promoted() -> bool:
            views = self.sentinel_views()
            return all(v is not None and v != old for v in views) and _role(views[0]) == "master"  # type: ignore[arg-type]

        try:
            eventually_sync(promoted, timeout, what="promotion of the replica")
        except TimeoutError as exc:
            logs = "\n".join(f"--- sentinel {s.address}\n{s.log_tail()}" for s in self.sentinels)
            raise TimeoutError(f"{exc}; {self.describe()}\n{logs}") from None
        return self.primary()

    def restart_primary(self, timeout: float = WAIT_S) -> None:
        """Kill the primary and start it again at once (the sentinels may or may not fail over)."""
        node = self.node_at(self.primary())
        node.kill()
        node.start()
        self.settle(timeout)

    def pause_primary(self) -> Node:
        """Freeze the primary (a hang, not a crash); ``unpause`` the returned node later."""
        node = self.node_at(self.primary())
        node.pause()
        return node

    def settle(self, timeout: float = WAIT_S) -> Address:
        """Wait until the sentinels agree on a live primary and every other node replicates it.

        A node that came back calling itself primary is pointed at the real one, as a Redis
        pod's start script does; then wait for an online replica (ready to fail over).
        """
        deadline = time.monotonic() + timeout
        try:
            eventually_sync(lambda: self._calm() is not None, timeout, what="sentinels agreeing on a primary")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; {self.describe()}") from None
        primary = self._calm() or self.primary()
        for node in self.redis_nodes:
            if node.address != primary and _role(node.address) == "master":
                _replicate(node.address, primary)
        self.wait_for_replica(max(1.0, deadline - time.monotonic()))
        return primary

    def describe(self) -> str:
        """The sentinels' and nodes' view of the topology, for failure messages."""
        parts = []
        for sentinel in self.sentinels:
            client = redis.Redis(*sentinel.address, socket_timeout=1, socket_connect_timeout=1)
            try:
                master = _pairs(client.execute_command("SENTINEL", "master", MASTER_NAME))
                replicas = [_pairs(r) for r in client.execute_command("SENTINEL", "replicas", MASTER_NAME)]
                parts.append(f"sentinel {sentinel.address}: master {master.get('ip')}:{master.get('port')} "
                             f"flags={master.get('flags')} state={master.get('failover-state')} replicas="
                             + str([(r.get("ip"), r.get("port"), r.get("flags")) for r in replicas]))
            except (redis.RedisError, OSError) as exc:
                parts.append(f"sentinel {sentinel.address}: {exc}")
            finally:
                client.close()
        for node in self.redis_nodes:
            parts.append(f"node {node.address}: role {_role(node.address)}")
        return "; ".join(parts)

    def _calm(self) -> Address | None:
        """The primary, if every sentinel names the same live one and none is failing over."""
        views = self.sentinel_views()
        if views[0] is None or any(v != views[0] for v in views) or _role(views[0]) != "master":
            return None
        for sentinel in self.sentinels:
            client = redis.Redis(*sentinel.address, socket_timeout=1, socket_connect_timeout=1)
            try:
                flags = _pairs(client.execute_command("SENTINEL", "master", MASTER_NAME)).get("flags", "")
            except (redis.RedisError, OSError):
                return None
            finally:
                client.close()
            if flags != "master":   # s_down, o_down, failover_in_progress, ...
                return None
        return views[0]

    def restart_killed(self, timeout: float = WAIT_S) -> None:
        """Start the killed node again and wait until it is an in-sync replica of the primary."""
        assert self.killed is not None, "kill_primary() first"
        node, self.killed = self.killed, None
        node.start()
        self.settle(timeout)

    def wait_for_replica(self, timeout: float = WAIT_S) -> None:
        """Wait until the primary has one online replica the sentinels know, ready to promote."""

        def replica_ready() -> bool:
            try:
                primary = self.primary()
            except RuntimeError:
                return False
            client = redis.Redis(*primary, socket_timeout=1, socket_connect_timeout=1)
            try:
                info = client.info("replication")
            except (redis.RedisError, OSError):
                return False
            finally:
                client.close()
            online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                      and v.get("state") == "online"]
            return bool(online) and self._sentinels_see_replica(primary)

        eventually_sync(replica_ready, timeout, what="an online replica")

    def _sentinels_see_replica(self, primary: Address) -> bool:
        for sentinel in self.sentinels:
            client = redis.Redis(*sentinel.address, socket_timeout=1, socket_connect_timeout=1)
            try:
                replicas = client.execute_command("SENTINEL", "replicas", MASTER_NAME)
            except (redis.RedisError, OSError):
                return False
            finally:
                client.close()
            fields = [_pairs(r) for r in replicas]
            healthy = [r for r in fields if "s_down" not in r.get("flags", "")
                       and r.get("master-link-status") == "ok"]
            if not healthy:
                return False
        return True

    def close(self) -> None:
        close_nodes([*self.sentinels, *self.redis_nodes], self.network)


def close_nodes(nodes: Sequence[Node], network: DockerNetwork | None) -> None:
    """Remove every node (best effort: a node may already be gone), then their network."""
    for node in nodes:
        try:
            node.close()
        except (DockerException, OSError, subprocess.SubprocessError):
            pass
    if network is not None:
        network.close()


def _start_process_topology() -> SentinelTopology:
    primary = ProcessNode()
    replica = ProcessNode()
    _replicate(replica.address, primary.address)
    conf = sentinel_config(primary.address, 26379)
    sentinels: list[Node] = [ProcessNode(sentinel_conf=conf) for _ in range(SENTINELS)]
    return SentinelTopology([primary, replica], sentinels)


def _start_container_topology() -> SentinelTopology:
    network = DockerNetwork()
    nodes: list[Node] = []
    try:
        primary = ContainerNode(network, ["redis-server", *redis_args(6379, "/data", "always")], 6379)
        nodes.append(primary)
        replica = ContainerNode(network, ["redis-server", *redis_args(6379, "/data", "always")], 6379)
        nodes.append(replica)
        _replicate(replica.address, primary.address)
        command = container_sentinel_command(sentinel_config(primary.address, 26379))
        sentinels: list[Node] = [ContainerNode(network, command, 26379, sentinel=True) for _ in range(SENTINELS)]
    except BaseException:
        for node in nodes:
            node.close()
        network.close()
        raise
    return SentinelTopology(nodes[:2], sentinels, network)


class PublishedSentinel:
    """A sentinel container whose port is published on the host's loopback (no topology
    network): for tests that need the address resolution, not a failover."""

    def __init__(self, conf: str) -> None:
        from testcontainers.core.container import DockerContainer

        port = free_port()
        image = os.environ.get("REDIS_IMAGE", DEFAULT_IMAGE)
        self.container = DockerContainer(image).with_bind_ports(26379, port).with_command(
            container_sentinel_command(conf))
        self.container.start()
        self.address: Address = ("127.0.0.1", port)
        _wait_ping(self.address)

    def close(self) -> None:
        self.container.stop()


def start_lone_sentinel(primary: Address) -> PublishedSentinel | ProcessNode:
    """One sentinel watching ``primary`` (a RedisServer's ``peer_address``) on the backend in
    force; its ``address`` is reachable from the host. One sentinel never reaches the quorum
    of two, so it resolves the primary and never fails over."""
    conf = sentinel_config(primary, 26379)
    if backend() == "process":
        return ProcessNode(sentinel_conf=conf)
    return PublishedSentinel(conf)


def replicate_and_wait(replica: RedisServer, primary: RedisServer, timeout: float = 30.0) -> None:
    """Make ``replica`` replicate ``primary`` and wait until its link is up (either backend)."""
    _replicate((replica.host, replica.port), primary.peer_address)

    def linked() -> bool:
        client = redis.Redis(replica.host, replica.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            return client.info("replication").get("master_link_status") == "up"
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    eventually_sync(linked, timeout, what="the replica's link to its primary")


def start_sentinel_topology(timeout: float = WAIT_S) -> SentinelTopology:
    """Start primary, replica and three sentinels; return once a failover is possible."""
    topology = _start_process_topology() if backend() == "process" else _start_container_topology()
    try:
        topology.wait_for_replica(timeout)
    except BaseException:
        topology.close()
        raise
    return topology
