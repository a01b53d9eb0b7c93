"""A stream event as the fan-out hands it to subscribers: decoded and encoded once per topic."""

from __future__ import annotations

from dataclasses import dataclass


def seq_key(seq: str) -> tuple[int, int]:
    """Order key of a Redis Stream id ``"<ms>-<n>"`` (string order is wrong: "9-0" > "10-0")."""
    ms, _, n = seq.partition("-")
    return int(ms), int(n or 0)


def seq_time_ms(seq: str) -> int:
    """Event time of a seq id: its milliseconds part (when Redis appended the change)."""
    return int(seq.partition("-")[0])


@dataclass(slots=True)
class Event:
    """One entity change of a topic.

    ``symbol``/``bot_id`` are what client filters look at; ``tail`` is the shared end of every
    update frame for it (``"<seq>","result":{...}}``), prefixed per subscription.
    """

    seq: str
    key: tuple[int, int]
    symbol: str
    bot_id: str
    tail: str
    result: str

    @property
    def time_ms(self) -> int:
        return self.key[0]
