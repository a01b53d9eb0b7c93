"""The client's exceptions: one per thing a caller can act on differently."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of every error this package raises."""


class RequestError(ClientError):
    """The server refused a request: ``code`` is the SPEC §4 code (``NOT_FOUND``, ...)."""

    RETRYABLE = frozenset({"UNAVAILABLE", "TIMEOUT", "RATE_LIMITED"})

    def __init__(self, action: str, code: str, message: str) -> None:
        super().__init__(f"{action}: {code}: {message}")
        self.action, self.code, self.message = action, code, message

    @property
    def retryable(self) -> bool:
        """The upstream was down or slow, or we were too fast: the same request may succeed later."""
        return self.code in self.RETRYABLE

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> RequestError:
        error = frame.get("error") or {}
        return cls(str(frame.get("action", "")), str(error.get("code", "INTERNAL")),
                   str(error.get("message", "")))


class RequestTimeout(ClientError):
    """No reply within the request timeout (the connection may be dead or reconnecting)."""


class NotConnected(ClientError):
    """The client is closed, or gave up connecting."""


class ConnectionClosed(ClientError):
    """The server closed the connection with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"closed {code}{' ' + reason if reason else ''}")
        self.code, self.reason = code, reason


class PolicyViolation(ConnectionClosed):
    """1008: token missing, invalid or expired, bad URL parameter, flood, per-user cap.
    Retrying as is gets the same close: the client retries only with a fresh token."""


class MessageTooBig(ConnectionClosed):
    """1009: a message over ``limits.max_frame_bytes`` (also raised before sending one)."""


class TryAgainLater(ConnectionClosed):
    """1013: the process is full or this client read too slowly; the client retries with backoff."""


def close_error(code: int, reason: str) -> ConnectionClosed:
    """The exception for a close code."""
    kind = {1008: PolicyViolation, 1009: MessageTooBig, 1013: TryAgainLater}.get(code, ConnectionClosed)
    return kind(code, reason)
