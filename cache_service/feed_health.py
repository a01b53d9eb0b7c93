"""When a change-feed reader can deliver, and when its subscribers must be told it cannot.

Why a module of its own: "is this stream alive?" is decided in three places (a reader's
failure, the watchdog, a subscriber about to send a heartbeat) and must be decided the same
way in all three. This is plain logic, no I/O: the reader reports what happened and passes
the clock in, so the rules are testable without Redis.

The rules (the contract in proto/cache/v1/cache.proto):

- A reader is **healthy** while it keeps completing reads and has nothing read-but-unconfirmed
  (with replica acks on, an entry is deliverable only once N replicas hold it). An idle reader
  completes an ``XREAD BLOCK`` every ``block_ms``, so "no completed read for longer than
  ``block_ms`` + slack" means Redis is not answering; subscribers then get no heartbeats.
- A refused or dropped connection (Redis killed, restarting, unreachable) interrupts the
  reader **at once**: waiting gains nothing, and every subscriber can resume sooner.
- Anything else that keeps the reader from delivering (a hung Redis that never answers, error
  replies such as LOADING or READONLY, replicas that do not confirm) interrupts it once it has
  lasted longer than ``stall_s`` (``--feed-stall-s``): the watchdog checks ``overdue``.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

READ_BLOCK_MS = 1000
HEALTH_SLACK_S = 0.25   # scheduling noise on top of a read's BLOCK before it counts as overdue
WATCH_INTERVAL_S = 0.25

# Interruption causes, the label values of cache_feed_interruptions (bounded on purpose).
CONNECTION = "connection"
STALLED = "stalled"
UNCONFIRMED = "unconfirmed"
INTERNAL = "internal"
CAUSES = (CONNECTION, STALLED, UNCONFIRMED, INTERNAL)


@dataclass(frozen=True)
class FeedPolicy:
    """The change feed's timing and durability settings (from CacheConfig)."""

    stall_s: float = 2.0          # --feed-stall-s
    heartbeat_s: float = 1.0      # --stream-heartbeat-s
    min_acks: int = 0             # --min-replica-acks: deliver only what this many replicas hold
    ack_timeout_ms: int = 500     # --replica-ack-timeout-ms: the WAIT of one confirmation
    socket_timeout_s: float = 3.0  # --redis-timeout: the Redis client's, which an XREAD must beat

    @property
    def block_ms(self) -> int:
        """XREAD BLOCK: short enough that an idle reader proves itself alive twice per stall,
        and well within the client's socket timeout (else an idle read would time out)."""
        return max(1, min(READ_BLOCK_MS, int(self.stall_s * 500), int(self.socket_timeout_s * 500)))

    @property
    def healthy_within_s(self) -> float:
        """How recent the last completed read must be for the reader to count as healthy."""
        return self.block_ms / 1000 + HEALTH_SLACK_S

    @property
    def watch_interval_s(self) -> float:
        """How often the watchdog looks: a stall is seen within ``stall_s`` + this."""
        return min(WATCH_INTERVAL_S, self.stall_s / 4)


@dataclass(frozen=True)
class Interruption:
    """Why a reader ended its subscribers: ``kind`` is a metric label, ``cause`` the message."""

    kind: str
    cause: str


def connection_lost(error: BaseException) -> bool:
    """True for failures that mean Redis is gone (not an error reply): interrupt at once."""
    return isinstance(error, (RedisConnectionError, RedisTimeoutError, OSError))


class ReaderHealth:
    """One reader's record: when it last had everything it read delivered, what is held."""

    def __init__(self, policy: FeedPolicy, now: float) -> None:
        self.policy = policy
        self.ok_at = now
        self.held = 0
        self.last_error = ""

    def delivered(self, now: float) -> None:
        """A read completed and nothing read is waiting for confirmation."""
        self.ok_at = now
        self.held = 0
        self.last_error = ""

    def holding(self, count: int) -> None:
        """``count`` entries are read but not yet confirmed by enough replicas."""
        self.held = count

    def failed(self, error: BaseException) -> Interruption | None:
        """A command failed: the interruption to apply now, or None to retry (see module doc)."""
        self.last_error = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        if isinstance(error, (RedisTimeoutError, TimeoutError)):
            return Interruption(STALLED, f"Redis did not answer ({self.last_error})")
        if connection_lost(error):
            return Interruption(CONNECTION, f"Redis connection lost ({self.last_error})")
        return None

    def trouble(self) -> str:
        """What keeps the reader from being healthy, for a message."""
        if self.held:
            return f"{self.held} events awaiting confirmation by {self.policy.min_acks} replica(s)"
        return self.last_error or "no answer from Redis"

    def healthy(self, now: float) -> bool:
        return self.held == 0 and not self.last_error and now - self.ok_at <= self.policy.healthy_within_s

    def overdue(self, now: float) -> Interruption | None:
        """The interruption due when the reader has not delivered for longer than ``stall_s``."""
        silent = now - self.ok_at
        if silent <= self.policy.stall_s:
            return None
        if self.held:
            return Interruption(UNCONFIRMED, f"{self.held} events not confirmed by "
                                             f"{self.policy.min_acks} replica(s) for {silent:.1f}s")
        reason = f" (last error: {self.last_error})" if self.last_error else ""
        return Interruption(STALLED, f"Redis did not answer for {silent:.1f}s{reason}")
