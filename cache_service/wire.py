"""Stream events assembled from the stored entity bytes, in protobuf wire format.

Why: a ticker stream event is ``TickerEvent{seq, ticker}`` where ``ticker`` is exactly the
bytes the change feed holds (a ``TradeEvent{seq, trade}`` likewise, same field numbers). Parsing those bytes into a ``Ticker`` just to serialize it again
costs about 1.4 us per event in Python; framing them as a length-delimited field costs about
0.3 us. The framing follows the protobuf encoding spec (field key = number << 3 | 2 for
length-delimited fields, lengths as base-128 varints), and tests check it against the
generated classes.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable
from typing import TypeVar

from google.protobuf.message import Message

from marketbridge.api.v1 import cache_pb2

_SEQ_KEY = b"\x0a"  # TickerEvent.seq / TradeEvent.seq: field 1, length-delimited
_ENTITY_KEY = b"\x12"  # TickerEvent.ticker / TradeEvent.trade: field 2, length-delimited
_BOOK_UPDATE_KEY = b"\x1a"  # BookEvent.update: field 3, length-delimited
_EVENTS_KEY = b"\x0a"  # TickerEventBatch / TradeEventBatch / BookEventBatch .events: field 1, length-delimited

BatchT = TypeVar("BatchT", bound=Message)


def varint(value: int) -> bytes:
    """``value`` (>= 0) as a protobuf base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [varint(n) for n in range(16384)]  # every length below 2**14: one lookup


def _length(value: int) -> bytes:
    return _SMALL[value] if value < 16384 else varint(value)


def _event(seq: str, key: bytes, body: bytes) -> bytes:
    raw_seq = seq.encode()
    return _SEQ_KEY + _length(len(raw_seq)) + raw_seq + key + _length(len(body)) + body


def entry_event(seq: str, entity: bytes) -> bytes:
    """A serialized ``TickerEvent(seq=seq, ticker=Ticker.FromString(entity))``, which is also
    the ``TradeEvent`` of a stored Trade (both put ``seq`` in field 1, the entity in field 2)."""
    return _event(seq, _ENTITY_KEY, entity)


def book_update_event(seq: str, update: bytes) -> bytes:
    """A serialized ``BookEvent(seq=seq, update=BookUpdate.FromString(update))``."""
    return _event(seq, _BOOK_UPDATE_KEY, update)


def event_batch(batch_type: type[BatchT], events: Iterable[bytes]) -> BatchT:
    """A ``TickerEventBatch`` / ``TradeEventBatch`` of serialized events (parsed once, in C)."""
    return batch_type.FromString(b"".join(_EVENTS_KEY + _length(len(event)) + event for event in events))


def _text_field(key: bytes, text: str) -> bytes:
    """A proto3 string field: absent when empty, as the generated code writes it."""
    if not text:
        return b""
    raw = text.encode()
    return key + _length(len(raw)) + raw


@functools.lru_cache(maxsize=65536)
def _level(price: str, qty: str) -> bytes:
    """A serialized BookLevel{price = 1, qty = 2} with its length in front, remembered: a book's
    levels recur in update after update (and at every depth of one delta)."""
    level = _text_field(b"\x0a", price) + _text_field(b"\x12", qty)
    return _length(len(level)) + level


def _levels_field(key: bytes, levels: Iterable[tuple[str, str]]) -> bytes:
    """Repeated BookLevel under field ``key``."""
    return b"".join([key + _level(price, qty) for price, qty in levels])


def book_update(exchange: str, symbol: str, bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]],
                checksum: int, time: float, sequence: int) -> bytes:
    """A serialized ``BookUpdate`` (the service writes one per depth per delta: built here in a
    few microseconds instead of through message objects, as ticker events are)."""
    return b"".join((
        _text_field(b"\x0a", exchange), _text_field(b"\x12", symbol),
        _levels_field(b"\x1a", bids), _levels_field(b"\x22", asks),
        b"\x28" + varint(checksum) if checksum else b"",
        b"\x31" + struct.pack("<d", time) if time else b"",
        b"\x38" + varint(sequence) if sequence else b"",
    ))
