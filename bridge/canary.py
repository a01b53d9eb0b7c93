"""The end-to-end canary on the bridge side (SPEC §9.6): is the pipe still delivering?

Every cache-service replica writes a canary into a reserved stream every ``--canary-s``
(cache_service/canary.py). Each bridge follows that stream like any topic (one shared upstream
stream, resumed after a break, watched for stalls: :meth:`bridge.fanout.Fanout.follow`), but no
client can subscribe to it. A canary that reaches the bridge went Redis -> cache service ->
bridge, so a bridge that has received none for ``STALE_INTERVALS`` intervals has a pipe that is
stuck somewhere, even if every health check is green (a hung reader, a write path that stopped,
a stream that stays open and silent): ``/readyz`` says 503 until one arrives again.

:class:`CanaryFreshness` decides and does no I/O. Readiness is judged on the bridge's own
monotonic clock (when a canary *arrived*), never by comparing the canary's Redis time with the
bridge's wall clock, so clock skew between hosts cannot pull every bridge out of rotation. The
``bridge_canary_age_seconds`` gauge does use the canary's own time (its seq), so a pipe that
delivers, but late, shows there.
"""

from __future__ import annotations

from google.protobuf.message import Message

from bridge.auth import Identity
from bridge.channels.base import Channel
from marketbridge.api.v1 import cache_pb2 as pb

STALE_INTERVALS = 3
CANARY_TOPIC = ("canary", "")
# The canary stream's caller: an internal one would see every user's data on a scoped stream;
# this stream carries none, and a named user makes the service's logs say who asked.
CANARY_IDENTITY = Identity("marketbridge-canary")


class CanaryFreshness:
    """When the last canary arrived, and whether that is too long ago (sans-I/O).

    ``started`` and every ``now`` are one monotonic clock (the event loop's); event times are
    Redis's milliseconds (the canary's seq). Before the first canary the bridge gets the same
    grace as after one (``STALE_INTERVALS`` intervals from ``started``): a bridge that just
    started is not failed for a canary that could not have come yet.
    """

    __slots__ = ("interval_s", "started", "arrived_at", "event_ms", "count", "not_offered")

    def __init__(self, interval_s: float, started: float) -> None:
        self.interval_s = interval_s
        self.started = started
        self.arrived_at: float | None = None   # monotonic time of the newest arrival
        self.event_ms: int | None = None       # Redis time of the newest canary
        self.count = 0
        # the cache service answered UNIMPLEMENTED (a release before the canary, e.g. in the
        # middle of a rolling upgrade): readiness cannot be judged by a canary that never comes
        self.not_offered = False

    @property
    def limit_s(self) -> float:
        return STALE_INTERVALS * self.interval_s

    def arrived(self, now: float, event_ms: int) -> None:
        """A canary (written at ``event_ms``, Redis's clock) reached the bridge at ``now``."""
        self.arrived_at = now
        self.event_ms = event_ms if self.event_ms is None else max(self.event_ms, event_ms)
        self.count += 1
        self.not_offered = False

    def silent_s(self, now: float) -> float:
        """How long no canary has arrived (since ``started`` before the first)."""
        return now - (self.started if self.arrived_at is None else self.arrived_at)

    def stale_reason(self, now: float) -> str | None:
        """Why the pipe counts as stuck at ``now`` (the ``/readyz`` text), or None."""
        silent = self.silent_s(now)
        if silent <= self.limit_s or self.not_offered:
            return None
        what = "no canary yet" if self.arrived_at is None else "no canary"
        return (f"{what} for {silent:.1f} s ({STALE_INTERVALS} x --canary-s {self.interval_s:g} s): "
                f"the Redis -> cache service -> bridge pipe is stuck")

    def age_s(self, now: float, wall_now_s: float) -> float:
        """``bridge_canary_age_seconds``: wall time since the newest canary was written (by
        Redis's clock, never below 0); before the first one, the time since ``started``."""
        if self.event_ms is None:
            return max(0.0, now - self.started)
        return max(0.0, wall_now_s - self.event_ms / 1000.0)


def _stream_request(topic: tuple[str, ...], sub: object, resume_from: str) -> Message:
    return pb.StreamCanaryRequest(resume_from=resume_from)


def _no_list_request(sub: object, params: object) -> Message:
    raise AssertionError("the canary has no snapshot: no client subscribes to it")


# Not in bridge.channels.CHANNELS: no client can name it (docs/protocol.md never lists it).
CHANNEL = Channel(
    name="canary", alias="", update_action="", filters=(), private=False, conflates=False,
    stream_method="StreamCanary", entity_field="canary", stream_request=_stream_request,
    keys=lambda canary: ("", ""), list_method="", list_request=_no_list_request, list_field="",
    encode=lambda canary: None,
)
