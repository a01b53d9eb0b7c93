"""The demo feed's books and trades, replayed through the service's own book model.

What the cache service will refuse (a gap, a crossed book, a bad decimal) must never come out
of the simulation, or ``make up`` would show stale books. So every snapshot and delta is
applied to ``marketbridge.market.book.Book`` exactly as the service does, and each trade is
checked against the book as it stood when the trade was made.
"""

from __future__ import annotations

import random
import re
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from marketbridge.api.v1 import cache_pb2
from marketbridge.market.book import Book
from marketbridge.market.trades import parse_trade
from scripts.demo_feed import BASE_PRICES, EXCHANGES, Market
from scripts.demo_market import MIN_LEVELS, DepthMarket, OrderBook, lot_size, tick_size

QTY = re.compile(r"(0|[0-9]+\.[0-9]{8})")   # removals are "0", sizes have 8 decimals
Key = tuple[str, str]


def depth_market(seed: int, volatility: float = 0.0008) -> tuple[Market, DepthMarket]:
    """The feed's own pairing: books whose mids follow the tickers of a seeded Market."""
    rng = random.Random(seed)
    market = Market(rng, volatility=volatility)
    return market, DepthMarket(rng, market, [(i.exchange, i.symbol) for i in market.instruments])


def pairs(levels: object) -> list[tuple[str, str]]:
    return [(level.price, level.qty) for level in levels]  # type: ignore[attr-defined]


class Replay:
    """The service's view of the feed: one Book per instrument, fed every message in order."""

    def __init__(self, depth: DepthMarket) -> None:
        self.books: dict[Key, Book] = {}
        self.ticks = {(b.exchange, b.symbol): b.tick for b in depth.books}
        self.trade_ids: set[tuple[str, str, str]] = set()
        for message in depth.snapshots(now=1.0):
            self.apply(message)

    def apply(self, message: cache_pb2.PublishBookRequest) -> None:
        """Apply like the service (raises on a gap, a crossed book or a bad decimal)."""
        key = (message.exchange, message.symbol)
        self.check_strings(key, message)
        if message.snapshot:
            self.books[key] = Book()
            self.books[key].apply_snapshot(pairs(message.bids), pairs(message.asks),
                                           message.sequence)
        else:
            self.books[key].apply_delta(pairs(message.bids), pairs(message.asks),
                                        message.sequence)
        book = self.books[key]
        assert len(book.bids) >= MIN_LEVELS and len(book.asks) >= MIN_LEVELS, key

    def check_strings(self, key: Key, message: cache_pb2.PublishBookRequest) -> None:
        """Prices on the symbol's tick grid, written with its decimals; sizes as exchanges do."""
        places = -self.ticks[key].as_tuple().exponent
        for level in [*message.bids, *message.asks]:
            assert QTY.fullmatch(level.qty), level
            assert len(level.price.partition(".")[2]) == places, (key, level)

    def trade(self, trade: cache_pb2.Trade, delta: cache_pb2.PublishBookRequest) -> None:
        """The trade takes the best level of the side it hits; its delta takes the amount off."""
        parse_trade(trade.trade_id, trade.price, trade.amount, trade.side, trade.time)
        key = (trade.exchange, trade.symbol)
        assert (delta.exchange, delta.symbol) == key
        assert (*key, trade.trade_id) not in self.trade_ids
        self.trade_ids.add((*key, trade.trade_id))
        book = self.books[key]
        hit = book.asks if trade.side == "buy" else book.bids
        price, amount = Decimal(trade.price), Decimal(trade.amount)
        assert hit.best() == price, (trade, hit.best())
        before = Decimal(hit.get(price)[1])   # type: ignore[index]
        assert 0 < amount <= before
        self.apply(delta)
        after = hit.get(price)
        left = Decimal(after[1]) if after else Decimal(0)
        assert left == before - amount, (trade, before, left)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1),
       volatility=st.sampled_from([0.0, 0.0002, 0.0008, 0.004]),
       trade_share=st.floats(0.0, 0.6),
       tick_share=st.floats(0.0, 0.5))
def test_books_replay_cleanly_and_trades_hit_the_best_level(
        seed: int, volatility: float, trade_share: float, tick_share: float) -> None:
    """2,000 random steps (deltas, trades, ticker moves and jumps): the service's Book never
    refuses a message, each side keeps 25+ levels, every trade takes the best level."""
    market, depth = depth_market(seed, volatility)
    replay = Replay(depth)
    rng = random.Random(seed)
    for step in range(2000):
        roll = rng.random()
        if roll < tick_share:
            market.tick(float(step))
        elif roll < tick_share + 0.01:   # a jump: the book must follow without crossing
            rng.choice(market.instruments).price *= rng.choice((0.97, 1.03))
        elif roll < tick_share + 0.01 + trade_share:
            replay.trade(*depth.trade(float(step)))
        else:
            replay.apply(depth.step(float(step)))


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_resnapshot_continues_the_sequence(seed: int) -> None:
    """What the feed sends after a reconnect: a snapshot at the current sequence, then deltas
    that follow it, so a service that lost everything is fresh again at once."""
    _, depth = depth_market(seed)
    for step in range(300):
        depth.step(float(step))
        depth.trade(float(step))
    replay = Replay(depth)
    for step in range(300):
        replay.apply(depth.step(float(step)))
        replay.trade(*depth.trade(float(step)))


def test_book_mid_follows_the_ticker_price() -> None:
    """Once the book has caught up, the ticker's price lies inside every book's spread, so the
    live page's ticker and depth views agree."""
    market, depth = depth_market(seed=5)
    for step in range(5000):
        if step % 10 == 0:
            market.tick(float(step))
        depth.step(float(step))
    for book in depth.books:   # no ticker move since: a few deltas close any lag
        for _ in range(20):
            book.step(market.price(book.exchange, book.symbol), 0.0)
    replay = Replay(depth)
    for key, book in replay.books.items():
        price = Decimal(market.price(*key))
        assert book.bids.best() < price < book.asks.best(), key   # type: ignore[operator]
        spread = (book.asks.best() - book.bids.best()) / price   # type: ignore[operator]
        assert spread < Decimal("0.002"), (key, spread)   # the ticker's is 0.0002


def test_every_instrument_has_a_book_of_thirty_levels() -> None:
    _, depth = depth_market(seed=3)
    snapshots = depth.snapshots(now=7.0)
    assert {(s.exchange, s.symbol) for s in snapshots} == {
        (e, s) for e in EXCHANGES for s in BASE_PRICES}
    for snapshot in snapshots:
        assert snapshot.snapshot and snapshot.time == 7.0
        assert len(snapshot.bids) == len(snapshot.asks) == 30


def test_tick_and_lot_sizes_follow_the_price_magnitude() -> None:
    """Prices with five significant digits (two decimals at least); lots worth a quote unit
    or less, so a $200 level is never a fraction of a lot."""
    assert [str(tick_size(p)) for p in (67000, 3500, 150, 35, 7, 0.6, 0.15)] == [
        "0.01", "0.01", "0.01", "0.001", "0.0001", "0.00001", "0.00001"]
    assert [str(lot_size(p)) for p in (67000, 3500, 150, 7, 0.6)] == [
        "0.00001", "0.0001", "0.001", "0.1", "1"]


def test_same_seed_same_books_and_trades() -> None:
    runs = []
    for _ in range(2):
        _, depth = depth_market(seed=9)
        runs.append([depth.step(1.0) for _ in range(50)] + [depth.trade(1.0)[0] for _ in range(5)])
    assert runs[0] == runs[1]


def test_a_trade_that_takes_the_whole_level_removes_it() -> None:
    """Fills of the whole level come out as a removal ("0"), partial ones as the remainder."""
    book = OrderBook(random.Random(2), "binance", "ETH/USDT", 3500.0)
    removed = partial = 0
    for _ in range(200):
        trade, delta = book.trade(1.0)
        side = delta.asks if trade.side == "buy" else delta.bids
        level = next(level for level in side if level.price == trade.price)
        removed += level.qty == "0"
        partial += level.qty != "0"
    assert removed > 20 and partial > 20
