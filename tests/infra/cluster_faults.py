"""Faults of every master of a Redis Cluster at once: the cluster's "Redis restart" and "Redis hangs".

A master killed or paused alone is failed over by its replica (``cluster-node-timeout`` 2 s plus
an election): that is scenario C1. To restart or freeze *Redis* on a cluster, as scenarios 1, 2
and 9 do to a single Redis, every master is killed (or paused) together, in parallel: a replica
is promoted only with the votes of a majority of masters, so while they are all down or frozen
none is, and each master comes back as the master of its slots with its data (append-only,
``fsync always``). The replicas stay up meanwhile and resynchronise after the repair; with
``--min-replica-acks 1`` writes are acknowledged again once they have.

Kept apart from tests/infra/redis_cluster.py (whose nodes, ``kill`` and ``wait_healthy`` it
uses) so that its functions there keep their behaviour. Every action runs on all the nodes in
parallel threads: started one after the other, a master back 2 s before another would see it
as failing and could vote its replica in.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tests.infra.redis_cluster import WAIT_S, RedisClusterNodes
from tests.infra.sentinel import Address


def _together(nodes: list[Any], action: Callable[[Any], None]) -> None:
    """Run ``action`` on every node at once; raise the first failure after all have ended."""
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        for future in [pool.submit(action, node) for node in nodes]:
            future.result()


@dataclass
class EveryMaster:
    """Kill or pause every master of ``cluster`` at once, and repair it; ``heal`` undoes any
    fault still in place (a test that failed half way), so the session's cluster ends whole."""

    cluster: RedisClusterNodes
    killed: list[Any] = field(default_factory=list)
    paused: list[Any] = field(default_factory=list)
    faulted: list[Address] = field(default_factory=list)   # the masters of the last fault

    def _masters(self) -> list[Any]:
        masters = self.cluster.masters()
        assert len(masters) == 3, f"not a whole cluster: masters {masters}"
        self.faulted = masters
        return [self.cluster.node_at(address) for address in masters]

    def notes(self) -> dict[str, Any]:
        """For the report: how many of the faulted masters are masters again (3: no replica
        was promoted, the fault was a restart or a hang and not a failover)."""
        now = set(self.cluster.masters())
        return {"masters": len(self.faulted), "masters_kept": len(now & set(self.faulted))}

    def kill(self) -> None:
        """SIGKILL (``docker kill``) every master at once."""
        self.killed = self._masters()
        _together(self.killed, lambda node: node.kill())

    def start(self, timeout: float = WAIT_S) -> None:
        """Start every killed master at once; wait until the cluster is whole (3+3, synced)."""
        nodes, self.killed = self.killed, []
        _together(nodes, lambda node: node.start())
        self.cluster.wait_healthy(timeout)

    def pause(self) -> None:
        """Freeze (``docker pause``, SIGSTOP for a process) every master at once: a hang."""
        self.paused = self._masters()
        _together(self.paused, lambda node: node.pause())

    def unpause(self, timeout: float = WAIT_S) -> None:
        """Thaw every paused master at once; wait until the cluster is whole."""
        nodes, self.paused = self.paused, []
        _together(nodes, lambda node: node.unpause())
        self.cluster.wait_healthy(timeout)

    def heal(self) -> None:
        if self.paused:
            self.unpause()
        if self.killed:
            self.start()
