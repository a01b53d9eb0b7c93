"""The Redis layout of trades and candles, and the one script that writes both (docs/market_data.md).

Layout (prefix ``cache:v1:``), every key of one exchange EX under the hash tag ``{trades:EX}``
(one slot on a Redis Cluster: cache_service/slots.py):

- stream ``{trades:EX}:stream``: one entry per trade (``d`` = Trade bytes, ``s`` = symbol),
  capped like every stream (``--stream-maxlen``): the change feed of StreamTrades.
- list ``{trades:EX}:recent:SYM``: the recent trades of one symbol, newest first, each
  ``"<seq> <Trade bytes>"``, capped at ``--trade-retention``: what ListTrades reads, so a quiet
  symbol's history is not pushed out of the exchange's stream by a busy one.
- hash ``{trades:EX}:candles:SYM:INTERVAL``: ``open_time`` -> ``"<first> <last> <Candle
  bytes>"``, first and last being the times of the candle's first and last trade (so a
  restarted service orders later trades right); the last ``--candle-retention`` intervals.
- stream ``{trades:EX}:candles``: one entry per candle change (``d``, ``s``, ``i`` interval).

**Atomic.** A batch of trades, the candles they change and the candles that left the window are
one script call: the trades' entries, the candle states and their entries never disagree. The
seq of a trade is its entry id in the exchange's trade stream. On a Redis Cluster a batch that
spans exchanges is one call per exchange (a script's keys share a slot), in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from cache_service.pinned import Command, PinnedConnection
from cache_service.slots import tagged
from cache_service.store import Store
from marketbridge.api.v1 import cache_pb2
from marketbridge.seq import seq_key

# KEYS: every key the batch touches (indices below are 1-based into KEYS).
# ARGV: stream maxlen, list cap, trade count T, then per trade (stream, list, symbol, bytes);
#   candle count C, then per candle (hash, stream, symbol, interval, open_time, stored, bytes);
#   drop count D, then per drop (hash, open_time). Returns the trades' stream ids.
_TRADES_WRITE = """
local maxlen, cap = ARGV[1], tonumber(ARGV[2]) - 1
local a = 3
local ids = {}
local trades = tonumber(ARGV[a]); a = a + 1
for i = 1, trades do
  local id = redis.call('XADD', KEYS[tonumber(ARGV[a])], 'MAXLEN', '~', maxlen, '*', 'd', ARGV[a + 3], 's', ARGV[a + 2])
  local list = KEYS[tonumber(ARGV[a + 1])]
  redis.call('LPUSH', list, id .. ' ' .. ARGV[a + 3])
  redis.call('LTRIM', list, 0, cap)
  ids[#ids + 1] = id
  a = a + 4
end
local candles = tonumber(ARGV[a]); a = a + 1
for i = 1, candles do
  redis.call('HSET', KEYS[tonumber(ARGV[a])], ARGV[a + 4], ARGV[a + 5])
  redis.call('XADD', KEYS[tonumber(ARGV[a + 1])], 'MAXLEN', '~', maxlen, '*', 'd', ARGV[a + 6], 's', ARGV[a + 2], 'i', ARGV[a + 3])
  a = a + 7
end
local drops = tonumber(ARGV[a]); a = a + 1
for i = 1, drops do
  redis.call('HDEL', KEYS[tonumber(ARGV[a])], ARGV[a + 1])
  a = a + 2
end
return ids
"""


def trade_stream(exchange: str) -> str:
    """The change-feed key of one exchange's trades."""
    return tagged(f"trades:{exchange}", "stream")


def candle_stream(exchange: str) -> str:
    """The change-feed key of one exchange's candles."""
    return tagged(f"trades:{exchange}", "candles")


def trades_key(exchange: str, symbol: str) -> str:
    return tagged(f"trades:{exchange}", f"recent:{symbol}")


def candles_key(exchange: str, symbol: str, interval: str) -> str:
    return tagged(f"trades:{exchange}", f"candles:{symbol}:{interval}")


@dataclass(frozen=True)
class StoredCandle:
    """A candle as the hash holds it, with its first and last trade times."""

    candle: cache_pb2.Candle
    first_time: float
    last_time: float


def store_candle(candle: cache_pb2.Candle, first_time: float, last_time: float) -> bytes:
    return f"{first_time!r} {last_time!r} ".encode() + candle.SerializeToString()


def parse_candle(raw: bytes) -> StoredCandle:
    first, last, data = raw.split(b" ", 2)
    return StoredCandle(cache_pb2.Candle.FromString(data), float(first), float(last))


@dataclass
class TradeBatch:
    """What one script call writes: trades, then candle states, then candles dropped."""

    trades: list[cache_pb2.Trade] = field(default_factory=list)
    candles: list[StoredCandle] = field(default_factory=list)
    drops: list[tuple[str, str, str, int]] = field(default_factory=list)   # exchange, symbol, interval, open_time

    def __bool__(self) -> bool:
        return bool(self.trades or self.candles or self.drops)


class _Keys:
    """KEYS of one call, each once; ``index`` gives its 1-based position."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self._at: dict[str, int] = {}

    def index(self, key: str) -> int:
        at = self._at.get(key)
        if at is None:
            self.keys.append(key)
            at = self._at[key] = len(self.keys)
        return at


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class TradeStore:
    """Reads and atomic batched writes of trades and candles, through the Store's write path."""

    def __init__(self, store: Store, trade_retention: int) -> None:
        self.store = store
        self.redis = store.redis
        self.trade_retention = trade_retention
        self._script = store.redis.register_script(_TRADES_WRITE)

    async def write(self, batch: TradeBatch, conn: PinnedConnection | None = None) -> list[str]:
        """Store the batch, all or nothing (on a cluster: per exchange); the trades' seqs in order."""
        if not self.store.cluster:
            return await self._write_one(batch, conn)
        parts: dict[str, TradeBatch] = {}
        for trade in batch.trades:
            parts.setdefault(trade.exchange, TradeBatch()).trades.append(trade)
        for stored in batch.candles:
            parts.setdefault(stored.candle.exchange, TradeBatch()).candles.append(stored)
        for drop in batch.drops:
            parts.setdefault(drop[0], TradeBatch()).drops.append(drop)
        seqs: dict[str, list[str]] = {}
        for exchange, part in parts.items():
            seqs[exchange] = await self._write_one(part, conn)
        positions = {exchange: iter(ids) for exchange, ids in seqs.items()}
        return [next(positions[trade.exchange]) for trade in batch.trades]

    async def _write_one(self, batch: TradeBatch, conn: PinnedConnection | None) -> list[str]:
        """One script call: a batch whose keys may share one call (one slot on a cluster)."""
        keys = _Keys()
        args: list[object] = [self.store.stream_maxlen, self.trade_retention, len(batch.trades)]
        for trade in batch.trades:
            args += (keys.index(trade_stream(trade.exchange)), keys.index(trades_key(trade.exchange, trade.symbol)),
                     trade.symbol, trade.SerializeToString())
        args.append(len(batch.candles))
        for stored in batch.candles:
            c = stored.candle
            args += (keys.index(candles_key(c.exchange, c.symbol, c.interval)), keys.index(candle_stream(c.exchange)),
                     c.symbol, c.interval, c.open_time, store_candle(c, stored.first_time, stored.last_time),
                     c.SerializeToString())
        args.append(len(batch.drops))
        for exchange, symbol, interval, open_time in batch.drops:
            args += (keys.index(candles_key(exchange, symbol, interval)), open_time)
        ids = await self.store.run_write(self._script, keys.keys, args, conn)
        return [_text(i) for i in ids]  # type: ignore[union-attr]

    async def recent(self, exchange: str, symbols: Sequence[str], limit: int) -> tuple[list[tuple[str, bytes]], str]:
        """The newest ``limit`` trades (seq, Trade bytes), newest first, and the exchange's
        trade-feed position, read together (one transaction)."""
        stream = trade_stream(exchange)
        commands: list[Command] = [("XREVRANGE", stream, "+", "-", "COUNT", 1)]
        if symbols:
            commands += [("LRANGE", trades_key(exchange, symbol), 0, limit - 1) for symbol in symbols]
        else:
            commands.append(("XREVRANGE", stream, "+", "-", "COUNT", limit))
        results = await self.store.read_together(stream, *commands)
        position = _text(results[0][0][0]) if results[0] else ""
        rows: list[tuple[str, bytes]] = []
        if symbols:
            for items in results[1:]:
                for item in items:
                    seq, data = item.split(b" ", 1)
                    rows.append((seq.decode(), data))
            rows.sort(key=lambda row: seq_key(row[0]), reverse=True)
            rows = rows[:limit]
        else:
            rows = [(_text(entry_id), dict(zip(flat[::2], flat[1::2]))[b"d"]) for entry_id, flat in results[1]]
        return rows, position

    async def candles(self, exchange: str, symbol: str, interval: str) -> tuple[list[StoredCandle], str]:
        """Every retained candle of a series, oldest first, and the candle-feed position."""
        stream = candle_stream(exchange)
        position_rows, values = await self.store.read_together(
            stream, ("XREVRANGE", stream, "+", "-", "COUNT", 1), ("HVALS", candles_key(exchange, symbol, interval)))
        stored = sorted((parse_candle(v) for v in values), key=lambda s: s.candle.open_time)
        return stored, _text(position_rows[0][0]) if position_rows else ""
