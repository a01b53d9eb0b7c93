"""Pure checks of incoming entities and request fields (proto/cache/v1/cache.proto).

Each check raises InvalidArgument with a message naming the field, so a producer sees
exactly what to fix; nothing here talks to Redis or gRPC.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Sequence

from cache_service.errors import InvalidArgument
from marketbridge.api.v1 import cache_pb2
from marketbridge.seq import SeqKey, parse_seq
from marketbridge.vocabulary import BOT_STATUSES, ORDER_SIDES, ORDER_TYPES, ORDER_STATUSES

MAX_ID_LENGTH = 256
LIST_LIMIT_DEFAULT = 100
LIST_LIMIT_MAX = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def require_id(name: str, value: str) -> str:
    """An identifier: present, bounded, no control characters (it ends up in Redis keys)."""
    if not value:
        raise InvalidArgument(f"{name} is required")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(f"{name} is longer than {MAX_ID_LENGTH} characters")
    if _CONTROL.search(value):
        raise InvalidArgument(f"{name} contains control characters")
    return value


def _enum(name: str, value: str, allowed: Collection[str]) -> None:
    if value not in allowed:
        raise InvalidArgument(f"{name} must be one of {', '.join(sorted(allowed))}; got {value!r}")


def _finite(entity: str, message: object, names: Iterable[str], non_negative: Iterable[str] = ()) -> None:
    for name in names:
        value = getattr(message, name)
        if not math.isfinite(value):
            raise InvalidArgument(f"{entity}.{name} must be a finite number; got {value}")
    for name in non_negative:
        if getattr(message, name) < 0:
            raise InvalidArgument(f"{entity}.{name} must be >= 0; got {getattr(message, name)}")


def check_ticker(ticker: cache_pb2.Ticker) -> None:
    """A publishable ticker: exchange and symbol set, numbers finite, volume and time >= 0.

    Prices may be negative: some derivatives trade below zero.
    """
    require_id("ticker.exchange", ticker.exchange)
    require_id("ticker.symbol", ticker.symbol)
    _finite("ticker", ticker,
            ("price", "bid", "ask", "last", "volume", "change_24h", "time"),
            ("volume", "time"))


def first_bad_ticker(tickers: Sequence[cache_pb2.Ticker]) -> tuple[int, InvalidArgument] | None:
    """The index and error of the first ticker ``check_ticker`` refuses, or None."""
    for index, ticker in enumerate(tickers):
        try:
            check_ticker(ticker)
        except InvalidArgument as exc:
            return index, exc
    return None


def check_order(order: cache_pb2.Order) -> None:
    """An order record: ids, enums of proto/cache/v1/cache.proto, finite non-negative quantities."""
    require_id("order.order_id", order.order_id)
    require_id("order.user_id", order.user_id)
    require_id("order.exchange", order.exchange)
    require_id("order.symbol", order.symbol)
    if order.bot_id:
        require_id("order.bot_id", order.bot_id)
    _enum("order.side", order.side, ORDER_SIDES)
    _enum("order.order_type", order.order_type, ORDER_TYPES)
    _enum("order.status", order.status, ORDER_STATUSES)
    quantities = ("price", "amount", "filled", "created_at", "updated_at")
    _finite("order", order, quantities, quantities)


def check_bot(bot: cache_pb2.Bot) -> None:
    """A bot record: ids, status enum, finite numbers."""
    require_id("bot.bot_id", bot.bot_id)
    require_id("bot.user_id", bot.user_id)
    _enum("bot.status", bot.status, BOT_STATUSES)
    _finite("bot", bot, ("pnl", "updated_at"), ("updated_at",))


def list_limit(limit: int, default: int = LIST_LIMIT_DEFAULT) -> int:
    """A list call's limit (ListOrders, ListTrades, ListCandles): 0 means ``default``;
    negative or above the maximum is an error."""
    if limit < 0 or limit > LIST_LIMIT_MAX:
        raise InvalidArgument(f"limit must be between 0 and {LIST_LIMIT_MAX}; got {limit}")
    return limit or default


def require_seq(value: str, name: str = "resume_from") -> SeqKey:
    """A client's stream id ("<ms>-<n>" or "<ms>") as a comparable pair, else InvalidArgument."""
    key = parse_seq(value)
    if key is None:
        raise InvalidArgument(f"{name} must be a stream id like '1700000000000-0'; got {value!r}")
    return key
