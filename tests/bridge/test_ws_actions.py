"""Request/response actions against a real cache service: results, errors, user isolation."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.bridge.client import client
from tests.infra.tokens import make_token

pytestmark = pytest.mark.cluster_too  # SPEC §9.4: reads and user isolation (§7) hold on a cluster


async def test_ticker_actions(bridge, feed) -> None:
    await feed.ticker(exchange="binance", symbol="BTC/USDT", price=101.0)
    await feed.ticker(exchange="binance", symbol="ETH/USDT", price=7.0)
    await feed.ticker(exchange="kraken", symbol="BTC/USDT", price=102.0)
    async with client(bridge.ws_url(make_token("alice"))) as c:
        got = await c.request("get_ticker", {"exchange": "binance", "symbol": "BTC/USDT"})
        assert got["success"] and got["action"] == "get_ticker"
        assert got["result"]["price"] == 101.0 and got["result"]["symbol"] == "BTC/USDT"
        missing = await c.request("get_ticker", {"exchange": "binance", "symbol": "NOPE/USDT"})
        assert missing["success"] is False and missing["error"]["code"] == "NOT_FOUND"
        listed = await c.request("list_tickers", {"exchange": "binance"})
        assert sorted(t["symbol"] for t in listed["result"]) == ["BTC/USDT", "ETH/USDT"]
        some = await c.request("list_tickers", {"exchange": "binance", "symbols": ["ETH/USDT"]})
        assert [t["price"] for t in some["result"]] == [7.0]
        everything = await c.request("list_tickers")
        assert len(everything["result"]) == 3


async def test_concurrent_ticker_reads_all_get_the_answer(bridge, feed) -> None:
    """Identical get_ticker requests in flight together may share one upstream call; every
    request is answered either way, and each answer is a call's or a shared one."""
    await feed.ticker(exchange="binance", symbol="BTC/USDT", price=101.0)
    upstream, metrics = bridge.app.upstream, bridge.app.metrics
    calls = {"method": "GetTicker", "code": "OK"}
    before = (metrics.value("bridge_grpc_requests_total", calls), upstream.shared_reads.shared)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(client(bridge.ws_url(make_token(f"user{i}"))))
            for i in range(8)
        ]
        replies = await asyncio.gather(*(
            c.request("get_ticker", {"exchange": "binance", "symbol": "BTC/USDT"})
            for c in clients
        ))
    assert [r["result"]["price"] for r in replies] == [101.0] * 8
    made = metrics.value("bridge_grpc_requests_total", calls) - before[0]
    shared = upstream.shared_reads.shared - before[1]
    assert made >= 1 and made + shared == 8
    assert len(upstream.shared_reads) == 0


async def test_orders_are_private(bridge, feed) -> None:
    await feed.order(order_id="a-1", user_id="alice", status="open", symbol="BTC/USDT")
    await feed.order(order_id="a-2", user_id="alice", status="filled", symbol="ETH/USDT")
    await feed.order(order_id="b-1", user_id="bob", status="open")
    async with client(bridge.ws_url(make_token("alice"))) as alice, \
            client(bridge.ws_url(make_token("bob"))) as bob, \
            client(bridge.ws_url(make_token("root", scope="admin"))) as admin:
        own = await alice.request("get_order", {"order_id": "a-1"})
        assert own["success"] and own["result"]["user_id"] == "alice"
        other = await alice.request("get_order", {"order_id": "b-1"})
        nowhere = await alice.request("get_order", {"order_id": "zzz"})
        assert other["error"]["code"] == nowhere["error"]["code"] == "NOT_FOUND"
        listed = await alice.request("list_orders")
        assert sorted(o["order_id"] for o in listed["result"]) == ["a-1", "a-2"]
        filtered = await alice.request("list_orders", {"status": "filled"})
        assert [o["order_id"] for o in filtered["result"]] == ["a-2"]
        limited = await alice.request("list_orders", {"limit": 1})
        assert len(limited["result"]) == 1
        bad = await alice.request("list_orders", {"status": "lost"})
        assert bad["error"]["code"] == "INVALID_PARAMS" and "status" in bad["error"]["message"]
        bad = await alice.request("list_orders", {"limit": 0})
        assert bad["error"]["code"] == "INVALID_PARAMS"
        assert [o["order_id"] for o in (await bob.request("list_orders"))["result"]] == ["b-1"]
        everyone = await admin.request("list_orders")
        assert sorted(o["order_id"] for o in everyone["result"]) == ["a-1", "a-2", "b-1"]
        assert (await admin.request("get_order", {"order_id": "b-1"}))["success"]


async def test_bots_are_private(bridge, feed) -> None:
    await feed.bot(bot_id="bot-a", user_id="alice", name="grid")
    await feed.bot(bot_id="bot-b", user_id="bob")
    async with client(bridge.ws_url(make_token("alice"))) as alice, \
            client(bridge.ws_url(make_token("root", scope="admin"))) as admin:
        got = await alice.request("get_bot", {"bot_id": "bot-a"})
        assert got["success"] and got["result"]["name"] == "grid"
        assert got["result"]["symbols"] == ["BTC/USDT", "ETH/USDT"]
        hidden = await alice.request("get_bot", {"bot_id": "bot-b"})
        assert hidden["error"]["code"] == "NOT_FOUND"
        assert [b["bot_id"] for b in (await alice.request("list_bots"))["result"]] == ["bot-a"]
        assert len((await admin.request("list_bots"))["result"]) == 2
        missing = await alice.request("get_bot", {})
        assert missing["error"] == {"code": "INVALID_PARAMS", "message": "'bot_id' is required"}
    m = bridge.app.metrics
    assert m.value("bridge_grpc_requests_total", {"method": "GetBot", "code": "OK"}) >= 1
    assert m.value("bridge_grpc_requests_total", {"method": "GetBot", "code": "NOT_FOUND"}) >= 1
    assert m.value("bridge_request_duration_seconds_count", {"action": "get_bot"}) == 3


async def test_unsubscribe_unknown_id(bridge) -> None:
    async with client(bridge.ws_url(make_token("alice"))) as c:
        reply = await c.request("unsubscribe", {"subscription_id": "tickers-999"})
        assert reply["error"]["code"] == "NOT_FOUND"
