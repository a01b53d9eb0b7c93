"""Opening handshakes in progress: how many at once, how large a request head, what to log.

Sans-I/O: plain objects the connection's callbacks drive (bridge/guarded_connection.py).

A TCP connection is a handshake in progress from its accept until the upgrade, an HTTP answer,
a failure or its close. Each one holds a task, a protocol object and its buffers, and
``websockets`` bounds none of that by count: 10,000 sockets that connect and then say nothing
(or trickle a byte a second, slowloris) would all be held until ``open_timeout``. So:

- :class:`HandshakeGuard` admits at most ``--max-handshakes`` at once; a connection beyond it
  is answered 503 at accept, before a byte of it is read, and closed.
- :class:`RequestHead` measures the request head as it arrives and says when it goes over
  ``--max-header-bytes`` in all, or over ``websockets``' own per-line and header-count limits
  (module constants there, ``WEBSOCKETS_MAX_LINE_LENGTH`` / ``WEBSOCKETS_MAX_NUM_HEADERS``):
  checked before ``websockets`` parses the bytes, so the client gets a 431 where ``websockets``
  would only half-close the socket.
- :class:`~marketbridge.log_throttle.Throttle` (shared with the cache service) keeps the log to
  one line per reason per interval, carrying the count of
  the events it stands for: a flood of refusals is a few lines a minute, not one per socket.

The wall-clock bound (a silent or trickling socket dropped within ``--handshake-timeout-s``) is
a deadline over the whole handshake, not an idle timer, so a byte a second does not extend it:
:func:`drop_at` spreads it over the timeout's last fifth, and ``websockets``' ``open_timeout``
(the same timeout) stays behind it as the library's own bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from websockets.datastructures import Headers
from websockets.http11 import MAX_LINE_LENGTH, MAX_NUM_HEADERS, Response

from marketbridge.log_throttle import Throttle  # noqa: F401 - the throttle of its refusals' log lines

BUSY = "busy"                            # more than --max-handshakes in progress
HEADER_TOO_LARGE = "header_too_large"    # the request head over a limit of RequestLimits
TIMEOUT = "timeout"                      # not complete within --handshake-timeout-s
REASONS = (BUSY, HEADER_TOO_LARGE, TIMEOUT)
# A handshake is dropped at a random moment of the last fifth of --handshake-timeout-s, not at
# the same instant after every accept: a crowd of sockets opened together (an attacker's, or
# a reconnect storm's stragglers) is then dropped, and reconnects, over a fifth of the timeout
# (2 s by default) rather than in one burst that holds the event loop for every other client (bench/handshakes.py).
DEADLINE_SPREAD = 0.2


class HandshakeGuard:
    """Counts handshakes in progress against a bound."""

    def __init__(self, max_in_progress: int) -> None:
        self.max_in_progress = max_in_progress
        self.in_progress = 0

    def admit(self) -> bool:
        """Take a slot for a new connection; False (nothing taken) when all are in use."""
        if self.in_progress >= self.max_in_progress:
            return False
        self.in_progress += 1
        return True

    def release(self) -> None:
        """Give back the slot of a handshake that ended, however it ended."""
        self.in_progress = max(0, self.in_progress - 1)


def drop_at(accepted_at: float, timeout_s: float, draw: float) -> float:
    """When a handshake accepted at ``accepted_at`` is dropped if not complete, for a ``draw``
    in [0, 1): within the timeout, never later (``DEADLINE_SPREAD``)."""
    return accepted_at + timeout_s * (1.0 - DEADLINE_SPREAD * draw)


@dataclass(frozen=True)
class RequestLimits:
    """Bounds on one request head: bytes in all, bytes per line (CRLF included), header lines.

    The per-line and count bounds default to ``websockets``' own, so a request this check
    passes is never refused by ``websockets``' parser for its size."""

    max_bytes: int
    max_line: int = MAX_LINE_LENGTH
    max_headers: int = MAX_NUM_HEADERS


@dataclass
class RequestHead:
    """One request head's size as it arrives, up to the blank line that ends it."""

    limits: RequestLimits
    size: int = 0          # bytes of the head so far
    line: int = 0          # bytes of the line not yet ended
    longest: int = 0       # bytes of the longest line ended
    lines: int = 0         # lines ended before the blank one: the request line, then headers
    complete: bool = False

    def feed(self, data: bytes) -> bool:
        """Count ``data``; True once the head is over a limit (and for every call after)."""
        start = 0
        while not self.complete:
            end = data.find(b"\n", start)
            taken = (len(data) if end < 0 else end + 1) - start
            self.size += taken
            self.line += taken
            if end < 0:
                break
            self._end_line()
            start = end + 1
        return self.too_large

    def _end_line(self) -> None:
        if self.line <= 2 and self.lines:   # "\r\n": the blank line after the headers
            self.complete = True
        else:
            self.lines += 1
            self.longest = max(self.longest, self.line)
        self.line = 0

    @property
    def too_large(self) -> bool:
        """Over a limit so far: in all, in one line (ended or not), or in header lines."""
        limits = self.limits
        return (self.size > limits.max_bytes or max(self.longest, self.line) > limits.max_line
                or self.lines - 1 > limits.max_headers)


def refusal(status: int, reason_phrase: str, text: str) -> bytes:
    """A complete ``Connection: close`` HTTP response, as ``websockets`` serialises one: the
    bytes a refused client reads before the socket closes (built once per status)."""
    body = (text + "\n").encode()
    headers = Headers([("Content-Type", "text/plain; charset=utf-8"),
                       ("Content-Length", str(len(body))), ("Connection", "close"),
                       ("Server", "marketbridge")])
    if status == 503:
        headers["Retry-After"] = "1"
    return Response(status, reason_phrase, headers, body).serialize()


BUSY_RESPONSE = refusal(503, "Service Unavailable", "too many handshakes in progress")
HEADER_TOO_LARGE_RESPONSE = refusal(431, "Request Header Fields Too Large",
                                    "request header too large")
