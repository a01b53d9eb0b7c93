"""The logger the WebSocket server reports failed opening handshakes to, with the client's
faults kept out of the error log.

``websockets`` logs every failed opening handshake as an ERROR with a traceback, including a
TCP connection that closes before sending its HTTP request (a load balancer's TCP health
check, a port scan, a client giving up) and one that sends something that is not HTTP. Those
are not the server's faults, and a TCP health check every few seconds would fill the error
log with tracebacks that hide real ones. They are logged here in one line: DEBUG for a
connection that closed before its request, INFO for a request that was not valid HTTP.
Anything else (a failure in the bridge's own request handling) stays an ERROR with its
traceback.
"""

from __future__ import annotations

import logging

from websockets.exceptions import InvalidMessage

WS_LOGGER = "bridge.ws"  # the websockets server's records: listening, handshakes, closes


class ClientHandshakeFaults(logging.Filter):
    """Rewrites "opening handshake failed" records whose cause is the client's."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, InvalidMessage):
            return True
        closed_early = isinstance(error.__cause__, EOFError)
        record.levelno, record.levelname = (
            (logging.DEBUG, "DEBUG") if closed_early else (logging.INFO, "INFO")
        )
        message = record.getMessage()
        record.msg, record.args = "%s: %s (%s)", (message, error, error.__cause__)
        record.exc_info = record.exc_text = None
        return logging.getLogger(record.name).isEnabledFor(record.levelno)


def server_logger() -> logging.Logger:
    """The WebSocket server's logger, with :class:`ClientHandshakeFaults` attached once."""
    logger = logging.getLogger(WS_LOGGER)
    if not any(isinstance(f, ClientHandshakeFaults) for f in logger.filters):
        logger.addFilter(ClientHandshakeFaults())
    return logger
