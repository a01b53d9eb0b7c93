"""The gRPC metadata keys the services exchange beyond the messages (proto/cache/v1/cache.proto).

Requests carry the caller: the bridge forwards an authenticated WebSocket user as
:data:`USER_HEADER` and :data:`SCOPE_HEADER` (space-separated scopes; ``admin`` sees every
user's records); a call without :data:`USER_HEADER` comes from an internal service.

Every stream's initial metadata (sent before its first message) carries
:data:`HEARTBEAT_HEADER`, the heartbeat interval in seconds: it tells a subscriber that this
stream will carry heartbeats, so its silence means trouble from the first message on, before
any heartbeat could have come (bridge/stall.py). A service that predates heartbeats sends none.
"""

from __future__ import annotations

from collections.abc import Iterable

USER_HEADER = "x-user-id"
SCOPE_HEADER = "x-user-scope"
ADMIN_SCOPE = "admin"
HEARTBEAT_HEADER = "marketbridge-heartbeat-s"

Metadata = Iterable[tuple[str, str | bytes]]


def heartbeat_interval(metadata: Metadata | None) -> float | None:
    """The heartbeat interval a stream's initial metadata announces; None: it carries none."""
    for key, value in metadata or ():
        if key == HEARTBEAT_HEADER:
            text = value.decode() if isinstance(value, bytes) else value
            try:
                return float(text)
            except ValueError:
                return None
    return None
