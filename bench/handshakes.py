"""A normal client's connect time while a crowd of sockets sits in the opening handshake.

    python -m bench.handshakes [--sockets 2000] [--connects 50] [--bound-p99-ms 500]

Starts a local stack (bench/stack.py: redis-server, the cache service, the bridge with its
default handshake bounds), all on loopback, then:

1. ``--connects`` connects with nothing else going on, one at a time, ``--interval`` apart:
   TCP, the upgrade, the JWT check and the welcome frame, timed from before the connect to
   the welcome read (a fresh user each, as the churn scenario does);
2. the crowd, from another process: ``--sockets`` connections that never finish their
   handshake, half silent and half trickling a request head a byte a second (slowloris).
   A socket the bridge drops is reopened at once, so the crowd keeps its size for the whole
   run, as an attacker's would; how long each was held before its drop is recorded;
3. once the bridge's ``bridge_handshakes_in_progress`` shows the crowd, the same connects
   again. They span more than one ``--handshake-timeout-s`` (10 s by default), so they also
   run through the wave of drops and reopens when the crowd's first sockets time out.

Writes ``<out>/<name>.json`` (both connect-time summaries, the crowd's hold times, the bridge's
handshake metrics, CPU and RSS) and exits 1 when the connects under the crowd miss the bound
(p99 over 50 connects is their slowest). Bounded: at most ``MAX_SOCKETS`` sockets and
``MAX_CONNECTS`` connects, and every wait has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families

from bench.__main__ import raise_fd_limit
from bench.config import DEFAULT_OUT
from bench.latency import LatencyHistogram
from bench.procstats import MIB, ProcessSampler
from bench.report import commit, machine, write
from bench.stack import Endpoints, LocalStack, StackOptions
from bench.tokens import make_token
from bench.workers import WorkerPool, next_command, run_worker
from bench.wsclient import open_session, ws_url

MAX_SOCKETS = 10_000
MAX_CONNECTS = 1_000
READY_TIMEOUT_S = 60.0     # for the crowd to open, and for the bridge to show it
CONNECT_TIMEOUT_S = 10.0
SLOW_PREFIX = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "   # then "a" forever


@dataclass(frozen=True)
class Settings:
    """One run's knobs (see the module docstring)."""

    sockets: int = 2000
    trickle_share: float = 0.5
    trickle_s: float = 1.0
    connects: int = 50
    interval_s: float = 0.25
    bound_p99_ms: float = 500.0


@dataclass(frozen=True)
class CrowdJob:
    """What the crowd process opens, and how long it may wait for its stop."""

    host: str
    port: int
    sockets: int
    trickle_share: float
    trickle_s: float
    max_s: float


def slow_head() -> Iterator[int]:
    """The bytes of a request head that never ends: a request line, then one endless header."""
    return itertools.chain(SLOW_PREFIX, itertools.repeat(ord("a")))


async def _dropped(reader: asyncio.StreamReader) -> None:
    """Return when the server closes or resets the socket (anything it sends is ignored)."""
    try:
        while await reader.read(4096):
            pass
    except ConnectionError:
        pass


async def _hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                trickle_s: float | None) -> None:
    """Hold one socket in its handshake until the server drops it: silent, or a byte every
    ``trickle_s`` (after a random part of one, so the crowd's bytes do not arrive in step)."""
    reading = asyncio.ensure_future(_dropped(reader))
    try:
        if trickle_s is not None:
            await asyncio.wait([reading], timeout=random.uniform(0, trickle_s))
            for byte in slow_head():
                if reading.done():
                    break
                writer.write(bytes([byte]))
                await asyncio.wait([reading], timeout=trickle_s)
        await reading
    finally:
        reading.cancel()
        writer.close()


async def _keep_slot(job: CrowdJob, trickling: bool, held: list[float], opened: list[int],
                     failures: Counter[str]) -> None:
    """One place in the crowd: a socket in its handshake, reopened each time it is dropped."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            reader, writer = await asyncio.open_connection(job.host, job.port)
        except OSError as exc:
            failures[type(exc).__name__] += 1
            await asyncio.sleep(0.1)   # a refused connect: retry, but not in a tight loop
            continue
        opened[0] += 1
        started = loop.time()
        await _hold(reader, writer, job.trickle_s if trickling else None)
        held.append(loop.time() - started)


async def _crowd_main(job: CrowdJob, ctrl: Any, results: Any) -> None:
    held: list[float] = []
    opened, failures = [0], Counter[str]()
    trickling = round(job.sockets * job.trickle_share)
    slots = [asyncio.create_task(_keep_slot(job, i < trickling, held, opened, failures))
             for i in range(job.sockets)]
    deadline = time.monotonic() + READY_TIMEOUT_S
    while opened[0] < job.sockets and time.monotonic() < deadline:
        await asyncio.sleep(0.05)   # polling a count nothing announces, with a deadline
    results.put({"kind": "ready", "opened": opened[0]})
    await next_command(ctrl, timeout=job.max_s)
    for slot in slots:
        slot.cancel()
    await asyncio.gather(*slots, return_exceptions=True)
    results.put({"kind": "result", "opened": opened[0], "held_s": held,
                 "failures": dict(failures), "cpu_s": time.process_time()})


def crowd_worker(job: CrowdJob, ctrl: Any, results: Any) -> None:
    """Process entry point of the crowd."""
    run_worker(0, _crowd_main(job, ctrl, results), results)


async def _connects(base_url: str, secret: str | None, settings: Settings,
                    label: str) -> tuple[LatencyHistogram, Counter[str], list[list[float]]]:
    """``settings.connects`` sequential connects, each a fresh user, timed to the welcome;
    also each one's [start (s after the first), connect time (ms)], to place the slow ones."""
    hist, errors, each = LatencyHistogram(), Counter[str](), []
    first = time.perf_counter()
    for i in range(settings.connects):
        token = make_token(secret, f"hs-{label}-{uuid.uuid4().hex[:8]}-{i}") if secret else None
        started = time.perf_counter()
        try:
            ws = await open_session(ws_url(base_url, token), timeout=CONNECT_TIMEOUT_S)
            took = time.perf_counter() - started
            hist.record(took)
            each.append([round(started - first, 2), round(took * 1000, 1)])
            await ws.close()
        except Exception as exc:  # noqa: BLE001 - counted: a failed connect misses the bound
            errors[type(exc).__name__ + ": " + str(exc)[:100]] += 1
        await asyncio.sleep(settings.interval_s)   # the probe's pace, not synchronisation
    return hist, errors, each


def handshake_metrics(http: str) -> dict[str, Any]:
    """The bridge's ``bridge_handshakes_*`` samples: the gauge and the rejections by reason
    (bench/scrape.py sums over labels; the reasons are the point here)."""
    with urllib.request.urlopen(f"{http}/metrics", timeout=5) as response:
        text = response.read().decode()
    found: dict[str, Any] = {"in_progress": None, "rejected": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "bridge_handshakes_in_progress":
                found["in_progress"] = sample.value
            elif sample.name == "bridge_handshakes_rejected_total":
                found["rejected"][sample.labels["reason"]] = sample.value
    return found


def wait_for_crowd(http: str, sockets: int) -> float:
    """Until the bridge counts (almost) the whole crowd in progress; the count it showed."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    seen = 0.0
    while time.monotonic() < deadline:
        seen = handshake_metrics(http)["in_progress"] or 0.0
        if seen >= sockets * 0.99:
            break
        time.sleep(0.2)   # polling a gauge, with a deadline
    return seen


def held_summary(held: list[float]) -> dict[str, Any]:
    """How long the bridge let the crowd's sockets sit before dropping them, in seconds."""
    ordered = sorted(held)
    if not ordered:
        return {"drops": 0}
    def at(pct: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))], 2)
    return {"drops": len(ordered), "min_s": round(ordered[0], 2), "p50_s": at(50),
            "p99_s": at(99), "max_s": round(ordered[-1], 2)}


def measure(endpoints: Endpoints, settings: Settings) -> dict[str, Any]:
    """The run on a started stack: connects alone, then with the crowd open."""
    assert endpoints.bridge_http is not None
    bridge_pid = endpoints.pids["bridge"]
    alone, alone_errors, alone_each = asyncio.run(
        _connects(endpoints.bridge_ws, endpoints.jwt_secret, settings, "alone"))
    sampler = ProcessSampler({"bridge": bridge_pid})
    sampler.start()
    rss_before = sampler.rss("bridge")
    parts = urlsplit(endpoints.bridge_ws)
    job = CrowdJob(parts.hostname or "127.0.0.1", int(parts.port or 80), settings.sockets,
                   settings.trickle_share, settings.trickle_s, max_s=600.0)
    pool = WorkerPool.start(crowd_worker, [job])
    started = time.monotonic()
    try:
        ready = pool.gather("ready", timeout=READY_TIMEOUT_S + 10)[0]
        shown = wait_for_crowd(endpoints.bridge_http, settings.sockets)
        before = handshake_metrics(endpoints.bridge_http)
        rss_crowd = sampler.rss("bridge")
        crowd_opened_s = time.monotonic() - started
        crowded, crowded_errors, crowded_each = asyncio.run(
            _connects(endpoints.bridge_ws, endpoints.jwt_secret, settings, "crowd"))
        after = handshake_metrics(endpoints.bridge_http)
        pool.broadcast("stop")
        crowd = pool.gather("result", timeout=60)[0]
    finally:
        pool.close()
    usage = sampler.stop(time.monotonic() - started)
    p99 = crowded.percentile(99.0)
    return {
        "alone": {**alone.summary_ms(), "errors": dict(alone_errors), "each": alone_each},
        "crowd": {**crowded.summary_ms(), "errors": dict(crowded_errors), "each": crowded_each,
                  "first_connect_s_after_crowd_start": round(crowd_opened_s, 2)},
        "bound_p99_ms": settings.bound_p99_ms,
        "within_bound": (not crowded_errors and p99 is not None
                         and p99 * 1000.0 < settings.bound_p99_ms),
        "crowd_sockets": {"asked": settings.sockets, "opened_at_ready": ready["opened"],
                          "in_progress_shown": shown, "opened_in_all": crowd["opened"],
                          "failures": crowd["failures"], "held": held_summary(crowd["held_s"]),
                          "crowd_cpu_s": round(crowd["cpu_s"], 2)},
        "bridge_handshakes": {"before_connects": before, "after_connects": after},
        "bridge": {**usage.get("bridge", {}),
                   "rss_mib_before_crowd": round(rss_before / MIB, 1),
                   "rss_mib_with_crowd": round(rss_crowd / MIB, 1),
                   "rss_kib_per_crowd_socket": round((rss_crowd - rss_before) / 1024
                                                     / max(1, settings.sockets), 1)},
    }


def line(name: str, summary: dict[str, Any]) -> str:
    return (f"{name}: p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms, max "
            f"{summary['max_ms']} ms over {summary['samples']} connects, "
            f"errors {summary['errors']}")


def parse(argv: list[str] | None) -> tuple[Settings, Path]:
    """The command line, checked against the run's bounds (one line on error, exit 2)."""
    parser = argparse.ArgumentParser(prog="python -m bench.handshakes",
                                     description=__doc__.split("\n\n")[0])
    defaults = Settings()
    for name, value in asdict(defaults).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(value), default=value)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--name", default="handshakes")
    args = vars(parser.parse_args(argv))
    out = args.pop("out") / f"{args.pop('name')}.json"
    settings = Settings(**args)
    if not (0 < settings.sockets <= MAX_SOCKETS and 0 < settings.connects <= MAX_CONNECTS):
        parser.error(f"--sockets must be 1..{MAX_SOCKETS} and --connects 1..{MAX_CONNECTS}")
    if not (0 <= settings.trickle_share <= 1 and settings.trickle_s > 0
            and 0 <= settings.interval_s <= 5):
        parser.error("--trickle-share must be 0..1, --trickle-s > 0, --interval-s 0..5")
    return settings, out


def main(argv: list[str] | None = None) -> int:
    settings, out = parse(argv)
    raise_fd_limit()
    document: dict[str, Any] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                "machine": machine(), "commit": commit(),
                                "settings": asdict(settings)}
    stack = LocalStack(StackOptions(with_baseline=False))
    try:
        document.update(measure(stack.start(), settings))
    finally:
        stack.close()
    write(document, out)
    print(line("alone", document["alone"]))
    print(line(f"with {settings.sockets} sockets in their handshake", document["crowd"]))
    print(f"crowd: {json.dumps(document['crowd_sockets'])}")
    verdict = "within" if document["within_bound"] else "NOT within"
    print(f"bench.handshakes: {verdict} the bound p99 < {settings.bound_p99_ms:g} ms; wrote {out}")
    return 0 if document["within_bound"] else 1


if __name__ == "__main__":
    sys.exit(main())
