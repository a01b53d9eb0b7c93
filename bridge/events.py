"""A stream event as the fan-out hands it to subscribers: decoded and encoded once per topic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marketbridge.seq import SeqKey, seq_key, seq_time_ms

__all__ = ["Event", "seq_key", "seq_time_ms"]


@dataclass(slots=True)
class Event:
    """One entity change of a topic.

    ``symbol``/``bot_id`` are what client filters look at; ``tail`` is the shared end of every
    update frame for it (``"<seq>","result":{...}}``), prefixed per subscription.
    """

    seq: str
    key: SeqKey
    symbol: str
    bot_id: str
    tail: str
    result: str
    # a book update a client's queue may merge with the next (bridge.pending_book.BookDelta)
    merge: Any = None

    @property
    def time_ms(self) -> int:
        return self.key[0]
