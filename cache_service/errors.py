"""Errors the service raises on purpose, each carrying the gRPC status it maps to.

Store, validation and scoping code raise these instead of touching a gRPC context, so the
logic stays testable without a server; the servicer turns them into statuses in one place.
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """A known failure with the status code a client should see."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init_subclass__(cls, code: grpc.StatusCode | None = None) -> None:
        """Each kind names its status in its class line (``class NotFound(ServiceError, code=...)``);
        a subclass that names none keeps its parent's."""
        super().__init_subclass__()
        if code is not None:
            cls.code = code

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError, code=grpc.StatusCode.INVALID_ARGUMENT):
    """The request or a record in it is malformed."""


class NotFound(ServiceError, code=grpc.StatusCode.NOT_FOUND):
    """The record does not exist, or belongs to someone the caller may not see."""


class PermissionDenied(ServiceError, code=grpc.StatusCode.PERMISSION_DENIED):
    """The caller asked for something only admin or internal callers may ask for."""


class Unavailable(ServiceError, code=grpc.StatusCode.UNAVAILABLE):
    """Redis cannot be reached (or the server is shutting down): retry, maybe elsewhere."""


class ResourceExhausted(ServiceError, code=grpc.StatusCode.RESOURCE_EXHAUSTED):
    """A subscriber fell too far behind; it should resume from its last seq."""


class Internal(ServiceError, code=grpc.StatusCode.INTERNAL):
    """A bug or an unexpected failure (logged with its traceback); the message says which part."""


class FailedPrecondition(ServiceError, code=grpc.StatusCode.FAILED_PRECONDITION):
    """The book cannot take this delta (a missed update, or it would cross): send a snapshot."""
