"""JWTs for the load clients: one distinct user per connection, HS256 with the bridge's secret."""

from __future__ import annotations

from devstack.tokens import user_token

TOKEN_TTL_S = 3600


def make_token(secret: str, subject: str) -> str:
    """A token for ``subject`` valid for an hour (longer than any scenario)."""
    return user_token(secret, subject, TOKEN_TTL_S)


def client_tokens(secret: str | None, prefix: str, count: int) -> list[str | None]:
    """One token per client (``None`` each when the target runs ``--auth none``)."""
    if secret is None:
        return [None] * count
    return [make_token(secret, f"{prefix}-{i}") for i in range(count)]
