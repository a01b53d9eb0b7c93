"""Prometheus metrics listed in docs/cache_service.md (Metrics), on a registry of the service's own.

A registry per service instance (not the global one) lets tests run several services in one
process. Labels are bounded: method names of registered RPCs, status code names, and the
three channel names; never users, symbols or exchanges.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from cache_service.feed_health import CAUSES

CHANNELS = ("tickers", "orders", "bots")
FEED_STAGES = ("reader", "subscriber", "stream")


class Metrics:
    """Every metric the cache service exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.grpc_requests = Counter(
            "cache_grpc_requests_total", "gRPC requests handled, by method and status code",
            ["method", "code"], registry=self.registry)
        self.grpc_duration = Histogram(
            "cache_grpc_request_duration_seconds", "gRPC handling time (streams: whole lifetime)",
            ["method"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.redis_up = Gauge("cache_redis_up", "1 when Redis answers PING", registry=self.registry)
        self.redis_reconnects = Counter(
            "cache_redis_reconnects", "Times Redis came back after being down",
            registry=self.registry)
        self.stream_subscribers = Gauge(
            "cache_stream_subscribers", "Open stream subscriptions, by channel", ["channel"],
            registry=self.registry)
        self.events_published = Counter(
            "cache_events_published", "Changes appended to the change feed, by channel",
            ["channel"], registry=self.registry)
        self.feed_failures = Counter(
            "cache_feed_failures", "Unexpected failures in the change feed (logged with traceback), "
            "by stage: reader (its loop crashed), subscriber (a filter failed), stream (encoding)",
            ["stage"], registry=self.registry)
        self.feed_interruptions = Counter(
            "cache_feed_interruptions", "Change-feed readers that ended their streams UNAVAILABLE, "
            "by cause: connection, stalled, unconfirmed, internal", ["cause"], registry=self.registry)
        self.replica_acks_missing = Counter(
            "cache_replica_acks_missing", "Writes answered UNAVAILABLE because fewer than "
            "--min-replica-acks replicas confirmed them within --replica-ack-timeout-ms (the "
            "write may exist on the primary)", registry=self.registry)
        self.books_stale = Gauge(
            "cache_books_stale", "Books waiting for a snapshot (a delta was missed or would have "
            "crossed them), among the books this process writes", registry=self.registry)
        self.trades_duplicate = Counter(
            "cache_trades_duplicate", "Trades whose trade_id their symbol already had (a retried "
            "publish): not stored or counted again", registry=self.registry)
        self.candle_trades_late = Counter(
            "cache_candle_trades_late", "Trades older than every retained candle of an interval, "
            "once per such interval (stored as trades, not counted in that interval's candles)", registry=self.registry)
        self.user_metadata_refused = Counter(
            "cache_user_metadata_refused", "Calls refused PERMISSION_DENIED for carrying x-user-id or "
            "x-user-scope from a peer not allowed to (--user-metadata-from mtls)", registry=self.registry)
        for stage in FEED_STAGES:
            self.feed_failures.labels(stage)
        for cause in CAUSES:
            self.feed_interruptions.labels(cause)
        for channel in CHANNELS:
            self.stream_subscribers.labels(channel)
            self.events_published.labels(channel)
        self._http: tuple[WSGIServer, threading.Thread] | None = None

    def serve(self, host: str, port: int) -> None:
        """Expose /metrics on ``port`` (0 = do not serve)."""
        if port and self._http is None:
            self._http = start_http_server(port, addr=host, registry=self.registry)

    def close(self) -> None:
        if self._http is not None:
            server, thread = self._http
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            self._http = None
