"""Seq ids: the Redis Stream entry ids ("<ms>-<n>") that order every change and resume a stream.

Both services compare, parse and print these ids: the cache service to validate a client's
``resume_from`` and to page through a stream, the bridge to keep per-subscription order and to
take an event's time. String order is wrong ("9-0" > "10-0"), so every comparison goes through
``seq_key``; having the one definition here keeps both sides ordering ids the same way.
"""

from __future__ import annotations

import re

SeqKey = tuple[int, int]

# ASCII digits only, the whole string: ``\d`` also takes other scripts' digits ("١-٠") and ``$``
# a trailing newline, both of which int() accepts, so "1-0\n" would pass and be echoed back.
_STRICT = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")


def seq_key(seq: str) -> SeqKey:
    """Order key of a well-formed id (one Redis wrote); ``"<ms>"`` alone means ``"<ms>-0"``."""
    ms, _, n = seq.partition("-")
    return int(ms), int(n or 0)


def seq_time_ms(seq: str) -> int:
    """Event time of an id: its milliseconds part (when Redis appended the change)."""
    return int(seq.partition("-")[0])


def parse_seq(text: str) -> SeqKey | None:
    """Order key of an id from outside (a client), or None when it is not ``<ms>[-<n>]``."""
    match = _STRICT.fullmatch(text)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def format_seq(key: SeqKey) -> str:
    """The id of an order key: the inverse of seq_key and parse_seq."""
    return f"{key[0]}-{key[1]}"
