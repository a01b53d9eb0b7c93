"""Prometheus metrics listed in docs/bridge.md (Metrics), on a registry of the bridge's own.

A registry per bridge (not the global one) lets tests run several bridges in one process and
read each one's numbers. Labels never carry user ids, symbols or other unbounded values.
The standard ``process_*`` and ``python_info`` series are registered too, so an operator can
read a deployed bridge's CPU, memory and open file descriptors from the same scrape.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Fine between 5 and 100 ms, where a market-data SLO sits (p99 under 50 ms at 10,000 ticks/s
# is the benchmark's target): 25 then 50 ms could not tell 26 ms from 49 ms.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
                   0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FRAME_TYPES = ("connection", "response", "pong", "error", "update", "batch", "stream_status",
               "heartbeat", "token_expiring")
CONTENT_TYPE = CONTENT_TYPE_LATEST


class BridgeMetrics:
    """Every bridge metric; hot-path children (per frame type) are bound once."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.active_connections = Gauge(
            "bridge_active_connections", "Open WebSocket connections", registry=r)
        self.connections_total = Counter(
            "bridge_connections_total", "Connection attempts by outcome", ["outcome"], registry=r)
        self.disconnects_total = Counter(
            "bridge_disconnects_total", "Closed connections by close code", ["code"], registry=r)
        self.handshakes_in_progress = Gauge(
            "bridge_handshakes_in_progress", "TCP connections accepted whose opening handshake "
            "has not ended yet (bounded by --max-handshakes)", registry=r)
        self.handshakes_rejected_total = Counter(
            "bridge_handshakes_rejected_total", "Opening handshakes refused or dropped, by reason: "
            "busy (503 at accept, --max-handshakes in progress), header_too_large (431), timeout "
            "(not complete within --handshake-timeout-s)", ["reason"], registry=r)
        self.messages_received_total = Counter(
            "bridge_messages_received_total", "Client frames by action", ["action"], registry=r)
        self.messages_sent_total = Counter(
            "bridge_messages_sent_total", "Frames written to clients by type", ["type"], registry=r)
        self.request_duration_seconds = Histogram(
            "bridge_request_duration_seconds", "Time to answer a client request", ["action"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.subscriptions = Gauge(
            "bridge_subscriptions", "Active client subscriptions", registry=r)
        self.upstream_streams = Gauge(
            "bridge_upstream_streams", "Open upstream gRPC streams (one per topic)", registry=r)
        self.delivery_latency_seconds = Histogram(
            "bridge_delivery_latency_seconds", "Event time (seq id) to frame written",
            buckets=LATENCY_BUCKETS, registry=r)
        self.conflated_updates_total = Counter(
            "bridge_conflated_updates_total", "Ticker updates replaced, and book updates merged, "
            "in a slow client's backlog", registry=r)
        self.book_checksum_failures_total = Counter(
            "bridge_book_checksum_failures_total", "Book updates whose checksum the bridge's own "
            "copy of the book did not match (its self-check; must stay 0)", registry=r)
        self.fanout_failures_total = Counter(
            "bridge_fanout_failures_total", "Deliveries to one client that raised (a bug); that "
            "client was closed 1011 and the others carried on", registry=r)
        self.grpc_requests_total = Counter(
            "bridge_grpc_requests_total", "Upstream gRPC calls by method and status",
            ["method", "code"], registry=r)
        self.sent = {kind: self.messages_sent_total.labels(kind) for kind in FRAME_TYPES}
        # SPEC 9.5: bytes out / bytes in of the compressed shared frames (each compressed once
        # per lane for all its members: bridge.compression), since start; 1 before any
        self._compressed_in = 0
        self._compressed_out = 0
        Gauge("bridge_compression_ratio", "Bytes written / bytes before compression, over the "
              "compressed shared frames since start (1 before any)", registry=r).set_function(
            lambda: self._compressed_out / self._compressed_in if self._compressed_in else 1.0)
        self.upstream_stalls_total = Counter(
            "bridge_upstream_stalls_total",
            "Upstream streams given up after --upstream-stall-s without a message, by channel",
            ["channel"], registry=r)
        self.topic_failures_total = Counter(
            "bridge_topic_failures_total",
            "Unexpected errors fanning a topic out, by channel and part (stream: the topic "
            "re-opened its stream; task: the topic's task ended and was restarted); one "
            "client's failures are bridge_fanout_failures_total", ["channel", "part"], registry=r)
        self.upstream_lag_seconds = Histogram(
            "bridge_upstream_lag_seconds", "Event time (seq id: when Redis appended it) to the "
            "bridge reading it, by channel; one observation per upstream gRPC message, of its "
            "oldest event", ["channel"], buckets=LATENCY_BUCKETS, registry=r)
        self.ready = Gauge(
            "bridge_ready", "1 while /readyz answers 200, 0 while it answers 503 (draining, "
            "upstream not serving, canary stale, no JWKS keys): alertable without kube-state-metrics",
            registry=r)
        self.canary_age_seconds = Gauge(
            "bridge_canary_age_seconds", "Age of the newest canary that went Redis -> cache "
            "service -> bridge (bridge/canary.py); since start before the first one", registry=r)

    def record_sent(self, kind: str, frames: int, event_times_ms: Iterable[int],
                    copies: int = 1) -> None:
        """Count ``frames`` frames of one type written, whose updates (event times in ms) each
        reached ``copies`` clients at once: one latency observation per update *per client*,
        as the histogram means, in a few steps per call (see :class:`SentTally`)."""
        tally = SentTally(self)
        tally.add(kind, frames, event_times_ms, copies)
        tally.record()

    def compressed(self, raw_bytes: int, frame_bytes: int) -> None:
        """Count one compressed flush: its payloads' size and its frames' (headers included)."""
        self._compressed_in += raw_bytes
        self._compressed_out += frame_bytes

    def render(self) -> bytes:
        """The Prometheus text exposition of this bridge's registry."""
        return generate_latest(self.registry)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """One sample's current value (0 when absent): for tests and the readiness logic."""
        result = self.registry.get_sample_value(name, labels or {})
        return 0.0 if result is None else result


class JwksMetrics:
    """The ``--jwks-url`` metrics (bridge/jwks_fetch.py), registered on a bridge's registry
    only when it uses a JWKS: a ``bridge_jwks_fetch_ok`` of 0 on a bridge with a static key
    would page someone for nothing."""

    def __init__(self, registry: CollectorRegistry, failure_reasons: Iterable[str]) -> None:
        r = registry
        self.fetches_total = Counter(
            "bridge_jwks_fetches_total", "JWKS document fetches, by what started them "
            "(start, periodic, unknown_kid)", ["trigger"], registry=r)
        self.fetch_failures_total = Counter(
            "bridge_jwks_fetch_failures_total", "JWKS fetches that left the cached keys as "
            "they were, by reason", ["reason"], registry=r)
        self.skipped_keys_total = Counter(
            "bridge_jwks_skipped_keys_total", "Keys of fetched JWKS documents that were not "
            "used, by reason (the document's other keys were)", ["reason"], registry=r)
        self.unknown_kid_total = Counter(
            "bridge_jwks_unknown_kid_total", "Tokens naming a kid the cache did not hold: "
            "refetched, or rate_limited (refused without a fetch)", ["outcome"], registry=r)
        self.keys = Gauge("bridge_jwks_keys", "Keys in the JWKS cache", registry=r)
        self.last_success_timestamp_seconds = Gauge(
            "bridge_jwks_last_success_timestamp_seconds", "Unix time of the last JWKS fetch "
            "that replaced the cached keys (0: none yet)", registry=r)
        self.fetch_ok = Gauge(
            "bridge_jwks_fetch_ok", "1 when the last JWKS fetch succeeded, 0 when it failed "
            "(the cached keys stay in use)", registry=r)
        for reason in failure_reasons:   # every series exists from the start, for increase()
            self.fetch_failures_total.labels(reason)


def observe_all(histogram: Histogram, amounts: Sequence[float], copies: int = 1) -> None:
    """``histogram.observe(a)`` for every ``a`` in ``amounts``, ``copies`` times each, in one
    increment per bucket touched (negative amounts count as 0).

    prometheus-client has no weighted or bulk observation, and each ``observe`` takes a lock
    twice: a shared frame of 100 updates reaching 100 clients would cost 10,000 of them, more
    than writing the frame. This tallies the buckets first (the first bucket whose upper bound
    holds the amount, as ``Histogram.observe`` does) and adds the tallies;
    ``tests/bridge/test_lanes.py`` checks it against plain observations so a change in the
    library's internals cannot go unnoticed.
    """
    if not amounts:
        return
    tally = [0] * len(histogram._upper_bounds)
    _add_tally(histogram, tally, amounts, copies)
    _observe_tally(histogram, tally, sum(max(0.0, a) for a in amounts) * copies)


def _add_tally(histogram: Histogram, tally: list[int], amounts: Iterable[float], copies: int) -> None:
    bounds = histogram._upper_bounds
    for amount in amounts:
        tally[bisect_left(bounds, max(0.0, amount))] += copies


def _observe_tally(histogram: Histogram, tally: Sequence[int], total: float) -> None:
    histogram._sum.inc(total)
    for bucket, count in zip(histogram._buckets, tally):
        if count:
            bucket.inc(count)


class SentTally:
    """Frames sent and the latency of their updates, added up over one fan-out pass (a topic's
    plain lanes after an upstream message, the lanes of one batch window) and recorded once at
    its end: one increment per counter and histogram bucket touched, not three or more per lane
    flushed. A topic with 5,000 filtered lanes (5,000 clients with their own symbols) flushes
    thousands of lanes per message; their metric increments were a fifth of the bridge's CPU."""

    def __init__(self, metrics: BridgeMetrics) -> None:
        self.metrics = metrics
        self.frames: dict[str, int] = {}
        self.tally = [0] * len(metrics.delivery_latency_seconds._upper_bounds)
        self.total = 0.0
        self.now_ms = time.time() * 1000.0

    def add(self, kind: str, frames: int, event_times_ms: Iterable[int], copies: int = 1) -> None:
        """What :meth:`BridgeMetrics.record_sent` records, kept for :meth:`record`."""
        self.frames[kind] = self.frames.get(kind, 0) + frames
        amounts = [max(0.0, (self.now_ms - event_ms) / 1000.0) for event_ms in event_times_ms]
        _add_tally(self.metrics.delivery_latency_seconds, self.tally, amounts, copies)
        self.total += sum(amounts) * copies

    def record(self) -> None:
        for kind, frames in self.frames.items():
            self.metrics.sent[kind].inc(frames)
        if any(self.tally):
            _observe_tally(self.metrics.delivery_latency_seconds, self.tally, self.total)
