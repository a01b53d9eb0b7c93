"""cache_service.wire.book_update writes exactly the bytes the generated BookUpdate does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cache_service import wire
from marketbridge.api.v1 import cache_pb2 as pb

TEXT = st.text(max_size=300)
LEVELS = st.lists(st.tuples(TEXT, TEXT), max_size=5)


@settings(max_examples=200, deadline=None)
@given(exchange=TEXT, symbol=TEXT, bids=LEVELS, asks=LEVELS, checksum=st.integers(0, 2**32 - 1),
       time=st.floats(min_value=0, max_value=1e12), sequence=st.integers(0, 2**64 - 1))
def test_book_update_bytes_equal_the_generated_encoding(exchange, symbol, bids, asks, checksum, time,
                                                        sequence) -> None:
    reference = pb.BookUpdate(
        exchange=exchange, symbol=symbol, bids=[pb.BookLevel(price=p, qty=q) for p, q in bids],
        asks=[pb.BookLevel(price=p, qty=q) for p, q in asks], checksum=checksum, time=time,
        sequence=sequence)
    encoded = wire.book_update(exchange, symbol, bids, asks, checksum, time, sequence)
    assert encoded == reference.SerializeToString()
    assert pb.BookUpdate.FromString(encoded) == reference
