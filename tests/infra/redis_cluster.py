"""A Redis Cluster the tests can run on and fail over: 3 masters, 3 replicas (SPEC §9.4).

Two backends with one interface, chosen like tests/infra/redis_servers.py (``REDIS_BACKEND``):

- ``docker``: six containers from ``REDIS_IMAGE`` on a Docker network of their own with fixed
  addresses (tests/infra/sentinel.py's DockerNetwork and ContainerNode; the cluster is created
  with those addresses, so that is what the nodes say about each other), which the host
  reaches: the cluster client on the host connects to the addresses the nodes hand out. A killed node restarts on the same address with its data and
  its ``nodes.conf``, so it rejoins as the replica of whoever took over.
- ``process``: six ``redis-server`` child processes on loopback ports (the loud fallback).

``url`` is what ``--redis-url`` takes. Timings are short (``cluster-node-timeout`` 2000 ms) so
a failover completes in a few seconds; waits are long (90 s) for a starved machine.
"""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis

from devstack.ports import port_is_free
from devstack.redis import ProcessRedis, redis_args
from tests.infra.eventually import eventually_sync
from tests.infra.redis_servers import backend
from tests.infra.sentinel import Address, ContainerNode, DockerNetwork, close_nodes

NODES = 6
NODE_TIMEOUT_MS = 2000
WAIT_S = 90.0


def together(items: Sequence[Any], action: Callable[[Any], None]) -> None:
    """Run ``action`` on every item at once (threads); raise the first failure after all ended.

    Why at once: nodes started one after the other give a replica a window to be voted in
    (a master back a couple of seconds before another sees that one failing)."""
    with ThreadPoolExecutor(max_workers=max(1, len(items))) as pool:
        for future in [pool.submit(action, item) for item in items]:
            future.result()


def cluster_args() -> list[str]:
    """What makes a redis-server a cluster node; ``nodes.conf`` sits in its data dir."""
    return ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            # a shard whose master and replica are both gone must not stop the other shards
            "--cluster-require-full-coverage", "no"]


def _client(address: Address) -> redis.Redis:
    return redis.Redis(*address, socket_timeout=2, socket_connect_timeout=2)


def _info(address: Address, section: str) -> dict[str, object] | None:
    """A node's INFO/CLUSTER INFO section, None when it does not answer."""
    client = _client(address)
    try:
        if section == "cluster":
            raw = client.execute_command("CLUSTER", "INFO")
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            return dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line)
        return dict(client.info(section))
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()


def cluster_port() -> int:
    """A free loopback port whose cluster bus port (+10000, so at most 55535) is free too."""
    for _ in range(100):
        port = random.randint(20000, 55535)
        if port_is_free("127.0.0.1", port) and port_is_free("127.0.0.1", port + 10000):
            return port
    raise RuntimeError("no free port pair (port, port + 10000) for a cluster node")


class _ProcessNode(ProcessRedis):
    """A cluster node as a child process on loopback (data and nodes.conf in its temp dir)."""

    def __init__(self) -> None:
        super().__init__(fsync="always", extra_args=cluster_args(), port=cluster_port())

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    def close(self) -> None:
        self.kill()


def _container_node(network: DockerNetwork) -> ContainerNode:
    return ContainerNode(network, ["redis-server", *redis_args(6379, "/data", "always"), *cluster_args()], 6379)


@dataclass
class RedisClusterNodes:
    """Six nodes made one cluster; which ones are masters changes as they fail over."""

    nodes: list[_ProcessNode] | list[ContainerNode]
    network: DockerNetwork | None = None
    killed: list[object] = field(default_factory=list)
    paused: list[object] = field(default_factory=list)

    @property
    def addresses(self) -> list[Address]:
        return [node.address for node in self.nodes]

    @property
    def url(self) -> str:
        """``redis+cluster://`` naming every node (a client needs only one that answers)."""
        return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in self.addresses)

    def client(self) -> redis.RedisCluster:
        """A synchronous cluster client, for a test's own reads (close it after use)."""
        from redis.cluster import ClusterNode

        return redis.RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in self.addresses],
                                  socket_timeout=10, socket_connect_timeout=5)

    def masters(self) -> list[Address]:
        """The nodes that call themselves master now (and answer)."""
        return [a for a in self.addresses if (_info(a, "replication") or {}).get("role") == "master"]

    def node_at(self, address: Address) -> _ProcessNode | ContainerNode:
        for node in self.nodes:
            if node.address == address:
                return node
        raise KeyError(address)

    def master_of(self, key: str) -> Address:
        """The master that serves ``key``'s slot now (asks any live node)."""
        return self._shard_of(key)[0]

    def replica_of(self, key: str) -> _ProcessNode | ContainerNode:
        """A replica of the master that serves ``key``'s slot now."""
        return self.node_at(self._shard_of(key)[1])

    def shard_of(self, key: str) -> list[Address]:
        """Every node of ``key``'s shard now: its master first, then its replicas."""
        return self._shard_of(key)

    def _shard_of(self, key: str) -> list[Address]:
        """The master, then the replicas, of ``key``'s slot, as a live node reports them."""
        for address in self.addresses:
            client = _client(address)
            try:
                slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
                for start, end, *nodes in client.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        return [(n[0].decode() if isinstance(n[0], bytes) else n[0], int(n[1])) for n in nodes]
            except (redis.RedisError, OSError):
                continue
            finally:
                client.close()
        raise RuntimeError(f"no node knows who serves {key!r}")

    def migrate_slot(self, key: str, pause_s: float = 0.0, avoid: Sequence[str] = ()) -> tuple[Address, Address]:
        """Move ``key``'s slot to another master the way ``redis-cli --cluster reshard`` does
        (IMPORTING/MIGRATING, MIGRATE each key, SETSLOT NODE on every master), ``pause_s``
        between keys so writes arrive mid-way; to a master not serving the ``avoid`` keys when
        there is one (so later tests keep them on separate shards); return (from, to)."""
        source = self.master_of(key)
        others = [m for m in self.masters() if m != source]
        taken = {self.master_of(k) for k in avoid}
        target = next((m for m in others if m not in taken), others[0])
        src, dst = _client(source), _client(target)
        try:
            slot = int(src.execute_command("CLUSTER", "KEYSLOT", key))
            source_id = src.execute_command("CLUSTER", "MYID").decode()
            target_id = dst.execute_command("CLUSTER", "MYID").decode()
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 10):
                for name in keys:
                    src.execute_command("MIGRATE", target[0], target[1], "", 0, 5000, "KEYS", name)
                    time.sleep(pause_s)   # a slow reshard: the service writes meanwhile
            for master in self.masters():
                client = _client(master)
                try:
                    client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
                finally:
                    client.close()
        finally:
            src.close()
            dst.close()
        return source, target

    def flush(self) -> None:
        """Empty every master (replicas follow)."""
        for address in self.masters():
            client = _client(address)
            try:
                client.flushall()
            finally:
                client.close()

    def kill(self, address: Address) -> None:
        """SIGKILL one node (``docker kill``; SIGKILL for a process): no graceful shutdown."""
        node = self.node_at(address)
        node.kill()
        self.killed.append(node)

    def pause(self, address: Address) -> None:
        """Freeze one node (``docker pause``; SIGSTOP for a process): a hang, not a crash."""
        node = self.node_at(address)
        node.pause()
        self.paused.append(node)

    def unpause_paused(self) -> None:
        """Thaw every node ``pause`` froze, all at once (``wait_healthy`` then waits for the cluster)."""
        nodes, self.paused = self.paused, []
        together(nodes, lambda node: node.unpause())

    def restart_killed(self, timeout: float = WAIT_S) -> None:
        """Start every killed node again, all at once, and wait until the cluster is whole
        (6 nodes, 3+3)."""
        nodes, self.killed = self.killed, []
        together(nodes, lambda node: node.start())
        self.wait_healthy(timeout)

    def wait_failed_over(self, old_master: Address, timeout: float = WAIT_S) -> None:
        """Wait until a replica took over ``old_master``'s slots and every live node says ok."""

        def taken_over() -> bool:
            masters = self.masters()
            live = [a for a in self.addresses if a != old_master]
            return (len([m for m in masters if m != old_master]) == 3
                    and all((_info(a, "cluster") or {}).get("cluster_state") == "ok" for a in live))

        eventually_sync(taken_over, timeout, what=f"a replica taking over from {old_master}")

    def wait_healthy(self, timeout: float = WAIT_S) -> None:
        """Every node answers, agrees the cluster is ok, and 3 masters each have a replica."""

        def healthy() -> bool:
            infos = [_info(a, "cluster") for a in self.addresses]
            if any(i is None or i.get("cluster_state") != "ok" or i.get("cluster_known_nodes") != str(NODES)
                   for i in infos):
                return False
            masters = self.masters()
            if len(masters) != 3:
                return False
            for master in masters:
                links = _info(master, "replication") or {}
                if not any(isinstance(v, dict) and v.get("state") == "online"
                           for k, v in links.items() if k.startswith("slave")):
                    return False
            return all(self._slots_have_replicas(a) for a in self.addresses)

        eventually_sync(healthy, timeout, what="the cluster: 6 nodes, state ok, 3 masters with a replica each, "
                                                "known to every node")

    @staticmethod
    def _slots_have_replicas(address: Address) -> bool:
        """Whether ``address`` knows a replica for every slot range (gossip has converged)."""
        client = _client(address)
        try:
            return all(len(nodes) >= 2 for _start, _end, *nodes in client.execute_command("CLUSTER", "SLOTS"))
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def close(self) -> None:
        close_nodes(self.nodes, self.network)


def _create(nodes: Sequence[_ProcessNode] | Sequence[ContainerNode]) -> None:
    """``redis-cli --cluster create ... --cluster-replicas 1``: inside the first container with
    Docker (no redis-cli needed on the host), on the host with processes."""
    hosts = [f"{h}:{p}" for h, p in (n.address for n in nodes)]
    command = ["redis-cli", "--cluster", "create", *hosts, "--cluster-replicas", "1", "--cluster-yes"]
    first = nodes[0]
    if isinstance(first, ContainerNode):
        code, output = first.container.exec_run(command)
    else:
        done = subprocess.run(command, capture_output=True, timeout=60, check=False)
        code, output = done.returncode, done.stdout + done.stderr
    if code != 0:
        raise RuntimeError(f"redis-cli --cluster create failed ({code}): {output.decode(errors='replace')[-2000:]}")


def start_redis_cluster(timeout: float = WAIT_S) -> RedisClusterNodes:
    """Start six nodes on the backend in force, make them a cluster, wait until it is healthy."""
    if backend() == "process":
        cluster = RedisClusterNodes([_ProcessNode() for _ in range(NODES)])
    else:
        network = DockerNetwork()
        cluster = RedisClusterNodes([], network)
        try:
            cluster.nodes = [_container_node(network) for _ in range(NODES)]
        except BaseException:
            cluster.close()
            raise
    try:
        _create(cluster.nodes)
        cluster.wait_healthy(timeout)
    except BaseException:
        cluster.close()
        raise
    return cluster
