"""Kraken's L2 book checksum (docs/market_data.md), so existing client code can verify our books.

Over the top 10 asks (ascending) then the top 10 bids (descending) of the book as the client
holds it (cut to its subscription's depth, which is never below 10, so these are the book's
top 10): for each level its price then its qty string, each with the ``.`` removed and the
leading zeros stripped; all concatenated; the CRC32 (``zlib.crc32``, unsigned) of that ASCII
string. It hashes the strings as sent, not the values, so the client needs nothing but the
strings it received to check its copy.

Worked example (tests/marketbridge/market/test_checksum.py, quoted in docs/market_data.md)::

    asks  ["50000.5", "0.00100000"], ["50001.0", "1.5"]
    bids  ["50000.1", "0.25000000"], ["49999.9", "2"]
    string  "500005" "100000"  "500010" "15"  +  "500001" "25000000"  "499999" "2"
          = "50000510000050001015500001250000004999992"
    crc32   3211480509
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from marketbridge.market.ladder import Level

CHECKSUM_LEVELS = 10


def _strip(text: str) -> str:
    """``"0.00100000"`` -> ``"100000"``; an all-zero string hashes as the empty string."""
    return text.replace(".", "").lstrip("0")


_PARTS: dict[Level, str] = {}
_PARTS_MAX = 100_000   # levels remembered; a book's top changes slowly, so most are seen again


def _part(level: Level) -> str:
    """A level's piece of the string, remembered: the service hashes the top 10 of a side after
    every delta that touches it, and stripping 20 strings anew each time was most of its cost."""
    if len(_PARTS) >= _PARTS_MAX:
        _PARTS.clear()
    part = _PARTS[level] = _strip(level[0]) + _strip(level[1])
    return part


def checksum_string(bids: Sequence[Level], asks: Sequence[Level]) -> str:
    """The string the CRC is taken of; ``bids`` and ``asks`` best first (a remembered piece is
    one dict lookup, no call: this runs after nearly every delta)."""
    known = _PARTS.get
    parts = [known(level) or _part(level) for level in asks[:CHECKSUM_LEVELS]]
    parts += [known(level) or _part(level) for level in bids[:CHECKSUM_LEVELS]]
    return "".join(parts)


def checksum(bids: Sequence[Level], asks: Sequence[Level]) -> int:
    """CRC32 of :func:`checksum_string`, unsigned 32-bit."""
    return zlib.crc32(checksum_string(bids, asks).encode("ascii")) & 0xFFFFFFFF
