"""What every channel decides for itself: its topic, who its stream runs as, its params."""

from __future__ import annotations

from bridge.auth import Identity
from bridge.channels import ALIASES, CHANNELS
from bridge.protocol import SubscribeParams


def test_topics() -> None:
    user, admin = Identity("u"), Identity("u", frozenset({"admin"}))
    tickers, orders, bots = CHANNELS["tickers"], CHANNELS["orders"], CHANNELS["bots"]
    assert tickers.topic(SubscribeParams("tickers", exchange="x"), user) == ("tickers", "x")
    assert orders.topic(SubscribeParams("orders"), user) == ("orders", "u")
    assert bots.topic(SubscribeParams("bots"), admin) == ("bots", "*")
    assert orders.stream_identity(("orders", "u"), admin) == user
    assert bots.stream_identity(("bots", "*"), user).is_admin
    assert tickers.stream_identity(("tickers", "x"), user) is user


def test_the_table_names_each_channel_and_alias_once() -> None:
    assert list(CHANNELS) == ["tickers", "orders", "bots", "book", "trades", "candles"]
    assert {alias: channel.name for alias, channel in ALIASES.items()} == {
        "stream_tickers": "tickers", "stream_orders": "orders", "stream_bots": "bots",
        "stream_book": "book", "stream_trades": "trades", "stream_candles": "candles"}
    assert [c.update_action for c in CHANNELS.values()] == [
        "ticker_update", "order_update", "bot_update", "book_update", "trade_update", "candle_update"]
    assert [c.conflates for c in CHANNELS.values()] == [True, False, False, True, False, False]


def test_market_topics_name_one_upstream_stream() -> None:
    user = Identity("u")
    book, candles = CHANNELS["book"], CHANNELS["candles"]
    assert book.topic(SubscribeParams("book", exchange="x", symbol="S", depth=25), user) == ("book", "x", "S", "25")
    assert candles.topic(SubscribeParams("candles", exchange="x", symbol="S", interval="1m"), user) == (
        "candles", "x", "S", "1m")
    assert book.stream_request(("book", "x", "S", "25"), None, "1-0").depth == 25
