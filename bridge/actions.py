"""The action table: request name -> handler, and what each handler does.

Handlers validate their params (``INVALID_PARAMS`` with a clear message), call the cache
service as the client (its user id and scope in metadata), and return the reply frame. Errors
are raised as :class:`bridge.errors.BridgeError`; the connection turns them into responses.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from google.protobuf.message import Message

from bridge.auth import Identity
from bridge.channels import CHANNELS
from bridge.codec import entity_to_dict
from bridge.errors import NOT_FOUND, BridgeError
from bridge.events import Event
from bridge.fanout import GAP, GapMarker, LiveMarker
from bridge.lanes import contain
from bridge.protocol import (
    CHANNEL_ALIASES,
    MAX_LIST_LIMIT,
    ORDER_STATUSES,
    Request,
    check_known,
    opt_choice,
    opt_int,
    opt_str,
    opt_str_list,
    pong_frame,
    req_str,
    response_frame,
    subscribe_params,
)
from bridge.subscriptions import Subscription, topic_for
from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.backoff import Backoff

if TYPE_CHECKING:
    from bridge.connection import Session

ReplayItem = Event | GapMarker | LiveMarker
CATCH_UP_ATTEMPTS = 5
CATCH_UP_BACKOFF_S = 0.1
CATCH_UP_BACKOFF_MAX_S = 2.0


@dataclass(frozen=True)
class Reply:
    """A frame to send back and its type (for ``bridge_messages_sent_total``)."""

    frame: str
    kind: str = "response"


Handler = Callable[["Session", Request], Awaitable["Reply | None"]]


def ok(request: Request, result: Any) -> Reply:
    return Reply(response_frame(request.action, request.request_id, result))


def visible(identity: Identity, entity: Message) -> bool:
    """A user sees only their own orders and bots (admins see all); checked even though the
    service scopes by metadata too, so a mistake on either side cannot leak another user's data."""
    return identity.is_admin or getattr(entity, "user_id", identity.user_id) == identity.user_id


async def ping(session: Session, request: Request) -> Reply:
    check_known(request.params, ())
    return Reply(pong_frame(request.request_id, time.time()), "pong")


async def get_ticker(session: Session, request: Request) -> Reply:
    check_known(request.params, ("exchange", "symbol"))
    message = pb.GetTickerRequest(exchange=req_str(request.params, "exchange"),
                                  symbol=req_str(request.params, "symbol"))
    ticker = await session.call("GetTicker", message)
    return ok(request, entity_to_dict(ticker))


async def list_tickers(session: Session, request: Request) -> Reply:
    check_known(request.params, ("exchange", "symbols"))
    message = pb.ListTickersRequest(exchange=opt_str(request.params, "exchange") or "",
                                    symbols=list(opt_str_list(request.params, "symbols") or ()))
    reply = await session.call("ListTickers", message)
    return ok(request, [entity_to_dict(t) for t in reply.tickers])


async def get_owned(session: Session, request: Request, id_name: str, method: str,
                    message_type: Callable[..., Message]) -> Reply:
    """Get one order or bot by id; another user's is NOT_FOUND, exactly like a missing one."""
    check_known(request.params, (id_name,))
    key = req_str(request.params, id_name)
    entity = await session.call(method, message_type(**{id_name: key}))
    if not visible(session.identity, entity):
        raise BridgeError(NOT_FOUND, f"{id_name.removesuffix('_id')} {key!r} not found")
    return ok(request, entity_to_dict(entity))


async def get_order(session: Session, request: Request) -> Reply:
    return await get_owned(session, request, "order_id", "GetOrder", pb.GetOrderRequest)


async def list_orders(session: Session, request: Request) -> Reply:
    params = request.params
    check_known(params, ("status", "symbol", "bot_id", "limit"))
    message = pb.ListOrdersRequest(
        status=opt_choice(params, "status", ORDER_STATUSES) or "",
        symbol=opt_str(params, "symbol") or "", bot_id=opt_str(params, "bot_id") or "",
        limit=opt_int(params, "limit", 1, MAX_LIST_LIMIT) or 0)
    reply = await session.call("ListOrders", message)
    return ok(request, [entity_to_dict(o) for o in reply.orders if visible(session.identity, o)])


async def get_bot(session: Session, request: Request) -> Reply:
    return await get_owned(session, request, "bot_id", "GetBot", pb.GetBotRequest)


async def list_bots(session: Session, request: Request) -> Reply:
    check_known(request.params, ())
    reply = await session.call("ListBots", pb.ListBotsRequest())
    return ok(request, [entity_to_dict(b) for b in reply.bots if visible(session.identity, b)])


async def unsubscribe(session: Session, request: Request) -> Reply:
    check_known(request.params, ("subscription_id",))
    sub_id = req_str(request.params, "subscription_id")
    session.drop_subscription(session.book.remove(sub_id))
    return ok(request, {"subscription_id": sub_id})


async def subscribe(session: Session, request: Request) -> Reply | None:
    """Attach to the shared topic first, then snapshot/catch up, then release held events.

    Attaching first means no event written while the snapshot or replay is in flight is lost;
    events are held (not sent) until the response is queued, and the merge drops any event the
    replay already delivered (by seq), so the client sees no duplicates either. The result's
    ``seq`` is the point after which every event is delivered: a client that reconnects before
    its first update resumes from it.
    """
    params = subscribe_params(request.params, CHANNEL_ALIASES.get(request.action))
    identity = session.identity
    sub = session.add_subscription(params, topic_for(params, identity.user_id, identity.is_admin))
    replay: AsyncIterator[ReplayItem] | None = None
    first: ReplayItem | None = None
    sub.catching_up = params.resume_from is not None
    try:
        topic = await session.app.fanout.attach(session, sub, identity)
        start = params.resume_from or topic.last_seq
        if params.resume_from is not None:
            replay = session.app.fanout.catch_up(sub, identity, params.resume_from)
            first = await anext(replay, None)
        snapshot = await snapshot_of(session, sub) if params.snapshot else []
    except BaseException:
        session.forget_subscription(sub)
        if replay is not None:
            await replay.aclose()  # type: ignore[attr-defined]
        raise
    session.send(ok(request, {"subscription_id": sub.id, "channel": sub.channel,
                              "snapshot": snapshot, "recovered": first is not GAP,
                              "seq": start}))
    try:
        if replay is not None:
            await replay_into(session, sub, first, replay, params.resume_from or "")
        session.release(sub)
    except Exception:   # a delivery bug after the response went out: this client, 1011
        contain(session.app.metrics, session, sub, "replay")
    return None


async def replay_into(session: Session, sub: Subscription, first: ReplayItem | None,
                      replay: AsyncIterator[ReplayItem], resume_from: str) -> None:
    """Deliver catch-up events, pacing on the client's backlog so a long replay cannot overflow.

    Replayed events are never conflated (SPEC §9.3): they queue behind the ``subscribe``
    response, and a client resuming after 4 missed updates of 2 symbols gets all 4.

    The replay ends at the service's live point, or later when live events held meanwhile had
    to be discarded (more than ``--max-backlog``): the catch-up stream reads the same Redis
    stream, so it keeps going until it has delivered the newest discarded event itself; the
    held events after that are merged by :meth:`Session.release`. No loss, no duplicates, and
    no 1013 loop for a client resuming under heavy traffic.

    A catch-up stream that breaks (the service ends streams that fall behind; a replica
    restarts) is re-opened from the last event delivered, a few times with backoff; only when
    that fails, or the service reports a gap on re-opening, is the client told
    ``recovered: false`` (``interrupted`` then ``resumed``) before going live.
    """
    lost = False
    backoff = Backoff(CATCH_UP_BACKOFF_S, CATCH_UP_BACKOFF_MAX_S)
    try:
        for attempt in range(CATCH_UP_ATTEMPTS + 1):
            try:
                # The response already told the client about a gap in ``first``.
                pending = [first] if isinstance(first, Event | LiveMarker) else []
                live = False
                while (item := pending.pop() if pending else await anext(replay, None)) is not None:
                    if isinstance(item, LiveMarker):
                        live = True
                    elif isinstance(item, GapMarker):
                        lost = True
                    elif sub.matches(item):
                        await session.writable()
                        session.deliver_now(sub, item, conflate=False)
                    if live and sub.caught_up():
                        break
                break
            except BridgeError:
                if attempt == CATCH_UP_ATTEMPTS or session.closing is not None:
                    lost = True
                    break
            await replay.aclose()  # type: ignore[attr-defined]
            await asyncio.sleep(backoff.delay())
            replay = session.app.fanout.catch_up(sub, session.identity, sub.last_seq or resume_from)
            first = None
    finally:
        await replay.aclose()  # type: ignore[attr-defined]
    if lost:
        session.stream_status(sub, "interrupted", False)
        session.stream_status(sub, "resumed", False)


async def snapshot_of(session: Session, sub: Subscription) -> list[dict[str, Any]]:
    """Current state for a new subscription, through the same filters as its updates."""
    channel = CHANNELS[sub.channel]
    reply = await session.call(channel.list_method, channel.list_request(sub))
    result = []
    for entity in getattr(reply, channel.list_field):
        symbol, bot_id = channel.keys(entity)
        if sub.accepts(symbol, bot_id) and visible(session.identity, entity):
            result.append(entity_to_dict(entity))
    return result


ACTIONS: dict[str, Handler] = {
    "ping": ping,
    "get_ticker": get_ticker,
    "list_tickers": list_tickers,
    "get_order": get_order,
    "list_orders": list_orders,
    "get_bot": get_bot,
    "list_bots": list_bots,
    "subscribe": subscribe,
    "unsubscribe": unsubscribe,
    **{alias: subscribe for alias in CHANNEL_ALIASES},
}
