"""Test data factories: build realistic protobuf entities (factory_boy)."""

from tests.factories.entities import BotFactory, OrderFactory, TickerFactory

__all__ = ["BotFactory", "OrderFactory", "TickerFactory"]
