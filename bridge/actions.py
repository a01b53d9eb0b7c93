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
    def refresh(self, token: str) -> float | None: ...


Handler = Callable[[Client, Request], Awaitable[Reply | None]]


async def ping(client: Client, request: Request) -> Reply:
    check_known(request.params, ())
    return Reply(pong_frame(request.request_id, time.time()), "pong")


async def get_ticker(client: Client, request: Request) -> Reply:
    check_known(request.params, ("exchange", "symbol"))
    message = pb.GetTickerRequest(exchange=req_str(request.params, "exchange"),
                                  symbol=req_str(request.params, "symbol"))
    ticker = await client.call("GetTicker", message)
    return ok(request, entity_to_dict(ticker))


async def list_tickers(client: Client, request: Request) -> Reply:
    check_known(request.params, ("exchange", "symbols"))
    message = pb.ListTickersRequest(exchange=opt_str(request.params, "exchange") or "",
                                    symbols=list(opt_str_list(request.params, "symbols") or ()))
    reply = await client.call("ListTickers", message)
    return ok(request, [entity_to_dict(t) for t in reply.tickers])


async def get_owned(client: Client, request: Request, id_name: str, method: str,
                    message_type: Callable[..., Message]) -> Reply:
    """Get one order or bot by id; another user's is NOT_FOUND, exactly like a missing one."""
    check_known(request.params, (id_name,))
    key = req_str(request.params, id_name)
    entity = await client.call(method, message_type(**{id_name: key}))
    if not visible(client.identity, entity):
        raise BridgeError(NOT_FOUND, f"{id_name.removesuffix('_id')} {key!r} not found")
    return ok(request, entity_to_dict(entity))


async def get_order(client: Client, request: Request) -> Reply:
    return await get_owned(client, request, "order_id", "GetOrder", pb.GetOrderRequest)


async def list_orders(client: Client, request: Request) -> Reply:
    params = request.params
    check_known(params, ("status", "symbol", "bot_id", "limit"))
    message = pb.ListOrdersRequest(
        status=opt_choice(params, "status", ORDER_STATUSES) or "",
        symbol=opt_str(params, "symbol") or "", bot_id=opt_str(params, "bot_id") or "",
        limit=opt_int(params, "limit", 1, MAX_LIST_LIMIT) or 0)
    reply = await client.call("ListOrders", message)
    return ok(request, [entity_to_dict(o) for o in reply.orders if visible(client.identity, o)])


async def get_bot(client: Client, request: Request) -> Reply:
    return await get_owned(client, request, "bot_id", "GetBot", pb.GetBotRequest)


async def list_bots(client: Client, request: Request) -> Reply:
    check_known(request.params, ())
    reply = await client.call("ListBots", pb.ListBotsRequest())
    return ok(request, [entity_to_dict(b) for b in reply.bots if visible(client.identity, b)])


async def get_book(client: Client, request: Request) -> Reply:
    """The book cut to ``depth`` (default 10), with its checksum; ``stale: true`` when it no
    longer matches the exchange (waiting for the publisher's snapshot)."""
    check_known(request.params, ("exchange", "symbol", "depth"))
    params = market_params(request.params, ("symbol", "depth"))
    book = await client.call("GetBook", pb.GetBookRequest(
        exchange=req_str(request.params, "exchange"), symbol=params["symbol"], depth=params["depth"]))
    return ok(request, book_channel.encode(book))


async def list_trades(client: Client, request: Request) -> Reply:
    """Recent trades, newest last (``limit``, default 50)."""
    check_known(request.params, ("exchange", "symbols", "limit"))
    limit = market_params(request.params, ("limit",))["limit"]
    reply = await client.call("ListTrades", pb.ListTradesRequest(
        exchange=req_str(request.params, "exchange"),
        symbols=list(opt_str_list(request.params, "symbols") or ()), limit=limit or SNAPSHOT_TRADES))
    return ok(request, [entity_to_dict(t) for t in reply.trades])


async def list_candles(client: Client, request: Request) -> Reply:
    """The last candles of a series, oldest first (``limit``, default 100); the last may be open."""
    check_known(request.params, ("exchange", "symbol", "interval", "limit"))
    params = market_params(request.params, ("symbol", "interval", "limit"))
    reply = await client.call("ListCandles", pb.ListCandlesRequest(
        exchange=req_str(request.params, "exchange"), symbol=params["symbol"],
        interval=params["interval"], limit=params["limit"] or SNAPSHOT_CANDLES))
    return ok(request, [entity_to_dict(c) for c in reply.candles])


async def refresh(client: Client, request: Request) -> Reply:
    """A fresh token for the same user: the connection now lives until its ``exp``
    (bridge.token_life); a token for someone else, or one that does not verify, is FORBIDDEN
    and the connection keeps its old ``exp``."""
    check_known(request.params, ("token",))
    token = request.params.get("token")
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
        raise bad_params(f"'token' is required: a JWT string of at most {MAX_TOKEN} characters")
    return ok(request, {"expires_at": client.refresh(token)})


async def subscribe(client: Client, request: Request) -> None:
    """``subscribe`` and its ``stream_<channel>`` aliases; the set-up queues the response
    itself, before it replays and releases (:mod:`bridge.subscribe`)."""
    await client.subscriptions.subscribe(request)


async def unsubscribe(client: Client, request: Request) -> Reply:
    check_known(request.params, ("subscription_id",))
    sub_id = req_str(request.params, "subscription_id")
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
