"""Breaking the Redis under a test the same way on a single Redis and on a Redis Cluster.

A test that stops, kills, pauses or restarts Redis, or freezes a replica, asks for the keys it is
about; what it breaks then depends on the topology (tests/conftest.py's ``redis_topology``):

- ``single``: a Redis of the test's own (``fresh_redis``, or ``primary_with_replica``), never the
  session's; the keys do not matter, the whole Redis goes.
- ``cluster``: the session Redis Cluster's shards that serve the keys. ``stop``/``kill``/``pause``
  take a shard's master *and* its replica, so no failover ends the outage before the test does
  (a failover is tests/resilience/test_cluster_failover.py's subject); ``start``/``unpause`` bring
  them back as they were, data included (append-only files). The other shards keep serving
  while most masters are up; keys on two of the three shards (orders and binance's tickers
  are) take two masters down, and the third, in a minority, refuses too, as a real cluster's
  would. ``restore`` (the fixtures call it after the test) leaves the cluster whole again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import redis

from tests.infra.redis_cluster import RedisClusterNodes
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

    def restore(self) -> None:
        """Nothing to do: the server is the test's own and goes with it."""


@dataclass
class ClusterShards:
    """The shards of the session cluster that serve ``keys``: a fault takes each whole
    (master and replica) and leaves the others serving."""

    cluster: RedisClusterNodes
    keys: tuple[str, ...]
    nodes: list[Address] = field(init=False)

    def __post_init__(self) -> None:
        shards = {tuple(self.cluster.shard_of(key)) for key in self.keys}
        # replicas first, so a restart (last killed, first started) brings each master back
        # before its replica asks it for the data
        self.nodes = [a for shard in shards for a in shard[1:]] + [shard[0] for shard in shards]

    @property
    def url(self) -> str:
        return self.cluster.url

    def stop(self) -> None:
        """A cluster node has no gentler stop the tests need: it goes as with ``kill``."""
        self.kill()

    def start(self) -> None:
        self.cluster.restart_killed()

    def kill(self) -> None:
        for address in self.nodes:
            self.cluster.kill(address)

    def restart(self) -> None:
        self.kill()
        self.start()

    def pause(self) -> None:
        for address in self.nodes:
            self.cluster.pause(address)

    def unpause(self) -> None:
        self.cluster.unpause_paused()
        self.cluster.wait_healthy()

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
