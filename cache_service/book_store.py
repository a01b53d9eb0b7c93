"""The Redis layout of order books, and the one script that writes them (docs/market_data.md).

Layout (prefix ``cache:v1:``), per exchange EX + symbol SYM, every key of one book under the
hash tag ``{book:EX:SYM}`` (one slot on a Redis Cluster: cache_service/slots.py):

- hash ``{book:EX:SYM}:levels``: one field per level, ``b<price>`` / ``a<price>`` (the price
  in canonical form, so ``"50000.1"`` and ``"50000.10"`` are one field) holding
  ``"<price> <qty>"`` as the publisher spelled them; and the book's state, ``@sequence`` (the
  exchange's sequence of the last update), ``@time``, ``@stale`` (why it waits for a snapshot;
  empty when fresh) and ``@seq`` (the change-feed id the levels are at).
- stream ``{book:EX:SYM}:stream``: one entry per accepted message or stale mark.
  ``k`` is ``s`` (snapshot: ``d`` holds the Book cut to 500 levels), ``d`` (delta: ``u10``,
  ``u25``, ``u100``, ``u500`` hold the BookUpdate of each depth whose cut changed) or ``x``
  (stale: ``d`` holds a BookStale). A StreamBook at depth N reads ``s``, ``x`` and the
  entries that have ``uN``.
- set ``books:EX`` (no tag: its own slot): the symbols that have a book; added to before the
  book is written (cache_service.store, index sets), so a listed book may be missing after a
  failed write, but a written book is always listed.

**Atomic.** One script call writes a batch of messages: for each, the levels, the state fields
and the stream entry together, so the levels never disagree with the feed, and it stores the
entry id as ``@seq`` so a ``GetBook`` snapshot names the point its stream resumes from. On a
Redis Cluster a script's keys must share a slot, so a batch is one call per book, in order:
each book's messages are still all or none, but a failure part way leaves the books before it
written (their publisher learns nothing of their seqs; the service reloads every book of the
batch, cache_service.books).

**One writer per book, checked.** The service validates sequences against its in-memory copy
(:mod:`cache_service.books`); the script checks that Redis still holds the ``@sequence`` that
copy was built on (compare-and-set), for every message of the batch before it writes any, so a
second writer (another replica, a restart) is detected instead of interleaving two exchanges'
views. Such a batch writes nothing and raises :class:`BookConflict`: the service reloads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from redis.exceptions import ResponseError

from cache_service.pinned import PinnedConnection
from cache_service.slots import PREFIX, tagged
from cache_service.store import Store
from marketbridge.market.decimals import format_decimal
from marketbridge.market.ladder import Level

CONFLICT = "BOOKCONFLICT"
ANY_SEQUENCE = "*"      # a snapshot replaces whatever is there

# KEYS: per book (state hash, stream).
# ARGV: maxlen, op count, then per op: book index (1-based), expected @sequence (or "*"),
#   replace (1 = snapshot: drop every level first), new @sequence,
#   n set pairs, pairs..., n deleted fields, fields..., n entry pairs, pairs...
# Checks every op's expected @sequence first (following the batch's own writes), then writes.
_BOOK_WRITE = """
local maxlen = ARGV[1]
local ops = tonumber(ARGV[2])
local seen = {}
local a = 3
local starts = {}
for o = 1, ops do
  starts[o] = a
  local k = tonumber(ARGV[a]) * 2 - 1
  local expect = ARGV[a + 1]
  local current = seen[k]
  if current == nil then current = redis.call('HGET', KEYS[k], '@sequence') or '' end
  if expect ~= '*' and expect ~= current then
    return redis.error_reply('BOOKCONFLICT ' .. KEYS[k] .. ' is at sequence ' .. current .. ', expected ' .. expect)
  end
  seen[k] = ARGV[a + 3]
  a = a + 4
  local sets = tonumber(ARGV[a]); a = a + 1 + sets * 2
  local dels = tonumber(ARGV[a]); a = a + 1 + dels
  local entry = tonumber(ARGV[a]); a = a + 1 + entry * 2
end
local ids = {}
for o = 1, ops do
  a = starts[o]
  local k = tonumber(ARGV[a]) * 2 - 1
  if ARGV[a + 2] == '1' then redis.call('DEL', KEYS[k]) end
  a = a + 4
  local sets = tonumber(ARGV[a]); a = a + 1
  for i = 0, sets - 1 do redis.call('HSET', KEYS[k], ARGV[a + i * 2], ARGV[a + i * 2 + 1]) end
  a = a + sets * 2
  local dels = tonumber(ARGV[a]); a = a + 1
  for i = 0, dels - 1 do redis.call('HDEL', KEYS[k], ARGV[a + i]) end
  a = a + dels
  local entry = tonumber(ARGV[a]); a = a + 1
  local fields = {}
  for i = 0, entry * 2 - 1 do fields[#fields + 1] = ARGV[a + i] end
  local id = redis.call('XADD', KEYS[k + 1], 'MAXLEN', '~', maxlen, '*', unpack(fields))
  redis.call('HSET', KEYS[k], '@seq', id)
  ids[#ids + 1] = id
end
return ids
"""


class BookConflict(Exception):
    """Redis holds another sequence than the writer's copy was built on: reload, then retry."""


def book_key(exchange: str, symbol: str) -> str:
    return tagged(f"book:{exchange}:{symbol}", "levels")


def book_stream(exchange: str, symbol: str) -> str:
    """The change-feed key of one book."""
    return tagged(f"book:{exchange}:{symbol}", "stream")


def books_key(exchange: str) -> str:
    return f"{PREFIX}books:{exchange}"


def level_field(side: str, price: Decimal) -> str:
    """``b50000.1``: the hash field of a level, by the decimal value of its price (trailing
    zeros dropped, so every spelling of one price is one field)."""
    text = format_decimal(price)
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return side + text


@dataclass
class BookWrite:
    """One message's effect on a book, as the script applies it."""

    exchange: str
    symbol: str
    expected: str                     # the @sequence Redis must hold (ANY_SEQUENCE: a snapshot)
    sequence: str                     # the new @sequence
    replace: bool = False
    sets: list[tuple[str, str]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    entry: list[tuple[str, bytes | str]] = field(default_factory=list)

    def set_level(self, side: str, price: Decimal, level: Level | None) -> None:
        name = level_field(side, price)
        if level is None:
            self.deletes.append(name)
        else:
            self.sets.append((name, f"{level[0]} {level[1]}"))


@dataclass(frozen=True)
class StoredBook:
    """A book as Redis holds it: levels by side, then its state fields."""

    bids: list[tuple[Decimal, Level]]
    asks: list[tuple[Decimal, Level]]
    sequence: int | None
    time: float
    stale: str
    seq: str


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_stored(raw: dict[bytes, bytes]) -> StoredBook | None:
    """The levels and state of a book hash (None when there is no book)."""
    if not raw:
        return None
    bids: list[tuple[Decimal, Level]] = []
    asks: list[tuple[Decimal, Level]] = []
    state: dict[str, str] = {}
    for name, value in raw.items():
        key, text = _text(name), _text(value)
        if key.startswith("@"):
            state[key] = text
            continue
        price, qty = text.split(" ", 1)
        (bids if key[0] == "b" else asks).append((Decimal(price), (price, qty)))
    sequence = state.get("@sequence", "")
    return StoredBook(bids, asks, int(sequence) if sequence else None,
                      float(state.get("@time") or 0), state.get("@stale", ""), state.get("@seq", ""))


class BookStore:
    """Reads and atomic batched writes of books, through the Store's durable write path."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis = store.redis
        self._write_script = store.redis.register_script(_BOOK_WRITE)

    async def write(self, writes: Sequence[BookWrite], conn: PinnedConnection | None = None) -> list[str]:
        """Apply ``writes`` in order, all or none (on a cluster: per book); the stream ids, one
        per write.

        BookConflict when Redis no longer holds a sequence some write expects."""
        ids = [""] * len(writes)
        for group in self.store.groups([book_stream(w.exchange, w.symbol) for w in writes]):
            written = await self._write_group([writes[i] for i in group], conn)
            for i, seq in zip(group, written, strict=True):
                ids[i] = seq
        return ids

    async def _write_group(self, writes: Sequence[BookWrite], conn: PinnedConnection | None) -> list[str]:
        """One script call: writes whose books may share one call (one slot on a cluster)."""
        books: dict[tuple[str, str], int] = {}
        listed: dict[str, dict[str, None]] = {}
        for w in writes:
            books.setdefault((w.exchange, w.symbol), len(books) + 1)
            listed.setdefault(w.exchange, {})[w.symbol] = None
        keys: list[str] = []
        for exchange, symbol in books:
            keys += (book_key(exchange, symbol), book_stream(exchange, symbol))
        args: list[object] = [self.store.stream_maxlen, len(writes)]
        for w in writes:
            args += (books[(w.exchange, w.symbol)], w.expected, 1 if w.replace else 0, w.sequence, len(w.sets))
            for name, value in w.sets:
                args += (name, value)
            args.append(len(w.deletes))
            args += w.deletes
            args.append(len(w.entry))
            for name, value in w.entry:
                args += (name, value)
        try:
            index = [(books_key(exchange), list(symbols)) for exchange, symbols in listed.items()]
            ids = await self.store.run_write(self._write_script, keys, args, conn, index)
        except ResponseError as exc:
            if str(exc).startswith(CONFLICT):
                raise BookConflict(str(exc)) from None
            raise
        return [_text(i) for i in ids]  # type: ignore[union-attr]

    async def load(self, exchange: str, symbol: str) -> StoredBook | None:
        return parse_stored(await self.redis.hgetall(book_key(exchange, symbol)))

    async def symbols(self, exchange: str) -> list[str]:
        return sorted(_text(s) for s in await self.redis.smembers(books_key(exchange)))
