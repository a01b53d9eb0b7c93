"""The kernel's side of idle connections: what the sockets cost outside any process's RSS.

An idle TCP socket's memory is kernel memory: the ``tcp_sock`` and its file, inode and
dentry in slab caches, plus whatever its queues hold. ``/proc/net/sockstat``'s ``TCP ... mem``
counts the pages charged to socket buffers (data queued in either direction, zero for a truly
idle socket); ``/proc/meminfo``'s ``Slab`` grows with the socket structures themselves. Both are
machine-wide: on loopback they count both ends of each connection, and whatever else runs on
the machine, so they are read before and after and reported as they are, never folded into the
bridge's RSS figure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SOCKSTAT = Path("/proc/net/sockstat")
MEMINFO = Path("/proc/meminfo")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class KernelSockets:
    """One reading: TCP sockets in use, their buffer memory and the kernel's slab, in KiB."""

    tcp_inuse: int
    tcp_mem_kib: float
    slab_kib: float

    @classmethod
    def read(cls) -> KernelSockets | None:
        """Now; None where /proc does not have these files (not Linux)."""
        try:
            tcp = _fields(SOCKSTAT.read_text(), "TCP:")
            slab = _meminfo(MEMINFO.read_text(), "Slab:")
        except (OSError, KeyError, ValueError):
            return None
        return cls(tcp["inuse"], tcp["mem"] * PAGE / 1024, slab)

    def growth(self, before: KernelSockets) -> dict[str, float]:
        """What changed since ``before``, as the capacity table reports it."""
        return {
            "tcp_inuse": self.tcp_inuse - before.tcp_inuse,
            "tcp_mem_kib": round(self.tcp_mem_kib - before.tcp_mem_kib, 1),
            "slab_mib": round((self.slab_kib - before.slab_kib) / 1024, 1),
        }


def _fields(text: str, prefix: str) -> dict[str, int]:
    """``TCP: inuse 3 orphan 0 tw 0 alloc 5 mem 2`` -> {"inuse": 3, ...}."""
    for line in text.splitlines():
        if line.startswith(prefix):
            words = line[len(prefix):].split()
            return {k: int(v) for k, v in zip(words[::2], words[1::2], strict=True)}
    raise KeyError(prefix)


def _meminfo(text: str, name: str) -> float:
    """One ``/proc/meminfo`` line's value in KiB."""
    for line in text.splitlines():
        if line.startswith(name):
            return float(line.split()[1])
    raise KeyError(name)
