"""Server interceptors: one counts and times every RPC for ``cache_grpc_*`` metrics; one refuses
user metadata from peers not allowed to send it (``--user-metadata-from mtls``).

Doing it here, not in each handler, means no RPC (health and reflection included) can be
forgotten, and the status code recorded is the one the client actually received.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from contextlib import contextmanager
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc

from cache_service.metrics import Metrics
from cache_service.trust import LogThrottle, Peer, UserMetadataPolicy, carries_user_metadata
from marketbridge.service import METHOD_PREFIX

log = logging.getLogger(__name__)
Behavior = Callable[..., Any]
Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]
REFUSAL_LOG_INTERVAL_S = 10.0


def method_label(full_method: str) -> str:
    """"GetTicker" for our own RPCs, "grpc.health.v1.Health/Check" for the others."""
    if full_method.startswith(METHOD_PREFIX):
        return full_method[len(METHOD_PREFIX):]
    return full_method.lstrip("/")


def _code(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    """The status the client got: set by abort/set_code, else OK, CANCELLED or UNKNOWN."""
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "OK" if error is None else "UNKNOWN"


_DONE = object()


async def _resolve(behavior: Callable[..., Any], request: Any, context: grpc.aio.ServicerContext) -> Any:
    """Run a non-async-generator handler to completion, whatever it returns."""
    if inspect.iscoroutinefunction(behavior):
        result = await behavior(request, context)
    else:
        result = await asyncio.to_thread(behavior, request, context)
        if inspect.isawaitable(result):
            result = await result
    if isinstance(result, AsyncIterator):
        async for response in result:
            await context.write(response)
        return None
    if isinstance(result, Iterator):
        while (response := await asyncio.to_thread(next, result, _DONE)) is not _DONE:
            await context.write(response)
        return None
    return result


def rebuild(handler: grpc.RpcMethodHandler, wrap: Callable[[Behavior], Behavior]) -> grpc.RpcMethodHandler:
    """The same handler (shape, codec) with its behavior replaced by ``wrap(behavior)``."""
    codec = {"request_deserializer": handler.request_deserializer,
             "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary), **codec)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary), **codec)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream), **codec)
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream), **codec)


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each registered handler so its outcome lands in the metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def _record(self, method: str, context: grpc.aio.ServicerContext, start: float,
                error: BaseException | None) -> None:
        self.metrics.grpc_requests.labels(method, _code(context, error)).inc()
        self.metrics.grpc_duration.labels(method).observe(time.perf_counter() - start)

    def _wrap(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        """Wrap any handler shape grpc.aio accepts, keeping streaming handlers streaming.

        Async generators stay async generators (yield). Everything else becomes a coroutine that
        resolves what the handler returns: a coroutine (``async def`` unary, or a streaming
        handler that calls ``context.write`` like grpc's own health ``Watch``) is awaited; an
        async or sync iterator of responses is written with ``context.write``; a plain value
        (a sync unary handler) is returned. Sync handlers run in a worker thread, as grpc.aio
        would run them, so a blocking one does not stall the event loop.
        """
        if inspect.isasyncgenfunction(behavior):
            return self._wrap_async_gen(method, behavior)

        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with self._measured(method, context):
                return await _resolve(behavior, request, context)
        return wrapper

    def _wrap_async_gen(self, method: str, behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., Any]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            with self._measured(method, context):
                async for response in behavior(request, context):
                    yield response
        return wrapper

    @contextmanager
    def _measured(self, method: str, context: grpc.aio.ServicerContext) -> Iterator[None]:
        """Time the body and record it with whatever it raised (a stream's whole life, for streams)."""
        start, error = time.perf_counter(), None
        try:
            yield
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._record(method, context, start, error)

    async def intercept_service(self, continuation: Continuation,
                                handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = method_label(handler_call_details.method)
        return rebuild(handler, lambda behavior: self._wrap(method, behavior))


class UserMetadataInterceptor(grpc.aio.ServerInterceptor):
    """Refuses a call that carries user metadata from a peer the policy does not trust
    (cache_service.trust), before its handler runs: PERMISSION_DENIED, counted in
    ``cache_user_metadata_refused_total`` and logged at most once per ``REFUSAL_LOG_INTERVAL_S``.

    Installed after the metrics interceptor, so refusals are counted as RPCs too. A call
    without user metadata (an internal writer's) goes through untouched, at no cost."""

    def __init__(self, policy: UserMetadataPolicy, metrics: Metrics) -> None:
        self.policy = policy
        self.metrics = metrics
        self.throttle = LogThrottle(REFUSAL_LOG_INTERVAL_S)

    async def intercept_service(self, continuation: Continuation,
                                handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None or not carries_user_metadata(handler_call_details.invocation_metadata):
            return handler
        method = method_label(handler_call_details.method)
        return rebuild(handler, lambda behavior: self._guard(method, behavior))

    def _guard(self, method: str, behavior: Behavior) -> Behavior:
        """``behavior`` run only once the peer is admitted (the peer is known only per call)."""
        if inspect.isasyncgenfunction(behavior):
            async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                await self._admit(method, context)
                async for response in behavior(request, context):
                    yield response
            return stream

        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await self._admit(method, context)
            return await _resolve(behavior, request, context)
        return call

    async def _admit(self, method: str, context: grpc.aio.ServicerContext) -> None:
        peer = Peer.from_auth_context(context.auth_context())
        refusal = self.policy.refusal(context.invocation_metadata(), peer)
        if refusal is None:
            return
        self.metrics.user_metadata_refused.inc()
        held = self.throttle.admit(time.monotonic())
        if held is not None:
            log.warning("refused %s from %s (%s): it carries user metadata, and only %s may "
                        "(--user-metadata-peers); %d more such refusals since the last line",
                        method, peer.shown, context.peer(), ", ".join(sorted(self.policy.peers)), held)
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)
