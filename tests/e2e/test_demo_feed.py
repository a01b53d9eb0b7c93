"""The demo feed: its simulation (plain objects) and its gRPC layer against the real cache service."""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from marketbridge.api.v1 import cache_pb2, cache_pb2_grpc
from marketbridge.backoff import Backoff
from marketbridge.settings import ConfigError
from scripts.demo_feed import (
    BASE_PRICES,
    EXCHANGES,
    RECONNECT_FIRST_S,
    RECONNECT_JITTER,
    Feed,
    FeedConfig,
    Market,
    TradingDesk,
    parse_config,
)
from tests.infra.cache_service_runner import CacheServiceProcess, running_cache_service
from tests.infra.certs import make_tls_files
from tests.infra.eventually import eventually

ROOT = Path(__file__).resolve().parents[2]
ORDER_PATHS = {  # every status an order may move to from each status
    "new": {"open"},
    "open": {"partially_filled", "canceled"},
    "partially_filled": {"partially_filled", "filled"},
}


# ---------------------------------------------------------------------------- simulation


def test_market_covers_twenty_symbols_on_two_exchanges() -> None:
    market = Market(random.Random(1))
    snapshot = market.snapshot(now=100.0)
    assert len(snapshot) == 20
    assert {(t.exchange, t.symbol) for t in snapshot} == {
        (e, s) for e in EXCHANGES for s in BASE_PRICES
    }
    for ticker in snapshot:
        assert ticker.bid < ticker.price < ticker.ask
        assert ticker.volume > 0 and ticker.time == 100.0
        assert abs(ticker.price / BASE_PRICES[ticker.symbol] - 1) < 0.01


def test_random_walk_moves_prices_and_stays_sane() -> None:
    market = Market(random.Random(2))
    start = {(t.exchange, t.symbol): t.price for t in market.snapshot(0.0)}
    ticks = [market.tick(float(n)) for n in range(5000)]
    moved = {(t.exchange, t.symbol) for t in ticks if t.price != start[(t.exchange, t.symbol)]}
    assert len(moved) == 20
    assert all(t.price > 0 and t.bid < t.ask for t in ticks)
    last = {(t.exchange, t.symbol): t for t in ticks}
    for key, ticker in last.items():
        assert 0.5 < ticker.price / start[key] < 2.0  # a walk, not an explosion
        instrument = next(i for i in market.instruments if (i.exchange, i.symbol) == key)
        assert ticker.change_24h == pytest.approx(
            (instrument.price / instrument.open_24h - 1) * 100, abs=0.01
        )


def test_same_seed_same_market() -> None:
    first, second = Market(random.Random(9)), Market(random.Random(9))
    assert [first.tick(1.0) for _ in range(50)] == [second.tick(1.0) for _ in range(50)]


def test_orders_follow_the_lifecycle_and_belong_to_their_user() -> None:
    rng = random.Random(3)
    desk = TradingDesk(rng, Market(rng))
    seen: dict[str, list[str]] = {}
    for step in range(400):
        orders, bots = desk.step(now=float(step))
        for order in orders:
            assert order.order_id.startswith(order.user_id + "-")
            assert 0 <= order.filled <= order.amount
            seen.setdefault(order.order_id, []).append(order.status)
        for bot in bots:
            assert bot.bot_id.startswith(bot.user_id + "-")
    assert {oid.split("-")[0] for oid in seen} == {"alice", "bob"}
    for statuses in seen.values():
        assert statuses[0] == "new"
        for before, after in itertools.pairwise(statuses):
            assert after in ORDER_PATHS[before], statuses
    finals = {statuses[-1] for statuses in seen.values()}
    assert {"filled", "canceled"} <= finals


def test_state_holds_every_live_order_and_bot() -> None:
    rng = random.Random(4)
    desk = TradingDesk(rng, Market(rng))
    for step in range(30):
        desk.step(float(step))
    orders, bots = desk.state()
    assert len(bots) == 3 and {b.user_id for b in bots} == {"alice", "bob"}
    assert all(o.status not in ("filled", "canceled") for o in orders)
    assert len(orders) <= TradingDesk.MAX_LIVE_ORDERS * 2


def test_backoff_grows_to_its_cap_and_resets() -> None:
    backoff = Backoff(RECONNECT_FIRST_S * 2, 4.0, jitter=RECONNECT_JITTER, rng=random.Random(5))
    delays = [backoff.delay() for _ in range(8)]
    assert delays[0] < 1.0 and max(delays) <= 4.0 and delays[-1] > 3.0
    backoff.reset()
    assert backoff.delay() < 1.0


def test_config_from_flags_and_environment() -> None:
    config = parse_config(
        ["--rate", "10"], {"FEED_RATE": "99", "FEED_TARGET": "cache:50051", "FEED_SEED": "7"}
    )
    assert (config.rate, config.target, config.seed) == (10.0, "cache:50051", 7)
    with pytest.raises(ConfigError, match="--rate must be > 0"):
        parse_config(["--rate", "0"], {})
    with pytest.raises(ConfigError, match="^--rate: expected a number, got 'fast'$"):
        parse_config(["--rate", "fast"], {})
    with pytest.raises(ConfigError, match="go together"):
        parse_config(["--tls-cert-file", __file__], {})
    with pytest.raises(ConfigError, match="no such file"):
        parse_config(["--tls-ca-file", "/nonexistent/ca.pem"], {})


# ---------------------------------------------------------------------------- against the cache service


@asynccontextmanager
async def running_feed(target: str, **overrides: object) -> AsyncIterator[Feed]:
    settings: dict[str, object] = {
        "target": target,
        "rate": 100.0,
        "seed": 11,
        "trade_interval": 0.1,
        "window": 1.0,
        "backoff_max": 0.5,
    }
    settings.update(overrides)
    stop = asyncio.Event()
    feed = Feed(FeedConfig(**settings), stop)  # type: ignore[arg-type]
    task = asyncio.create_task(feed.run())
    try:
        yield feed
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)


async def test_feed_fills_the_cache_with_tickers_orders_and_bots(redis_url: str) -> None:
    async with (
        running_cache_service(redis_url) as cache,
        running_feed(cache.target) as feed,
        grpc.aio.insecure_channel(cache.target) as channel,
    ):
        stub = cache_pb2_grpc.CacheServiceStub(channel)

        async def populated() -> bool:
            tickers = (await stub.ListTickers(cache_pb2.ListTickersRequest(), timeout=5)).tickers
            orders = (await stub.ListOrders(cache_pb2.ListOrdersRequest(), timeout=5)).orders
            return len(tickers) == 20 and len({o.user_id for o in orders}) == 2

        await eventually(populated, 30.0, interval=0.1)
        bots = (await stub.ListBots(cache_pb2.ListBotsRequest(), timeout=5)).bots
        assert {b.user_id for b in bots} == {"alice", "bob"}
        # alice, as the bridge would ask for her, sees only her own records.
        mine = await stub.ListOrders(
            cache_pb2.ListOrdersRequest(), timeout=5, metadata=(("x-user-id", "alice"),)
        )
        assert mine.orders and {o.user_id for o in mine.orders} == {"alice"}
        first = await stub.GetTicker(
            cache_pb2.GetTickerRequest(exchange="kraken", symbol="BTC/USDT"), timeout=5
        )

        async def moved() -> bool:
            now = await stub.GetTicker(
                cache_pb2.GetTickerRequest(exchange="kraken", symbol="BTC/USDT"), timeout=5
            )
            return now.price != first.price

        await eventually(moved, 30.0, interval=0.1)
    assert feed.published > 20  # the last window's ticks were accepted as the feed stopped


async def test_feed_publishes_over_mtls(redis_url: str, tmp_path: Path) -> None:
    """``--tls-ca-file``/``--tls-cert-file``/``--tls-key-file``: the feed reaches a cache service
    that requires client certificates (as the chart's mTLS setting does)."""
    files = make_tls_files(tmp_path)
    async with (
        running_cache_service(redis_url, tls_cert_file=str(files.server_cert),
                              tls_key_file=str(files.server_key),
                              tls_client_ca_file=str(files.ca)) as cache,
        running_feed(f"localhost:{cache.port}", tls_ca_file=str(files.ca),
                     tls_cert_file=str(files.client_cert),
                     tls_key_file=str(files.client_key)) as feed,
    ):
        await eventually(lambda: feed.published > 20, 30.0, interval=0.1)


async def test_feed_survives_a_cache_service_restart(redis_url: str) -> None:
    async with running_cache_service(redis_url) as cache, running_feed(cache.target) as feed:
        await eventually(lambda: feed.published > 50, 30.0, interval=0.1)
        await cache.stop()
        await eventually(lambda: feed.outages >= 1, 30.0, what="the feed saw the outage")
        before = feed.published
        await cache.start()
        await eventually(lambda: feed.published > before + 50, 60.0, interval=0.1)


def test_feed_process_stops_cleanly_on_sigterm_and_sigint(redis_url: str) -> None:
    cache = CacheServiceProcess(redis_url)
    cache.start()
    try:
        cache.wait_ready(30)
        for sig in (signal.SIGTERM, signal.SIGINT):
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "scripts.demo_feed",
                    "--target",
                    cache.target,
                    "--window",
                    "1",
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert proc.stdout is not None
            for line in proc.stdout:
                if "published" in line:
                    break
            proc.send_signal(sig)
            output, _ = proc.communicate(timeout=30)
            assert proc.returncode == 0, output
            assert "stopped (published" in output and "Traceback" not in output
    finally:
        cache.stop()


def test_feed_bad_flag_is_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.demo_feed", "--rate", "-1"],
        cwd=ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "demo_feed: error: --rate must be > 0, got -1.0"
