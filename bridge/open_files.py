"""The open-files limit (RLIMIT_NOFILE): every client connection is one file descriptor.

A process starts with the soft limit its launcher gave it, often 1024 (systemd's default) even
where the hard limit is 500,000 or more; ``--max-connections 50000`` is then refused at the
1,02x-th accept (EMFILE), which asyncio logs and retries a second later while the kernel's
listen queue fills. So the bridge lifts its soft limit to what ``--max-connections`` needs, as
far as the hard limit (or, with CAP_SYS_RESOURCE, ``fs.nr_open``) allows, and says at start
when that is still short. The load harness (``bench``) lifts its own, which its servers and
workers inherit, the same way.
"""

from __future__ import annotations

import resource
from pathlib import Path

# Files a bridge holds besides its clients: the listening socket, the gRPC channel, the event
# loop's selector and self-pipe, standard streams, a JWKS fetch, a metrics scrape.
RESERVED_FILES = 100
NR_OPEN = Path("/proc/sys/fs/nr_open")


def raise_open_files(wanted: int) -> int:
    """Lift this process's soft limit towards ``wanted`` (children inherit it), and the hard
    limit too where the process may (root with CAP_SYS_RESOURCE); returns the soft limit now.
    Never lowers either limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard < wanted:
        try:
            ceiling = int(NR_OPEN.read_text())
        except (OSError, ValueError):
            ceiling = wanted
        target = min(wanted, ceiling)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
            return target
        except (ValueError, OSError):   # not privileged: the hard limit is as far as it goes
            pass
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
    return max(soft, target)


def connections_allowed(max_connections: int) -> int:
    """Raise the limit for ``max_connections`` clients; how many the process can really hold
    (less than ``max_connections`` when the limit stays short)."""
    soft = raise_open_files(max_connections + RESERVED_FILES)
    return min(max_connections, max(0, soft - RESERVED_FILES))
