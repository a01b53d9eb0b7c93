"""Subscriptions end to end: snapshot, ordered updates, filters, aliases, batches, resume."""

from __future__ import annotations

import asyncio

import pytest

from bridge.events import seq_key
from tests.bridge.client import client
from tests.infra.eventually import eventually
from tests.infra.bridge_runner import running_bridge
from tests.infra.cache_service_runner import running_cache_service
from tests.infra.tokens import make_token

ALICE = make_token("alice")

pytestmark = pytest.mark.cluster_too  # SPEC §9.4: subscriptions, privacy (§7) and resume hold on a cluster


async def test_snapshot_then_updates_in_seq_order(bridge, feed) -> None:
    await feed.ticker(symbol="BTC/USDT", price=1.0)
    await feed.ticker(symbol="ETH/USDT", price=2.0)
    async with client(bridge.ws_url(ALICE)) as c:
        result = await c.subscribe(channel="tickers", exchange="binance")
        assert result["channel"] == "tickers" and result["recovered"] is True
        assert sorted(t["symbol"] for t in result["snapshot"]) == ["BTC/USDT", "ETH/USDT"]
        seqs = [await feed.ticker(symbol="BTC/USDT", price=10.0 + i) for i in range(20)]
        updates = await c.updates(20)
        assert [u["seq"] for u in updates] == seqs
        assert [u["result"]["price"] for u in updates] == [10.0 + i for i in range(20)]
        u = updates[0]
        assert u["type"] == "update" and u["action"] == "ticker_update"
        assert u["subscription_id"] == result["subscription_id"]


async def test_symbol_filter_and_unsubscribe(bridge, feed) -> None:
    async with client(bridge.ws_url(ALICE)) as c:
        btc = await c.subscribe(channel="tickers", exchange="binance", symbols=["BTC/USDT"])
        eth = await c.subscribe(channel="tickers", exchange="binance", symbols=["ETH/USDT"],
                                snapshot=False)
        assert bridge.app.metrics.value("bridge_upstream_streams") == 1
        await feed.ticker(symbol="SOL/USDT")
        await feed.ticker(symbol="ETH/USDT", price=5.0)
        (first,) = await c.updates(1)
        assert first["subscription_id"] == eth["subscription_id"]   # SOL filtered out
        reply = await c.request("unsubscribe", {"subscription_id": btc["subscription_id"]})
        assert reply["result"] == {"subscription_id": btc["subscription_id"]}
        await feed.ticker(symbol="BTC/USDT")
        await feed.ticker(symbol="ETH/USDT", price=6.0)
        (second,) = await c.updates(1)
        assert second["result"]["price"] == 6.0 and not c.pending   # no BTC update came first
        assert bridge.app.metrics.value("bridge_subscriptions") == 1
        await c.request("unsubscribe", {"subscription_id": eth["subscription_id"]})
        await eventually(lambda: bridge.app.metrics.value("bridge_upstream_streams") == 0)


async def test_aliases_imply_channel(bridge, feed) -> None:
    await feed.bot(bot_id="bot-1", user_id="alice")
    async with client(bridge.ws_url(ALICE)) as c:
        t = await c.request("stream_tickers", {"exchange": "binance"})
        o = await c.request("stream_orders", {})
        b = await c.request("stream_bots", {"bot_ids": ["bot-1"]})
        assert [r["result"]["channel"] for r in (t, o, b)] == ["tickers", "orders", "bots"]
        assert t["action"] == "stream_tickers"
        assert [x["bot_id"] for x in b["result"]["snapshot"]] == ["bot-1"]
        wrong = await c.request("stream_orders", {"channel": "bots"})
        assert wrong["error"]["code"] == "INVALID_PARAMS"
        await feed.order(order_id="o-1", user_id="alice")
        await feed.bot(bot_id="bot-1", user_id="alice", pnl=99.0)
        updates = await c.updates(2)
        assert {u["action"] for u in updates} == {"order_update", "bot_update"}


async def test_order_and_bot_streams_are_private(bridge, feed) -> None:
    async with client(bridge.ws_url(ALICE)) as alice, \
            client(bridge.ws_url(make_token("bob"))) as bob, \
            client(bridge.ws_url(make_token("root", scope="admin"))) as admin:
        for c in (alice, bob, admin):
            await c.subscribe(channel="orders")
            await c.subscribe(channel="bots")
        assert bridge.app.metrics.value("bridge_upstream_streams") == 6
        await feed.order(order_id="b-1", user_id="bob")
        await feed.bot(bot_id="bot-b", user_id="bob")
        await feed.order(order_id="a-1", user_id="alice")
        await feed.bot(bot_id="bot-a", user_id="alice")
        got_alice = await alice.updates(2)
        got_bob = await bob.updates(2)
        got_admin = await admin.updates(4)
        assert {u["result"]["user_id"] for u in got_alice} == {"alice"}
        assert {u["result"]["user_id"] for u in got_bob} == {"bob"}
        assert {u["result"]["user_id"] for u in got_admin} == {"alice", "bob"}
        ping = await alice.request("ping")   # nothing else was queued for alice
        assert ping["type"] == "pong" and not alice.pending


async def test_order_filters_by_symbol_and_bot(bridge, feed) -> None:
    await feed.order(order_id="s-1", user_id="alice", bot_id="bot-1", symbol="ETH/USDT")
    await feed.order(order_id="s-2", user_id="alice", bot_id="bot-2", symbol="ETH/USDT")
    async with client(bridge.ws_url(ALICE)) as c:
        res = await c.subscribe(channel="orders", bot_ids=["bot-1"], symbols=["ETH/USDT"])
        assert [o["order_id"] for o in res["snapshot"]] == ["s-1"]
        await feed.order(order_id="x", user_id="alice", bot_id="bot-2", symbol="ETH/USDT")
        await feed.order(order_id="y", user_id="alice", bot_id="bot-1", symbol="BTC/USDT")
        await feed.order(order_id="z", user_id="alice", bot_id="bot-1", symbol="ETH/USDT")
        (u,) = await c.updates(1)
        assert u["result"]["order_id"] == "z"


async def test_batch_mode_groups_updates(bridge, feed) -> None:
    async with client(bridge.ws_url(ALICE, batch_ms=200)) as c:
        assert c.welcome["limits"]["batch_ms"] == 200
        await c.subscribe(channel="orders", snapshot=False)
        seqs = [await feed.order(order_id=f"o-{i}", user_id="alice") for i in range(5)]
        frames = []
        async with asyncio.timeout(10):
            while sum(len(f["updates"]) for f in frames) < 5:
                frames.append(await c.wait_for(lambda f: f["type"] == "batch"))
        assert all(f["type"] == "batch" for f in frames)
        updates = [u for f in frames for u in f["updates"]]
        assert [u["seq"] for u in updates] == seqs and updates[0]["type"] == "update"
    assert bridge.app.metrics.value("bridge_messages_sent_total", {"type": "batch"}) >= 1


async def test_subscribe_seq_is_a_resume_point(bridge, feed) -> None:
    """A client that drops before its first update resumes from the subscribe result's seq."""
    await feed.order(order_id="old", user_id="alice")
    async with client(bridge.ws_url(ALICE)) as c:
        start = (await c.subscribe(channel="orders", snapshot=False))["seq"]
    missed = await feed.order(order_id="new", user_id="alice")
    async with client(bridge.ws_url(ALICE)) as c:
        res = await c.subscribe(channel="orders", resume_from=start)
        assert res["seq"] == start and res["recovered"] is True
        (u,) = await c.updates(1)
        assert u["seq"] == missed


async def test_resume_after_reconnect_no_loss_no_duplicates(bridge, feed) -> None:
    async with client(bridge.ws_url(ALICE)) as c:
        await c.subscribe(channel="orders", snapshot=False)
        first = [await feed.order(order_id=f"o-{i}", user_id="alice") for i in range(3)]
        got = await c.updates(3)
        last_seq = got[-1]["seq"]
    missed = [await feed.order(order_id=f"m-{i}", user_id="alice") for i in range(4)]
    await feed.order(order_id="bob-1", user_id="bob")
    async with client(bridge.ws_url(ALICE)) as c:
        res = await c.subscribe(channel="orders", resume_from=last_seq)
        assert res["recovered"] is True and res["snapshot"] == []
        replayed = await c.updates(4)
        assert [u["seq"] for u in replayed] == missed
        live = await feed.order(order_id="after", user_id="alice")
        (u,) = await c.updates(1)
        assert u["seq"] == live
        assert (await c.request("ping"))["type"] == "pong" and not c.pending
    assert first[-1] == last_seq


async def test_resume_while_writes_continue_merges_exactly(bridge, feed) -> None:
    """Writes never stop while the client reconnects: every seq arrives exactly once."""
    written: list[str] = []
    stop = asyncio.Event()

    async def writer() -> None:
        i = 0
        while not stop.is_set():
            written.append(await feed.order(order_id=f"w-{i % 7}", user_id="alice"))
            i += 1

    received: list[str] = []
    task = asyncio.create_task(writer())
    try:
        async with client(bridge.ws_url(ALICE)) as c:
            await c.subscribe(channel="orders", snapshot=False)
            received += [u["seq"] for u in await c.updates(20)]
        async with client(bridge.ws_url(ALICE)) as c:
            res = await c.subscribe(channel="orders", resume_from=received[-1], snapshot=False)
            assert res["recovered"] is True
            received += [u["seq"] for u in await c.updates(60)]
            stop.set()
            await task
            target = written[-1]
            while received[-1] != target:
                received += [u["seq"] for u in await c.updates(1)]
    finally:
        stop.set()
        await task
    start = written.index(received[0])
    assert received == written[start:]


async def test_resume_under_heavy_writes_discards_held_events_and_loses_nothing(cache,
                                                                                 feed) -> None:
    """While a long replay runs, more live events arrive than --max-backlog may hold: the held
    ones are discarded and the catch-up stream delivers them itself. No 1013, no loss, no
    duplicates, seqs in order."""
    async with running_bridge(cache.target, max_backlog=10) as b, \
            client(b.ws_url(ALICE)) as c:
        resume_from = await feed.order(order_id="start", user_id="alice")
        written: list[str] = []
        for chunk in range(10):   # a long history to replay
            written += await asyncio.gather(*(feed.order(order_id=f"p-{i % 50}", user_id="alice")
                                              for i in range(200)))
        stop = asyncio.Event()

        async def writer(n: int) -> None:
            i = 0
            while not stop.is_set():
                written.append(await feed.order(order_id=f"w{n}-{i % 5}", user_id="alice"))
                i += 1

        writers = [asyncio.create_task(writer(n)) for n in range(3)]
        received: list[str] = []
        try:
            res = await c.subscribe(channel="orders", resume_from=resume_from, snapshot=False)
            assert res["recovered"] is True
            (session,) = b.app.sessions
            (sub,) = session.subscriptions.book
            setup = sub.setup
            assert setup is not None   # the replay has thousands of events to go
            async with asyncio.timeout(60):
                while setup.dropped_key == (0, 0):   # held events overflowed at least once
                    received += [u["seq"] for u in await c.updates(1)]
            stop.set()
            await asyncio.gather(*writers)
            last = max(written, key=seq_key)
            async with asyncio.timeout(60):
                while not received or received[-1] != last:
                    received += [u["seq"] for u in await c.updates(1)]
        finally:
            stop.set()
            await asyncio.gather(*writers, return_exceptions=True)
        assert received == sorted(written, key=seq_key)
        assert (await c.request("ping"))["type"] == "pong"
        assert b.app.metrics.value("bridge_disconnects_total", {"code": "1013"}) == 0


async def test_resume_with_gap_reports_not_recovered(redis_url) -> None:
    async with running_cache_service(redis_url, stream_maxlen=5) as svc, \
            running_bridge(svc.target) as b:
        from tests.infra.feed import Feed

        feed = Feed(svc.target)
        try:
            old = await feed.order(order_id="first", user_id="alice")
            for i in range(400):
                await feed.order(order_id=f"o-{i % 10}", user_id="alice")
            async with client(b.ws_url(ALICE)) as c:
                res = await c.subscribe(channel="orders", resume_from=old)
                assert res["recovered"] is False
                live = await feed.order(order_id="live", user_id="alice")
                await c.wait_for(lambda f: f.get("seq") == live, timeout=20)
        finally:
            await feed.close()


async def test_many_clients_share_one_upstream_stream(bridge, feed) -> None:
    n = 100
    clients = [client(bridge.ws_url(make_token(f"user-{i}"))) for i in range(n)]
    conns = [await cm.__aenter__() for cm in clients]
    try:
        await asyncio.gather(*(c.subscribe(channel="tickers", exchange="binance",
                                           symbols=["BTC/USDT"], snapshot=False) for c in conns))
        m = bridge.app.metrics
        assert m.value("bridge_upstream_streams") == 1
        assert m.value("bridge_active_connections") == n and m.value("bridge_subscriptions") == n
        seq = await feed.ticker(symbol="BTC/USDT", price=42.0)
        results = await asyncio.gather(*(c.updates(1, timeout=30) for c in conns))
        assert all(r[0]["seq"] == seq and r[0]["result"]["price"] == 42.0 for r in results)
        assert m.value("bridge_delivery_latency_seconds_count") == n
    finally:
        await asyncio.gather(*(cm.__aexit__(None, None, None) for cm in clients))
    m = bridge.app.metrics
    await eventually(lambda: m.value("bridge_active_connections") == 0)
    await eventually(lambda: m.value("bridge_upstream_streams") == 0)
    assert m.value("bridge_subscriptions") == 0
    assert not bridge.app.sessions and not bridge.app.fanout.topics
    assert bridge.app.registry.total == 0


async def test_connections_leave_no_tasks_behind(bridge, feed) -> None:
    before = {t for t in asyncio.all_tasks()}
    async with client(bridge.ws_url(ALICE)) as c:
        await c.subscribe(channel="tickers", exchange="binance")
        await c.subscribe(channel="orders")
        await feed.ticker(symbol="BTC/USDT")
        await c.updates(1)
    await eventually(lambda: bridge.app.metrics.value("bridge_upstream_streams") == 0)

    def ours(task: asyncio.Task) -> bool:
        """Tasks of the bridge or of websockets (grpc's own Cython tasks are not ours)."""
        code = getattr(task.get_coro(), "cr_code", None)
        return code is not None and ("/bridge/" in code.co_filename
                                     or "/websockets/" in code.co_filename)

    def leftovers() -> set[asyncio.Task]:
        return {t for t in asyncio.all_tasks() - before if not t.done() and ours(t)
                and t is not asyncio.current_task()}

    try:
        await eventually(lambda: not leftovers())
    except TimeoutError:
        raise AssertionError([t.get_name() for t in leftovers()]) from None
