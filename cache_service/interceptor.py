"""A server interceptor that counts and times every RPC for ``cache_grpc_*`` metrics.

Doing it here, not in each handler, means no RPC (health and reflection included) can be
forgotten, and the status code recorded is the one the client actually received.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from cache_service.metrics import Metrics

SERVICE_PREFIX = "/cache.v1.CacheService/"


def method_label(full_method: str) -> str:
    """"GetTicker" for our own RPCs, "grpc.health.v1.Health/Check" for the others."""
    if full_method.startswith(SERVICE_PREFIX):
        return full_method[len(SERVICE_PREFIX):]
    return full_method.lstrip("/")


def _code(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    """The status the client got: set by abort/set_code, else OK, CANCELLED or UNKNOWN."""
    if isinstance(error, asyncio.CancelledError):
        return "CANCELLED"
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "OK" if error is None else "UNKNOWN"


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Wraps each registered handler so its outcome lands in the metrics."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def _record(self, method: str, context: grpc.aio.ServicerContext, start: float,
                error: BaseException | None) -> None:
        self.metrics.grpc_requests.labels(method, _code(context, error)).inc()
        self.metrics.grpc_duration.labels(method).observe(time.perf_counter() - start)

    def _wrap_unary(self, method: str, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start, error = time.perf_counter(), None
            try:
                return await behavior(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                self._record(method, context, start, error)
        return wrapper

    def _wrap_stream(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        """Streaming handlers come as async generators or as coroutines that call
        ``context.write`` (grpc's own health Watch); keep each in its own shape."""
        if not inspect.isasyncgenfunction(behavior):
            return self._wrap_unary(method, behavior)

        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            start, error = time.perf_counter(), None
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                self._record(method, context, start, error)
        return wrapper

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = method_label(handler_call_details.method)
        codec = {"request_deserializer": handler.request_deserializer,
                 "response_serializer": handler.response_serializer}
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(self._wrap_unary(method, handler.unary_unary), **codec)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(self._wrap_unary(method, handler.stream_unary), **codec)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(self._wrap_stream(method, handler.unary_stream), **codec)
        return grpc.stream_stream_rpc_method_handler(self._wrap_stream(method, handler.stream_stream), **codec)
