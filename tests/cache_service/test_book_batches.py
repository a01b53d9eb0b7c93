"""PublishBookBatches and StreamBookBatches: PublishBook and StreamBook, several per message."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc
import pytest

from marketbridge.api.v1 import cache_pb2 as pb
from tests.factories import book_delta, book_snapshot
from tests.infra.cache_calls import read_until_live, serving

pytestmark = pytest.mark.cluster_too   # every redis_url test here runs on a Redis Cluster too (tests/conftest.py)

TIMEOUT = 20.0
BOOK = {"exchange": "binance", "symbol": "BTC/USDT"}


async def publish_batches(stub, *batches: Sequence[pb.PublishBookRequest]) -> pb.PublishBookResponse:
    async def requests():
        for batch in batches:
            yield pb.PublishBookBatch(messages=list(batch))
    return await asyncio.wait_for(stub.PublishBookBatches(requests()), TIMEOUT)


def deltas(first: int, last: int, symbol: str = "BTC/USDT") -> list[pb.PublishBookRequest]:
    """Deltas ``first``..``last`` that each change the best bid's qty (so every depth sees them)."""
    return [book_delta(symbol=symbol, sequence=n, bids=[("49999.5", f"{n}.5")]) for n in range(first, last + 1)]


async def test_batches_apply_like_single_messages(stub) -> None:
    written = await publish_batches(stub, [book_snapshot(sequence=1, levels=12)] + deltas(2, 40), deltas(41, 60))
    assert written.accepted == 60
    book = await stub.GetBook(pb.GetBookRequest(**BOOK, depth=10))
    assert book.sequence == 60 and book.bids[0].qty == "60.5" and book.seq == written.last_seq


async def test_a_refused_message_ends_the_call_after_the_ones_before_it(stub) -> None:
    bad = book_delta(sequence=5, bids=[("49999.5", "-1")])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await publish_batches(stub, [book_snapshot(sequence=1, levels=12)] + deltas(2, 4) + [bad] + deltas(6, 9))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "4 earlier messages" in caught.value.details()
    book = await stub.GetBook(pb.GetBookRequest(**BOOK, depth=10))
    assert book.sequence == 4 and not book.stale


async def test_book_batches_carry_the_same_events_as_the_book_stream(stub) -> None:
    first = await publish_batches(stub, [book_snapshot(sequence=1, levels=12)])
    await publish_batches(stub, deltas(2, 201), [book_snapshot(sequence=300, levels=12)] + deltas(301, 310))
    request = pb.StreamBookRequest(**BOOK, depth=10, resume_from=first.last_seq)
    stream = stub.StreamBook(request)
    single = await read_until_live(stream)
    stream.cancel()
    batches = stub.StreamBookBatches(request)
    messages = await read_until_live(batches)
    batches.cancel()
    batched = [event for message in messages for event in message.events]
    assert batched == single   # seqs, kinds, levels and checksums alike
    kinds = [e.WhichOneof("event") for e in batched]
    assert kinds == ["update"] * 200 + ["snapshot"] + ["update"] * 10 + ["live"]
    assert len(messages) < 10


async def test_a_new_book_batch_stream_opens_with_the_snapshot_then_live(stub) -> None:
    await publish_batches(stub, [book_snapshot(sequence=1, levels=30)] + deltas(2, 3))
    stream = stub.StreamBookBatches(pb.StreamBookRequest(**BOOK, depth=25))
    messages = await read_until_live(stream)
    events = [event for message in messages for event in message.events]
    assert [e.WhichOneof("event") for e in events] == ["snapshot", "live"]
    assert len(events[0].snapshot.bids) == 25 and events[0].snapshot.sequence == 3
    await publish_batches(stub, deltas(4, 4))
    update = (await asyncio.wait_for(stream.read(), TIMEOUT)).events[0]
    assert update.WhichOneof("event") == "update" and update.update.sequence == 4
    assert update.update.bids[0].qty == "4.5"
    stream.cancel()


async def test_a_gap_in_a_batch_stream_is_followed_by_a_fresh_snapshot(redis_url) -> None:
    async with serving(redis_url, stream_maxlen=1) as (_service, stub):
        first = await publish_batches(stub, [book_snapshot(sequence=1, levels=12)])
        await publish_batches(stub, deltas(2, 400))
        stream = stub.StreamBookBatches(pb.StreamBookRequest(**BOOK, resume_from=first.last_seq))
        events = [e for message in await read_until_live(stream) for e in message.events]
        kinds = [e.WhichOneof("event") for e in events]
        assert kinds[0] == "gap" and kinds[1] == "snapshot" and kinds[-1] == "live"
        assert events[1].snapshot.sequence == 400
        stream.cancel()
