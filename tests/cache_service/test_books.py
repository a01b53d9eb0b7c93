"""Book RPCs (PublishBook, GetBook, StreamBook) against a real service and a real Redis."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.market.checksum import checksum
from marketbridge.market.client_book import ClientBook
from marketbridge.market.merge import BookUpdate
from tests.factories import book_delta, book_snapshot
from tests.infra.cache_calls import next_message, read_until_live, serving

pytestmark = pytest.mark.cluster_too   # every redis_url test here runs on a Redis Cluster too (tests/conftest.py)

TIMEOUT = 20.0


async def publish(stub, *messages: pb.PublishBookRequest) -> pb.PublishBookResponse:
    async def requests():
        for message in messages:
            yield message
    return await asyncio.wait_for(stub.PublishBook(requests()), TIMEOUT)


async def publish_error(stub, *messages: pb.PublishBookRequest) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await publish(stub, *messages)
    return caught.value


def pairs(levels: Sequence[pb.BookLevel]) -> list[tuple[str, str]]:
    return [(level.price, level.qty) for level in levels]


def client_copy(book: pb.Book, depth: int) -> ClientBook:
    copy = ClientBook(depth)
    copy.load(pairs(book.bids), pairs(book.asks))
    assert copy.checksum() == book.checksum
    return copy


def apply(copy: ClientBook, update: pb.BookUpdate) -> None:
    """Apply a stream update; ClientBook raises ChecksumMismatch when the checksum is wrong."""
    copy.apply(BookUpdate(tuple(pairs(update.bids)), tuple(pairs(update.asks)), update.checksum))


async def test_snapshot_then_get_book_cut_to_depth(stub) -> None:
    written = await publish(stub, book_snapshot(sequence=7, levels=30))
    assert written.accepted == 1
    book = await stub.GetBook(pb.GetBookRequest(exchange="binance", symbol="BTC/USDT", depth=25))
    assert len(book.bids) == 25 and len(book.asks) == 25
    assert book.bids[0].price == "49999.5" and book.asks[0].price == "50000.5"
    assert book.sequence == 7 and book.seq == written.last_seq and not book.stale
    assert book.checksum == checksum(pairs(book.bids), pairs(book.asks))
    default = await stub.GetBook(pb.GetBookRequest(exchange="binance", symbol="BTC/USDT"))
    assert default.depth == 10 and len(default.bids) == 10


async def test_levels_are_keyed_by_decimal_value_and_keep_the_latest_strings(stub) -> None:
    await publish(stub, book_snapshot(bids=[("100.10", "1")], asks=[("101", "1")]),
                  book_delta(sequence=2, bids=[("100.1", "2.50")]))
    book = await stub.GetBook(pb.GetBookRequest(exchange="binance", symbol="BTC/USDT"))
    assert pairs(book.bids) == [("100.1", "2.50")]
    await publish(stub, book_delta(sequence=3, bids=[("100.100", "0.000")]))
    book = await stub.GetBook(pb.GetBookRequest(exchange="binance", symbol="BTC/USDT"))
    assert pairs(book.bids) == []


async def test_unknown_book_is_not_found(stub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetBook(pb.GetBookRequest(exchange="binance", symbol="NOPE/USDT"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(("message", "words"), [
    (book_snapshot(bids=[("1e3", "1")], asks=[("1001", "1")]), "bids[0] price"),
    (book_snapshot(bids=[("100", "-1")], asks=[("101", "1")]), "bids[0] qty"),
    (book_snapshot(bids=[("100", "abc")], asks=[("101", "1")]), "bids[0] qty"),
    (book_snapshot(bids=[("101", "1")], asks=[("100", "1")]), "crossed"),
    (book_snapshot(bids=[("100", "0")], asks=[("101", "1")]), "zero"),
    (book_delta(sequence=2, bids=[("100", "1")]), "no snapshot yet"),
    (book_snapshot(symbol=""), "symbol is required"),
])
async def test_bad_input_is_invalid_argument_and_stores_nothing(stub, message, words) -> None:
    error = await publish_error(stub, message)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in error.details()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetBook(pb.GetBookRequest(exchange="binance", symbol="BTC/USDT"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_bad_delta_leaves_the_book_and_other_books_alone(stub) -> None:
    await publish(stub, book_snapshot(symbol="BTC/USDT"), book_snapshot(symbol="ETH/USDT"))
    before = await stub.GetBook(pb.GetBookRequest(exchange="binance", symbol="BTC/USDT", depth=100))
    error = await publish_error(stub, book_delta(sequence=2, bids=[("49999.5", "1.x")]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = await stub.GetBook(pb.GetBookRequest(exchange="binance", symbol="BTC/USDT", depth=100))
    assert after == before and not after.stale
    await publish(stub, book_delta(sequence=2, bids=[("49999.5", "3")]))   # the sequence still follows


@pytest.mark.parametrize(("delta", "reason"), [
    (book_delta(sequence=5, bids=[("49999.5", "2")]), "does not follow 1"),
    (book_delta(sequence=2, bids=[("50001", "2")]), "would cross"),
])
async def test_a_gap_or_a_crossing_delta_makes_the_book_stale_until_a_snapshot(stub, delta, reason) -> None:
    await publish(stub, book_snapshot(sequence=1))
    stream = stub.StreamBook(pb.StreamBookRequest(exchange="binance", symbol="BTC/USDT", depth=10))
    opening = await read_until_live(stream)
    assert [e.WhichOneof("event") for e in opening] == ["snapshot", "live"]
    error = await publish_error(stub, delta)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "snapshot needed" in error.details() and reason in error.details()
    stale = await next_message(stream)
    assert stale.WhichOneof("event") == "stale" and reason in stale.stale.reason
    book = await stub.GetBook(pb.GetBookRequest(exchange="binance", symbol="BTC/USDT"))
    assert book.stale and book.sequence == 1          # never served as fresh
    again = await publish_error(stub, book_delta(sequence=2, bids=[("49999.5", "2")]))
    assert again.code() == grpc.StatusCode.FAILED_PRECONDITION and "stale" in again.details()
    await publish(stub, book_snapshot(sequence=9, bids=[("100", "1")], asks=[("101", "1")]))
    fresh = await next_message(stream)
    assert fresh.WhichOneof("event") == "snapshot"
    assert pairs(fresh.snapshot.bids) == [("100", "1")] and fresh.snapshot.sequence == 9
    assert not (await stub.GetBook(pb.GetBookRequest(exchange="binance", symbol="BTC/USDT"))).stale
    stream.cancel()


async def test_stream_of_a_stale_book_starts_by_saying_so(stub) -> None:
    await publish(stub, book_snapshot(sequence=1))
    await publish_error(stub, book_delta(sequence=3))
    stream = stub.StreamBook(pb.StreamBookRequest(exchange="binance", symbol="BTC/USDT"))
    first = await next_message(stream)
    assert first.WhichOneof("event") == "stale" and "does not follow" in first.stale.reason
    stream.cancel()


async def test_depth_outside_the_allowed_set_is_invalid_argument(stub) -> None:
    await publish(stub, book_snapshot())
    for call in (stub.GetBook(pb.GetBookRequest(exchange="binance", symbol="BTC/USDT", depth=20)),
                 stub.StreamBook(pb.StreamBookRequest(exchange="binance", symbol="BTC/USDT", depth=7)).read()):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.wait_for(call, TIMEOUT)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "10, 25, 100, 500" in caught.value.details()


async def test_stream_updates_keep_a_depth_10_copy_equal_with_valid_checksums(stub) -> None:
    await publish(stub, book_snapshot(sequence=1, levels=12))
    stream = stub.StreamBook(pb.StreamBookRequest(exchange="binance", symbol="BTC/USDT", depth=10))
    opening = await read_until_live(stream)
    copy = client_copy(opening[0].snapshot, 10)
    # removing the best bid pulls the 11th level into the depth-10 cut
    await publish(stub, book_delta(sequence=2, bids=[("49999.5", "0")]),
                  book_delta(sequence=3, asks=[("50000.25", "0.1")]),
                  book_delta(sequence=4, bids=[("49990", "9")]))   # beyond depth 10: no update
    for _ in range(2):
        event = await next_message(stream)
        assert event.WhichOneof("event") == "update"
        apply(copy, event.update)
    book = await stub.GetBook(pb.GetBookRequest(exchange="binance", symbol="BTC/USDT", depth=10))
    assert (list(copy.view().bids), list(copy.view().asks)) == (pairs(book.bids), pairs(book.asks))
    assert "49994" in [p for p, _ in copy.view().bids][-1]
    stream.cancel()


async def test_resume_replays_the_updates_after_a_seq(stub) -> None:
    first = await publish(stub, book_snapshot(sequence=1, levels=12))
    snapshot = await stub.GetBook(pb.GetBookRequest(exchange="binance", symbol="BTC/USDT", depth=25))
    assert snapshot.seq == first.last_seq
    await publish(stub, *(book_delta(sequence=n, bids=[(f"49999.{n}", "1")]) for n in range(2, 6)))
    copy = client_copy(snapshot, 25)
    stream = stub.StreamBook(pb.StreamBookRequest(exchange="binance", symbol="BTC/USDT", depth=25,
                                                  resume_from=snapshot.seq))
    events = await read_until_live(stream)
    assert [e.WhichOneof("event") for e in events] == ["update"] * 4 + ["live"]
    for event in events[:-1]:
        apply(copy, event.update)
    now = await stub.GetBook(pb.GetBookRequest(exchange="binance", symbol="BTC/USDT", depth=25))
    assert list(copy.view().bids) == pairs(now.bids)
    stream.cancel()


async def test_a_resume_past_retention_gets_a_gap_then_a_fresh_snapshot(redis_url) -> None:
    async with serving(redis_url, stream_maxlen=1) as (_service, stub):
        first = await publish(stub, book_snapshot(sequence=1))
        await publish(stub, *(book_delta(sequence=n, bids=[(f"49999.{n}", "1")]) for n in range(2, 400)))
        stream = stub.StreamBook(pb.StreamBookRequest(exchange="binance", symbol="BTC/USDT",
                                                      resume_from=first.last_seq))
        events = await read_until_live(stream)
        kinds = [e.WhichOneof("event") for e in events]
        assert kinds[0] == "gap" and kinds[1] == "snapshot" and kinds[-1] == "live"
        assert events[1].snapshot.sequence == 399
        stream.cancel()


async def test_stream_of_a_book_that_does_not_exist_yet_gets_its_first_snapshot(stub) -> None:
    stream = stub.StreamBook(pb.StreamBookRequest(exchange="binance", symbol="NEW/USDT", depth=10))
    assert [e.WhichOneof("event") for e in await read_until_live(stream)] == ["live"]
    await publish(stub, book_snapshot(symbol="NEW/USDT", levels=3))
    event = await next_message(stream)
    assert event.WhichOneof("event") == "snapshot" and len(event.snapshot.bids) == 3
    stream.cancel()


async def test_a_restarted_service_continues_the_book_from_redis(redis_url) -> None:
    async with serving(redis_url) as (_service, stub):
        await publish(stub, book_snapshot(sequence=1))
    async with serving(redis_url) as (_service, stub):
        await publish(stub, book_delta(sequence=2, bids=[("49999.5", "7")]))
        book = await stub.GetBook(pb.GetBookRequest(exchange="binance", symbol="BTC/USDT"))
        assert book.bids[0].qty == "7" and book.sequence == 2
        error = await publish_error(stub, book_delta(sequence=2, bids=[("49999.5", "8")]))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_second_writer_is_detected_not_interleaved(redis_url) -> None:
    async with serving(redis_url) as (_a, one), serving(redis_url) as (_b, two):
        await publish(one, book_snapshot(sequence=1))
        await publish(one, book_delta(sequence=2, bids=[("49999.5", "2")]))   # one now holds the book
        await publish(two, book_delta(sequence=3, bids=[("49999.5", "3")]))   # two loads it from Redis
        error = await publish_error(one, book_delta(sequence=3, bids=[("49999.5", "4")]))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "another writer" in error.details()
        book = await two.GetBook(pb.GetBookRequest(exchange="binance", symbol="BTC/USDT"))
        assert book.bids[0].qty == "3"


PRICES = st.integers(min_value=1, max_value=40)


@st.composite
def delta_steps(draw: st.DrawFn) -> list[tuple[list[tuple[str, str]], list[tuple[str, str]]]]:
    """Random deltas on a book whose bids sit at 1..40 and asks at 41..80 (never crossed)."""
    steps = []
    for _ in range(draw(st.integers(min_value=1, max_value=25))):
        bids = [(f"{p}.{draw(st.sampled_from(['0', '00', '5']))}", draw(st.sampled_from(["0", "1", "2.5", "0.00"])))
                for p in draw(st.lists(PRICES, max_size=4))]
        asks = [(f"{p + 40}", draw(st.sampled_from(["0", "3", "0.125"]))) for p in draw(st.lists(PRICES, max_size=4))]
        steps.append((bids, asks))
    return steps


EXAMPLES = itertools.count()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=delta_steps(), depth=st.sampled_from([10, 25]))
async def test_book_integrity_under_random_deltas(stub, steps, depth) -> None:
    """Apply the stream's updates to a client copy: every checksum verifies (ClientBook.apply
    raises otherwise), and the copy equals the service's own book at the end."""
    symbol = f"R{next(EXAMPLES)}/USDT"
    bids = [(f"{p}", "1") for p in range(1, 41)]
    asks = [(f"{p}", "1") for p in range(41, 81)]
    await publish(stub, book_snapshot(symbol=symbol, sequence=100, bids=bids, asks=asks))
    stream = stub.StreamBook(pb.StreamBookRequest(exchange="binance", symbol=symbol, depth=depth))
    opening = await read_until_live(stream)
    copy = client_copy(opening[0].snapshot, depth)
    last = 101 + len(steps)   # a marker delta at the top of the book: its update ends the reading
    await publish(stub, *(book_delta(symbol=symbol, sequence=101 + i, bids=b, asks=a)
                          for i, (b, a) in enumerate(steps)),
                  book_delta(symbol=symbol, sequence=last, asks=[("40.99", "7.77")]))
    while True:
        event = await next_message(stream, timeout=TIMEOUT)
        assert event.WhichOneof("event") == "update"
        apply(copy, event.update)
        if event.update.sequence == last:
            break
    book = await stub.GetBook(pb.GetBookRequest(exchange="binance", symbol=symbol, depth=depth))
    assert (list(copy.view().bids), list(copy.view().asks)) == (pairs(book.bids), pairs(book.asks))
    assert copy.checksum() == book.checksum
    stream.cancel()
