"""A connection's subscription book: ids, filters, frames, the cap."""

from __future__ import annotations

import json

import pytest

from bridge import codec, errors
from bridge.channels import CHANNELS
from bridge.events import Event, seq_key
from bridge.protocol import SubscribeParams
from bridge.subscriptions import SubscriptionBook


def _event(symbol: str = "BTC", bot_id: str = "", seq: str = "1-0") -> Event:
    return Event(seq, seq_key(seq), symbol, bot_id, codec.update_tail(seq, "{}"), "{}")


def test_subscription_book_filters_ids_and_limit() -> None:
    book = SubscriptionBook(max_subscriptions=2)
    t = book.add(SubscribeParams("tickers", exchange="x", symbols=("BTC",)), CHANNELS["tickers"],
                 ("tickers", "x"))
    o = book.add(SubscribeParams("orders", bot_ids=("b1",)), CHANNELS["orders"], ("orders", "u"))
    assert t.id != o.id and len(book) == 2
    assert t.matches(_event("BTC")) and not t.matches(_event("ETH"))
    assert o.matches(_event("ETH", "b1")) and not o.matches(_event("ETH", "b2"))
    assert t.conflation_key(_event()) == (t.id, "BTC") and o.conflation_key(_event()) is None
    with pytest.raises(errors.BridgeError) as info:
        book.add(SubscribeParams("bots"), CHANNELS["bots"], ("bots", "u"))
    assert info.value.code == errors.SUBSCRIPTION_LIMIT
    assert book.remove(t.id) is t
    with pytest.raises(errors.BridgeError) as info:
        book.remove(t.id)
    assert info.value.code == errors.NOT_FOUND
    assert json.loads(o.frame(_event(seq="7-0")))["action"] == "order_update"


def test_a_resume_is_set_up_catching_up() -> None:
    """Only a subscription with a catch-up stream may discard held events (bridge.setup)."""
    book = SubscriptionBook(max_subscriptions=2)
    fresh = book.add(SubscribeParams("bots"), CHANNELS["bots"], ("bots", "u"))
    resuming = book.add(SubscribeParams("bots", resume_from="5-0"), CHANNELS["bots"],
                        ("bots", "u"))
    assert fresh.setup is not None and not fresh.setup.catching_up
    assert resuming.setup is not None and resuming.setup.catching_up
