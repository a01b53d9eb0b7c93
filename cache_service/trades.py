"""Trades in the service, and the candles built from them (docs/market_data.md).

Each trade is validated once at the door (:func:`marketbridge.market.trades.parse_trade`:
decimal strings, a known side, a finite time), then stored with the candles it changes, in one
atomic write (:mod:`cache_service.trade_store`). The candle series live in memory as
:class:`marketbridge.market.candles.SymbolCandles` (rebuilt from Redis the first time a symbol
is written after a start), so a late trade updates the candle of its own interval.

**Conflation inside a write.** A batch of trades changes each candle many times; only its last
state of the batch is stored and streamed (SPEC §9.3 lets candle updates be conflated per
``open_time``). A candle that closed in the batch is written closed: ``closed: true`` is never
lost. A clock (:meth:`TradeDesk.close_due`, every second) closes candles whose interval ended
without a later trade, so a quiet market still gets its closed candle on time.

**One writer per symbol.** Candles are built by the process that receives a symbol's trades;
two processes writing the same symbol's trades would each build their own candles and the last
write would win. docs/market_data.md says so; publishers keep a symbol on one connection.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from cache_service import validation
from cache_service.errors import InvalidArgument
from cache_service.metrics import Metrics
from cache_service.pinned import PinnedConnection
from cache_service.trade_store import StoredCandle, TradeBatch, TradeStore
from marketbridge.api.v1 import cache_pb2
from marketbridge.market.candles import INTERVALS, Candle, InvalidInterval, SymbolCandles, interval_seconds
from marketbridge.market.trades import InvalidTrade, Trade, parse_trade

TRADES_LIMIT_DEFAULT = 50
CANDLES_LIMIT_DEFAULT = 100

SymbolKey = tuple[str, str]
CandleKey = tuple[str, str, str, int]   # exchange, symbol, interval, open_time


def check_interval(interval: str) -> str:
    """A known candle interval, else INVALID_ARGUMENT listing them."""
    try:
        interval_seconds(interval)
    except InvalidInterval as exc:
        raise InvalidArgument(str(exc)) from None
    return interval


def check_trade(message: cache_pb2.Trade) -> Trade:
    """A publishable trade (INVALID_ARGUMENT naming the field otherwise)."""
    validation.require_id("trade.exchange", message.exchange)
    validation.require_id("trade.symbol", message.symbol)
    try:
        return parse_trade(message.trade_id, message.price, message.amount, message.side, message.time)
    except InvalidTrade as exc:
        raise InvalidArgument(f"trade: {exc}") from None


def candle_message(exchange: str, symbol: str, candle: Candle) -> cache_pb2.Candle:
    return cache_pb2.Candle(exchange=exchange, symbol=symbol, interval=candle.interval,
                            open_time=candle.open_time, open=candle.open, high=candle.high,
                            low=candle.low, close=candle.close, volume=candle.volume,
                            trades=candle.trades, closed=candle.closed)


def _candle(stored: cache_pb2.Candle) -> Candle:
    return Candle(stored.interval, stored.open_time, stored.open, stored.high, stored.low,
                  stored.close, stored.volume, stored.trades, stored.closed)


class TradeDesk:
    """Validates, stores and streams trades; builds, stores and closes candles."""

    def __init__(self, store: TradeStore, metrics: Metrics, candle_retention: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.metrics = metrics
        self.candle_retention = candle_retention
        self.clock = clock
        self._series: dict[SymbolKey, SymbolCandles] = {}
        self._seen: dict[SymbolKey, RecentIds] = {}
        self._lock = asyncio.Lock()   # one write at a time: memory and Redis move together

    async def publish(self, messages: Sequence[cache_pb2.Trade], conn: PinnedConnection | None = None) -> list[str]:
        """Store ``messages`` in order with the candles they change; their seqs.

        At the first bad trade, the ones before it are stored, then INVALID_ARGUMENT is raised.

        A trade whose ``trade_id`` this symbol already has (a publisher's retry of a call that
        failed after Redis applied it: at-least-once) is not stored or counted again; its seq
        is the one it got the first time (``cache_trades_duplicate`` counts them)."""
        async with self._lock:
            batch, pending = TradeBatch(), _Changes()
            error: InvalidArgument | None = None
            order: list[tuple[SymbolKey, str]] = []   # (symbol, trade_id) of each accepted message
            fresh: dict[SymbolKey, set[str]] = {}
            for index, message in enumerate(messages):
                try:
                    trade = check_trade(message)
                except InvalidArgument as exc:
                    error = InvalidArgument(f"{exc.message} (trade #{index + 1} of the batch; "
                                            f"the {index} before it were stored)")
                    break
                key = (message.exchange, message.symbol)
                series = await self._symbol(key)
                order.append((key, trade.trade_id))
                new = fresh.setdefault(key, set())
                if trade.trade_id in self._seen[key] or trade.trade_id in new:
                    self.metrics.trades_duplicate.inc()
                    continue
                new.add(trade.trade_id)
                touched = series.touch(trade)
                late = len(INTERVALS) - len({interval for interval, _ in touched})
                if late:   # older than some intervals' retained windows
                    self.metrics.candle_trades_late.inc(late)
                pending.add(key, series, touched)
                batch.trades.append(message)
            stored = await self._write(pending.into(batch), pending.keys | set(fresh), conn) if batch else []
            for message, seq in zip(batch.trades, stored):
                self._seen[(message.exchange, message.symbol)].add(message.trade_id, seq)
            seqs = [self._seen[key].seq(trade_id) for key, trade_id in order]
            if error is not None:
                raise error
            return seqs

    async def close_due(self) -> int:
        """Close the candles whose interval ended by now (the clock path); how many closed."""
        async with self._lock:
            pending = _Changes()
            now = self.clock()
            for key, series in self._series.items():
                pending.add(key, series, [(c.interval, c.open_time) for c in series.close_due(now)])
            batch = pending.into(TradeBatch())
            if batch:
                await self._write(batch, pending.keys)
            return len(batch.candles)

    async def _write(self, batch: TradeBatch, keys: set[SymbolKey],
                     conn: PinnedConnection | None = None) -> list[str]:
        """Write; on failure forget the symbols' candles so they are rebuilt from Redis."""
        try:
            return await self.store.write(batch, conn)
        except BaseException:
            for key in keys:
                self._series.pop(key, None)
                self._seen.pop(key, None)
            raise

    async def _symbol(self, key: SymbolKey) -> SymbolCandles:
        series = self._series.get(key)
        if series is None:
            series = SymbolCandles(self.candle_retention)
            for interval in INTERVALS:
                stored, _ = await self.store.candles(key[0], key[1], interval)
                series.get(interval).restore([(_candle(s.candle), s.first_time, s.last_time) for s in stored])
            rows, _ = await self.store.recent(key[0], [key[1]], self.store.trade_retention)
            self._seen[key] = RecentIds.of(
                [(cache_pb2.Trade.FromString(data).trade_id, seq) for seq, data in reversed(rows)])
            self._series[key] = series
        return series

    # ------------------------------------------------------------ reads

    async def recent(self, exchange: str, symbols: Sequence[str], limit: int) -> cache_pb2.ListTradesResponse:
        rows, position = await self.store.recent(exchange, symbols, limit)
        trades = [cache_pb2.Trade.FromString(data) for _, data in reversed(rows)]
        return cache_pb2.ListTradesResponse(trades=trades, seq=position)

    async def candles(self, exchange: str, symbol: str, interval: str, limit: int) -> cache_pb2.ListCandlesResponse:
        stored, position = await self.store.candles(exchange, symbol, interval)
        return cache_pb2.ListCandlesResponse(candles=[s.candle for s in stored[-limit:]], seq=position)


class RecentIds:
    """The ids of a symbol's recent trades and their seqs, oldest dropped past ``limit``: what
    a retried trade is recognised by. Rebuilt from the symbol's recent-trades list in Redis
    (``--trade-retention`` long) after a start or a failed write."""

    LIMIT = 10_000

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._seqs: OrderedDict[str, str] = OrderedDict()

    @classmethod
    def of(cls, rows: Sequence[tuple[str, str]]) -> RecentIds:
        recent = cls()
        for trade_id, seq in rows:
            recent.add(trade_id, seq)
        return recent

    def __contains__(self, trade_id: str) -> bool:
        return trade_id in self._seqs

    def add(self, trade_id: str, seq: str) -> None:
        self._seqs[trade_id] = seq
        if len(self._seqs) > self.limit:
            self._seqs.popitem(last=False)

    def seq(self, trade_id: str) -> str:
        return self._seqs[trade_id]


class _Changes:
    """The candles a write changes, last state each (conflated per open_time), and the drops."""

    def __init__(self) -> None:
        self.keys: set[SymbolKey] = set()
        self._latest: dict[CandleKey, SymbolCandles] = {}
        self._series: dict[SymbolKey, SymbolCandles] = {}

    def add(self, key: SymbolKey, series: SymbolCandles, changed: list[tuple[str, int]]) -> None:
        """Note the (interval, open_time) candles a trade or the clock changed."""
        self._series[key] = series
        for interval, open_time in changed:
            self._latest[(*key, interval, open_time)] = series
        if changed:
            self.keys.add(key)

    def into(self, batch: TradeBatch) -> TradeBatch:
        """Fill ``batch`` with the candle states and the drops since the last write."""
        for key, series in self._series.items():
            for interval, one in series.series.items():
                for open_time in one.take_dropped():
                    self._latest.pop((*key, interval, open_time), None)
                    batch.drops.append((*key, interval, open_time))
                    self.keys.add(key)
        for (exchange, symbol, interval, open_time), series in self._latest.items():
            one = series.series[interval]
            first, last = one.marks(open_time)
            candle = candle_message(exchange, symbol, one.candle_at(open_time))
            batch.candles.append(StoredCandle(candle, first, last))
        return batch
