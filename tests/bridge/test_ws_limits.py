"""Every limit of docs/protocol.md and its close code, against a real bridge."""

from __future__ import annotations

import asyncio

import pytest

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.bridge.client import Client, client, small_buffer_socket
from tests.infra.eventually import eventually
from tests.factories import TickerFactory
from tests.infra.bridge_runner import running_bridge
from tests.infra.tokens import make_token

ALICE = make_token("alice")

pytestmark = pytest.mark.cluster_too  # SPEC §7: floods, oversized frames and slow readers, on a cluster too (SPEC §9.4)


async def test_max_connections_per_process(cache) -> None:
    async with running_bridge(cache.target, max_connections=2) as b:
        async with (client(b.ws_url(ALICE)), client(b.ws_url(make_token("bob"))),
                    client(b.ws_url(make_token("carol")), welcome=False) as c):
            code, reason = await c.closed()
            assert code == 1013 and "max connections" in reason
        await eventually(lambda: b.app.registry.total == 0)
        async with client(b.ws_url(make_token("carol"))) as c:   # room again
            assert (await c.request("ping"))["type"] == "pong"
        assert b.app.metrics.value("bridge_connections_total", {"outcome": "rejected"}) == 1


async def test_max_connections_per_user(cache) -> None:
    async with (running_bridge(cache.target, max_connections_per_user=1) as b,
                client(b.ws_url(ALICE))):
        async with client(b.ws_url(ALICE), welcome=False) as c:
            code, reason = await c.closed()
            assert code == 1008 and "max connections per user" in reason
        async with client(b.ws_url(make_token("bob"))) as c:
            assert (await c.request("ping"))["type"] == "pong"


async def test_subscription_limit(cache) -> None:
    async with (running_bridge(cache.target, max_subscriptions=2) as b,
                client(b.ws_url(ALICE)) as c):
        first = await c.subscribe(channel="tickers", exchange="binance", snapshot=False)
        await c.subscribe(channel="orders", snapshot=False)
        over = await c.request("subscribe", {"channel": "bots"})
        assert over["success"] is False and over["error"]["code"] == "SUBSCRIPTION_LIMIT"
        await c.request("unsubscribe", {"subscription_id": first["subscription_id"]})
        assert (await c.request("subscribe", {"channel": "bots"}))["success"]
        assert b.app.metrics.value("bridge_subscriptions") == 2


async def test_oversized_frame_closes_1009_and_others_carry_on(cache) -> None:
    async with (running_bridge(cache.target, max_frame_bytes=1024) as b,
                client(b.ws_url(ALICE)) as bystander, client(b.ws_url(ALICE)) as c):
        await c.send('{"action":"ping","params":{"pad":"' + "x" * 2048 + '"}}')
        code, _ = await c.closed()
        assert code == 1009
        assert (await bystander.request("ping"))["type"] == "pong"
        await eventually(lambda: b.app.metrics.value("bridge_disconnects_total", {"code": "1009"}) == 1)


async def test_rate_limit_rejects_then_closes_sustained_flood(cache) -> None:
    async with running_bridge(cache.target, rate_limit=2, rate_burst=3,
                              rate_limit_close_after=1.0) as b, client(b.ws_url(ALICE)) as c:
        for i in range(10):
            await c.send({"action": "ping", "request_id": i})
        limited = await c.wait_for(lambda f: f.get("error", {}).get("code") == "RATE_LIMITED")
        assert limited["type"] == "response" and limited["action"] == "ping"
        await c.send("not json")   # unreadable frames count too
        async with asyncio.timeout(20):
            closed = asyncio.create_task(c.closed(timeout=20))
            while not closed.done():
                try:
                    await c.ws.send('{"action":"ping"}')
                except ConnectionClosed:
                    break
                await asyncio.sleep(0.02)   # the flood's pace (the scenario), not synchronisation
            code, reason = await closed
        assert (code, reason) == (1008, "rate limit exceeded")


async def test_rate_limit_recovers_after_pause(cache) -> None:
    async with (running_bridge(cache.target, rate_limit=2, rate_burst=2) as b,
                client(b.ws_url(ALICE)) as c):
        for _ in range(8):
            await c.send({"action": "ping"})
        await c.wait_for(lambda f: f.get("error", {}).get("code") == "RATE_LIMITED")
        await asyncio.sleep(0.6)   # the scenario, not a wait for an event: time refills the bucket (2/s)
        assert (await c.request("ping"))["type"] == "pong"


async def test_idle_timeout_closes_1000(cache) -> None:
    async with (running_bridge(cache.target, idle_timeout=0.5) as b,
                client(b.ws_url(ALICE)) as c):
        code, reason = await c.closed()
        assert code == 1000 and "idle timeout" in reason


async def _flood_bots_until_the_bridge_closes_someone(b, feed) -> None:  # type: ignore[no-untyped-def]
    """Upsert 64 KiB bots for alice (bounded) until the bridge starts closing a session."""
    big = "x" * 65536
    for i in range(3000):
        if any(s.closing for s in b.app.sessions):
            return
        await feed.bot(bot_id=f"bot-{i % 5}", user_id="alice", message=big)


async def test_slow_consumer_of_orders_is_closed_1013(cache, feed) -> None:
    async with (running_bridge(cache.target, max_backlog=5) as b,
                client(b.ws_url(ALICE)) as bystander):
        await bystander.subscribe(channel="tickers", exchange="binance", snapshot=False)
        sock = small_buffer_socket(b.port)
        async with connect(b.ws_url(ALICE), sock=sock, compression=None, max_queue=1, max_size=None) as ws:
            slow = Client(ws)
            assert (await slow.recv())["type"] == "connection"
            await slow.subscribe(channel="bots", snapshot=False)
            await _flood_bots_until_the_bridge_closes_someone(b, feed)
            assert any(s.closing == (1013, "slow consumer") for s in b.app.sessions)
            code, reason = await slow.closed(timeout=30)
            assert (code, reason) == (1013, "slow consumer")
        seq = await feed.ticker(symbol="BTC/USDT")
        (u,) = await bystander.updates(1)   # the other client was not affected
        assert u["seq"] == seq


async def test_stalled_reader_is_closed_1013_and_freed_without_waiting_for_it(cache, feed) -> None:
    """A client that stops reading altogether: the bridge queues the 1013 close frame and
    aborts the connection after a short close timeout instead of waiting on a drain that never
    comes; the connection, its subscription and its upstream share are freed."""
    async with running_bridge(cache.target, max_backlog=5) as b:
        sock = small_buffer_socket(b.port)
        async with connect(b.ws_url(ALICE), sock=sock, compression=None, max_queue=1, max_size=None,
                           close_timeout=1) as ws:
            stalled = Client(ws)
            assert (await stalled.recv())["type"] == "connection"
            await stalled.subscribe(channel="bots", snapshot=False)
            ws.transport.pause_reading()   # from now on nothing is read from the socket
            await _flood_bots_until_the_bridge_closes_someone(b, feed)
            assert any(s.closing == (1013, "slow consumer") for s in b.app.sessions)
            # Without the forced close (2 s) only websockets' keepalive (ping every 20 s, 20 s
            # to answer) would end it: 15 s tells them apart with a wide margin either way.
            await eventually(lambda: not b.app.sessions, timeout=15)
            assert b.app.metrics.value("bridge_disconnects_total", {"code": "1013"}) == 1
            assert b.app.metrics.value("bridge_subscriptions") == 0
            assert b.app.metrics.value("bridge_upstream_streams") == 0


@pytest.mark.parametrize("batch_ms", [None, 5])
async def test_tickers_conflate_latest_wins_for_a_client_that_falls_behind(
        cache, feed, batch_ms: int | None) -> None:
    """A client that stops reading is not closed for tickers: once its backlog is over the
    conflation bound (half of --max-backlog) it keeps the latest per symbol (counted as
    conflated), and when it reads again it gets the newest prices."""
    query = {"batch_ms": batch_ms} if batch_ms else {}
    async with running_bridge(cache.target, max_backlog=50) as b:
        sock = small_buffer_socket(b.port)
        async with connect(b.ws_url(ALICE, **query), sock=sock, compression=None, max_queue=1,
                           max_size=None) as ws:
            c = Client(ws)
            assert (await c.recv())["type"] == "connection"
            await c.subscribe(channel="tickers", exchange="binance", snapshot=False)
            ws.transport.pause_reading()   # nothing more is read until the backlog conflates
            price = 0.0
            for _ in range(200):   # bounded; stops as soon as the bridge conflates
                if b.app.metrics.value("bridge_conflated_updates_total") > 0:
                    break
                burst = []
                for _ in range(50):
                    price += 1.0
                    burst += [TickerFactory(symbol="BTC/USDT", price=price),
                              TickerFactory(symbol="ETH/USDT", price=-price)]
                await feed.tickers(burst)
            assert b.app.metrics.value("bridge_conflated_updates_total") > 0
            assert b.app.sessions and not any(s.closing for s in b.app.sessions)
            ws.transport.resume_reading()
            latest: dict[str, float] = {}
            async with asyncio.timeout(30):
                while latest.get("BTC/USDT") != price or latest.get("ETH/USDT") != -price:
                    for u in await c.updates(1):
                        latest[u["result"]["symbol"]] = u["result"]["price"]


async def test_a_client_that_keeps_up_gets_every_ticker_in_batch_mode(bridge, feed) -> None:
    """Batching groups updates, it does not drop them: a client reading along sees each one."""
    async with client(bridge.ws_url(ALICE, batch_ms=50)) as c:
        await c.subscribe(channel="tickers", exchange="binance", snapshot=False)
        burst = [TickerFactory(symbol=s, price=float(i)) for i in range(30)
                 for s in ("BTC/USDT", "ETH/USDT")]
        last = await feed.tickers(burst)
        got = await c.updates(len(burst), timeout=15)
        assert [(u["result"]["symbol"], u["result"]["price"]) for u in got] == [
            (t.symbol, t.price) for t in burst]
        assert got[-1]["seq"] == last
        assert bridge.app.metrics.value("bridge_conflated_updates_total") == 0


async def test_a_stalled_client_leaves_its_lane_and_the_others_keep_every_update(cache, feed) -> None:
    """Two clients with the same subscription share frames; when one stops reading it falls
    back to its own queue (conflated), while the other still gets every update, in order."""
    async with running_bridge(cache.target, max_backlog=50) as b, \
            client(b.ws_url(ALICE, batch_ms=5), compression=None) as reader:   # the stalled one's lane
        sock = small_buffer_socket(b.port)
        async with connect(b.ws_url(ALICE, batch_ms=5), sock=sock, compression=None, max_queue=1,
                           max_size=None) as ws:
            stalled = Client(ws)
            assert (await stalled.recv())["type"] == "connection"
            for c in (reader, stalled):
                await c.subscribe(channel="tickers", exchange="binance", snapshot=False)
            assert len(b.app.fanout.topics[("tickers", "binance")].lanes) == 1   # shared
            ws.transport.pause_reading()
            published: list[str] = []
            received: list[str] = []
            for _ in range(200):   # bounded; stops once the stalled client conflates
                if b.app.metrics.value("bridge_conflated_updates_total") > 0:
                    break
                burst = [TickerFactory(symbol=s, price=float(len(published) + i))
                         for i, s in enumerate(["BTC/USDT", "ETH/USDT"] * 50)]
                await feed.tickers(burst)
                published += [f"{t.symbol}@{t.price}" for t in burst]
                received += [f"{u['result']['symbol']}@{u['result']['price']}"
                             for u in await reader.updates(len(burst), timeout=15)]
            assert b.app.metrics.value("bridge_conflated_updates_total") > 0
            assert received == published   # every update, in order, none conflated
            ws.transport.resume_reading()
