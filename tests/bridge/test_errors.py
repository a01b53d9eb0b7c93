"""Error codes (docs/protocol.md) from gRPC statuses, and what each code tells the client."""

from __future__ import annotations

import grpc
import pytest

from bridge import errors


@pytest.mark.parametrize("status, code", [
    (grpc.StatusCode.NOT_FOUND, errors.NOT_FOUND),
    (grpc.StatusCode.INVALID_ARGUMENT, errors.INVALID_PARAMS),
    (grpc.StatusCode.UNAVAILABLE, errors.UNAVAILABLE),
    (grpc.StatusCode.DEADLINE_EXCEEDED, errors.TIMEOUT),
    (grpc.StatusCode.PERMISSION_DENIED, errors.FORBIDDEN),
    (grpc.StatusCode.INTERNAL, errors.INTERNAL),
    (grpc.StatusCode.UNKNOWN, errors.INTERNAL),
    (None, errors.INTERNAL),
])
def test_grpc_status_mapping(status: grpc.StatusCode | None, code: str) -> None:
    err = errors.from_grpc(status, "secret detail")
    assert err.code == code
    if code in (errors.NOT_FOUND, errors.INVALID_PARAMS):
        assert err.message == "secret detail"   # the service's own words about the request
    else:
        assert "secret" not in err.message


GENERIC = {
    errors.NOT_FOUND: "Not found",
    errors.INVALID_PARAMS: "Invalid parameters",
    errors.UNAVAILABLE: "Upstream service unavailable, try again",
    errors.TIMEOUT: "Upstream service did not answer in time",
    errors.FORBIDDEN: "Not allowed",
    errors.INTERNAL: "Internal error",
}


@pytest.mark.parametrize("status", [*errors._STATUS_MAP, grpc.StatusCode.INTERNAL,
                                    grpc.StatusCode.UNKNOWN, None])
@pytest.mark.parametrize("details", [None, ""])
def test_grpc_status_without_details_gets_its_own_generic_message(
        status: grpc.StatusCode | None, details: str | None) -> None:
    """An INVALID_ARGUMENT without details used to read "Not found"; each code has its own."""
    err = errors.from_grpc(status, details)
    assert err.message == GENERIC[err.code]


def test_every_mapped_code_has_a_generic_message() -> None:
    assert {mapped for mapped, _ in errors._STATUS_MAP.values()} | {errors.INTERNAL} <= set(
        errors._GENERIC_MESSAGES)
    assert len(set(errors._GENERIC_MESSAGES.values())) == len(errors._GENERIC_MESSAGES)


def test_a_cancelled_call_is_retryable_and_an_unmapped_code_is_logged(caplog) -> None:
    import logging

    assert errors.from_grpc(grpc.StatusCode.CANCELLED, "Locally cancelled").code == "UNAVAILABLE"
    with caplog.at_level(logging.WARNING, logger="bridge.upstream"):
        err = errors.from_grpc(grpc.StatusCode.DATA_LOSS, "disk on fire")
    assert (err.code, err.message) == ("INTERNAL", "Internal error")   # no details to the client
    assert "DATA_LOSS: disk on fire" in caplog.text                   # but the log says what
