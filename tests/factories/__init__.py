"""Test data factories: build realistic protobuf entities (factory_boy)."""

from tests.factories.entities import BotFactory, OrderFactory, TickerFactory
from tests.factories.market import TradeFactory, book_delta, book_snapshot, ladder

__all__ = ["BotFactory", "OrderFactory", "TickerFactory", "TradeFactory", "book_delta", "book_snapshot", "ladder"]
