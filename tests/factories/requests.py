"""Client requests of docs/protocol.md: one valid params set per action and per channel.

Fuzzing and random-frame tests start from these and break them one way at a time (a param
removed, retyped, misspelt), so most of what they send is a near miss that reaches deep into
validation rather than garbage the parser stops at once. Every param an action accepts is
here, so a template also names the accepted set. ``SPEC_CODES`` is SPEC §4's list of error
codes: the only codes a reply may carry.
"""

from __future__ import annotations

import json
from typing import Any

from tests.factories.entities import SYMBOLS

SPEC_CODES = frozenset({"INVALID_MESSAGE", "UNKNOWN_ACTION", "INVALID_PARAMS", "NOT_FOUND",
                        "FORBIDDEN", "RATE_LIMITED", "SUBSCRIPTION_LIMIT", "UNAVAILABLE",
                        "TIMEOUT", "INTERNAL"})

SEQ = "1700000000000-0"

# action -> every param it accepts, each with a valid value (subscribe: see SUBSCRIBE_PARAMS)
ACTION_PARAMS: dict[str, dict[str, Any]] = {
    "ping": {},
    "get_ticker": {"exchange": "binance", "symbol": SYMBOLS[0]},
    "list_tickers": {"exchange": "binance", "symbols": SYMBOLS[:2]},
    "get_order": {"order_id": "ord-000001"},
    "list_orders": {"status": "open", "symbol": SYMBOLS[0], "bot_id": "bot-00001", "limit": 10},
    "get_bot": {"bot_id": "bot-00001"},
    "list_bots": {},
    "get_book": {"exchange": "binance", "symbol": SYMBOLS[0], "depth": 25},
    "list_trades": {"exchange": "binance", "symbols": SYMBOLS[:2], "limit": 5},
    "list_candles": {"exchange": "binance", "symbol": SYMBOLS[0], "interval": "1m", "limit": 5},
    "refresh": {"token": "eyJhbGciOiJIUzI1NiJ9.e30.c2ln"},
    "unsubscribe": {"subscription_id": "tickers-1"},
}

_RESUME = {"resume_from": SEQ, "snapshot": True}
# channel -> every param a subscribe to it accepts, each with a valid value
SUBSCRIBE_PARAMS: dict[str, dict[str, Any]] = {
    "tickers": {"channel": "tickers", "exchange": "binance", "symbols": SYMBOLS[:2], **_RESUME},
    "orders": {"channel": "orders", "symbols": SYMBOLS[:1], "bot_ids": ["bot-00001"], **_RESUME},
    "bots": {"channel": "bots", "bot_ids": ["bot-00001"], **_RESUME},
    "book": {"channel": "book", "exchange": "binance", "symbol": SYMBOLS[0], "depth": 10,
             **_RESUME},
    "trades": {"channel": "trades", "exchange": "binance", "symbols": SYMBOLS[:1], "limit": 5,
               **_RESUME},
    "candles": {"channel": "candles", "exchange": "binance", "symbol": SYMBOLS[0],
                "interval": "5m", "limit": 5, **_RESUME},
}


def alias_params(channel: str) -> dict[str, Any]:
    """The params of ``stream_<channel>``: the subscribe ones without ``channel`` (implied)."""
    return {k: v for k, v in SUBSCRIBE_PARAMS[channel].items() if k != "channel"}


def request_frame(action: str, params: Any = None, request_id: Any = None, **extra: Any) -> str:
    """A request frame as a client writes it; fields left None are left out."""
    frame: dict[str, Any] = {"action": action, **extra}
    if request_id is not None:
        frame["request_id"] = request_id
    if params is not None:
        frame["params"] = params
    return json.dumps(frame)
