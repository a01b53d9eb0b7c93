"""Encoding once per event: entity JSON, update frames by concatenation, batch frames."""

from __future__ import annotations

import json

from bridge import codec
from tests.factories import BotFactory, TickerFactory


def test_entity_json_has_every_field() -> None:
    bot = json.loads(codec.entity_json(BotFactory(symbols=["A", "B"])))
    assert bot["symbols"] == ["A", "B"] and set(bot) >= {"bot_id", "user_id", "pnl", "message"}
    ticker = codec.entity_to_dict(TickerFactory(price=1.5, change_24h=0.0))
    assert ticker["price"] == 1.5 and ticker["change_24h"] == 0.0


def test_update_frame_concatenation_is_valid_json() -> None:
    result = codec.entity_json(TickerFactory(symbol="BTC/USDT"))
    frame = codec.update_prefix("ticker_update", 'x"y') + codec.update_tail("5-1", result)
    parsed = json.loads(frame)
    assert parsed["subscription_id"] == 'x"y' and parsed["seq"] == "5-1"
    assert parsed["result"]["symbol"] == "BTC/USDT"
    batch = json.loads(codec.batch_frame([frame, frame]))
    assert batch["type"] == "batch" and len(batch["updates"]) == 2
