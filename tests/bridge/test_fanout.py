"""The fan-out against a real cache service, below the WebSocket layer."""

from __future__ import annotations

import pytest

from bridge.auth import Identity
from bridge.errors import INVALID_PARAMS, BridgeError
from bridge.events import Event
from bridge.protocol import SubscribeParams
from bridge.subscriptions import Subscription, SubscriptionBook


class Recorder:
    """A subscriber that keeps what it is given (a plain object, not a socket stand-in)."""

    batch_ms: int | None = None

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.statuses: list[tuple[str, bool]] = []

    def write_shared(self, sub: Subscription, data: bytes, last: Event) -> bool:
        return False   # take every event through deliver()

    def deliver(self, sub: Subscription, event: Event) -> None:
        self.events.append(event)

    def stream_status(self, sub: Subscription, status: str, recovered: bool) -> None:
        self.statuses.append((status, recovered))


async def test_refused_stream_fails_subscribers_at_once(bridge) -> None:
    """A stream the service refuses for good (bad argument) is not retried until a timeout."""
    exchange = "bad\x01exchange"   # the protocol layer refuses this; the service does too
    sub = SubscriptionBook(5).add(SubscribeParams("tickers", exchange=exchange), ("tickers", exchange))
    fanout = bridge.app.fanout
    with pytest.raises(BridgeError) as info:
        await fanout.attach(Recorder(), sub, Identity("alice"))
    assert info.value.code == INVALID_PARAMS
    fanout.detach(sub)
    assert not fanout.topics and bridge.app.metrics.value("bridge_upstream_streams") == 0


async def test_topic_delivers_each_event_once_to_matching_members(bridge, feed) -> None:
    book = SubscriptionBook(5)
    btc = book.add(SubscribeParams("tickers", exchange="binance", symbols=("BTC/USDT",)),
                   ("tickers", "binance"))
    every = book.add(SubscribeParams("tickers", exchange="binance"), ("tickers", "binance"))
    btc.held = every.held = None
    a, b = Recorder(), Recorder()
    fanout = bridge.app.fanout
    await fanout.attach(a, btc, Identity("alice"))
    await fanout.attach(b, every, Identity("bob"))
    assert len(fanout.topics) == 1
    await feed.ticker(symbol="ETH/USDT")
    seq = await feed.ticker(symbol="BTC/USDT")
    from tests.bridge.client import eventually

    await eventually(lambda: len(b.events) == 2)
    assert [e.seq for e in a.events] == [seq]
    assert a.events[0] is b.events[1]   # encoded once, shared
    fanout.detach(btc)
    fanout.detach(every)
    fanout.detach(every)   # twice is harmless
    assert not fanout.topics
