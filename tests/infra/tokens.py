"""JWTs for tests, signed with the secret the test bridges use unless told otherwise."""

from __future__ import annotations

import time
from typing import Any

import jwt

TEST_SECRET = "test-secret-for-the-bridge-suite-0123456789"


def make_token(sub: str | None = "alice", scope: str = "", secret: str = TEST_SECRET,
               exp: float | None = 3600.0, algorithm: str = "HS256", key: Any = None,
               headers: dict[str, Any] | None = None, **claims: Any) -> str:
    """A signed token for ``sub``; ``exp`` is seconds from now (negative = already expired);
    ``headers`` go into the JOSE header (``kid``)."""
    payload: dict[str, Any] = dict(claims)
    if sub is not None:
        payload["sub"] = sub
    if scope:
        payload["scope"] = scope
    if exp is not None:
        payload["exp"] = int(time.time() + exp)
    return jwt.encode(payload, key if key is not None else secret, algorithm=algorithm,
                      headers=headers)
