"""Demo market depth: an L2 order book per instrument, and trades that hit it.

The demo feed's tickers (:class:`scripts.demo_feed.Market`) only say where a symbol trades.
A trading screen also shows the book and the tape, so this module keeps, for every
instrument, a book an exchange could have published: 30 levels a side on the symbol's tick
grid, quantities with fixed decimals as exchanges write them ("0.25000000"), an exchange
sequence number, and trades that take the best level on the other side.

Like ``Market`` it is plain, seeded, I/O-free code that returns the cache service's own
messages (``PublishBookRequest``, ``Trade``); the feed's asyncio layer paces and ships them.

What a subscriber may rely on, because the service and the bridge check it
(docs/market_data.md), and what the tests replay through ``marketbridge.market.book.Book``:

- each book starts with a snapshot; every delta after it carries the previous sequence + 1;
- the book is never crossed: bids stay below the mid, asks above it;
- each side keeps at least ``MIN_LEVELS`` levels (far levels are added as near ones go);
- a trade's price is the best level on the taker's opposite side at that moment, its amount
  at most that level's quantity, and the delta returned with it takes the amount off.

The mid follows the ticker's price (read from a :class:`PriceSource` at each step), a bounded
move per delta, so the book's numbers and the ticker's agree on the live page while a jump
of the ticker still reaches the book as a few small deltas rather than one huge one.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Protocol

from marketbridge.api.v1 import cache_pb2

MIN_LEVELS = 25      # what the depth-25 view needs, and the floor the tests hold us to
TARGET_LEVELS = 30   # levels a side the book is refilled to
MAX_LEVELS = 36      # beyond this the far end is trimmed, so a one-way drift cannot grow a side
QTY_PLACES = Decimal("0.00000001")   # quantities are written with 8 decimals, as exchanges do
LEVEL_GAP = 0.0002   # mean distance between neighbouring levels, relative to the price
HALF_SPREAD = 0.0001  # mid to best level, relative: the ticker's own bid/ask spread (0.02 %)
# The mid moves at most this many level gaps towards the ticker per delta: a ticker move
# (0.08 % typical) reaches the book in one or two deltas of ~4 levels, not one of dozens.
# Measured at the default rates: the ticker price is inside the book's spread 84 % of the
# time, and within 0.05 % of the mid 90 % of the time.
MAX_MOVE_GAPS = 4
NOTIONAL = (200.0, 40_000.0)   # a level's size in quote currency, drawn log-uniformly
SEQUENCE_START = (1_000_000, 9_000_000)   # exchanges' sequences are never small numbers
TRADE_ID_START = (10_000_000, 90_000_000)


class PriceSource(Protocol):
    """Where the mid comes from: the demo feed's ``Market`` (its ticker prices)."""

    def price(self, exchange: str, symbol: str) -> float: ...


def tick_size(price: float) -> Decimal:
    """Five significant digits, never coarser than a cent: BTC 0.01, SOL 0.01, XRP 0.00001.

    Roughly what Binance and Kraken quote; fixed per book (from its first price) because an
    exchange's tick grid does not change when the price crosses a power of ten.
    """
    places = min(5, max(2, 4 - math.floor(math.log10(price))))
    return Decimal(1).scaleb(-places)


def lot_size(price: float) -> Decimal:
    """The quantity step: a lot is worth roughly 0.1-1 quote units (BTC 0.00001, XRP 1)."""
    places = min(5, max(0, math.floor(math.log10(price)) + 1))
    return Decimal(1).scaleb(-places)


def _text(value: Decimal, places: Decimal) -> str:
    """Positional notation with fixed decimals (``str(Decimal)`` may write an exponent)."""
    return format(value.quantize(places), "f")


class _Side:
    """One side's levels (price -> qty); ``sign`` is +1 for asks, -1 for bids.

    ``sign`` points away from the mid, so "further out by n ticks" is ``price + sign*n*tick``
    on both sides and the rest of the code needs no bid/ask branches.
    """

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.levels: dict[Decimal, Decimal] = {}

    def ordered(self) -> list[Decimal]:
        """Prices best (nearest the mid) first."""
        return sorted(self.levels, key=lambda price: price * self.sign)

    def best(self) -> Decimal:
        return min(self.levels, key=lambda price: price * self.sign)

    def worst(self) -> Decimal:
        return max(self.levels, key=lambda price: price * self.sign)

    def inside(self, price: Decimal, limit: Decimal) -> bool:
        """Whether ``price`` lies nearer the mid than ``limit``."""
        return (price - limit) * self.sign < 0


class OrderBook:
    """One instrument's book; each call that changes it returns the delta it made."""

    def __init__(self, rng: random.Random, exchange: str, symbol: str, price: float) -> None:
        self._rng = rng
        self.exchange = exchange
        self.symbol = symbol
        self.tick = tick_size(price)
        self.lot = lot_size(price)
        self._gap_ticks = max(1, round(price * LEVEL_GAP / float(self.tick)))
        self._half_ticks = max(1, round(price * HALF_SPREAD / float(self.tick)))
        self.mid = self._on_grid(price)
        self.bids, self.asks = _Side(-1), _Side(+1)
        self.sequence = rng.randint(*SEQUENCE_START)
        self._next_trade = rng.randint(*TRADE_ID_START)
        self._changes: tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]] = ({}, {})
        for side in (self.bids, self.asks):
            self._set(side, self._edge(side), self._quantity())
            self._fill_far_end(side)
        self._changes = ({}, {})   # the first snapshot carries these levels

    # ------------------------------------------------------------------ messages

    def snapshot(self, now: float) -> cache_pb2.PublishBookRequest:
        """Every level at the current sequence: what a fresh (or resynced) subscriber needs."""
        return self._message(
            True, [(p, self.bids.levels[p]) for p in self.bids.ordered()],
            [(p, self.asks.levels[p]) for p in self.asks.ordered()], now)

    def step(self, target: float, now: float) -> cache_pb2.PublishBookRequest:
        """The next delta: the mid moves towards ``target``, a few levels change."""
        self._follow(self._on_grid(target))
        for side in (self.bids, self.asks):
            self._fill_inside(side)
        for _ in range(self._rng.randint(1, 3)):
            self._churn(self._rng.choice((self.bids, self.asks)))
        return self._delta(now)

    def trade(self, now: float) -> tuple[cache_pb2.Trade, cache_pb2.PublishBookRequest]:
        """A taker order filled against the best level; the delta takes the amount off it."""
        taker = self._rng.choice(("buy", "sell"))
        side = self.asks if taker == "buy" else self.bids
        price = side.best()
        available = side.levels[price]
        amount = available if self._rng.random() < 0.25 else self._part_of(available)
        self._set(side, price, available - amount)
        trade = cache_pb2.Trade(
            exchange=self.exchange, symbol=self.symbol, trade_id=str(self._next_trade),
            price=_text(price, self.tick), amount=_text(amount, QTY_PLACES), side=taker,
            time=now)
        self._next_trade += 1
        return trade, self._delta(now)

    def _message(self, snapshot: bool, bids: Sequence[tuple[Decimal, Decimal]],
                 asks: Sequence[tuple[Decimal, Decimal]],
                 now: float) -> cache_pb2.PublishBookRequest:
        return cache_pb2.PublishBookRequest(
            exchange=self.exchange, symbol=self.symbol, snapshot=snapshot,
            bids=list(self._levels(bids)), asks=list(self._levels(asks)),
            sequence=self.sequence, time=now)

    def _levels(self, levels: Sequence[tuple[Decimal, Decimal]]) -> Iterator[cache_pb2.BookLevel]:
        for price, qty in levels:
            yield cache_pb2.BookLevel(price=_text(price, self.tick),
                                      qty=_text(qty, QTY_PLACES) if qty else "0")

    def _delta(self, now: float) -> cache_pb2.PublishBookRequest:
        """The changes recorded since the last message, as the next sequence's delta."""
        self._fill_far_end(self.bids)
        self._fill_far_end(self.asks)
        bids, asks = self._changes
        self._changes = ({}, {})
        self.sequence += 1
        return self._message(False, list(bids.items()), list(asks.items()), now)

    # ------------------------------------------------------------------ level changes

    def _set(self, side: _Side, price: Decimal, qty: Decimal) -> None:
        """Put (qty > 0) or remove (qty 0) a level, and remember it for the next delta.

        Several changes of one price before a delta collapse to the last one, which is
        exactly what the book does with a price repeated in one delta.
        """
        if qty:
            side.levels[price] = qty
        else:
            side.levels.pop(price, None)
        self._changes[side.sign > 0][price] = qty

    def _follow(self, target: Decimal) -> None:
        """Move the mid towards ``target``; levels the new mid crosses go (they were taken)."""
        most = MAX_MOVE_GAPS * self._gap_ticks * self.tick
        self.mid += max(-most, min(most, target - self.mid))
        for side in (self.bids, self.asks):
            for price in [p for p in side.levels if not side.inside(self.mid, p)]:
                self._set(side, price, Decimal(0))

    def _fill_inside(self, side: _Side) -> None:
        """After the mid moved away from a side, add levels so it reaches the spread again."""
        edge = self._edge(side)
        far = edge + side.sign * self._gap_ticks * self.tick   # a best beyond this is a hole
        while not side.levels or side.inside(far, side.best()):
            best = side.best() if side.levels else edge + side.sign * self.tick
            # one gap nearer the mid, but never nearer than the edge: each pass gains a tick
            # at least, and a level at the edge ends the loop
            nearer = best - side.sign * self._gap(), edge
            self._set(side, max(nearer, key=lambda p: p * side.sign), self._quantity())

    def _fill_far_end(self, side: _Side) -> None:
        """Keep TARGET_LEVELS..MAX_LEVELS levels: new ones beyond the worst, trim the rest."""
        while len(side.levels) < TARGET_LEVELS:
            self._set(side, side.worst() + side.sign * self._gap(), self._quantity())
        while len(side.levels) > MAX_LEVELS:
            self._set(side, side.worst(), Decimal(0))

    def _churn(self, side: _Side) -> None:
        """What makers do all day: resize a level (mostly), cancel one, or add one.

        Near levels change more often than far ones, as on a real book; a level is only
        added strictly between two others (where there is a free tick), so it cannot cross.
        """
        prices = side.ordered()
        rank = min(self._rng.randrange(len(prices)), self._rng.randrange(len(prices)))
        roll = self._rng.random()
        free = self._free_tick(prices, rank) if roll >= 0.8 else None
        if 0.6 <= roll < 0.8:
            self._set(side, prices[rank], Decimal(0))
        else:
            self._set(side, prices[rank] if free is None else free, self._quantity())

    def _free_tick(self, prices: Sequence[Decimal], rank: int) -> Decimal | None:
        """A random price strictly between levels ``rank`` and ``rank + 1``, if one is free."""
        if rank + 1 == len(prices):
            return None
        ticks = int(abs(prices[rank + 1] - prices[rank]) / self.tick)
        if ticks < 2:
            return None
        outwards = (prices[rank + 1] - prices[rank]) / ticks   # one tick, exactly
        return prices[rank] + outwards * self._rng.randint(1, ticks - 1)

    # ------------------------------------------------------------------ numbers

    def _on_grid(self, price: float) -> Decimal:
        return Decimal(price).quantize(self.tick, rounding=ROUND_HALF_EVEN)

    def _edge(self, side: _Side) -> Decimal:
        """The nearest price to the mid a new level may take (the usual best bid/ask)."""
        return self.mid + side.sign * self._half_ticks * self.tick

    def _gap(self) -> Decimal:
        return self.tick * self._rng.randint(1, 2 * self._gap_ticks)

    def _quantity(self) -> Decimal:
        """A level's size: log-uniform notional, in whole lots, at least one lot."""
        notional = math.exp(self._rng.uniform(*(math.log(n) for n in NOTIONAL)))
        lots = max(1, round(notional / float(self.mid) / float(self.lot)))
        return self.lot * lots

    def _part_of(self, available: Decimal) -> Decimal:
        """A partial fill: 5-80 % of the level, in whole lots, at least one lot."""
        share = Decimal(str(round(self._rng.uniform(0.05, 0.8), 4)))
        part = (available * share).quantize(self.lot, rounding=ROUND_DOWN)
        return min(available, max(self.lot, part))


class DepthMarket:
    """Every instrument's book; :meth:`step` and :meth:`trade` pick one at random."""

    def __init__(self, rng: random.Random, prices: PriceSource,
                 instruments: Sequence[tuple[str, str]]) -> None:
        self._rng = rng
        self._prices = prices
        self.books = [OrderBook(rng, exchange, symbol, prices.price(exchange, symbol))
                      for exchange, symbol in instruments]

    def snapshots(self, now: float) -> list[cache_pb2.PublishBookRequest]:
        """A snapshot of every book: what the feed sends first on each (re)connect."""
        return [book.snapshot(now) for book in self.books]

    def step(self, now: float) -> cache_pb2.PublishBookRequest:
        """One delta of one book, its mid pulled towards that instrument's ticker price."""
        book = self._rng.choice(self.books)
        return book.step(self._prices.price(book.exchange, book.symbol), now)

    def trade(self, now: float) -> tuple[cache_pb2.Trade, cache_pb2.PublishBookRequest]:
        """One trade on one book, with the delta that must follow it."""
        return self._rng.choice(self.books).trade(now)
