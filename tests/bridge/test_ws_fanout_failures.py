"""A delivery that raises costs one client, never a topic: real sockets, a real defect."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from bridge.protocol import Reply
from bridge.channels import Channel
from bridge.events import Event
from bridge.protocol import SubscribeParams
from bridge.subscriptions import Subscription, SubscriptionBook, TopicKey
from tests.bridge.client import Client, client
from tests.infra.eventually import eventually
from tests.infra.tokens import make_token

ALICE = make_token("alice")
MARK = "BAD/USDT"
FAILURES = "bridge_fanout_failures_total"


@dataclasses.dataclass(eq=False, slots=True)
class FaultySubscription(Subscription):
    """A subscription with a real defect: its bookkeeping raises on the marked symbol."""

    def delivered(self, event: Event) -> None:
        if event.symbol == MARK:
            raise RuntimeError(f"bookkeeping defect on {MARK}")
        Subscription.delivered(self, event)


class FaultyBook(SubscriptionBook):
    """Hands out :class:`FaultySubscription`s (otherwise the connection's own book)."""

    def add(self, params: SubscribeParams, channel: Channel, topic: TopicKey) -> Subscription:
        sub = SubscriptionBook.add(self, params, channel, topic)
        faulty = FaultySubscription(**{f.name: getattr(sub, f.name)
                                       for f in dataclasses.fields(Subscription)})
        self._by_id[sub.id] = faulty
        return faulty


async def seqs_of(c: Client, count: int) -> list[str]:
    return [u["seq"] for u in await c.updates(count, timeout=15)]


async def test_a_subscriber_whose_delivery_raises_is_closed_1011_and_the_others_carry_on(
        bridge, feed, caplog: pytest.LogCaptureFixture) -> None:
    """The faulty client shares a lane with a healthy one (same subscription id, no filters);
    another healthy one is in a batched lane of the same topic. Every healthy client gets every
    update before, at and after the fault; the faulty one is closed 1011 and detached; the
    failure is logged with its traceback and counted."""
    async with (client(bridge.ws_url(ALICE)) as same_lane,
                client(bridge.ws_url(ALICE, batch_ms=20)) as batched,
                client(bridge.ws_url(ALICE)) as faulty):
        session = bridge.session(faulty.welcome["session_id"])
        session.subscriptions.book = FaultyBook(session.subscriptions.book.max_subscriptions)
        for c in (same_lane, batched, faulty):
            await c.subscribe(channel="tickers", exchange="binance", snapshot=False)
        topic = bridge.app.fanout.topics[("tickers", "binance")]
        (bad_sub,) = [s for s in topic.lane_of if isinstance(s, FaultySubscription)]
        assert len(topic.lanes) == 2 and len(topic.lane_of[bad_sub].members) == 2

        published = [await feed.ticker(symbol="BTC/USDT", price=float(i)) for i in range(3)]
        for c in (same_lane, batched, faulty):
            assert await seqs_of(c, 3) == published
        with caplog.at_level(logging.ERROR, logger="bridge.lanes"):
            published.append(await feed.ticker(symbol=MARK))
            code, reason = await faulty.closed()
        assert (code, reason) == (1011, "internal error")
        published += [await feed.ticker(symbol="ETH/USDT", price=float(i)) for i in range(3)]
        for c in (same_lane, batched):
            assert await seqs_of(c, 4) == published[3:]   # every update, in order

        assert bridge.app.metrics.value(FAILURES) == 1
        (record,) = [r for r in caplog.records if r.name == "bridge.lanes"]
        assert record.exc_info is not None and bad_sub.id in record.getMessage()
        assert f"RuntimeError: bookkeeping defect on {MARK}" in caplog.text   # the traceback
        assert bridge.app.fanout.topics[("tickers", "binance")] is topic   # still registered
        assert bad_sub not in topic.lane_of and len(topic.lane_of) == 2
        await eventually(lambda: len(bridge.app.sessions) == 2)
        assert bridge.app.metrics.value("bridge_subscriptions") == 2
        assert bridge.app.metrics.value("bridge_disconnects_total", {"code": "1011"}) == 1


async def test_a_writer_that_raises_closes_its_client_1011(bridge, caplog) -> None:
    """A frame the writer cannot count (a reply of a frame type that does not exist: a real
    defect of its producer) is logged and counted, and that client is closed 1011 instead of
    staying connected with a dead writer."""
    async with client(bridge.ws_url(ALICE)) as bystander, client(bridge.ws_url(ALICE)) as c:
        with caplog.at_level(logging.ERROR, logger="bridge.connection"):
            bridge.session(c.welcome["session_id"]).send(Reply('{"type":"mystery"}', "mystery"))
            assert (await c.recv())["type"] == "mystery"   # written, then counting it raised
            code, reason = await c.closed()
        assert (code, reason) == (1011, "internal error")
        assert bridge.app.metrics.value(FAILURES) == 1
        assert "KeyError: 'mystery'" in caplog.text
        assert (await bystander.request("ping"))["type"] == "pong"
