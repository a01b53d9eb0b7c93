"""The book, trades and candles channels end to end: real Redis, cache service, bridge, sockets.

Each test runs on a single Redis and on a Redis Cluster (SPEC §9.4: §9 holds on a cluster).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.asyncio.client import connect

from bridge.channels import book as book_channel
from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.market.client_book import ClientBook
from marketbridge.market.merge import BookUpdate
from tests.bridge.client import Client, client, small_buffer_socket
from tests.infra.bridge_runner import running_bridge
from tests.factories import TradeFactory, book_delta, book_snapshot, ladder
from tests.infra.tokens import make_token

pytestmark = pytest.mark.cluster_too

ALICE = make_token("alice")
BIDS = ladder("49999.5", "0.5", 100)
ASKS = ladder("50000.5", "0.5", 100, descending=False)


def copy_of(snapshot: dict, depth: int) -> ClientBook:
    copy = ClientBook(depth)
    copy.load([tuple(level) for level in snapshot["bids"]], [tuple(level) for level in snapshot["asks"]])
    assert copy.checksum() == snapshot["checksum"]
    return copy


def apply(copy: ClientBook, result: dict) -> None:
    """ClientBook.apply raises ChecksumMismatch when the update's checksum is wrong."""
    copy.apply(BookUpdate(tuple(map(tuple, result["bids"])), tuple(map(tuple, result["asks"])),
                          result["checksum"]))


async def test_welcome_lists_the_features(bridge) -> None:
    async with client(bridge.ws_url(ALICE)) as c:
        assert {"book", "trades", "candles"} <= set(c.welcome["features"])


async def test_book_snapshot_updates_and_checksums(bridge, feed) -> None:
    await feed.book(book_snapshot(sequence=1, levels=30))
    async with client(bridge.ws_url(ALICE)) as c:
        result = await c.subscribe(channel="book", exchange="binance", symbol="BTC/USDT", depth=25)
        snapshot = result["snapshot"]
        assert len(snapshot["bids"]) == 25 and snapshot["bids"][0] == ["49999.5", "1.5"]
        assert snapshot["stale"] is False
        copy = copy_of(snapshot, 25)
        await feed.book(book_delta(sequence=2, bids=[("49999.5", "0")]),
                        book_delta(sequence=3, asks=[("50000.25", "0.10")]))
        updates = await c.updates(2)
        assert [u["action"] for u in updates] == ["book_update"] * 2
        for update in updates:
            apply(copy, update["result"])
        got = await c.request("get_book", {"exchange": "binance", "symbol": "BTC/USDT", "depth": 25})
        assert got["success"]
        assert [list(level) for level in copy.view().bids] == got["result"]["bids"]
        assert [list(level) for level in copy.view().asks] == got["result"]["asks"]
        assert bridge.app.metrics.value("bridge_upstream_streams") == 1


async def test_book_resume_replays_what_was_missed(bridge, feed) -> None:
    await feed.book(book_snapshot(sequence=1, levels=12))
    async with client(bridge.ws_url(ALICE)) as c:
        result = await c.subscribe(channel="book", exchange="binance", symbol="BTC/USDT")
        copy = copy_of(result["snapshot"], 10)
        last = result["seq"]
    await feed.book(*(book_delta(sequence=n, bids=[(f"49999.{n}", "2")]) for n in range(2, 6)))
    async with client(bridge.ws_url(ALICE)) as c:
        resumed = await c.subscribe(channel="book", exchange="binance", symbol="BTC/USDT", resume_from=last)
        assert resumed["recovered"] is True and resumed["snapshot"] == []
        for update in await c.updates(4):
            apply(copy, update["result"])
        got = await c.request("get_book", {"exchange": "binance", "symbol": "BTC/USDT"})
        assert [list(level) for level in copy.view().bids] == got["result"]["bids"]


async def test_a_stale_book_is_told_then_replaced(bridge, feed) -> None:
    await feed.book(book_snapshot(sequence=1))
    async with client(bridge.ws_url(ALICE)) as c:
        await c.subscribe(channel="book", exchange="binance", symbol="BTC/USDT")
        try:
            await feed.book(book_delta(sequence=5, bids=[("49999.5", "2")]))
        except Exception as exc:   # the service refuses the gap: FAILED_PRECONDITION
            assert "snapshot needed" in str(exc)
        (stale,) = await c.updates(1)
        assert stale["result"]["stale"] is True and "does not follow" in stale["result"]["reason"]
        await feed.book(book_snapshot(sequence=9, bids=[("100", "1")], asks=[("101", "2")]))
        (fresh,) = await c.updates(1)
        assert fresh["result"]["snapshot"] is True and fresh["result"]["bids"] == [["100", "1"]]


async def test_bad_book_params_are_invalid_params(bridge) -> None:
    async with client(bridge.ws_url(ALICE)) as c:
        for params, words in (({"depth": 20}, "'depth' must be one of 10, 25, 100, 500"),
                              ({"depth": [1]}, "'depth'"), ({"symbol": None}, "'symbol'")):
            reply = await c.request("subscribe", {"channel": "book", "exchange": "binance",
                                                  "symbol": "BTC/USDT", **params})
            assert reply["success"] is False and reply["error"]["code"] == "INVALID_PARAMS"
            assert words in reply["error"]["message"]
        reply = await c.request("list_candles", {"exchange": "binance", "symbol": "BTC/USDT", "interval": "2m"})
        assert reply["error"]["code"] == "INVALID_PARAMS" and "'interval'" in reply["error"]["message"]


async def test_trades_snapshot_then_every_trade_no_duplicates(bridge, feed) -> None:
    first = [TradeFactory(symbol=s) for s in ("BTC/USDT", "ETH/USDT") * 5]
    await feed.trades(*first)
    async with client(bridge.ws_url(ALICE)) as c:
        result = await c.subscribe(channel="trades", exchange="binance", symbols=["BTC/USDT"], limit=3)
        assert [t["trade_id"] for t in result["snapshot"]] == [t.trade_id for t in first if t.symbol == "BTC/USDT"][-3:]
        later = [TradeFactory(symbol="BTC/USDT") for _ in range(20)]
        await feed.trades(*later)
        updates = await c.updates(20)
        assert [u["result"]["trade_id"] for u in updates] == [t.trade_id for t in later]
        assert updates[0]["action"] == "trade_update" and updates[0]["result"]["price"] == later[0].price
        listed = await c.request("list_trades", {"exchange": "binance", "symbols": ["BTC/USDT"], "limit": 2})
        assert [t["trade_id"] for t in listed["result"]] == [t.trade_id for t in later[-2:]]


async def test_candles_snapshot_and_updates(bridge, feed) -> None:
    base = (time.time() // 60 + 10) * 60   # ahead of the clock: no candle closes by itself
    await feed.trades(TradeFactory(time=base + 1, price="10"), TradeFactory(time=base + 61, price="11"))
    async with client(bridge.ws_url(ALICE)) as c:
        result = await c.subscribe(channel="candles", exchange="binance", symbol="BTC/USDT", interval="1m")
        assert [(k["open_time"], k["closed"]) for k in result["snapshot"]] == [(base, True), (base + 60, False)]
        await feed.trades(TradeFactory(time=base + 62, price="12.5"), TradeFactory(time=base + 121, price="9"))
        updates = await c.updates(2)
        assert [(u["result"]["open_time"], u["result"]["closed"]) for u in updates] == [
            (base + 60, True), (base + 120, False)]
        assert updates[0]["result"]["close"] == "12.5" and updates[0]["action"] == "candle_update"
        listed = await c.request("list_candles", {"exchange": "binance", "symbol": "BTC/USDT",
                                                  "interval": "1m", "limit": 2})
        assert [k["open_time"] for k in listed["result"]] == [base + 60, base + 120]


@pytest.mark.parametrize("batch_ms", [None, 5])
async def test_a_stalled_client_gets_merged_book_updates_that_verify(cache, feed, batch_ms) -> None:
    """A client that stops reading is not closed for books: its queue merges the pending
    updates (counted as conflated); when it reads again every checksum verifies and its copy
    ends equal to the service's book."""
    query = {"batch_ms": batch_ms} if batch_ms else {}
    await feed.book(book_snapshot(sequence=1, levels=100))
    async with running_bridge(cache.target, max_backlog=50) as b:
        sock = small_buffer_socket(b.port)
        async with connect(b.ws_url(ALICE, **query), sock=sock, compression=None, max_queue=1, max_size=None) as ws:
            c = Client(ws)
            assert (await c.recv())["type"] == "connection"
            result = await c.subscribe(channel="book", exchange="binance", symbol="BTC/USDT", depth=100)
            copy = copy_of(result["snapshot"], 100)
            ws.transport.pause_reading()
            sequence = 1
            # Bounded, and quick: the paused client answers no keepalive ping, so the bridge
            # would close it after 40 s. Each delta rewrites the whole depth-100 cut (7 KB
            # frames), so the socket buffers fill after a few hundred.
            for _ in range(100):
                if b.app.metrics.value("bridge_conflated_updates_total") > 0:
                    break
                deltas = []
                for _ in range(20):
                    sequence += 1
                    qty = f"{sequence}.12345678"
                    deltas.append(book_delta(sequence=sequence, bids=[(p, qty) for p, _ in BIDS],
                                             asks=[(p, qty) for p, _ in ASKS]))
                await feed.book(*deltas)
            assert b.app.metrics.value("bridge_conflated_updates_total") > 0
            assert b.app.sessions and not any(s.closing for s in b.app.sessions)
            ws.transport.resume_reading()
            final = await feed_book(feed)
            async with asyncio.timeout(30):
                while [list(level) for level in copy.view().bids] != final["bids"] or \
                        [list(level) for level in copy.view().asks] != final["asks"]:
                    for update in await c.updates(1):
                        apply(copy, update["result"])
            assert b.app.metrics.value("bridge_book_checksum_failures_total") == 0


async def feed_book(feed) -> dict:  # type: ignore[no-untyped-def]
    book = await feed.stub.GetBook(pb.GetBookRequest(exchange="binance", symbol="BTC/USDT", depth=100), timeout=10)
    return book_channel.encode(book)


async def test_a_book_nobody_published_yet_starts_empty_then_gets_its_snapshot(bridge, feed) -> None:
    async with client(bridge.ws_url(ALICE)) as c:
        result = await c.subscribe(channel="book", exchange="binance", symbol="NEW/USDT")
        assert result["snapshot"]["bids"] == [] and result["snapshot"]["checksum"] == 0
        missing = await c.request("get_book", {"exchange": "binance", "symbol": "NEW/USDT"})
        assert missing["error"]["code"] == "NOT_FOUND"
        await feed.book(book_snapshot(symbol="NEW/USDT", levels=3))
        (first,) = await c.updates(1)
        assert first["result"]["snapshot"] is True and len(first["result"]["bids"]) == 3
        copy_of(first["result"], 10)


async def test_trades_and_candles_resume_from_the_last_seq(bridge, feed) -> None:
    base = (time.time() // 60 + 10) * 60
    async with client(bridge.ws_url(ALICE)) as c:
        trades = await c.subscribe(channel="trades", exchange="binance", snapshot=False)
        candles = await c.subscribe(channel="candles", exchange="binance", symbol="BTC/USDT",
                                    interval="1m", snapshot=False)
        await feed.trades(TradeFactory(time=base + 1, price="10"))
        got = await c.updates(2)
        last_trade = next(u["seq"] for u in got if u["subscription_id"] == trades["subscription_id"])
        last_candle = next(u["seq"] for u in got if u["subscription_id"] == candles["subscription_id"])
    missed = [TradeFactory(time=base + 2 + i, price=f"1{i}") for i in range(5)]
    await feed.trades(*missed)
    async with client(bridge.ws_url(ALICE)) as c:
        t = await c.subscribe(channel="trades", exchange="binance", resume_from=last_trade)
        k = await c.subscribe(channel="candles", exchange="binance", symbol="BTC/USDT", interval="1m",
                              resume_from=last_candle)
        assert t["recovered"] and k["recovered"]
        replayed: dict[str, list[dict]] = {t["subscription_id"]: [], k["subscription_id"]: []}
        while len(replayed[t["subscription_id"]]) < 5 or not replayed[k["subscription_id"]]:
            for update in await c.updates(1):
                replayed[update["subscription_id"]].append(update)
        assert [u["result"]["trade_id"] for u in replayed[t["subscription_id"]]] == [m.trade_id for m in missed]
        candle = replayed[k["subscription_id"]][-1]["result"]
        assert candle["trades"] == 6 and candle["open_time"] == base and candle["close"] == "14"
