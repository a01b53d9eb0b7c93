"""HS256 tokens for local users (the dev stack's demo users, the benchmarks' load clients)."""

from __future__ import annotations

import time

import jwt


def user_token(secret: str, user: str, lifetime_s: float, now: float | None = None) -> str:
    """A token the bridge accepts for ``user`` (``sub``), valid for ``lifetime_s`` from ``now``."""
    issued = int(now if now is not None else time.time())
    return jwt.encode({"sub": user, "iat": issued, "exp": int(issued + lifetime_s)}, secret,
                      algorithm="HS256")
