"""The action table: request name -> handler, and what each handler does.

Handlers validate their params (``INVALID_PARAMS`` with a clear message), call the cache
service as the client (its user id and scope in metadata), and return the reply frame. Errors
are raised as :class:`bridge.errors.BridgeError`; the session turns them into responses. A
handler sees the session only through :class:`Client`: who the client is, a unary call as that
client, and its subscriptions (:mod:`bridge.subscribe`), so each one is readable, and testable,
on its own.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from google.protobuf.message import Message

from bridge.auth import Identity
from bridge.channels import ALIASES
from bridge.channels import book as book_channel
from bridge.channels.candles import SNAPSHOT_CANDLES
from bridge.channels.trades import SNAPSHOT_TRADES
from bridge.channels.base import visible
from bridge.codec import entity_to_dict
from bridge.errors import NOT_FOUND, BridgeError
from bridge.protocol import (
    MAX_LIST_LIMIT,
    ORDER_STATUSES,
    Reply,
    Request,
    bad_params,
    check_known,
    is_unicode,
    market_params,
    ok,
    opt_choice,
    opt_int,
    opt_str,
    opt_str_list,
    pong_frame,
    req_str,
)
from marketbridge.api.v1 import cache_pb2 as pb

if TYPE_CHECKING:
    from bridge.subscribe import Subscriptions

MAX_TOKEN = 8192   # a refresh's JWT (RS256 tokens with many claims run to a few KiB)


class Client(Protocol):
    """What an action needs from a session."""

    identity: Identity
    subscriptions: Subscriptions

    async def call(self, method: str, request: Message) -> Any: ...
    async def refresh(self, token: str) -> float | None: ...


Handler = Callable[[Client, Request], Awaitable[Reply | None]]


Params = Mapping[str, Any]

# ------------------------------------------------------------------ params
# Each action's params, validated into what goes upstream by a plain function (sans-I/O), so
# tests/bridge/test_fuzz_protocol.py throws any JSON at every one of them directly. Building
# the protobuf message is part of it: a value protobuf refuses must be INVALID_PARAMS here,
# not an INTERNAL error in the middle of a call.


def no_params(params: Params) -> None:
    """``ping`` and ``list_bots`` take none: any name is unknown, so a typo is refused."""
    check_known(params, ())


def ticker_request(params: Params) -> pb.GetTickerRequest:
    check_known(params, ("exchange", "symbol"))
    return pb.GetTickerRequest(exchange=req_str(params, "exchange"),
                               symbol=req_str(params, "symbol"))


def tickers_request(params: Params) -> pb.ListTickersRequest:
    check_known(params, ("exchange", "symbols"))
    return pb.ListTickersRequest(exchange=opt_str(params, "exchange") or "",
                                 symbols=list(opt_str_list(params, "symbols") or ()))


def order_request(params: Params) -> pb.GetOrderRequest:
    check_known(params, ("order_id",))
    return pb.GetOrderRequest(order_id=req_str(params, "order_id"))


def bot_request(params: Params) -> pb.GetBotRequest:
    check_known(params, ("bot_id",))
    return pb.GetBotRequest(bot_id=req_str(params, "bot_id"))


def orders_request(params: Params) -> pb.ListOrdersRequest:
    check_known(params, ("status", "symbol", "bot_id", "limit"))
    return pb.ListOrdersRequest(
        status=opt_choice(params, "status", ORDER_STATUSES) or "",
        symbol=opt_str(params, "symbol") or "", bot_id=opt_str(params, "bot_id") or "",
        limit=opt_int(params, "limit", 1, MAX_LIST_LIMIT) or 0)


def book_request(params: Params) -> pb.GetBookRequest:
    check_known(params, ("exchange", "symbol", "depth"))
    market = market_params(params, ("symbol", "depth"))
    return pb.GetBookRequest(exchange=req_str(params, "exchange"), symbol=market["symbol"],
                             depth=market["depth"])


def trades_request(params: Params) -> pb.ListTradesRequest:
    check_known(params, ("exchange", "symbols", "limit"))
    limit = market_params(params, ("limit",))["limit"]
    return pb.ListTradesRequest(exchange=req_str(params, "exchange"),
                                symbols=list(opt_str_list(params, "symbols") or ()),
                                limit=limit or SNAPSHOT_TRADES)


def candles_request(params: Params) -> pb.ListCandlesRequest:
    check_known(params, ("exchange", "symbol", "interval", "limit"))
    market = market_params(params, ("symbol", "interval", "limit"))
    return pb.ListCandlesRequest(exchange=req_str(params, "exchange"), symbol=market["symbol"],
                                 interval=market["interval"],
                                 limit=market["limit"] or SNAPSHOT_CANDLES)


def refresh_token(params: Params) -> str:
    """The JWT of a ``refresh``: bounded, and encodable (PyJWT raises on a lone surrogate)."""
    check_known(params, ("token",))
    token = params.get("token")
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN or not is_unicode(token):
        raise bad_params(f"'token' is required: a JWT string of at most {MAX_TOKEN} characters")
    return token


def subscription_id(params: Params) -> str:
    check_known(params, ("subscription_id",))
    return req_str(params, "subscription_id")


# ------------------------------------------------------------------ handlers


async def ping(client: Client, request: Request) -> Reply:
    no_params(request.params)
    return Reply(pong_frame(request.request_id, time.time()), "pong")


async def get_ticker(client: Client, request: Request) -> Reply:
    ticker = await client.call("GetTicker", ticker_request(request.params))
    return ok(request, entity_to_dict(ticker))


async def list_tickers(client: Client, request: Request) -> Reply:
    reply = await client.call("ListTickers", tickers_request(request.params))
    return ok(request, [entity_to_dict(t) for t in reply.tickers])


async def get_owned(client: Client, request: Request, id_name: str, method: str,
                    message: Message) -> Reply:
    """Get one order or bot by id; another user's is NOT_FOUND, exactly like a missing one."""
    entity = await client.call(method, message)
    if not visible(client.identity, entity):
        key = getattr(message, id_name)
        raise BridgeError(NOT_FOUND, f"{id_name.removesuffix('_id')} {key!r} not found")
    return ok(request, entity_to_dict(entity))


async def get_order(client: Client, request: Request) -> Reply:
    return await get_owned(client, request, "order_id", "GetOrder", order_request(request.params))


async def list_orders(client: Client, request: Request) -> Reply:
    reply = await client.call("ListOrders", orders_request(request.params))
    return ok(request, [entity_to_dict(o) for o in reply.orders if visible(client.identity, o)])


async def get_bot(client: Client, request: Request) -> Reply:
    return await get_owned(client, request, "bot_id", "GetBot", bot_request(request.params))


async def list_bots(client: Client, request: Request) -> Reply:
    no_params(request.params)
    reply = await client.call("ListBots", pb.ListBotsRequest())
    return ok(request, [entity_to_dict(b) for b in reply.bots if visible(client.identity, b)])


async def get_book(client: Client, request: Request) -> Reply:
    """The book cut to ``depth`` (default 10), with its checksum; ``stale: true`` when it no
    longer matches the exchange (waiting for the publisher's snapshot)."""
    book = await client.call("GetBook", book_request(request.params))
    return ok(request, book_channel.encode(book))


async def list_trades(client: Client, request: Request) -> Reply:
    """Recent trades, newest last (``limit``, default 50)."""
    reply = await client.call("ListTrades", trades_request(request.params))
    return ok(request, [entity_to_dict(t) for t in reply.trades])


async def list_candles(client: Client, request: Request) -> Reply:
    """The last candles of a series, oldest first (``limit``, default 100); the last may be open."""
    reply = await client.call("ListCandles", candles_request(request.params))
    return ok(request, [entity_to_dict(c) for c in reply.candles])


async def refresh(client: Client, request: Request) -> Reply:
    """A fresh token for the same user: the connection now lives until its ``exp``
    (bridge.token_life); a token for someone else, or one that does not verify, is FORBIDDEN
    and the connection keeps its old ``exp``."""
    return ok(request, {"expires_at": await client.refresh(refresh_token(request.params))})


async def subscribe(client: Client, request: Request) -> None:
    """``subscribe`` and its ``stream_<channel>`` aliases; the set-up queues the response
    itself, before it replays and releases (:mod:`bridge.subscribe`)."""
    await client.subscriptions.subscribe(request)


async def unsubscribe(client: Client, request: Request) -> Reply:
    sub_id = subscription_id(request.params)
    client.subscriptions.unsubscribe(sub_id)
    return ok(request, {"subscription_id": sub_id})


ACTIONS: Mapping[str, Handler] = {
    "ping": ping,
    "get_ticker": get_ticker,
    "list_tickers": list_tickers,
    "get_order": get_order,
    "list_orders": list_orders,
    "get_bot": get_bot,
    "list_bots": list_bots,
    "get_book": get_book,
    "list_trades": list_trades,
    "list_candles": list_candles,
    "refresh": refresh,
    "subscribe": subscribe,
    "unsubscribe": unsubscribe,
    **{alias: subscribe for alias in ALIASES},
}
