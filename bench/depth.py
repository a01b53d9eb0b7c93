"""Scenario (f): depth. B order books x D deltas/s each to N clients at one depth, checked.

**Publisher** (its own process). B books of the demo feed's generator
(:class:`scripts.demo_market.OrderBook`: 30-36 levels a side on a tick grid, 8-decimal sizes,
1-3 level changes per delta, the mid on a seeded random walk). It publishes every book's
snapshot first (so each subscription starts from a real book), then generates every delta of
the run *before* the measuring window (the generator costs about 190 us per delta in Python,
more than the service's budget per delta at 10,000/s), each serialised without its ``time``.
At send time it appends ``time`` (field 7, ``time.time()``) to the stored bytes (protobuf
takes the last value of a field): the service gets exactly the message ``PublishBookRequest``
would be, stamped when it leaves. Open-loop paced at the target rate in 2 ms bursts over one
``PublishBookBatches`` client stream, each burst one ``PublishBookBatch`` (``batched=False``:
one ``PublishBook`` message per delta; ``--publisher-streams`` splits the books over more
streams; a book stays on one stream, sequences are previous + 1 per book). When the cache service cannot
ingest the rate, flow control holds the publisher back and the achieved rate says so.

**Clients.** N WebSocket clients (``?batch_ms=``) each subscribe to the ``book`` channel of
every book at ``depth`` (B subscriptions a client). ``probes`` of them keep a copy of every
book with :class:`marketbridge.market.client_book.ClientBook`: loaded from the subscribe
snapshot, each ``book_update`` applied and its checksum verified (a ``snapshot: true`` update
replaces the copy), each update's ``seq`` recorded and its latency taken (receive time minus
the update's ``time``, the publisher's stamp). The others count ``"book_update"`` markers.

**Lost.** After publishing, the harness reads each book's change feed from Redis (the stream
entries a depth-``depth`` subscriber is sent: snapshots, stale marks and the deltas that
changed that cut, as the service's own filter says) and gives every client the last id per
book to wait for. Then, per probe and book: the ids received must be exactly the feed's ids
after the subscription's ``seq``, in order (*skipped* / *unexpected* / *reordered*), and the
final copy must equal ``GetBook`` at ``depth`` (*final_mismatches*). Counters: feed entries
minus updates received. The bridge merges the pending book updates of a client that is behind
(``bridge_conflated_updates_total``, *merged*): a merged update names the newest id, so merged
ids are holes that are not loss; *lost* = holes - merged, and a probe with holes must still
end equal to ``GetBook`` with every checksum verified.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import struct
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.fanout import (CONNECT_CONCURRENCY, QUIET_S, _LeanClient, _settle, _sum_counts, open_gated,
                          probe_layout)
from bench.frames import decode, update_entries
from bench.latency import LatencyHistogram
from bench.lean_connection import LeanConnection
from bench.pacing import Pacer
from bench.procstats import ProcessSampler
from bench.profiling import Profiler
from bench.rawws import OP_TEXT
from bench.scrape import delta, histogram_quantiles, scrape
from bench.stack import Endpoints
from bench.tokens import client_tokens
from bench.workers import WorkerPool, new_queue, next_command, run_loop, run_worker, start_process
from bench.wsclient import SessionError, encode, ws_url
from cache_service.wire import varint

REPO = Path(__file__).resolve().parent.parent
BOOK_MARK = b'"book_update"'
TIME_FIELD = b"\x39"  # PublishBookRequest.time: field 7, wire type 1 (64-bit)
TICK_SLOT_S = 0.002
PUBLISH_METHOD = "/cache.v1.CacheService/PublishBook"
BATCH_METHOD = "/cache.v1.CacheService/PublishBookBatches"
MESSAGES_KEY = b"\x0a"   # PublishBookBatch.messages: field 1, length-delimited
BATCH_MAX = 500          # deltas per PublishBookBatch (a burst that fell due is one, or a few)
SEED = 14


def book_names(count: int) -> list[str]:
    """``count`` distinct book symbols, "B000/USDT", "B001/USDT", ..."""
    return [f"B{i:03d}/USDT" for i in range(count)]


def stream_id(seq: str) -> tuple[int, int]:
    """A change-feed id ("1700000000123-4") as a comparable pair."""
    ms, _, n = seq.partition("-")
    return int(ms), int(n or 0)


@dataclass
class DepthSettings:
    """One point: ``rate`` deltas/s in total over ``books`` books, to ``clients`` at ``depth``."""

    rate: float
    books: int
    clients: int
    depth: int
    duration_s: float
    batch_ms: int
    workers: int
    probes: int
    publisher_streams: int = 1
    batched: bool = True   # PublishBookBatches, a pacer burst per message (False: PublishBook)
    drain_s: float = 10.0
    connect_timeout_s: float = 60.0
    profile_dir: Path | None = None
    seed: int = SEED

    @property
    def per_book(self) -> int:
        return max(1, round(self.rate * self.duration_s / self.books))


# ----------------------------------------------------------------------------- publisher


def _books(exchange: str, symbols: list[str], seed: int) -> tuple[list[Any], random.Random]:
    if str(REPO) not in sys.path:  # scripts/ is a directory of the repository, not a package
        sys.path.append(str(REPO))
    from scripts.demo_market import OrderBook

    rng = random.Random(seed)
    # Prices from 0.5 to 60,000 (log-uniform): tick grids from 0.00001 to 0.01, as on a venue.
    prices = [math.exp(rng.uniform(math.log(0.5), math.log(60_000))) for _ in symbols]
    return [OrderBook(rng, exchange, s, p) for s, p in zip(symbols, prices, strict=True)], rng


def _deltas(books: list[Any], rng: random.Random, per_book: int) -> list[list[bytes]]:
    """Every delta of the run, per book, serialised without ``time``; each book's mid walks
    (0.05 % per step, the book follows it by at most a few level gaps a delta)."""
    walks = [float(book.mid) for book in books]
    out: list[list[bytes]] = [[] for _ in books]
    for _ in range(per_book):
        for i, book in enumerate(books):
            walks[i] *= math.exp(rng.gauss(0.0, 0.0005))
            out[i].append(book.step(walks[i], 0.0).SerializeToString())
    return out


async def _publish(target: str, exchange: str, symbols: list[str], settings: DepthSettings,
                   ctrl: Any, out: Any) -> dict[str, Any]:
    import grpc

    from marketbridge.api.v1 import cache_pb2

    books, rng = _books(exchange, symbols, settings.seed)
    result: dict[str, Any] = {"kind": "result", "sent": 0, "accepted": 0, "error": None}
    async with grpc.aio.insecure_channel(target) as channel:
        publish = channel.stream_unary(
            PUBLISH_METHOD, request_serializer=None,
            response_deserializer=cache_pb2.PublishBookResponse.FromString,
        )
        if settings.batched:
            publish_deltas = channel.stream_unary(
                BATCH_METHOD, request_serializer=None,
                response_deserializer=cache_pb2.PublishBookResponse.FromString,
            )
        else:
            publish_deltas = publish
        now = time.time()
        await publish([book.snapshot(now).SerializeToString() for book in books], timeout=60)
        out.put({"kind": "books"})
        generating = time.process_time()
        deltas = _deltas(books, rng, settings.per_book)
        out.put({"kind": "ready", "generate_cpu_s": round(time.process_time() - generating, 2)})
        command = await next_command(ctrl, timeout=600)
        if not command:
            result["error"] = "no go from the coordinator"
            return result
        cpu_start = time.process_time()
        result["started_at"] = started = time.time()
        count = max(1, min(settings.publisher_streams, len(books)))
        parts = [list(range(len(books)))[i::count] for i in range(count)]
        stop_at = started + settings.duration_s * 1.5 + 1.0

        async def one_stream(indexes: list[int]) -> None:
            # the stream's deltas in the order they are due: round-robin over its books
            order = [deltas[i][k] for k in range(settings.per_book) for i in indexes]
            pacer = Pacer(rate=settings.rate * len(indexes) / len(books), total=len(order),
                          start=started)
            queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=512)

            async def requests() -> Any:
                while (item := await queue.get()) is not None:
                    yield item

            call = publish_deltas(requests(), timeout=settings.duration_s * 4 + 60)
            while not pacer.done and time.time() < stop_at:
                due = pacer.due(time.time())
                if not due:
                    await asyncio.sleep(max(TICK_SLOT_S, pacer.next_wakeup(time.time())))
                    continue
                tail = TIME_FIELD + struct.pack("<d", time.time())
                burst = [data + tail for data in order[pacer.sent : pacer.sent + due]]
                if settings.batched:   # the burst as PublishBookBatch messages
                    for at in range(0, len(burst), BATCH_MAX):
                        await queue.put(b"".join(MESSAGES_KEY + varint(len(m)) + m
                                                 for m in burst[at : at + BATCH_MAX]))
                else:
                    for data in burst:
                        await queue.put(data)
                pacer.mark(due)
                result["sent"] += due
            await queue.put(None)
            response = await call
            result["accepted"] += response.accepted

        try:
            await asyncio.gather(*(one_stream(part) for part in parts))
        except grpc.aio.AioRpcError as exc:
            result["error"] = f"{exc.code().name}: {exc.details()}"
        result["finished_at"] = time.time()
        result["cpu_s"] = round(time.process_time() - cpu_start, 2)
        result["streams"] = count
    return result


def depth_publisher(target: str, exchange: str, symbols: list[str], settings: DepthSettings,
                    ctrl: Any, out: Any) -> None:
    """Process entry point: snapshots, generation, then (on "go") the paced deltas."""
    try:
        out.put(run_loop(_publish(target, exchange, symbols, settings, ctrl, out)))
    except BaseException as exc:  # noqa: BLE001 - reported, the run goes on
        out.put({"kind": "result", "sent": 0, "accepted": 0,
                 "error": f"{type(exc).__name__}: {exc}"})


# ----------------------------------------------------------------------------- clients


@dataclass
class DepthJob:
    worker: int
    urls: list[str]
    exchange: str
    symbols: list[str]
    depth: int
    timeout_s: float
    probes: list[bool]


@dataclass
class _BookSub:
    """One subscription of a probe: its copy of the book and what it received."""

    symbol: str
    sub_seq: str
    book: Any = None
    seqs: list[str] = field(default_factory=list)
    verified: int = 0
    failures: int = 0
    unchecked: int = 0  # updates after a failure or a stale mark, until a snapshot
    snapshots: int = 0
    stales: int = 0
    broken: bool = False


class DepthClient(_LeanClient):
    """B ``book`` subscriptions on one connection; a probe checks every update."""

    def __init__(self, job: DepthJob, probe: bool, hist: LatencyHistogram) -> None:
        super().__init__()
        self.job = job
        self.probe = probe
        self.hist = hist
        self.subs: dict[str, _BookSub] = {}
        self.refused: list[str] = []
        self.replies = 0
        self.answered = asyncio.Event()
        self.received = 0
        self.foreign = 0
        self.last_ids: dict[str, str] = {}
        self.check_cpu_s = 0.0   # a probe's CPU decoding and checking frames (its own cost)

    async def open(self, job: Any, url: str) -> None:  # type: ignore[override]
        self.conn = await LeanConnection.open(url, self.on_message, job.timeout_s)
        welcome = await self.inbox.next(job.timeout_s)
        if welcome.get("type") != "connection" or welcome.get("status") != "connected":
            raise SessionError(f"unexpected first frame: {welcome}")
        # One subscribe at a time per connection (each reply before the next request).
        for n, symbol in enumerate(job.symbols, 1):
            params = {"channel": "book", "exchange": job.exchange, "symbol": symbol,
                      "depth": job.depth}
            self.answered.clear()
            self.conn.send_text(encode({"action": "subscribe", "request_id": n, "params": params}))
            await asyncio.wait_for(self.answered.wait(), job.timeout_s)
        if self.refused:
            raise SessionError(f"subscribe refused: {self.refused[0]}")
        self.set_up = True

    def _reply(self, frame: dict[str, Any]) -> None:
        """A subscribe reply: the subscription and (probe) its copy of the snapshot."""
        from marketbridge.market.client_book import ClientBook

        self.replies += 1
        if not frame.get("success"):
            self.refused.append(str(frame.get("error")))
        else:
            result = frame["result"]
            symbol = self.job.symbols[int(frame["request_id"]) - 1]
            sub = _BookSub(symbol, str(result.get("seq") or "0-0"))
            if self.probe:
                snapshot = result["snapshot"]
                sub.book = ClientBook(self.job.depth)
                sub.book.load(snapshot["bids"], snapshot["asks"])
                if sub.book.checksum() != snapshot["checksum"]:
                    sub.failures += 1
                    sub.broken = True
            self.subs[result["subscription_id"]] = sub
        self.answered.set()

    def on_message(self, opcode: int, buf: bytes | bytearray, start: int, stop: int) -> None:
        if not self.probe:
            found = buf.count(BOOK_MARK, start, stop)
            if found:
                self.received += found
                return
        now, cpu = time.time(), time.process_time()
        frame = decode(bytes(buf[start:stop])) if opcode == OP_TEXT else None
        entries = update_entries(frame, "book_update") if frame is not None else []
        if not entries:
            if frame is not None and frame.get("type") == "response":
                self._reply(frame)
            else:
                self._other(frame)
            return
        self._check(entries, now)
        self.check_cpu_s += time.process_time() - cpu

    def _check(self, entries: list[dict[str, Any]], now: float) -> None:
        from marketbridge.market.client_book import ChecksumMismatch
        from marketbridge.market.merge import BookUpdate

        record, subs = self.hist.record, self.subs
        for entry in entries:
            sub = subs.get(entry.get("subscription_id"))
            if sub is None:
                self.foreign += 1
                continue
            self.received += 1
            sub.seqs.append(entry["seq"])
            result = entry["result"]
            if result.get("stale"):
                sub.stales += 1
                sub.broken = True
                continue
            if result.get("snapshot"):
                sub.snapshots += 1
                sub.book.load(result["bids"], result["asks"])
                sub.broken = sub.book.checksum() != result["checksum"]
                sub.failures += sub.broken
                sub.verified += not sub.broken
            elif sub.broken:
                sub.unchecked += 1
            else:
                try:
                    sub.book.apply(BookUpdate(result["bids"], result["asks"], result["checksum"]))
                    sub.verified += 1
                except ChecksumMismatch:
                    sub.failures += 1
                    sub.broken = True
            record(now - result["time"])

    def finished(self, final: dict[str, str], expected: int, now: float) -> bool:
        if self.close_code is not None:
            return True
        if self.probe:
            last = {sub.symbol: sub.seqs[-1] for sub in self.subs.values() if sub.seqs}
            return all(s in last and stream_id(last[s]) >= stream_id(f) for s, f in final.items())
        return self.received >= expected or now - self.last_frame > QUIET_S

    def report(self) -> dict[str, Any]:
        """A probe's per-book record for the coordinator."""
        return {
            sub.symbol: {
                "sub_seq": sub.sub_seq, "seqs": sub.seqs, "verified": sub.verified,
                "failures": sub.failures, "unchecked": sub.unchecked, "snapshots": sub.snapshots,
                "stales": sub.stales,
                "view": [list(map(list, sub.book.view().bids)), list(map(list, sub.book.view().asks))],
            }
            for sub in self.subs.values()
        }


async def _connect(job: DepthJob, url: str, probe: bool, hist: LatencyHistogram,
                   gate: asyncio.Semaphore) -> DepthClient:
    return await open_gated(DepthClient(job, probe, hist), job, url, gate)


async def _worker_main(job: DepthJob, ctrl: Any, results: Any) -> None:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    hist = LatencyHistogram()
    attempts = await asyncio.gather(
        *(_connect(job, u, p, hist, gate) for u, p in zip(job.urls, job.probes, strict=True)),
        return_exceptions=True,
    )
    clients = [a for a in attempts if isinstance(a, DepthClient)]
    errors = Counter(type(a).__name__ + ": " + str(a)[:120] for a in attempts
                     if isinstance(a, BaseException))
    results.put({"kind": "ready", "worker": job.worker, "connected": len(clients),
                 "errors": dict(errors)})
    cpu_at_ready = time.process_time()
    command = await next_command(ctrl, timeout=job.timeout_s + 900)
    final: dict[str, str] = command["final"] if command else {}
    expected = command["expected"] if command else 0
    drain_until = time.monotonic() + (command["drain_s"] if command else 0)
    while time.monotonic() < drain_until and not all(
        c.finished(final, expected, time.time()) for c in clients
    ):
        await asyncio.sleep(0.05)
    closed_early = Counter(str(c.close_code) for c in clients if c.close_code not in (None, 1000))
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    probes = [c for c in clients if c.probe]
    results.put({
        "kind": "result",
        "worker": job.worker,
        "hist": hist.to_wire(),
        "last_seen": max((c.last_frame for c in clients), default=0.0),
        "cpu_s": time.process_time() - cpu_at_ready,
        "setup_cpu_s": cpu_at_ready,
        "received": [c.received for c in clients],
        "reads": sum(c.conn.reads for c in clients if c.conn),
        "frames": sum(c.conn.reader.frames for c in clients if c.conn and c.conn.reader),
        "probe_books": [p.report() for p in probes],
        "probe_cpu_s": sum(p.check_cpu_s for p in probes),
        "foreign": sum(c.foreign for c in clients),
        "closed_early": dict(closed_early),
        "other_frames": dict(sum((c.other_frames for c in clients), Counter())),
    })


def depth_worker(job: DepthJob, ctrl: Any, results: Any) -> None:
    run_worker(job.worker, _worker_main(job, ctrl, results), results)


# ----------------------------------------------------------------------------- coordinator


def feed_ids(redis_url: str, exchange: str, symbols: list[str], depth: int) -> dict[str, list[str]]:
    """Per book, the ids of the change-feed entries a ``depth`` subscriber is sent (the
    service's own filter, cache_service.books.book_filter), read from Redis."""
    import redis

    from cache_service.book_store import book_stream
    from cache_service.books import book_filter

    wanted = book_filter(depth)
    client = redis.Redis.from_url(redis_url)
    try:
        out = {}
        for symbol in symbols:
            entries = client.xrange(book_stream(exchange, symbol))
            out[symbol] = [i.decode() for i, fields in entries if wanted(fields)]
        return out
    finally:
        client.close()


def server_books(target: str, exchange: str, symbols: list[str], depth: int) -> dict[str, Any]:
    """``GetBook`` of every book at ``depth``: the service's own cut, to compare copies with."""
    import grpc

    from marketbridge.api.v1 import cache_pb2, cache_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        out = {}
        for symbol in symbols:
            book = stub.GetBook(cache_pb2.GetBookRequest(exchange=exchange, symbol=symbol,
                                                         depth=depth), timeout=10)
            out[symbol] = [[[lv.price, lv.qty] for lv in book.bids],
                           [[lv.price, lv.qty] for lv in book.asks]]
        return out


def _jobs(settings: DepthSettings, endpoints: Endpoints, exchange: str,
          symbols: list[str]) -> list[DepthJob]:
    tokens = client_tokens(endpoints.jwt_secret, f"depth-{exchange}", settings.clients)
    urls = [ws_url(endpoints.bridge_ws, t, settings.batch_ms) for t in tokens]
    count = max(1, min(settings.workers, settings.clients))
    shares = [urls[i::count] for i in range(count)]
    probes = probe_layout([len(s) for s in shares], min(settings.probes, settings.clients))
    return [DepthJob(i, shares[i], exchange, symbols, settings.depth,
                     settings.connect_timeout_s, probes[i]) for i in range(count)]


def _gather(out: Any, kind: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = out.get(timeout=1.0)
        except Exception:  # noqa: BLE001 - queue.Empty
            continue
        if message.get("kind") == kind:
            return message
        if message.get("kind") == "result":  # the publisher failed early
            raise RuntimeError(f"depth publisher: {message.get('error')}")
    raise TimeoutError(f"depth publisher sent no {kind!r} in {timeout:.0f}s")


def run_point(settings: DepthSettings, endpoints: Endpoints) -> dict[str, Any]:
    """Run one depth point end to end and return its results."""
    _settle(endpoints)
    exchange = f"depth-{uuid.uuid4().hex[:8]}"
    symbols = book_names(settings.books)
    ctrl, out = new_queue(), new_queue()
    publisher = start_process(depth_publisher, endpoints.grpc_target, exchange, symbols,
                              settings, ctrl, out)
    pool: WorkerPool | None = None
    try:
        _gather(out, "books", 120)
        pool = WorkerPool.start(depth_worker, _jobs(settings, endpoints, exchange, symbols))
        ready = pool.gather("ready", timeout=settings.connect_timeout_s + 60)
        generated = _gather(out, "ready", 60 + settings.per_book * settings.books * 0.002)
        return _measure(settings, endpoints, exchange, symbols, pool, ready, generated, ctrl, out)
    finally:
        ctrl.put(None)
        publisher.join(timeout=10)
        if publisher.is_alive():
            publisher.terminate()
        if pool is not None:
            pool.broadcast(None)
            pool.close()


def _measure(settings: DepthSettings, endpoints: Endpoints, exchange: str, symbols: list[str],
             pool: WorkerPool, ready: list[dict[str, Any]], generated: dict[str, Any],
             ctrl: Any, out: Any) -> dict[str, Any]:
    metrics_url = f"{endpoints.bridge_http}/metrics" if endpoints.bridge_http else None
    before = scrape(metrics_url) if metrics_url else {}
    sampler = ProcessSampler(dict(endpoints.pids))
    profiler = None
    if settings.profile_dir is not None:
        pids = {n: endpoints.pids[n] for n in ("bridge", "cache_service") if n in endpoints.pids}
        profiler = Profiler(pids, settings.duration_s, settings.profile_dir,
                            f"depth-{settings.rate:g}") if pids else None
    started = time.time()
    sampler.start()
    if profiler:
        profiler.start()
    ctrl.put("go")
    published = _gather(out, "result", settings.duration_s * 4 + 120)
    ids = (feed_ids(endpoints.redis_url, exchange, symbols, settings.depth)
           if endpoints.redis_url else {})
    final = {s: v[-1] for s, v in ids.items() if v}
    # every client subscribed after the snapshots, before the first delta: it is sent every
    # feed entry after the snapshot entry
    expected = sum(max(0, len(v) - 1) for v in ids.values())
    pool.broadcast({"final": final, "expected": expected, "drain_s": settings.drain_s})
    results = pool.gather("result", timeout=settings.drain_s + 120)
    wall = time.time() - started
    usage = sampler.stop(wall)
    after = scrape(metrics_url) if metrics_url else {}
    books = server_books(endpoints.grpc_target, exchange, symbols, settings.depth)
    point = summarise(settings, ready, results, published, generated, usage, before, after,
                      ids, books)
    if profiler:
        point["profile"] = profiler.finish()
    return point


def _probe_checks(probe: dict[str, Any], ids: dict[str, list[str]],
                  books: dict[str, Any]) -> Counter[str]:
    """One probe's books against the feed and ``GetBook``."""
    tally: Counter[str] = Counter()
    for symbol, book in probe.items():
        for key in ("verified", "failures", "unchecked", "snapshots", "stales"):
            tally[key] += book[key]
        got = book["seqs"]
        tally["received"] += len(got)
        tally["reordered"] += sum(stream_id(a) >= stream_id(b) for a, b in zip(got, got[1:]))
        if symbol in ids:
            after = stream_id(book["sub_seq"])
            want = [i for i in ids[symbol] if stream_id(i) > after]
            wanted, seen = set(want), set(got)
            tally["expected"] += len(want)
            tally["skipped"] += len(wanted - seen)
            tally["unexpected"] += len(seen - wanted)
        tally["final_mismatches"] += book["view"] != books.get(symbol)
    return tally


def summarise(settings: DepthSettings, ready: list[dict[str, Any]], results: list[dict[str, Any]],
              published: dict[str, Any], generated: dict[str, Any], usage: dict[str, Any],
              before: dict[str, float], after: dict[str, float], ids: dict[str, list[str]],
              books: dict[str, Any]) -> dict[str, Any]:
    hist = LatencyHistogram.merged(r["hist"] for r in results)
    connected = sum(r["connected"] for r in ready)
    received = [n for r in results for n in r["received"]]
    per_client = sum(max(0, len(v) - 1) for v in ids.values())
    holes = sum(max(0, per_client - n) for n in received) if ids else None
    merged = delta(before, after, "bridge_conflated_updates_total")
    probes = [p for r in results for p in r["probe_books"]]
    checks: Counter[str] = Counter()
    for probe in probes:
        checks.update(_probe_checks(probe, ids, books))
    span = max(1e-9, published.get("finished_at", 0.0) - published.get("started_at", 0.0))
    last_seen = max((r["last_seen"] for r in results), default=0.0)
    deliver_span = max(span, last_seen - published.get("started_at", last_seen))
    lost = None if holes is None else max(0, holes - int(merged or 0))
    load = {
        "publisher": published.get("cpu_s"),
        "clients": round(sum(r["cpu_s"] for r in results), 2),
        "probes": round(sum(r["probe_cpu_s"] for r in results), 2),
        "clients_setup": round(sum(r["setup_cpu_s"] for r in results), 2),
    }
    return {
        "offered_rate": settings.rate,
        "books": settings.books,
        "depth": settings.depth,
        "clients": settings.clients,
        "connected": connected,
        "probes": len(probes),
        "duration_s": settings.duration_s,
        "batch_ms": settings.batch_ms,
        "publisher": {
            "sent": published.get("sent", 0),
            "accepted": published.get("accepted", 0),
            "streams": published.get("streams"),
            "duration_s": round(span, 3),
            "achieved_rate": round(published.get("sent", 0) / span, 1),
            "cpu_s": published.get("cpu_s"),
            "generate_cpu_s": generated.get("generate_cpu_s"),
            "error": published.get("error"),
        },
        "feed_updates_per_client": per_client,
        "depth_cut_share": round(per_client / max(1, published.get("accepted", 0)), 4),
        "expected_updates": per_client * connected,
        "received_updates": sum(received),
        "delivered_per_s": round(sum(received) / deliver_span, 1),
        "holes": holes,
        "merged": None if merged is None else int(merged),
        "lost": lost,
        "probe": dict(checks),
        "checksum_failures": checks["failures"],
        "bridge_checksum_failures": delta(before, after, "bridge_book_checksum_failures_total"),
        "final_mismatches": checks["final_mismatches"],
        "foreign_updates": sum(r["foreign"] for r in results),
        "closed_early": _sum_counts(r["closed_early"] for r in results),
        "connect_errors": _sum_counts(r["errors"] for r in ready),
        "other_frames": _sum_counts(r["other_frames"] for r in results),
        # frames (WebSocket messages) each client read per second of delivery: with batch_ms
        # a client that reads one batch frame per window would read 1000 / batch_ms
        "client_frames_per_s": round(sum(r["frames"] for r in results)
                                     / max(1, connected) / deliver_span, 1),
        "latency": hist.summary_ms(),
        "bridge_delivery_latency": histogram_quantiles(before, after,
                                                       "bridge_delivery_latency_seconds"),
        "processes": usage,
        "load_generator_cpu_s": load,
        "cpu_budget": cpu_budget(settings.rate, published.get("accepted", 0), usage, load),
    }


def cpu_budget(offered: float, accepted: int, usage: dict[str, Any],
               load: dict[str, Any]) -> dict[str, Any]:
    """CPU per accepted delta of each part (us), and the cores the whole run would need to
    carry the offered rate at those costs: what says whether a rate can fit this machine."""
    spent = {name: (p or {}).get("cpu_s") for name, p in usage.items() if name != "baseline"}
    spent.update(probes=load["probes"], counting_clients=load["clients"] - load["probes"],
                 publisher=load["publisher"])
    per_delta = {name: round(cpu * 1e6 / accepted, 1) for name, cpu in spent.items()
                 if cpu is not None and accepted}
    return {
        "us_per_delta": per_delta,
        "cores_at_offered_rate": round(sum(per_delta.values()) * offered / 1e6, 2) if per_delta else None,
        "machine_cores": os.cpu_count(),
    }
