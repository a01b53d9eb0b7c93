"""The logger the WebSocket server reports failed opening handshakes to, with the client's
faults kept out of the error log.

``websockets`` logs every failed opening handshake as an ERROR with a traceback, including a
TCP connection that closes before sending its HTTP request (a load balancer's TCP health
check, a port scan, a client giving up) and one that sends something that is not HTTP. Those
are not the server's faults, and a TCP health check every few seconds would fill the error
log with tracebacks that hide real ones. They are logged here in one line: DEBUG for a
connection that closed before its request, INFO for a request that was not valid HTTP (at
most one such line per 10 s, carrying the count since the last: a client sending garbage in a
loop must not flood the log; ``bridge_handshakes_*`` and bridge/guarded_connection.py handle
the other handshake refusals the same way).
Anything else (a failure in the bridge's own request handling) stays an ERROR with its
traceback.

Plain HTTP answered on the same port (probes, the live page, metrics) is not a handshake
failure either, though ``websockets`` logs each such answer as "connection rejected (200 OK)"
at INFO: thirty lines a minute of a page and its probes. Those records are dropped for a
success or a redirect; :mod:`bridge.routes` logs an access line at DEBUG instead.

At DEBUG ``websockets`` also logs each request line and header as received, which would put
a client's token (``?token=``, ``Authorization``) in the log: :class:`RedactSecrets` blanks
them before any handler sees the record.
"""

from __future__ import annotations

import logging
import re

from websockets.exceptions import InvalidMessage

from marketbridge.log_throttle import Throttle

WS_LOGGER = "bridge.ws"  # the websockets server's records: listening, handshakes, closes
HTTP_ANSWERED = "connection rejected (%d %s)"   # websockets' record of a process_request answer
INVALID_LOG_INTERVAL_S = 10.0


class ClientHandshakeFaults(logging.Filter):
    """Rewrites "opening handshake failed" records whose cause is the client's."""

    def __init__(self) -> None:
        super().__init__()
        self.invalid = Throttle(INVALID_LOG_INTERVAL_S)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == HTTP_ANSWERED and record.args and record.args[0] < 400:  # type: ignore[index,operator]
            return False
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
        if not logging.getLogger(record.name).isEnabledFor(record.levelno):
            return False
        return closed_early or self._invalid_due(record)

    def _invalid_due(self, record: logging.LogRecord) -> bool:
        """Whether an invalid request's line goes out now; if so it says how many it stands for."""
        count = self.invalid.note("invalid", record.created)
        if count > 1:
            record.msg += "; %d such requests since the last such line"
            record.args = (*record.args, count)  # type: ignore[misc]
        return count > 0


REQUEST_LINE = "< GET %s HTTP/1.1"       # websockets' DEBUG record of a request line
HEADER_LINE = "< %s: %s"                  # ... and of each request header
SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
TOKEN_PARAM = re.compile(r"(?i)([?&]token=)[^&#]*")
REDACTED = "[redacted]"


class RedactSecrets(logging.Filter):
    """Blanks tokens in the request lines and headers ``websockets`` logs at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.msg == REQUEST_LINE and isinstance(args, tuple) and args:
            record.args = (TOKEN_PARAM.sub(r"\1" + REDACTED, str(args[0])),)
        elif (record.msg == HEADER_LINE and isinstance(args, tuple) and len(args) == 2
              and str(args[0]).lower() in SECRET_HEADERS):
            record.args = (args[0], REDACTED)
        return True


def server_logger() -> logging.Logger:
    """The WebSocket server's logger, with :class:`RedactSecrets` and
    :class:`ClientHandshakeFaults` attached once."""
    logger = logging.getLogger(WS_LOGGER)
    for kind in (RedactSecrets, ClientHandshakeFaults):
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())
    return logger
