"""Error codes of the WebSocket protocol (docs/protocol.md) and how gRPC failures map onto them."""

from __future__ import annotations

import logging

import grpc

log = logging.getLogger("bridge.upstream")

INVALID_MESSAGE = "INVALID_MESSAGE"
UNKNOWN_ACTION = "UNKNOWN_ACTION"
INVALID_PARAMS = "INVALID_PARAMS"
NOT_FOUND = "NOT_FOUND"
FORBIDDEN = "FORBIDDEN"
RATE_LIMITED = "RATE_LIMITED"
SUBSCRIPTION_LIMIT = "SUBSCRIPTION_LIMIT"
UNAVAILABLE = "UNAVAILABLE"
TIMEOUT = "TIMEOUT"
INTERNAL = "INTERNAL"


class BridgeError(Exception):
    """A request failed in a way the client is told about: ``code`` and ``message`` go on the wire."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# gRPC status -> (protocol code, whether the upstream's detail text may be shown to the client).
_STATUS_MAP: dict[grpc.StatusCode, tuple[str, bool]] = {
    grpc.StatusCode.NOT_FOUND: (NOT_FOUND, True),
    grpc.StatusCode.INVALID_ARGUMENT: (INVALID_PARAMS, True),
    grpc.StatusCode.UNAVAILABLE: (UNAVAILABLE, False),
    grpc.StatusCode.DEADLINE_EXCEEDED: (TIMEOUT, False),
    grpc.StatusCode.PERMISSION_DENIED: (FORBIDDEN, False),
    # The call was cancelled on the way (a burst of calls on one channel, a service draining):
    # nothing is wrong with the request, so the client is told to try again, not "internal".
    grpc.StatusCode.CANCELLED: (UNAVAILABLE, False),
}
# What a client is told when a code carries no details it may see (or none at all): each
# code its own message (a refused argument must not read "Not found").
_GENERIC_MESSAGES = {
    NOT_FOUND: "Not found",
    INVALID_PARAMS: "Invalid parameters",
    UNAVAILABLE: "Upstream service unavailable, try again",
    TIMEOUT: "Upstream service did not answer in time",
    FORBIDDEN: "Not allowed",
    INTERNAL: "Internal error",
}


def from_grpc(code: grpc.StatusCode | None, details: str | None) -> BridgeError:
    """Translate a failed gRPC call; internal details are never passed to clients."""
    mapped, show_details = _STATUS_MAP.get(code, (INTERNAL, False)) if code else (INTERNAL, False)
    if code not in _STATUS_MAP:   # the client hears only "Internal error": the log says what
        log.warning("upstream call failed with %s: %s", code.name if code else "no status", details)
    message = details if show_details and details else _GENERIC_MESSAGES[mapped]
    return BridgeError(mapped, message)
