"""The client against a real bridge, cache service and Redis: requests, subscriptions, the
closes it must tell apart (1008, 1009, 1013), token refresh and the example CLI."""

from __future__ import annotations

import asyncio
import sys

import pytest

from marketbridge_client import Client, MessageTooBig, PolicyViolation, RequestError, TryAgainLater
from tests.factories import TickerFactory, book_delta, book_snapshot
from tests.infra.bridge_runner import RunningBridge, running_bridge
from tests.infra.cache_service_runner import InProcessCacheService
from tests.infra.feed import Feed
from tests.infra.tokens import make_token

TIMEOUT = 15.0


async def test_requests_return_results_and_errors_carry_the_spec_code(bridge: RunningBridge, feed: Feed) -> None:
    await feed.ticker(exchange="binance", symbol="BTC/USDT", price=50000.0)
    async with Client(bridge.url, make_token()) as client:
        ticker = await client.get_ticker("binance", "BTC/USDT")
        assert ticker["price"] == 50000.0
        with pytest.raises(RequestError) as caught:
            await client.get_ticker("binance", "NOPE/USDT")
        assert caught.value.code == "NOT_FOUND"
        with pytest.raises(RequestError) as caught:
            await client.request("fly_to_moon")
        assert caught.value.code == "UNKNOWN_ACTION"
        assert (await client.ping())["type"] == "pong"


async def test_subscriptions_iterate_snapshot_then_updates_in_batch_mode(bridge: RunningBridge, feed: Feed) -> None:
    await feed.ticker(exchange="binance", symbol="BTC/USDT", price=1.0)
    await feed.book(book_snapshot(sequence=1, levels=30))
    async with Client(bridge.url, make_token(), batch_ms=10) as client:
        tickers = client.subscribe("tickers", exchange="binance")
        book = client.subscribe("book", exchange="binance", symbol="BTC/USDT", depth=25)
        first = await asyncio.wait_for(anext(tickers), TIMEOUT)
        assert first.kind == "snapshot" and first.data[0]["price"] == 1.0
        seq = await feed.ticker(exchange="binance", symbol="BTC/USDT", price=2.0)
        update = await asyncio.wait_for(anext(tickers), TIMEOUT)
        assert (update.kind, update.seq, update.data["price"]) == ("update", seq, 2.0)
        seq = await feed.book(book_delta(sequence=2, bids=[("49999.5", "0"), ("49990.0", "3")]))
        await book.wait_seq(seq, TIMEOUT)
        server = await client.get_book("binance", "BTC/USDT", depth=25)
        assert book.book is not None
        assert book.book.levels() == ([tuple(x) for x in server["bids"]], [tuple(x) for x in server["asks"]])
        assert book.book.checksum() == server["checksum"]
        await tickers.close()
        assert [u async for u in tickers] == []


async def test_1008_without_a_token_callback_is_final(bridge: RunningBridge) -> None:
    client = Client(bridge.url, make_token(secret="not-the-secret-of-this-bridge-0123456789"))
    with pytest.raises(PolicyViolation) as caught:
        await client.connect(timeout=TIMEOUT)
    assert caught.value.code == 1008 and caught.value.reason == "Invalid token"
    await client.close()


async def test_1008_with_a_callback_retries_with_the_fresh_token(bridge: RunningBridge) -> None:
    tokens = iter([make_token(exp=-10), make_token()])
    async with Client(bridge.url, lambda: next(tokens)) as client:
        assert isinstance(client.last_close, PolicyViolation) and client.last_close.reason == "Token expired"
        assert client.connections == 1


async def test_a_message_over_max_frame_bytes_is_refused_before_sending(bridge: RunningBridge) -> None:
    async with Client(bridge.url, make_token()) as client:
        with pytest.raises(MessageTooBig):
            await client.list_tickers("binance", symbols=[f"S{i:05d}/" + "x" * 200 for i in range(1000)])
        assert (await client.ping())["type"] == "pong"      # the connection is still fine
        assert client.connections == 1


async def test_1013_is_retried_with_backoff_until_there_is_room(cache: InProcessCacheService) -> None:
    async with running_bridge(cache.target, max_connections=1) as small:
        first = Client(small.url, make_token())
        await first.connect(TIMEOUT)
        second = Client(small.url, make_token())
        task = asyncio.create_task(second.connect(TIMEOUT))
        await second.wait_until(lambda: isinstance(second.last_close, TryAgainLater), TIMEOUT)
        assert second.last_close is not None and second.last_close.code == 1013
        await first.close()
        await asyncio.wait_for(task, TIMEOUT)
        assert second.connections == 1
        await second.close()


async def test_token_expiring_is_answered_with_a_refresh(cache: InProcessCacheService) -> None:
    async with running_bridge(cache.target, token_warning_s=30.0) as b:
        tokens = iter([make_token(exp=20), make_token(exp=3600)])
        async with Client(b.url, lambda: next(tokens)) as client:
            await client.wait_until(lambda: client.refreshes == 1, TIMEOUT)
            assert client.connections == 1


async def test_the_cli_tails_live_updates(bridge: RunningBridge, feed: Feed) -> None:
    await feed.book(book_snapshot(sequence=1))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "marketbridge_client", "tail", "--url", bridge.url, "--token", make_token(),
        "--channel", "book", "--exchange", "binance", "--symbol", "BTC/USDT", "--count", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    snapshot = await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)
    assert b'"kind": "snapshot"' in snapshot and b"best_bid" in snapshot
    for sequence in (2, 3):
        await feed.book(book_delta(sequence=sequence, bids=[("49999.5", str(sequence))]))
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 0, err.decode()
    assert out.count(b'"kind": "update"') == 2 and b'"49999.5", "3"' in out


async def test_a_resume_past_what_the_service_kept_re_snapshots(redis_url: str) -> None:
    """Events trimmed while the client was away (``recovered: false``): the client subscribes
    afresh and its view ends equal to the service's."""
    from devstack.ports import free_port
    from tests.infra.cache_service_runner import running_cache_service

    async with running_cache_service(redis_url, stream_maxlen=5) as svc:
        feed, port = Feed(svc.target), free_port()
        try:
            await feed.ticker(exchange="binance", symbol="S0/USDT", price=1.0)
            async with running_bridge(svc.target, port=port) as first:
                client = Client(first.url, make_token(), heartbeat_s=1)
                await client.connect(TIMEOUT)
                stream = client.subscribe("tickers", exchange="binance")
                await stream.wait_for(lambda s: s.last_seq is not None, TIMEOUT)
            # the bridge is gone: these trim the stream past the client's seq (MAXLEN ~ trims
            # whole stream nodes of 100 entries, so a few hundred)
            seq = await feed.tickers([TickerFactory(exchange="binance", symbol=f"S{n % 4}/USDT",
                                                    price=float(n)) for n in range(400)])
            async with running_bridge(svc.target, port=port):
                await stream.wait_for(lambda s: s.subscription.resyncs == 1 and s.last_seq is not None
                                      and not s.subscription.needs_snapshot, TIMEOUT)
                await stream.wait_seq(seq, TIMEOUT)
                tickers = await client.list_tickers("binance")
                assert stream.records == {(t["exchange"], t["symbol"]): t for t in tickers}
                assert client.connections == 2
                await client.close()
        finally:
            await feed.close()
