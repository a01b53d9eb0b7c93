"""Per-client and per-process limits of docs/protocol.md, as plain objects driven by a clock value.

The caller passes ``now`` (``time.monotonic()``), so the rules are tested without waiting.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

RATE_LIMIT_REASON = "rate limit exceeded"
MAX_CONNECTIONS_REASON = "max connections reached, try another instance later"
MAX_PER_USER_REASON = "max connections per user reached"
SLOW_CONSUMER_REASON = "slow consumer"
IDLE_REASON = "idle timeout"
SHUTDOWN_REASON = "server shutting down"
INTERNAL_ERROR_REASON = "internal error"   # 1011: delivering to this client raised (a bug)

# Rejections closer together than this count as one uninterrupted stretch of excess.
EXCESS_GAP_S = 1.0


class Verdict(enum.Enum):
    ALLOW = "allow"
    REJECT = "reject"   # answer RATE_LIMITED, keep the connection
    CLOSE = "close"     # excess went on too long: close 1008


class RateLimiter:
    """Token bucket (``rate`` per second, ``burst`` deep) that also notices sustained abuse.

    A client over the limit gets ``RATE_LIMITED`` replies; one that stays over it (rejections
    never more than a second apart) for ``close_after`` seconds is disconnected, since it is
    clearly not reading the replies.

    Slotted: one lives per connection (see :class:`bridge.dispatch.Dispatcher`).
    """

    __slots__ = ("rate", "burst", "close_after", "tokens", "updated", "excess_since",
                 "last_rejection")

    def __init__(self, rate: float, burst: int, close_after: float, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.close_after = close_after
        self.tokens = float(burst)
        self.updated = now
        self.excess_since: float | None = None
        self.last_rejection = float("-inf")

    def check(self, now: float) -> Verdict:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return Verdict.ALLOW
        if self.excess_since is None or now - self.last_rejection > EXCESS_GAP_S:
            self.excess_since = now
        self.last_rejection = now
        if now - self.excess_since >= self.close_after:
            return Verdict.CLOSE
        return Verdict.REJECT


@dataclass(frozen=True)
class Refusal:
    """Why a connection may not stay: close ``code`` with ``reason``."""

    code: int
    reason: str


class ConnectionRegistry:
    """Counts open connections per process and per user to enforce both caps."""

    def __init__(self, max_connections: int, max_per_user: int) -> None:
        self.max_connections = max_connections
        self.max_per_user = max_per_user
        self.total = 0
        self.per_user: Counter[str] = Counter()

    def admit(self, user_id: str) -> Refusal | None:
        """Register a connection, or say why it is refused (and register nothing)."""
        if self.total >= self.max_connections:
            return Refusal(1013, MAX_CONNECTIONS_REASON)
        if self.per_user[user_id] >= self.max_per_user:
            return Refusal(1008, MAX_PER_USER_REASON)
        self.total += 1
        self.per_user[user_id] += 1
        return None

    def release(self, user_id: str) -> None:
        self.total -= 1
        self.per_user[user_id] -= 1
        if self.per_user[user_id] <= 0:
            del self.per_user[user_id]
