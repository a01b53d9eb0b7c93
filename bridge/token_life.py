"""How long a connection may live: its token's ``exp``, a warning before it, and ``refresh``.

SPEC §9.3: ``--token-warning-s`` seconds before ``exp`` (at once when less is left) the client
gets ``{"type":"token_expiring","expires_at":T}``; a ``refresh`` with a valid token for the
same ``sub`` moves ``exp``; at ``exp`` without one the connection is closed 1008 ``Token
expired``. This module decides (sans I/O); :meth:`bridge.session.Session._arm_token_clock`
schedules each step on the event loop.

A token without ``exp`` is accepted only with ``--jwt-allow-no-exp`` (the local default; the
chart turns it off): such a connection lives until it closes, and ``refresh`` is still allowed.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.auth import Identity
from bridge.errors import FORBIDDEN, BridgeError

WARN, EXPIRE = "warn", "expire"


@dataclass(slots=True)
class TokenLife:
    """When the connection's token expires and whether the client was warned about it."""

    expires_at: float | None
    warning_s: float
    warned: bool = False

    def next(self, now: float) -> tuple[str, float] | None:
        """The next thing to do and when (unix time): warn, then expire; None: nothing ever."""
        if self.expires_at is None:
            return None
        if now >= self.expires_at:
            return EXPIRE, self.expires_at
        if not self.warned:
            return WARN, max(now, self.expires_at - self.warning_s)
        return EXPIRE, self.expires_at

    def refreshed(self, current: Identity, fresh: Identity) -> float | None:
        """Take a refresh's verified identity: the same user (and scopes), a new ``exp``.

        Another ``sub`` (or other scopes: the subscriptions were set up under these) is
        FORBIDDEN and changes nothing; the connection still ends at the old ``exp``."""
        if fresh.user_id != current.user_id:
            raise BridgeError(FORBIDDEN, "refresh token is for another user")
        if fresh.scopes != current.scopes:
            raise BridgeError(FORBIDDEN, "refresh token carries other scopes than the connection's")
        self.expires_at = fresh.expires_at
        self.warned = False
        return self.expires_at
