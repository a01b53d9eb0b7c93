"""Errors the service raises on purpose, each carrying the gRPC status it maps to.

Store, validation and scoping code raise these instead of touching a gRPC context, so the
logic stays testable without a server; the servicer turns them into statuses in one place.
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """A known failure with the status code a client should see."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    """The request or a record in it is malformed."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(ServiceError):
    """The record does not exist, or belongs to someone the caller may not see."""

    code = grpc.StatusCode.NOT_FOUND


class PermissionDenied(ServiceError):
    """The caller asked for something only admin or internal callers may ask for."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Unavailable(ServiceError):
    """Redis cannot be reached (or the server is shutting down): retry, maybe elsewhere."""

    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(ServiceError):
    """A subscriber fell too far behind; it should resume from its last seq."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Internal(ServiceError):
    """A bug or an unexpected failure (logged with its traceback); the message says which part."""

    code = grpc.StatusCode.INTERNAL
