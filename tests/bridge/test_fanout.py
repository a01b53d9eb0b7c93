"""The fan-out against a real cache service, below the WebSocket layer."""

from __future__ import annotations

import logging
from dataclasses import fields

import pytest
from google.protobuf.message import Message

from bridge.auth import Identity
from bridge.compression import FrameCodec
from bridge.channels import CHANNELS, Channel
from bridge.errors import INVALID_PARAMS, BridgeError
from bridge.events import Event
from bridge.fanout import Fanout
from bridge.protocol import SubscribeParams
from bridge.subscriptions import Subscription, SubscriptionBook
from tests.bridge.client import client
from tests.infra.eventually import eventually
from tests.infra.bridge_runner import RunningBridge
from tests.infra.tokens import make_token

ALICE = make_token("alice")
BOB = make_token("bob")


class Recorder:
    """A subscriber that keeps what it is given (a plain object, not a socket stand-in)."""

    batch_ms: int | None = None
    codec: FrameCodec | None = None   # no shared frames: every event through deliver()

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
    sub = SubscriptionBook(5).add(SubscribeParams("tickers", exchange=exchange),
                                  CHANNELS["tickers"], ("tickers", exchange))
    fanout = bridge.app.fanout
    with pytest.raises(BridgeError) as info:
        await fanout.attach(Recorder(), sub, Identity("alice"))
    assert info.value.code == INVALID_PARAMS
    fanout.detach(sub)
    assert not fanout.topics and bridge.app.metrics.value("bridge_upstream_streams") == 0


async def test_topic_delivers_each_event_once_to_matching_members(bridge, feed) -> None:
    book = SubscriptionBook(5)
    btc = book.add(SubscribeParams("tickers", exchange="binance", symbols=("BTC/USDT",)),
                   CHANNELS["tickers"], ("tickers", "binance"))
    every = book.add(SubscribeParams("tickers", exchange="binance"), CHANNELS["tickers"],
                     ("tickers", "binance"))
    btc.setup = every.setup = None
    a, b = Recorder(), Recorder()
    fanout = bridge.app.fanout
    await fanout.attach(a, btc, Identity("alice"))
    await fanout.attach(b, every, Identity("bob"))
    assert len(fanout.topics) == 1
    await feed.ticker(symbol="ETH/USDT")
    seq = await feed.ticker(symbol="BTC/USDT")
    await eventually(lambda: len(b.events) == 2)
    assert [e.seq for e in a.events] == [seq]
    assert a.events[0] is b.events[1]   # encoded once, shared
    fanout.detach(btc)
    fanout.detach(every)
    fanout.detach(every)   # twice is harmless
    assert not fanout.topics


# ---------------------------------------------------------------- failures inside the fan-out


class PoisonedTickers(Channel):
    """The real ticker channel, with a defect: building the event of one symbol raises."""

    def event(self, seq: str, entity: Message) -> Event:
        if getattr(entity, "symbol", "") == "POISON/USDT":
            raise RuntimeError("poisoned ticker")
        return super().event(seq, entity)


def poisoned_tickers() -> PoisonedTickers:
    real = CHANNELS["tickers"]
    return PoisonedTickers(**{f.name: getattr(real, f.name) for f in fields(Channel)})


def failures(bridge: RunningBridge, part: str) -> float:
    return bridge.app.metrics.value("bridge_topic_failures_total",
                                    {"channel": "tickers", "part": part})


async def test_a_failing_event_does_not_stop_its_topic(bridge, feed, caplog) -> None:
    """An error while fanning out (here: building one event) is logged with its traceback,
    counted, told (``interrupted``, then ``resumed`` not recovered: that event reached nobody),
    and the topic resumes after it: every later event reaches every client."""
    caplog.set_level(logging.ERROR, logger="bridge.fanout")
    bridge.app.fanout.channels = {**CHANNELS, "tickers": poisoned_tickers()}
    async with client(bridge.ws_url(ALICE)) as every, client(bridge.ws_url(BOB)) as btc:
        await every.subscribe(channel="tickers", exchange="binance", snapshot=False)
        await btc.subscribe(channel="tickers", exchange="binance", symbols=["BTC/USDT"],
                            snapshot=False)
        before = await feed.ticker(symbol="BTC/USDT")
        await feed.ticker(symbol="POISON/USDT")
        after = await feed.ticker(symbol="BTC/USDT")
        for c in (every, btc):
            assert [u["seq"] for u in await c.updates(2)] == [before, after]
            statuses = [await c.wait_for(lambda f: f["type"] == "stream_status")
                        for _ in range(2)]
            assert [(s["status"], s["recovered"]) for s in statuses] == [
                ("interrupted", False), ("resumed", False)]
        later = await feed.ticker(symbol="BTC/USDT")
        for c in (every, btc):
            assert [u["seq"] for u in await c.updates(1)] == [later]
        assert failures(bridge, "stream") == 1
        (topic,) = bridge.app.fanout.topics.values()
        assert topic.task is not None and not topic.task.done()
        assert bridge.app.metrics.value("bridge_upstream_streams") == 1
    (record,) = [r for r in caplog.records if "fanning out failed" in r.getMessage()]
    assert record.exc_info is not None and "poisoned ticker" in caplog.text
    assert "Traceback" in caplog.text


class FailingRecorder(Recorder):
    """A member whose status call raises; it can be failed (as a session closes 1011)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed: list[Subscription] = []

    def stream_status(self, sub: Subscription, status: str, recovered: bool) -> None:
        raise RuntimeError("member defect")

    def fail(self, sub: Subscription) -> None:
        self.failed.append(sub)


class FailingToFail(FailingRecorder):
    def fail(self, sub: Subscription) -> None:
        raise RuntimeError("cannot fail either")


class FailingWithoutFail(Recorder):
    """Its ``fail`` is not there at all (a member written against the older protocol)."""

    def stream_status(self, sub: Subscription, status: str, recovered: bool) -> None:
        raise RuntimeError("member defect")


class Fatal(BaseException):
    """Not an Exception: nothing in the fan-out catches it, so it ends the topic's task."""


class FatalOnce(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.raised = False

    def stream_status(self, sub: Subscription, status: str, recovered: bool) -> None:
        if not self.raised:
            self.raised = True
            raise Fatal()
        super().stream_status(sub, status, recovered)


async def attach_all(fanout: Fanout, members: list[Recorder]) -> list[Subscription]:
    book = SubscriptionBook(len(members))
    subs = []
    for member in members:
        sub = book.add(SubscribeParams("tickers", exchange="binance"), CHANNELS["tickers"],
                       ("tickers", "binance"))
        sub.setup = None
        await fanout.attach(member, sub, Identity("alice"))
        subs.append(sub)
    return subs


async def test_a_failing_member_does_not_keep_status_from_the_others(cache, bridge, caplog) -> None:
    """Each member's ``stream_status`` is contained (bridge.lanes.contain): logged with its
    traceback, counted, the member failed alone; a member whose ``fail`` raises or is missing
    is logged too, and the healthy member is told everything."""
    caplog.set_level(logging.ERROR, logger="bridge.lanes")
    failing, bare, healthy = FailingRecorder(), FailingWithoutFail(), Recorder()
    subs = await attach_all(bridge.app.fanout, [failing, bare, FailingToFail(), healthy])
    await cache.stop(grace=0)
    await eventually(lambda: healthy.statuses == [("interrupted", False)])
    await cache.start()
    await eventually(lambda: healthy.statuses == [("interrupted", False), ("resumed", True)],
                     timeout=20)
    assert failing.failed == [subs[0], subs[0]]   # a Recorder stays attached: told twice
    assert bridge.app.metrics.value("bridge_fanout_failures_total") == 6
    told = [r for r in caplog.records if "stream_status for subscription" in r.getMessage()]
    assert len(told) == 6 and all(r.exc_info and r.exc_info[0] is RuntimeError for r in told)
    assert len([r for r in caplog.records if "raised too" in r.getMessage()]) == 4
    for sub in subs:
        bridge.app.fanout.detach(sub)


async def test_a_topic_whose_task_dies_is_restarted(cache, bridge, feed, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="bridge.fanout")
    fanout = bridge.app.fanout
    healthy, fatal = Recorder(), FatalOnce()
    subs = await attach_all(fanout, [healthy, fatal])
    (topic,) = fanout.topics.values()
    first_task = topic.task
    await cache.stop(grace=0)
    await eventually(lambda: failures(bridge, "task") == 1)
    assert first_task is not None and first_task.done() and topic.task is not first_task
    assert fanout.topics == {("tickers", "binance"): topic}
    await cache.start()
    await eventually(lambda: healthy.statuses == [("interrupted", False), ("resumed", True)],
                     timeout=20)
    assert fatal.statuses == [("resumed", True)]
    seq = await feed.ticker(symbol="BTC/USDT")
    await eventually(lambda: [e.seq for e in healthy.events] == [seq])
    assert "its task ended" in caplog.text and "Fatal" in caplog.text
    for sub in subs:
        fanout.detach(sub)
    assert not fanout.topics
