"""The WebSocket server's log filter without sockets: invalid requests logged without flooding."""

from __future__ import annotations

import logging

from websockets.exceptions import InvalidMessage

from bridge.handshake_log import INVALID_LOG_INTERVAL_S, WS_LOGGER, ClientHandshakeFaults


def failed_handshake(cause: Exception, created: float) -> logging.LogRecord:
    """websockets' "opening handshake failed" record, as its server logs it."""
    error = InvalidMessage("did not receive a valid HTTP request")
    error.__cause__ = cause
    record = logging.LogRecord(WS_LOGGER, logging.ERROR, __file__, 1, "opening handshake failed",
                               None, (InvalidMessage, error, None))
    record.created = created
    return record


def test_invalid_requests_are_one_line_per_interval_carrying_the_count() -> None:
    logger = logging.getLogger(WS_LOGGER)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        faults = ClientHandshakeFaults()
        garbage = ValueError("invalid HTTP request line: GARBAGE")
        shown = [faults.filter(failed_handshake(garbage, 1000.0 + t)) for t in (0, 1, 2)]
        assert shown == [True, False, False]
        later = failed_handshake(garbage, 1000.0 + INVALID_LOG_INTERVAL_S + 1)
        assert faults.filter(later) and later.levelname == "INFO" and later.exc_info is None
        assert later.getMessage().endswith("; 3 such requests since the last such line")
        # a connection closed before its request (a TCP health check) is DEBUG, here below the
        # logger's level: dropped
        closed = failed_handshake(EOFError("connection closed"), later.created + 1)
        assert not faults.filter(closed) and closed.levelname == "DEBUG"
    finally:
        logger.setLevel(previous)
