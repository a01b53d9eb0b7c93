"""Client frames in, actions run: rate limit, parse, count, run, turn errors into responses.

Every frame is charged to the client's token bucket before it is parsed (a flood of garbage
costs the same as a flood of requests). A request runs its handler from
:data:`bridge.actions.ACTIONS` in a task of its own, so a slow upstream call never stops
``ping`` or ``unsubscribe``; whatever a handler raises costs that one request (a
:class:`~bridge.errors.BridgeError` is its response, anything else ``INTERNAL``), never the
connection.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from bridge.actions import ACTIONS, Client, Handler
from bridge.errors import INTERNAL, RATE_LIMITED, BridgeError
from bridge.limits import RATE_LIMIT_REASON, RateLimiter, Verdict
from bridge.metrics import BridgeMetrics
from bridge.protocol import (
    ProtocolError,
    Reply,
    Request,
    error_frame,
    error_response_frame,
    parse_request,
    protocol_error_frame,
    unknown_action_error,
)

# The session's logger: an action that fails has always been logged as the connection's.
log = logging.getLogger("bridge.connection")


class Requester(Client, Protocol):
    """What dispatching needs from a session besides what actions need: where replies go,
    and how to close it (a client that keeps flooding)."""

    def send(self, reply: Reply) -> None: ...
    def close_soon(self, code: int, reason: str) -> None: ...


class Dispatcher:
    """One session's requests: the rate limit, and the handler tasks still running.

    Slotted, as the session's other parts: one lives per connection (10,000 idle connections
    are a target, docs/benchmarks.md), and an instance dict would cost each one ~100 bytes.
    """

    __slots__ = ("client", "limiter", "rate_limit", "metrics", "tasks")

    def __init__(self, client: Requester, limiter: RateLimiter, rate_limit: float,
                 metrics: BridgeMetrics) -> None:
        self.client = client
        self.limiter = limiter
        self.rate_limit = rate_limit   # for the REJECT message
        self.metrics = metrics
        # The running handler tasks, in a dict used as a set: an empty set is 216 bytes on
        # every idle connection, an empty dict 64.
        self.tasks: dict[asyncio.Task[None], None] = {}

    def handle(self, frame: str | bytes) -> None:
        """One frame from the client; never raises, never waits."""
        verdict = self.limiter.check(time.monotonic())
        try:
            request = parse_request(frame)
        except ProtocolError as exc:
            label = exc.action if exc.action in ACTIONS else ("unknown" if exc.action else "invalid")
            self.metrics.messages_received_total.labels(label).inc()
            if verdict is Verdict.ALLOW:
                self.client.send(Reply(protocol_error_frame(exc), "error"))
            return self._over_limit(verdict, None)
        handler = ACTIONS.get(request.action)
        self.metrics.messages_received_total.labels(
            request.action if handler is not None else "unknown").inc()
        if verdict is not Verdict.ALLOW:
            return self._over_limit(verdict, request)
        if handler is None:
            reply = Reply(protocol_error_frame(unknown_action_error(request)), "response")
            return self.client.send(reply)
        task = asyncio.create_task(self._run(handler, request))
        self.tasks[task] = None
        task.add_done_callback(self._done)

    def _over_limit(self, verdict: Verdict, request: Request | None) -> None:
        if verdict is Verdict.CLOSE:
            self.client.close_soon(1008, RATE_LIMIT_REASON)
        elif verdict is Verdict.REJECT:
            message = f"more than {self.rate_limit:g} messages per second, slow down"
            if request is None:
                self.client.send(Reply(error_frame(RATE_LIMITED, message), "error"))
            else:
                self.client.send(Reply(error_response_frame(request.action, request.request_id,
                                                            RATE_LIMITED, message)))

    async def _run(self, handler: Handler, request: Request) -> None:
        started = time.perf_counter()
        try:
            reply = await handler(self.client, request)
        except BridgeError as exc:
            reply = Reply(error_response_frame(request.action, request.request_id, exc.code,
                                               exc.message))
        except Exception:  # a bug must cost one request, not the connection
            log.exception("action %s failed", request.action)
            reply = Reply(error_response_frame(request.action, request.request_id, INTERNAL,
                                               "Internal error"))
        if reply is not None:
            self.client.send(reply)
        self.metrics.request_duration_seconds.labels(request.action).observe(
            time.perf_counter() - started)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.pop(task, None)

    def cancel(self) -> list[asyncio.Task[None]]:
        """The connection ended: cancel every handler still running (the caller awaits them)."""
        running = list(self.tasks)
        for task in running:
            task.cancel()
        return running
