"""Factories for market-depth messages: books, deltas and trades as cache.v1 protobuf messages.

``book_snapshot()`` gives a valid snapshot (bids below asks, decimal strings); ``book_delta()``
a delta of given levels; ``TradeFactory()`` a valid trade. Pass fields to override.
"""

from __future__ import annotations

import time
from decimal import Decimal

import factory

from marketbridge.api.v1 import cache_pb2

Pair = tuple[str, str]


def ladder(best: str, step: str, count: int, qty: str = "1.5", descending: bool = True) -> list[Pair]:
    """``count`` levels from ``best`` moving away from the spread by ``step``."""
    price, delta = Decimal(best), Decimal(step)
    sign = -1 if descending else 1
    return [(str(price + sign * delta * i), qty) for i in range(count)]


def _levels(pairs: list[Pair]) -> list[cache_pb2.BookLevel]:
    return [cache_pb2.BookLevel(price=p, qty=q) for p, q in pairs]


def book_snapshot(exchange: str = "binance", symbol: str = "BTC/USDT", *, sequence: int = 1,
                  bids: list[Pair] | None = None, asks: list[Pair] | None = None,
                  levels: int = 30, time_: float | None = None) -> cache_pb2.PublishBookRequest:
    """A snapshot around 50000 (``levels`` a side, 0.5 apart) unless ``bids``/``asks`` are given."""
    bids = ladder("49999.5", "0.5", levels) if bids is None else bids
    asks = ladder("50000.5", "0.5", levels, descending=False) if asks is None else asks
    return cache_pb2.PublishBookRequest(exchange=exchange, symbol=symbol, snapshot=True,
                                        bids=_levels(bids), asks=_levels(asks), sequence=sequence,
                                        time=time.time() if time_ is None else time_)


def book_delta(exchange: str = "binance", symbol: str = "BTC/USDT", *, sequence: int,
               bids: list[Pair] = (), asks: list[Pair] = (),  # type: ignore[assignment]
               time_: float | None = None) -> cache_pb2.PublishBookRequest:
    return cache_pb2.PublishBookRequest(exchange=exchange, symbol=symbol, snapshot=False,
                                        bids=_levels(list(bids)), asks=_levels(list(asks)),
                                        sequence=sequence, time=time.time() if time_ is None else time_)


class TradeFactory(factory.Factory):
    class Meta:
        model = cache_pb2.Trade

    exchange = "binance"
    symbol = "BTC/USDT"
    trade_id = factory.Sequence(lambda n: f"t{n:08d}")
    price = factory.Sequence(lambda n: f"{50000 + n % 7}.5")
    amount = "0.01000000"
    side = factory.Iterator(["buy", "sell"])
    time = factory.LazyFunction(time.time)
