"""How a child's end is worded in messages: ``killed by SIGKILL``, not ``exited with code -9``."""

from __future__ import annotations

import signal


def describe_exit(returncode: int | None) -> str:
    """``exited with code N``, ``killed by SIGNAME`` (a negative code), or ``still running``."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"
