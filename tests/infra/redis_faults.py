"""Breaking the Redis under a test the same way on a single Redis and on a Redis Cluster.

A test that stops, kills, pauses or restarts Redis, or freezes a replica, asks for the keys it is
about; what it breaks then depends on the topology (tests/conftest.py's ``redis_topology``):

- ``single``: a Redis of the test's own (``fresh_redis``, or ``primary_with_replica``), never the
  session's; the keys do not matter, the whole Redis goes.
- ``cluster``: the session Redis Cluster's shards that serve the keys (``ClusterFault.shards_of``).
  ``stop``/``kill``/``pause`` take a shard's master *and* its replica, so no failover ends the
  outage before the test does (a failover is tests/resilience/test_cluster_failover.py's
  subject); ``start``/``unpause`` bring them back as they were, data included (append-only
  files). The other shards keep serving while most masters are up; keys on two of the three
  shards (orders and binance's tickers are) take two masters down, and the third, in a
  minority, refuses too, as a real cluster's would. The resilience scenarios break "Redis"
  instead: every master at once (``ClusterFault.every_master``). ``restore`` (the fixtures
  call it after the test) leaves the cluster whole again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import redis

from tests.infra.redis_cluster import RedisClusterNodes, together
from tests.infra.redis_servers import RedisServer
from tests.infra.sentinel import Address


class RedisFault(Protocol):
    """A Redis (or the shards of some keys) a test may break and bring back."""

    @property
    def url(self) -> str: ...
    def stop(self) -> None: ...
    def start(self) -> None: ...
    def kill(self) -> None: ...
    def restart(self) -> None: ...
    def pause(self) -> None: ...
    def unpause(self) -> None: ...
    def notes(self) -> dict[str, int]: ...
    def restore(self) -> None: ...


@dataclass
class OwnRedis:
    """A single Redis of the test's own: every fault hits all of it."""

    server: RedisServer

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()

    def kill(self) -> None:
        self.server.kill()

    def restart(self) -> None:
        self.server.restart()

    def pause(self) -> None:
        self.server.pause()

    def unpause(self) -> None:
        self.server.unpause()

    def notes(self) -> dict[str, int]:
        return {}

    def restore(self) -> None:
        """Nothing to do: the server is the test's own and goes with it."""


@dataclass
class ClusterFault:
    """Some nodes of the session cluster, broken and brought back together (in parallel, see
    ``redis_cluster.together``), through the cluster's own ``kill``/``pause`` so that
    ``restore`` (``restart_killed``, ``unpause_paused``) always leaves it whole. Two choices of
    nodes, for two faults:

    - ``shards_of(keys)``: the shards serving ``keys``, master *and* replica, so no failover
      ends the outage before the test does (the unit tests of an outage);
    - ``every_master()``: "Redis" restarted or frozen, as scenarios 1, 2 and 9 do to a single
      Redis: every master at once, the replicas left up. A replica is promoted only with the
      votes of a majority of masters, so none is, and each master comes back as the master of
      its slots with its data (append-only, ``fsync always``); a single master's failover is C1.
    """

    cluster: RedisClusterNodes
    nodes: list[Address]

    @classmethod
    def shards_of(cls, cluster: RedisClusterNodes, keys: tuple[str, ...]) -> ClusterFault:
        shards = {tuple(cluster.shard_of(key)) for key in keys}
        return cls(cluster, [address for shard in shards for address in shard])

    @classmethod
    def every_master(cls, cluster: RedisClusterNodes) -> ClusterFault:
        masters = cluster.masters()
        assert len(masters) == 3, f"not a whole cluster: masters {masters}"
        return cls(cluster, masters)

    @property
    def url(self) -> str:
        return self.cluster.url

    def stop(self) -> None:
        """A cluster node has no gentler stop the tests need: it goes as with ``kill``."""
        self.kill()

    def start(self) -> None:
        self.cluster.restart_killed()

    def kill(self) -> None:
        together(self.nodes, self.cluster.kill)

    def restart(self) -> None:
        self.kill()
        self.start()

    def pause(self) -> None:
        together(self.nodes, self.cluster.pause)

    def unpause(self) -> None:
        self.cluster.unpause_paused()
        self.cluster.wait_healthy()

    def notes(self) -> dict[str, int]:
        """For a report: how many of the broken masters are masters again (all of them: the
        fault was a restart or a hang, not a failover)."""
        now = set(self.cluster.masters())   # asks the nodes: once, not once per node
        return {"masters": len(self.nodes), "masters_kept": len(now.intersection(self.nodes))}

    def restore(self) -> None:
        """Whatever the test left broken comes back, and the cluster is whole again."""
        self.cluster.unpause_paused()
        self.cluster.restart_killed()


@dataclass
class ReplicatedRedis:
    """A primary with a replica: on ``single`` a pair of the test's own, on ``cluster`` the
    shard of each key (its master and its replica)."""

    url: str
    single: tuple[RedisServer, RedisServer] | None = None
    cluster: RedisClusterNodes | None = None

    def pause_replica(self, key: str) -> None:
        """Freeze the replica that holds ``key``'s copy (WAIT can then not be confirmed)."""
        if self.single is not None:
            self.single[1].pause()
        else:
            assert self.cluster is not None
            self.cluster.pause(self.cluster.shard_of(key)[1])

    def unpause_replica(self) -> None:
        if self.single is not None:
            self.single[1].unpause()
        else:
            assert self.cluster is not None
            self.cluster.unpause_paused()

    def on_replica(self, key: str) -> redis.Redis:
        """A client reading the replica that holds ``key``'s copy (close it after use)."""
        if self.single is not None:
            return redis.Redis(port=self.single[1].port, socket_timeout=5)
        assert self.cluster is not None
        client = redis.Redis(*self.cluster.shard_of(key)[1], socket_timeout=5)
        client.execute_command("READONLY")   # a cluster replica answers reads of its master's slots
        return client

    def restore(self) -> None:
        if self.cluster is not None:
            self.cluster.unpause_paused()
            self.cluster.wait_healthy()
