"""Factories for the three entities of proto/cache/v1/cache.proto, as cache.v1 protobuf messages.

``TickerFactory()`` gives a valid Ticker; pass fields to override (``TickerFactory(symbol="ETH/USDT")``).
``.json()`` helpers are not here on purpose: the bridge's own codec turns messages into JSON.
"""

from __future__ import annotations

import time

import factory

from marketbridge.api.v1 import cache_pb2

SYMBOLS = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT"]


class TickerFactory(factory.Factory):
    class Meta:
        model = cache_pb2.Ticker

    exchange = "binance"
    symbol = factory.Iterator(SYMBOLS)
    price = factory.Sequence(lambda n: 100.0 + n)
    bid = factory.LazyAttribute(lambda t: t.price - 0.5)
    ask = factory.LazyAttribute(lambda t: t.price + 0.5)
    last = factory.LazyAttribute(lambda t: t.price)
    volume = factory.Sequence(lambda n: 1000.0 + n)
    change_24h = 1.5
    time = factory.LazyFunction(time.time)


class OrderFactory(factory.Factory):
    class Meta:
        model = cache_pb2.Order

    order_id = factory.Sequence(lambda n: f"ord-{n:06d}")
    user_id = "alice"
    bot_id = ""
    exchange = "binance"
    symbol = "BTC/USDT"
    side = factory.Iterator(["buy", "sell"])
    order_type = "limit"
    status = "open"
    price = factory.Sequence(lambda n: 50000.0 + n)
    amount = 0.1
    filled = 0.0
    created_at = factory.LazyFunction(time.time)
    updated_at = factory.LazyAttribute(lambda o: o.created_at)


class BotFactory(factory.Factory):
    class Meta:
        model = cache_pb2.Bot

    bot_id = factory.Sequence(lambda n: f"bot-{n:05d}")
    user_id = "alice"
    name = factory.Sequence(lambda n: f"grid-{n}")
    status = "running"
    exchange = "binance"
    symbols = factory.LazyFunction(lambda: ["BTC/USDT", "ETH/USDT"])
    pnl = 12.5
    message = ""
    updated_at = factory.LazyFunction(time.time)
