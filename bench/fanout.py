"""Scenario (a): fan-out. N clients subscribe to S symbols; a publisher sends R ticks/s.

Each client checks every symbol's sequence (gaps, duplicates, reordering) and records the
publish-to-receive latency of every update. Three modes are measured the same way:
``plain`` (one frame per update), ``batch`` (``?batch_ms=``), ``baseline`` (the pub/sub
relay of bench/baseline_pubsub.py, fed by Redis PUBLISH at the same rate) and
``baseline_batch`` (the same relay broadcasting one batch frame per window).

Loss versus conflation: under backpressure the bridge keeps only the latest ticker per symbol
for a slow reader (docs/protocol.md), which shows up in the client as a hole in the sequence. The
bridge counts these (``bridge_conflated_updates_total``); loss is the holes it does not
account for. The baseline never conflates, so all its holes are loss.

Probes and counters: checking every update of 100 clients costs the load generator about as
much CPU as the bridge spends sending them, on the same two cores. So one client in
``probe_every`` (default every client when there are few, one in ten at 100) decodes and
checks every update (sequence per symbol, latency); the others only count the updates in
each frame (a byte search, no decoding) and their holes are ``sent - received``. All clients
receive the same stream, so the probes' latency is the clients' latency.

Both kinds speak WebSocket through bench/lean_connection.py (an asyncio Protocol over the
sans-I/O reader of bench/rawws.py), so the load generator spends its CPU on checking updates,
not on client machinery: the measurement takes as little as it can of the two cores the
servers it measures run on.

The same machinery measures the ``trades`` channel (bench/trades.py): ``channel="trades"``
publishes ``PublishTrades`` (each symbol's trade ids numbered 1, 2, 3...) and checks each
``trade_update``'s ``trade_id`` the way a ticker's sequence is checked: every published trade
received by every client exactly once, in order. Trades are never conflated.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.frames import decode, ticker_updates
from bench.latency import LatencyHistogram
from bench.lean_connection import LeanConnection, TextInbox
from bench.procstats import ProcessSampler, wait_until_idle
from bench.profiling import Profiler
from bench.publisher import PublishPlan, PublishResult, publish_grpc, publish_pubsub
from bench.rawws import OP_TEXT
from bench.scrape import delta, histogram_quantiles, scrape
from bench.sequence import SequenceChecker
from bench.stack import BASELINE_CHANNEL, Endpoints
from bench.ticks import symbol_names
from bench.tokens import client_tokens
from bench.workers import WorkerPool, new_queue, next_command, run_loop, run_worker, start_process
from bench.wsclient import SessionError, encode, ws_url

MODES = ("plain", "batch", "baseline", "baseline_batch")
BATCHED = ("batch", "baseline_batch")
CONNECT_CONCURRENCY = 50
SETTLE_TIMEOUT_S = 60.0


def is_baseline(mode: str) -> bool:
    """The pub/sub relay modes (no bridge, no cache service, no conflation)."""
    return mode.startswith("baseline")


@dataclass
class FanoutSettings:
    """One point of the sweep."""

    mode: str
    rate: float
    clients: int
    symbols: int
    duration_s: float
    batch_ms: int
    workers: int
    publisher_streams: int | None = None
    connect_timeout_s: float = 30.0
    drain_s: float = 10.0
    compression: str | None = None
    probe_every: int = 1
    profile_dir: Path | None = None
    channel: str = "tickers"  # or "trades" (bench/trades.py)
    pick: int | None = None   # symbols per client, drawn at random (None: every client all)

    @classmethod
    def of(cls, config: Any, mode: str, rate: float, channel: str = "tickers") -> FanoutSettings:
        """The point at ``mode`` and ``rate`` of a run's config (the tickers sweep and the
        trades scenario both build theirs here)."""
        return cls(mode=mode, rate=rate, clients=config.clients, symbols=config.symbols,
                   duration_s=config.duration, batch_ms=config.batch_ms, workers=config.workers,
                   publisher_streams=config.publisher_streams, drain_s=config.drain,
                   compression=config.compression, probe_every=config.probe_every,
                   profile_dir=config.profile_dir, channel=channel,
                   pick=getattr(config, "pick", None))


@dataclass
class FanoutJob:
    """What one worker process does: its share of the clients, all on the same subscription."""

    worker: int
    urls: list[str]
    welcome: bool
    exchange: str
    symbols: list[str]
    timeout_s: float
    compression: str | None
    probes: list[bool]
    channel: str = "tickers"
    picks: list[list[str]] | None = None   # per url: its client's symbols (None: ``symbols``)


# Per channel: the update action, and the field that carries the publisher's per-symbol number.
CHANNELS = {"tickers": ("ticker_update", "volume"), "trades": ("trade_update", "trade_id")}
UPDATE_MARK = b'"ticker_update"'
QUIET_S = 1.0
PICK_SEED = 17


class _LeanClient:
    """What probes and counters share: a lean connection (bench/lean_connection.py), the
    welcome and subscribe exchange, and the tally of frames that carried no update."""

    probe: bool

    def __init__(self) -> None:
        self.conn: LeanConnection | None = None
        self.inbox = TextInbox()
        self.set_up = False  # until then, texts without updates are the welcome and replies
        self.other_frames: Counter[str] = Counter()
        self.symbols: list[str] | None = None   # subscribed to (None: every symbol published)

    @property
    def last_frame(self) -> float:
        return self.conn.last_data if self.conn else 0.0

    @property
    def close_code(self) -> int | None:
        return self.conn.close_code if self.conn else None

    def _other(self, frame: dict[str, Any] | None) -> None:
        """A message that carried no update (``None``: a binary one): the set-up exchange,
        else tallied by type."""
        if frame is None:
            self.other_frames["binary"] += 1
        elif not self.set_up:
            self.inbox.put(frame)
        else:
            self.other_frames[str(frame.get("type"))] += 1

    def on_message(self, opcode: int, buf: bytes | bytearray, start: int, stop: int) -> None:
        raise NotImplementedError

    def own(self, final: dict[str, int]) -> dict[str, int]:
        """The part of the publisher's last numbers per symbol this client subscribed to."""
        return final if self.symbols is None else {s: final[s] for s in self.symbols if s in final}

    async def open(self, job: FanoutJob, url: str) -> None:
        """Connect, read the welcome and subscribe (the relay sends neither welcome nor reply)."""
        self.conn = await LeanConnection.open(
            url, self.on_message, job.timeout_s, deflate=job.compression == "deflate"
        )
        if job.welcome:
            welcome = await self.inbox.next(job.timeout_s)
            if welcome.get("type") != "connection" or welcome.get("status") != "connected":
                raise SessionError(f"unexpected first frame: {welcome}")
            params = {
                "channel": job.channel,
                "exchange": job.exchange,
                "symbols": job.symbols if self.symbols is None else self.symbols,
                "snapshot": False,
            }
            self.conn.send_text(encode({"action": "subscribe", "request_id": 1, "params": params}))
            reply = await self.inbox.next(job.timeout_s)
            if not reply.get("success"):
                raise SessionError(f"subscribe refused: {reply.get('error')}")
        self.set_up = True

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


class ProbeClient(_LeanClient):
    """Decodes every message and checks every ticker update: sequence and latency."""

    probe = True

    def __init__(self, exchange: str, hist: LatencyHistogram, channel: str = "tickers") -> None:
        super().__init__()
        self.exchange = exchange
        self.action, self.number = CHANNELS[channel]
        self.hist = hist
        self.checker = SequenceChecker()
        self.foreign = 0

    @property
    def received(self) -> int:
        return self.checker.received

    def holes(self, final: dict[str, int]) -> int:
        return self.checker.gaps + self.checker.missing_tail(self.own(final))

    def finished(self, final: dict[str, int], _now: float) -> bool:
        return self.close_code is not None or self.checker.caught_up(self.own(final))

    def on_message(self, opcode: int, buf: bytes | bytearray, start: int, stop: int) -> None:
        """Time every update against the moment its message is read, then check its sequence."""
        now, exchange = time.time(), self.exchange
        frame = decode(bytes(buf[start:stop])) if opcode == OP_TEXT else None
        updates = ticker_updates(frame, self.action) if frame is not None else []
        if not updates:
            self._other(frame)  # parsed once, here
            return
        observe, record, number = self.checker.observe, self.hist.record, self.number
        for ticker in updates:
            if ticker["exchange"] != exchange:  # another point's straggler
                self.foreign += 1
                continue
            observe(ticker["symbol"], int(ticker[number]))
            record(now - ticker["time"])


class CounterClient(_LeanClient):
    """Only counts the updates in each message: a byte search, no decoding."""

    probe = False

    def __init__(self, channel: str = "tickers") -> None:
        super().__init__()
        self.received = 0
        self.mark = f'"{CHANNELS[channel][0]}"'.encode()

    def holes(self, final: dict[str, int]) -> int:
        return max(0, sum(self.own(final).values()) - self.received)

    def finished(self, final: dict[str, int], now: float) -> bool:
        """Got everything, went quiet, or closed."""
        if self.close_code is not None or self.received >= sum(self.own(final).values()):
            return True
        return now - self.last_frame > QUIET_S

    def on_message(self, opcode: int, buf: bytes | bytearray, start: int, stop: int) -> None:
        found = buf.count(self.mark, start, stop)
        if found:
            self.received += found
        else:
            self._other(decode(bytes(buf[start:stop])) if opcode == OP_TEXT else None)


Client = ProbeClient | CounterClient


async def open_gated(client: Any, job: Any, url: str, gate: asyncio.Semaphore) -> Any:
    """Open ``client`` within the connect gate; a failed open aborts its half-made connection
    (the fan-out and depth workers both connect this way)."""
    async with gate:
        try:
            await client.open(job, url)
        except BaseException:
            if client.conn is not None:
                client.conn.abort()
            raise
    return client


async def _connect(
    job: FanoutJob, url: str, probe: bool, hist: LatencyHistogram, gate: asyncio.Semaphore,
    symbols: list[str] | None,
) -> Client:
    client: Client = (
        ProbeClient(job.exchange, hist, job.channel) if probe else CounterClient(job.channel)
    )
    client.symbols = symbols
    return await open_gated(client, job, url, gate)


async def _worker_main(job: FanoutJob, ctrl: Any, results: Any) -> None:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    hist = LatencyHistogram()
    attempts = await asyncio.gather(
        *(_connect(job, u, p, hist, gate, job.picks[i] if job.picks else None)
          for i, (u, p) in enumerate(zip(job.urls, job.probes, strict=True))),
        return_exceptions=True,
    )
    clients: list[Client] = [a for a in attempts if isinstance(a, (ProbeClient, CounterClient))]
    errors = Counter(
        type(a).__name__ + ": " + str(a)[:120] for a in attempts if isinstance(a, BaseException)
    )
    results.put(
        {"kind": "ready", "worker": job.worker, "connected": len(clients), "errors": dict(errors)}
    )
    cpu_at_ready = time.process_time()
    command = await next_command(ctrl, timeout=job.timeout_s + 600)
    final: dict[str, int] = command["final"] if command else {}
    drain_until = time.monotonic() + (command["drain_s"] if command else 0)
    while time.monotonic() < drain_until and not all(
        c.finished(final, time.time()) for c in clients
    ):
        await asyncio.sleep(0.05)
    closed_early = Counter(str(c.close_code) for c in clients if c.close_code not in (None, 1000))
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    probes = [c for c in clients if isinstance(c, ProbeClient)]
    results.put(
        {
            "kind": "result",
            "worker": job.worker,
            "hist": hist.to_wire(),
            "last_seen": max((c.last_frame for c in clients), default=0.0),
            "cpu_s": time.process_time() - cpu_at_ready,  # reading and checking only
            "setup_cpu_s": cpu_at_ready,  # starting Python, importing, connecting
            "reads": sum(c.conn.reads for c in clients if c.conn),
            "wire_bytes": sum(c.conn.wire_bytes for c in clients if c.conn),
            "frames": sum(c.conn.reader.frames for c in clients if c.conn and c.conn.reader),
            "probes": len(probes),
            "received": sum(c.received for c in clients),
            "expected": sum(sum(c.own(final).values()) for c in clients),
            "holes": sum(c.holes(final) for c in clients),
            "probe_gaps": sum(p.checker.gaps for p in probes),
            "probe_tail": sum(p.checker.missing_tail(p.own(final)) for p in probes),
            "duplicates": sum(p.checker.duplicates for p in probes),
            "reordered": sum(p.checker.reordered for p in probes),
            "foreign": sum(p.foreign for p in probes),
            "closed_early": dict(closed_early),
            "other_frames": dict(sum((p.other_frames for p in probes), Counter())),
        }
    )


def fanout_worker(job: FanoutJob, ctrl: Any, results: Any) -> None:
    """Process entry point: run the worker, report a crash instead of hanging the coordinator."""
    run_worker(job.worker, _worker_main(job, ctrl, results), results)


def publisher_process(kind: str, where: str, plan: PublishPlan, out: Any) -> None:
    """Process entry point: publish the plan (gRPC or pub/sub) and put the PublishResult."""

    async def go() -> PublishResult:
        if kind in ("grpc", "grpc_trades"):
            coro = publish_grpc(
                where, plan, deadline_s=plan.duration_s * 4 + 60, trades=kind == "grpc_trades"
            )
        else:
            coro = publish_pubsub(where, BASELINE_CHANNEL, plan)
        return await asyncio.wait_for(coro, timeout=plan.duration_s * 4 + 90)

    try:
        out.put(run_loop(go()))
    except BaseException as exc:  # noqa: BLE001
        out.put(PublishResult(error=f"{type(exc).__name__}: {exc}"))


def _jobs(settings: FanoutSettings, endpoints: Endpoints, exchange: str) -> list[FanoutJob]:
    baseline = is_baseline(settings.mode)
    base = endpoints.baseline_ws if baseline else endpoints.bridge_ws
    assert base is not None
    batch = settings.batch_ms if settings.mode in BATCHED else None
    secret = None if baseline else endpoints.jwt_secret
    urls = [
        ws_url(base, t, batch) for t in client_tokens(secret, f"fan-{exchange}", settings.clients)
    ]
    count = max(1, min(settings.workers, settings.clients))
    shares = [urls[i::count] for i in range(count)]
    probes = probe_layout([len(share) for share in shares], -(-settings.clients // settings.probe_every))
    picks = client_picks(symbol_names(settings.symbols), settings.clients, settings.pick)
    return [
        FanoutJob(
            worker=i,
            urls=shares[i],
            welcome=not baseline,
            exchange=exchange,
            symbols=symbol_names(settings.symbols),
            timeout_s=settings.connect_timeout_s,
            compression=settings.compression,
            probes=probes[i],
            channel=settings.channel,
            picks=None if picks is None else picks[i::count],
        )
        for i in range(count)
    ]


def client_picks(symbols: list[str], clients: int, pick: int | None) -> list[list[str]] | None:
    """Each client's own ``pick`` random symbols (seeded: the same draw every run), or None
    when every client takes all of them."""
    if pick is None or pick >= len(symbols):
        return None
    rng = random.Random(PICK_SEED)
    return [sorted(rng.sample(symbols, pick)) for _ in range(clients)]


def probe_layout(sizes: list[int], probe_count: int) -> list[list[bool]]:
    """Which clients of each worker are probes: as even a share per worker as possible (the
    decoding load is spread over the workers), and spread through each worker's connection
    order. A server writes a shared frame to its clients one after another, so probes that
    all connected first (or last) would time the front (or back) of every write round."""
    workers = len(sizes)
    layout = []
    for worker, size in enumerate(sizes):
        mine = min(size, probe_count // workers + (worker < probe_count % workers))
        at = {((2 * k + 1) * size) // (2 * mine) for k in range(mine)}
        layout.append([position in at for position in range(size)])
    return layout


def run_point(settings: FanoutSettings, endpoints: Endpoints) -> dict[str, Any]:
    """Run one (mode, rate) point end to end and return its results."""
    _settle(endpoints)
    exchange = f"bench-{uuid.uuid4().hex[:8]}"
    plan = PublishPlan(
        exchange=exchange,
        symbols=symbol_names(settings.symbols),
        rate=settings.rate,
        duration_s=settings.duration_s,
        streams=settings.publisher_streams,
    )
    pool = WorkerPool.start(fanout_worker, _jobs(settings, endpoints, exchange))
    try:
        return _measure(settings, endpoints, plan, pool)
    finally:
        pool.broadcast(None)
        pool.close()


def _settle(endpoints: Endpoints, timeout: float = SETTLE_TIMEOUT_S) -> None:
    """Wait until the previous point is over everywhere, so points do not overlap: its clients
    gone from the bridge, and every local server idle (a relay that fell behind may still be
    pushing the last point's backlog, which the next point's clients would receive)."""
    deadline = time.monotonic() + timeout
    while endpoints.bridge_http and time.monotonic() < deadline:
        if not scrape(f"{endpoints.bridge_http}/metrics").get("bridge_active_connections"):
            break
        time.sleep(0.2)
    wait_until_idle(endpoints.pids, max(1.0, deadline - time.monotonic()))


def _measure(
    settings: FanoutSettings, endpoints: Endpoints, plan: PublishPlan, pool: WorkerPool
) -> dict[str, Any]:
    ready = pool.gather("ready", timeout=settings.connect_timeout_s + 60)
    metrics_url = f"{endpoints.bridge_http}/metrics" if endpoints.bridge_http else None
    before = scrape(metrics_url) if metrics_url else {}
    out = new_queue()
    if is_baseline(settings.mode):
        assert endpoints.redis_url is not None
        publisher = start_process(publisher_process, "pubsub", endpoints.redis_url, plan, out)
    else:
        kind = "grpc_trades" if settings.channel == "trades" else "grpc"
        publisher = start_process(publisher_process, kind, endpoints.grpc_target, plan, out)
    sampler = ProcessSampler(dict(endpoints.pids))
    profiler = _profiler(settings, endpoints, plan)
    started = time.time()
    sampler.start()
    if profiler:
        profiler.start()
    try:
        published: PublishResult = out.get(timeout=plan.duration_s * 4 + 120)
    finally:
        publisher.join(timeout=10)
        if publisher.is_alive():
            publisher.terminate()
    pool.broadcast({"final": published.final, "drain_s": settings.drain_s})
    results = pool.gather("result", timeout=settings.drain_s + 120)
    wall = time.time() - started
    usage = sampler.stop(wall)
    after = scrape(metrics_url) if metrics_url else {}
    point = _summarise(settings, ready, results, published, usage, before, after)
    if profiler:
        point["profile"] = profiler.finish()
    return point


def _profiler(settings: FanoutSettings, endpoints: Endpoints, plan: PublishPlan) -> Profiler | None:
    """py-spy on the bridge and the cache service (or the baseline) while the publisher runs."""
    if settings.profile_dir is None:
        return None
    names = ("baseline",) if is_baseline(settings.mode) else ("bridge", "cache_service")
    pids = {n: endpoints.pids[n] for n in names if n in endpoints.pids}
    prefix = "" if settings.channel == "tickers" else f"{settings.channel}-"
    label = f"{prefix}{settings.mode}-{settings.rate:g}"
    return Profiler(pids, plan.duration_s, settings.profile_dir, label) if pids else None


def _summarise(
    settings: FanoutSettings,
    ready: list[dict[str, Any]],
    results: list[dict[str, Any]],
    published: PublishResult,
    usage: dict[str, Any],
    before: dict[str, float],
    after: dict[str, float],
) -> dict[str, Any]:
    hist = LatencyHistogram.merged(r["hist"] for r in results)
    connected = sum(r["connected"] for r in ready)
    received = sum(r["received"] for r in results)
    holes = sum(r["holes"] for r in results)
    conflated = (
        delta(before, after, "bridge_conflated_updates_total")
        if not is_baseline(settings.mode)
        else 0.0
    )
    last_seen = max((r["last_seen"] for r in results), default=0.0)
    span = (
        max(published.duration_s, last_seen - published.started_at)
        if last_seen
        else published.duration_s
    )
    expected = sum(r["expected"] for r in results)   # each client's symbols' publications
    accounted = int(conflated or 0)
    return {
        "channel": settings.channel,
        "mode": settings.mode,
        "offered_rate": settings.rate,
        "clients": settings.clients,
        "connected": connected,
        "probes": sum(r["probes"] for r in results),
        "symbols": settings.symbols,
        "symbols_per_client": settings.pick or settings.symbols,
        "duration_s": settings.duration_s,
        "batch_ms": settings.batch_ms if settings.mode in BATCHED else None,
        "publisher": published.as_dict(),
        "expected_updates": expected,
        "received_updates": received,
        "delivered_per_s": round(received / span, 1) if span > 0 else 0.0,
        "holes": holes,
        "probe_gaps": sum(r["probe_gaps"] for r in results),
        "probe_tail_undelivered": sum(r["probe_tail"] for r in results),
        "conflated": None if conflated is None else int(conflated),
        "lost": max(0, holes - accounted),
        "loss_ratio": round(max(0, holes - accounted) / expected, 6) if expected else None,
        "duplicates": sum(r["duplicates"] for r in results),
        "reordered": sum(r["reordered"] for r in results),
        "foreign_updates": sum(r["foreign"] for r in results),
        "closed_early": _sum_counts(r["closed_early"] for r in results),
        "connect_errors": _sum_counts(r["errors"] for r in ready),
        "other_frames": _sum_counts(r["other_frames"] for r in results),
        "latency": hist.summary_ms(),
        "bridge_delivery_latency": histogram_quantiles(
            before, after, "bridge_delivery_latency_seconds"
        )
        if not is_baseline(settings.mode)
        else None,
        "processes": usage,
        "server_us_per_update": _per_update(usage, settings.mode, received),
        "bridge_cpu_s_from_metrics": delta(before, after, "process_cpu_seconds_total"),
        "load_generator_cpu_s": {
            "publisher": round(published.cpu_s, 2),
            "clients": round(sum(r["cpu_s"] for r in results), 2),
            "clients_setup": round(sum(r["setup_cpu_s"] for r in results), 2),
        },
        "compression": settings.compression,
        "wire_bytes_per_update": round(sum(r["wire_bytes"] for r in results) / received, 1)
        if received else None,
        "client_reads_per_frame": round(
            sum(r["reads"] for r in results) / max(1, sum(r["frames"] for r in results)), 2
        ),
    }


def _per_update(usage: dict[str, Any], mode: str, received: int) -> float | None:
    """CPU microseconds the fan-out server spent per update delivered: the cost of fan-out,
    and less disturbed by a busy machine than latency is (waiting for a CPU costs no CPU)."""
    server = usage.get("baseline" if is_baseline(mode) else "bridge")
    if not server or not received:
        return None
    return round(server["cpu_s"] / received * 1e6, 2)


def _sum_counts(parts: Any) -> dict[str, int]:
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part)
    return dict(total)
