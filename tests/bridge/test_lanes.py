"""Lanes (shared frames) and their helpers, without sockets: what each member is given."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram
from websockets.frames import Frame, Opcode

from bridge.channels import CHANNELS
from bridge.events import Event
from bridge.compression import PLAIN, FrameCodec
from bridge.lanes import Lane, LaneIndex, Share, contain, flush_time, lane_key
from bridge.metrics import LATENCY_BUCKETS, BridgeMetrics, SentTally, observe_all
from bridge.protocol import SubscribeParams
from bridge.subscriptions import Subscription, SubscriptionBook
from tests.factories import TickerFactory
from tests.infra.eventually import eventually


class Member:
    """A plain recording member: takes shared bytes when ``keeping_up``, else events one by one."""

    def __init__(self, batch_ms: int | None = None, keeping_up: bool = True) -> None:
        self.batch_ms = batch_ms
        self.codec = PLAIN
        self.keeping_up = keeping_up
        self.shared: list[bytes] = []
        self.delivered: list[Event] = []
        self.flushed = asyncio.Event() if batch_ms else None
        self.failed: list[Subscription] = []
        self.windows: list[list[Lane]] = []   # the lanes of each write_shared_all call

    def deliver(self, sub: Subscription, event: Event) -> None:
        self.delivered.append(event)
        sub.delivered(event)

    def write_shared(self, sub: Subscription, data: bytes, last: Event) -> bool:
        if not self.keeping_up:
            return False
        self.shared.append(data)
        sub.delivered(last)
        if self.flushed is not None:
            self.flushed.set()
        return True

    def write_shared_all(self, shares: Sequence[Share]) -> bool:
        self.windows.append([share.lane for share in shares])
        if not self.keeping_up:
            return False
        for share in shares:
            self.write_shared(share.sub, share.data, share.events[-1])
        return True

    def fail(self, sub: Subscription) -> None:
        self.failed.append(sub)


class FaultyMember(Member):
    """A member with a real defect: its bookkeeping raises once it reaches a marked symbol."""

    def __init__(self, mark: str, keeping_up: bool = True, fail_raises: bool = False) -> None:
        super().__init__(keeping_up=keeping_up)
        self.mark = mark
        self.fail_raises = fail_raises

    def _check(self, events: list[Event]) -> None:
        if any(e.symbol == self.mark for e in events):
            raise RuntimeError(f"defect on {self.mark}")

    def deliver(self, sub: Subscription, event: Event) -> None:
        self._check([event])
        super().deliver(sub, event)

    def write_shared(self, sub: Subscription, data: bytes, last: Event) -> bool:
        self._check([ticker_event(f["seq"], f["result"]["symbol"]) for f in frames_of(data)])
        return super().write_shared(sub, data, last)

    def fail(self, sub: Subscription) -> None:
        super().fail(sub)
        if self.fail_raises:
            raise RuntimeError("fail() broke too")


def ticker_event(seq: str, symbol: str, price: float = 1.0) -> Event:
    return CHANNELS["tickers"].event(seq, TickerFactory(symbol=symbol, price=price))


def subscription(symbols: tuple[str, ...] | None = None) -> Subscription:
    """A fresh connection's first ticker subscription (id ``tickers-1``), set up."""
    sub = SubscriptionBook(5).add(SubscribeParams("tickers", exchange="binance", symbols=symbols),
                                  CHANNELS["tickers"], ("tickers", "binance"))
    sub.setup = None
    return sub


def frames_of(data: bytes) -> list[dict]:
    """Parse unmasked server text frames back into JSON objects."""
    out, pos = [], 0
    while pos < len(data):
        size, pos = data[pos + 1] & 0x7F, pos + 2
        if size == 126:
            size, pos = int.from_bytes(data[pos:pos + 2], "big"), pos + 2
        elif size == 127:
            size, pos = int.from_bytes(data[pos:pos + 8], "big"), pos + 8
        out.append(json.loads(data[pos:pos + size]))
        pos += size
    return out


def test_identical_subscriptions_of_different_connections_share_a_lane() -> None:
    a, b = subscription(), subscription()
    assert a.id == b.id and lane_key(a, None, PLAIN) == lane_key(b, None, PLAIN)
    assert lane_key(a, None, PLAIN) != lane_key(a, 10, PLAIN)
    assert lane_key(a, None, PLAIN) != lane_key(subscription(("BTC/USDT",)), None, PLAIN)
    assert lane_key(a, None, PLAIN) != lane_key(a, None, FrameCodec(12))


def test_plain_lane_writes_one_frame_per_update_once_for_every_member_keeping_up() -> None:
    metrics = BridgeMetrics()
    subs = [subscription() for _ in range(3)]
    lane = Lane(subs[0], None, metrics, PLAIN)
    members = [Member(), Member(), Member(keeping_up=False)]
    for sub, member in zip(subs, members):
        lane.members[sub] = member
    events = [ticker_event("5-0", "BTC/USDT"), ticker_event("5-1", "ETH/USDT")]
    for event in events:
        lane.offer(event)
    lane.flush()
    assert members[0].shared == members[1].shared and len(members[0].shared) == 1
    parsed = frames_of(members[0].shared[0])
    assert [f["seq"] for f in parsed] == ["5-0", "5-1"]
    assert {f["subscription_id"] for f in parsed} == {subs[0].id}
    assert members[2].delivered == events   # not keeping up: one by one, through its queue
    assert subs[0].last_seq == subs[2].last_seq == "5-1"
    assert metrics.value("bridge_messages_sent_total", {"type": "update"}) == 4
    assert metrics.value("bridge_delivery_latency_seconds_count") == 4
    lane.flush()   # nothing pending: nothing sent
    assert len(members[0].shared) == 1


def test_lane_filters_and_skips_what_a_member_already_has() -> None:
    sub = subscription(("BTC/USDT",))
    lane = Lane(sub, None, BridgeMetrics(), PLAIN)
    member = Member()
    lane.members[sub] = member
    sub.delivered(ticker_event("5-0", "BTC/USDT"))   # e.g. sent by a resume's replay
    for event in (ticker_event("5-0", "BTC/USDT"), ticker_event("5-1", "ETH/USDT"),
                  ticker_event("6-0", "BTC/USDT")):
        lane.offer(event)
    lane.flush()
    assert member.shared == [] and [e.seq for e in member.delivered] == ["6-0"]


async def test_batched_lane_sends_one_batch_frame_within_batch_ms() -> None:
    sub = subscription()
    lane = Lane(sub, 20, BridgeMetrics(), PLAIN)
    member = Member(batch_ms=20)
    lane.members[sub] = member
    for i in range(5):
        lane.offer(ticker_event(f"7-{i}", "BTC/USDT", price=float(i)))
    assert member.flushed is not None
    await asyncio.wait_for(member.flushed.wait(), 5)
    (frame,) = frames_of(member.shared[0])
    assert frame["type"] == "batch"
    assert [u["result"]["price"] for u in frame["updates"]] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert lane.timer is None and not lane.pending


def second_subscription(book: SubscriptionBook) -> Subscription:
    sub = book.add(SubscribeParams("tickers", exchange="kraken"), CHANNELS["tickers"], ("tickers", "kraken"))
    sub.setup = None
    return sub


async def test_batched_lanes_of_one_window_reach_a_member_in_one_call() -> None:
    """Two topics' lanes flush together: one write_shared_all with both lanes' frames."""
    book = SubscriptionBook(5)
    first = book.add(SubscribeParams("tickers", exchange="binance"), CHANNELS["tickers"], ("tickers", "binance"))
    first.setup = None
    second = second_subscription(book)
    member = Member(batch_ms=20)
    lanes = [Lane(first, 20, BridgeMetrics(), PLAIN), Lane(second, 20, BridgeMetrics(), PLAIN)]
    for lane, sub in zip(lanes, (first, second), strict=True):
        lane.members[sub] = member
    lanes[0].offer(ticker_event("7-0", "BTC/USDT"))
    lanes[1].offer(ticker_event("7-1", "ETH/USDT"))
    assert lanes[0].timer is lanes[1].timer is not None   # one timer for the window
    assert member.flushed is not None
    await asyncio.wait_for(member.flushed.wait(), 5)
    assert member.windows == [lanes]
    assert [frames_of(data)[0]["updates"][0]["seq"] for data in member.shared] == ["7-0", "7-1"]
    assert (first.last_seq, second.last_seq) == ("7-0", "7-1")


async def test_a_member_behind_in_a_window_takes_every_lane_s_events_one_by_one() -> None:
    book = SubscriptionBook(5)
    first = book.add(SubscribeParams("tickers", exchange="binance"), CHANNELS["tickers"], ("tickers", "binance"))
    first.setup = None
    second = second_subscription(book)
    member = Member(batch_ms=20, keeping_up=False)
    lanes = [Lane(first, 20, BridgeMetrics(), PLAIN), Lane(second, 20, BridgeMetrics(), PLAIN)]
    for lane, sub in zip(lanes, (first, second), strict=True):
        lane.members[sub] = member
    for n in range(3):
        lanes[n % 2].offer(ticker_event(f"8-{n}", "BTC/USDT"))
    await eventually(lambda: len(member.delivered) == 3)
    assert member.shared == [] and [e.seq for e in member.delivered] == ["8-0", "8-2", "8-1"]


async def test_closed_lane_drops_its_timer_and_pending_events() -> None:
    sub = subscription()
    lane = Lane(sub, 1000, BridgeMetrics(), PLAIN)
    lane.members[sub] = Member(batch_ms=1000)
    lane.offer(ticker_event("7-0", "BTC/USDT"))
    assert lane.timer is not None
    lane.close()
    assert lane.timer is None and not lane.pending


@settings(deadline=None)   # up to 6,000 observations a case: a loaded machine takes > 200 ms
@given(st.lists(st.floats(min_value=-1.0, max_value=100.0) | st.sampled_from(LATENCY_BUCKETS),
                max_size=30), st.integers(min_value=1, max_value=200))
def test_observe_all_equals_that_many_observations(amounts: list[float], copies: int) -> None:
    registry = CollectorRegistry()
    one = Histogram("one", "x", buckets=LATENCY_BUCKETS, registry=registry)
    many = Histogram("many", "x", buckets=LATENCY_BUCKETS, registry=registry)
    for amount in amounts:
        for _ in range(copies):
            one.observe(max(0.0, amount))
    observe_all(many, amounts, copies)
    (metric,) = [m for m in registry.collect() if m.name == "one"]
    samples = [s for s in metric.samples if not s.name.endswith("_created")]
    assert len(samples) == len(LATENCY_BUCKETS) + 3   # buckets, +Inf, count, sum
    for sample in samples:
        twin = registry.get_sample_value("many" + sample.name[3:], dict(sample.labels))
        assert twin == pytest.approx(sample.value), sample


@pytest.mark.parametrize("keeping_up", [True, False])
def test_a_member_that_raises_is_contained_and_the_others_get_everything(
        keeping_up: bool, caplog: pytest.LogCaptureFixture) -> None:
    metrics = BridgeMetrics()
    subs = [subscription() for _ in range(3)]
    lane = Lane(subs[0], None, metrics, PLAIN)
    faulty = FaultyMember("BAD/USDT", keeping_up=keeping_up)
    members = [Member(), faulty, Member(keeping_up=False)]
    for sub, member in zip(subs, members):
        lane.members[sub] = member
    events = [ticker_event("5-0", "BTC/USDT"), ticker_event("5-1", "BAD/USDT"),
              ticker_event("5-2", "ETH/USDT")]
    for event in events:
        lane.offer(event)
    with caplog.at_level(logging.ERROR, logger="bridge.lanes"):
        lane.flush()
    assert [f["seq"] for f in frames_of(members[0].shared[0])] == ["5-0", "5-1", "5-2"]
    assert members[2].delivered == events
    assert faulty.failed == [subs[1]]
    assert metrics.value("bridge_fanout_failures_total") == 1
    (record,) = [r for r in caplog.records if r.name == "bridge.lanes"]
    assert record.exc_info is not None and "defect on BAD/USDT" in caplog.text
    assert subs[1].id in record.getMessage()


def test_contain_survives_a_member_whose_fail_raises_too(caplog: pytest.LogCaptureFixture) -> None:
    metrics = BridgeMetrics()
    sub = subscription()
    member = FaultyMember("X", fail_raises=True)
    with caplog.at_level(logging.ERROR, logger="bridge.lanes"):
        try:
            raise ValueError("delivery broke")
        except ValueError:
            contain(metrics, member, sub, "stream_status")
    assert member.failed == [sub] and metrics.value("bridge_fanout_failures_total") == 1
    assert "delivery broke" in caplog.text and "fail() broke too" in caplog.text


def test_events_a_lane_cannot_frame_go_one_by_one(caplog: pytest.LogCaptureFixture) -> None:
    """Shared framing that raises (here: text that is not valid UTF-8, a lone surrogate) is
    logged and counted; members then take the events one by one, each contained on its own."""
    metrics = BridgeMetrics()
    subs = [subscription(), subscription()]
    lane = Lane(subs[0], None, metrics, PLAIN)
    members = [Member(), Member()]
    for sub, member in zip(subs, members):
        lane.members[sub] = member
    good = ticker_event("5-0", "BTC/USDT")
    bad = dataclasses.replace(ticker_event("5-1", "ETH/USDT"), tail='"5-1","result":"\ud800"}')
    lane.offer(good)
    lane.offer(bad)
    with caplog.at_level(logging.ERROR, logger="bridge.lanes"):
        lane.flush()
    assert all(m.shared == [] and m.delivered == [good, bad] for m in members)
    assert metrics.value("bridge_fanout_failures_total") == 1
    assert "could not frame 2 events (5-0..5-1)" in caplog.text


@pytest.mark.parametrize("now", [0.0, 0.0001, 12.3449, 12.345, 1e6 + 0.0099, 86400.00999])
def test_batched_lanes_flush_on_one_grid(now: float) -> None:
    """Lanes of one batch_ms started at different moments of a window flush at the same time
    (so a client's topics share a socket write), never later than batch_ms after their start."""
    batch_s = 0.01
    due = flush_time(now, batch_s)
    assert now < due <= now + batch_s + 1e-9
    later_in_window = min(due - 1e-7, now + (due - now) / 2)
    assert flush_time(later_in_window, batch_s) == due


SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT")


@settings(max_examples=60, deadline=None)
@given(filters=st.lists(st.none() | st.frozensets(st.sampled_from(SYMBOLS), min_size=1), min_size=1, max_size=8),
       removed=st.sets(st.integers(0, 7)), symbol=st.sampled_from(SYMBOLS))
def test_the_lane_index_finds_exactly_the_lanes_whose_filter_takes_the_symbol(
        filters: list[frozenset[str] | None], removed: set[int], symbol: str) -> None:
    """Offering an event to the index's lanes gives it to the same lanes as offering it to all."""
    index = LaneIndex()
    lanes = [Lane(subscription(None if f is None else tuple(sorted(f))), None, BridgeMetrics(), PLAIN)
             for f in filters]
    for lane in lanes:
        index.add(lane)
    kept = [lane for n, lane in enumerate(lanes) if n not in removed]
    for n in removed & set(range(len(lanes))):
        index.remove(lanes[n])
    event = ticker_event("9-0", symbol)
    for lane in index.lanes_for(symbol):
        lane.offer(event)
    assert [bool(lane.pending) for lane in kept] == [lane.symbols is None or symbol in lane.symbols for lane in kept]
    assert not any(lane.pending for n, lane in enumerate(lanes) if n in removed)
    assert len(index.lanes_for(symbol)) == len(set(index.lanes_for(symbol)))


@settings(max_examples=40, deadline=None)
@given(sends=st.lists(st.tuples(st.sampled_from(["update", "batch"]), st.integers(1, 5),
                                st.lists(st.sampled_from([1, 3, 7, 12]), min_size=1, max_size=5), st.integers(1, 50)),
                      min_size=1, max_size=10))
def test_a_tally_records_what_each_send_recorded_on_its_own(sends: list[tuple[str, int, list[int], int]]) -> None:
    """One SentTally over a fan-out pass ends with the same counters and histogram as one
    record_sent per lane (event times are ms before now: latencies well inside the buckets)."""
    one_by_one, tallied = BridgeMetrics(), BridgeMetrics()
    now_ms = int(time.time() * 1000)
    tally = SentTally(tallied)
    for kind, frames, ages, copies in sends:
        times = [now_ms - age * 1000 for age in ages]   # seconds old, away from bucket bounds
        one_by_one.record_sent(kind, frames, times, copies)
        tally.add(kind, frames, times, copies)
    tally.record()
    names = ("bridge_messages_sent_total", "bridge_delivery_latency_seconds_count",
             "bridge_delivery_latency_seconds_bucket")
    samples = [sample for metric in one_by_one.registry.collect() for sample in metric.samples
               if sample.name in names and sample.value]
    assert len(samples) >= 3   # frames sent, the count, and at least the +Inf bucket
    for sample in samples:
        assert tallied.value(sample.name, dict(sample.labels)) == pytest.approx(sample.value), sample
