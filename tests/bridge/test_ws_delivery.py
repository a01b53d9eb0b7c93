"""docs/protocol.md §6 delivery rules over real sockets: every ticker update reaches a client that keeps
up and every ``resume_from`` replay; a batch handed over by a lane waits for one timer only."""

from __future__ import annotations

import asyncio
import time

import pytest

from bridge.protocol import Reply
from bridge.channels import CHANNELS
from bridge.events import Event
from bridge.protocol import pong_frame
from bridge.subscriptions import Subscription
from tests.bridge.client import client
from tests.factories import TickerFactory
from tests.infra.tokens import make_token

ALICE = make_token("alice")

pytestmark = pytest.mark.cluster_too  # SPEC §9.4: delivery holds on a cluster
CONFLATED = "bridge_conflated_updates_total"


def ticker_events(symbol: str, count: int) -> list[Event]:
    """Real encoded ticker events with fresh seqs (as the topic would hand them over)."""
    now_ms = int(time.time() * 1000)
    return [CHANNELS["tickers"].event(f"{now_ms}-{i}", TickerFactory(symbol=symbol,
                                                                     price=float(i)))
            for i in range(count)]


def prices(updates: list[dict]) -> list[tuple[str, float]]:
    return [(u["result"]["symbol"], u["result"]["price"]) for u in updates]


@pytest.mark.parametrize("batch_ms", [None, 20])
async def test_resume_replays_every_missed_ticker_update(bridge, feed,
                                                         batch_ms: int | None) -> None:
    """4 missed updates (BTC, ETH, BTC, ETH) are replayed as 4, not the newest per symbol:
    they queue behind the subscribe response, and a replay never conflates."""
    query = {"batch_ms": batch_ms} if batch_ms else {}
    async with client(bridge.ws_url(ALICE, **query)) as c:
        await c.subscribe(channel="tickers", exchange="binance", snapshot=False)
        await feed.ticker(symbol="BTC/USDT", price=1.0)
        (seen,) = await c.updates(1)
    missed = [TickerFactory(symbol=s, price=p) for s, p in
              [("BTC/USDT", 2.0), ("ETH/USDT", 3.0), ("BTC/USDT", 4.0), ("ETH/USDT", 5.0)]]
    for ticker in missed:
        await feed.tickers([ticker])
    before = bridge.app.metrics.value(CONFLATED)
    async with client(bridge.ws_url(ALICE, **query)) as c:
        res = await c.subscribe(channel="tickers", exchange="binance", resume_from=seen["seq"])
        assert res["recovered"] is True
        replayed = await c.updates(4)
        assert prices(replayed) == [(t.symbol, t.price) for t in missed]
        assert (await c.request("ping"))["type"] == "pong" and not c.pending   # nothing more
    assert bridge.app.metrics.value(CONFLATED) == before


@pytest.mark.parametrize("batch_ms", [None, 20])
async def test_a_burst_of_one_symbol_reaches_a_reader_as_every_update(bridge, feed,
                                                                      batch_ms: int | None) -> None:
    """Shared lane path: 10 updates of one symbol in one upstream message arrive as 10."""
    query = {"batch_ms": batch_ms} if batch_ms else {}
    async with client(bridge.ws_url(ALICE, **query)) as c:
        await c.subscribe(channel="tickers", exchange="binance", snapshot=False)
        burst = [TickerFactory(symbol="BTC/USDT", price=float(i)) for i in range(10)]
        last = await feed.tickers(burst)
        got = await c.updates(10)
        assert prices(got) == [("BTC/USDT", float(i)) for i in range(10)]
        assert got[-1]["seq"] == last
    assert bridge.app.metrics.value(CONFLATED) == 0


@pytest.mark.parametrize("batch_ms", [None, 20])
async def test_a_burst_queued_behind_a_reply_reaches_a_reader_as_every_update(
        bridge, batch_ms: int | None) -> None:
    """Per-client path: a lane flush finds a reply queued for the client (it does not keep up
    at that instant), so it hands the 10 updates over one by one into the client's queue,
    behind the reply, all in one event-loop turn. The client reads promptly: no conflation."""
    query = {"batch_ms": batch_ms} if batch_ms else {}
    async with client(bridge.ws_url(ALICE, **query)) as c:
        res = await c.subscribe(channel="tickers", exchange="binance", snapshot=False)
        session = bridge.session(c.welcome["session_id"])
        sub = session.subscriptions.book.get(res["subscription_id"])
        assert isinstance(sub, Subscription)
        lane = bridge.app.fanout.topics[("tickers", "binance")].lane_of[sub]
        for event in ticker_events("BTC/USDT", 10):
            lane.offer(event)
        session.send(Reply(pong_frame("queued-first", time.time()), "pong"))
        lane.flush()
        assert len(session.outbound) == 11   # the reply and every update, in this turn
        assert (await c.recv())["request_id"] == "queued-first"
        got = await c.updates(10)
        assert prices(got) == [("BTC/USDT", float(i)) for i in range(10)]
    assert bridge.app.metrics.value(CONFLATED) == 0


async def test_events_handed_over_by_a_batched_lane_wait_for_one_batch_timer(bridge) -> None:
    """A batched lane flushes ``batch_ms`` after its first event; a member that does not keep
    up at that moment takes the events through its own queue. They are due there at once: the
    frame leaves with the next write, not ``batch_ms`` later (2 x batch_ms in all before)."""
    batch_ms = 1000
    async with client(bridge.ws_url(ALICE, batch_ms=batch_ms)) as c:
        res = await c.subscribe(channel="tickers", exchange="binance", snapshot=False)
        session = bridge.session(c.welcome["session_id"])
        sub = session.subscriptions.book.get(res["subscription_id"])
        assert isinstance(sub, Subscription)
        (event,) = ticker_events("BTC/USDT", 1)
        loop = asyncio.get_running_loop()
        handed_over = loop.time()
        session.deliver(sub, event)   # what Lane.flush does for a member not keeping up
        assert session.outbound.wait_time(loop.time()) == 0.0   # due now, not in 1 s
        (frame,) = [await c.wait_for(lambda f: f["type"] == "batch", timeout=10)]
        elapsed = loop.time() - handed_over
        assert [u["seq"] for u in frame["updates"]] == [event.seq]
        # Before: held for a whole second batch_ms (>= 1.0 s). A busy machine still writes one
        # frame to a local socket far inside 0.9 s.
        assert elapsed < 0.9 * batch_ms / 1000, elapsed
