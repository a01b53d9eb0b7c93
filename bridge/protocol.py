"""The WebSocket protocol v1 (docs/protocol.md) as plain functions: parse requests, validate params, build frames.

Nothing here touches a socket, so every rule (what a bad frame gets back, which parameter is
wrong and why) is tested directly, including with hypothesis throwing random frames at it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridge.channels import CHANNELS
from bridge.codec import dumps, loads
from bridge.errors import INVALID_MESSAGE, INVALID_PARAMS, UNKNOWN_ACTION, BridgeError
from marketbridge.market.book import DEFAULT_DEPTH, DEPTHS
from marketbridge.market.candles import INTERVALS
from marketbridge.vocabulary import ORDER_STATUSES

PROTOCOL_VERSION = 1
# ASCII digits, the whole string: ``\d`` also takes "١٧" and ``$`` a trailing "\n", which
# passed and came back in the subscribe result's ``seq`` as sent
SEQ_RE = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
MAX_FILTER_ITEMS = 1000
MAX_STRING = 256
MAX_LIST_LIMIT = 1000

RequestId = str | int | None


@dataclass(frozen=True)
class Request:
    """One parsed client request; ``params`` is still raw until the action validates it."""

    action: str
    request_id: RequestId
    params: dict[str, Any]


class ProtocolError(BridgeError):
    """A frame that is not a request; ``request_id``/``action`` are echoed when they could be read."""

    def __init__(self, code: str, message: str, request_id: RequestId = None,
                 action: str | None = None) -> None:
        super().__init__(code, message)
        self.request_id = request_id
        self.action = action


def _invalid(detail: str, request_id: RequestId = None) -> ProtocolError:
    return ProtocolError(INVALID_MESSAGE, f"Invalid message format: {detail}", request_id)


def parse_request(frame: str | bytes) -> Request:
    """Parse one client frame into a :class:`Request` or raise :class:`ProtocolError`."""
    if isinstance(frame, bytes):
        raise _invalid("binary frames are not supported, send JSON text frames")
    try:
        data = loads(frame)
    except (ValueError, TypeError, RecursionError) as exc:
        # RecursionError: the stdlib fallback decoder (bench --no-orjson) recurses per level of
        # nesting, and a 64 KiB frame of "[" is 65,536 levels (orjson stops at 1,024 itself)
        raise _invalid(f"not valid JSON ({_short(str(exc))})") from None
    if not isinstance(data, dict):
        raise _invalid(f"expected a JSON object, got {_json_type(data)}")
    request_id = data.get("request_id")
    if request_id is not None and (isinstance(request_id, bool)
                                   or not isinstance(request_id, str | int)
                                   or isinstance(request_id, str) and not is_unicode(request_id)):
        raise _invalid("'request_id' must be a string or an integer")
    action = data.get("action")
    if not isinstance(action, str) or not action or not is_unicode(action):
        raise _invalid("'action' must be a non-empty string", request_id)
    params = data.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ProtocolError(INVALID_PARAMS, "'params' must be a JSON object", request_id, action)
    return Request(action, request_id, params)


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


# ------------------------------------------------------------------ params


def bad_params(message: str) -> BridgeError:
    return BridgeError(INVALID_PARAMS, message)


def check_known(params: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    """Unknown parameters are refused: a typo (``symbol`` for ``symbols``) must not pass silently."""
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        accepted = ", ".join(allowed) if allowed else "none"
        raise bad_params(f"unknown parameter {names} (accepted: {accepted})")


def is_unicode(text: str) -> bool:
    """Whether ``text`` can be encoded (UTF-8) to go upstream or back in a reply.

    orjson refuses a lone surrogate (``"\\ud800"``) when it parses; the stdlib fallback decoder
    lets it through, and protobuf, PyJWT and the socket then raise on it: an echoed ``action``
    made the reply unsendable, a param became an ``INTERNAL`` error instead of ``INVALID_PARAMS``.
    """
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def is_text(value: Any) -> bool:
    """A usable identifier: a non-empty, bounded string without control characters."""
    return (isinstance(value, str) and 0 < len(value) <= MAX_STRING
            and not any(ord(ch) < 32 or ord(ch) == 127 for ch in value) and is_unicode(value))


def opt_str(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not is_text(value):
        raise bad_params(f"'{name}' must be a non-empty string of at most {MAX_STRING} "
                         "characters without control characters")
    return value


def req_str(params: Mapping[str, Any], name: str) -> str:
    value = opt_str(params, name)
    if value is None:
        raise bad_params(f"'{name}' is required")
    return value


def opt_str_list(params: Mapping[str, Any], name: str) -> tuple[str, ...] | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_FILTER_ITEMS \
            or not all(is_text(item) for item in value):
        raise bad_params(f"'{name}' must be a list of at most {MAX_FILTER_ITEMS} non-empty strings")
    return tuple(dict.fromkeys(value))


def opt_bool(params: Mapping[str, Any], name: str) -> bool | None:
    value = params.get(name)
    if value is not None and not isinstance(value, bool):
        raise bad_params(f"'{name}' must be true or false")
    return value


def opt_int(params: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise bad_params(f"'{name}' must be an integer from {low} to {high}")
    return value


def opt_choice(params: Mapping[str, Any], name: str, choices: tuple[str, ...]) -> str | None:
    value = params.get(name)
    if value is not None and value not in choices:
        raise bad_params(f"'{name}' must be one of {', '.join(choices)}")
    return value


def opt_seq(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not SEQ_RE.fullmatch(value):
        raise bad_params(f"'{name}' must be a sequence id like \"1700000000000-0\" (from an update's seq)")
    return value


@dataclass(frozen=True)
class SubscribeParams:
    """A validated subscription request."""

    channel: str
    exchange: str | None = None
    symbols: tuple[str, ...] | None = None
    bot_ids: tuple[str, ...] | None = None
    resume_from: str | None = None
    snapshot: bool = True
    symbol: str | None = None        # book, candles: the one symbol of the topic
    interval: str | None = None      # candles
    depth: int | None = None         # book (default 10)
    limit: int | None = None         # trades, candles: how many the snapshot holds


def subscribe_params(params: Mapping[str, Any], implied: str | None = None) -> SubscribeParams:
    """Validate ``subscribe`` (or an alias, whose channel is ``implied``); which filters a
    channel takes is its own (:attr:`bridge.channels.base.Channel.filters`).

    ``snapshot`` defaults to true, except with ``resume_from``: a resuming client already holds
    the state and asked for the missed events, so the snapshot is only sent when asked for.
    """
    names = tuple(CHANNELS)
    name = implied or opt_choice(params, "channel", names)
    if name is None:
        raise bad_params(f"'channel' is required (one of {', '.join(names)})")
    if implied and params.get("channel", implied) != implied:
        raise bad_params(f"'channel' must be {implied!r} for this action")
    channel = CHANNELS[name]
    check_known(params, ("channel", *channel.filters, "resume_from", "snapshot"))
    exchange = req_str(params, "exchange") if channel.requires_exchange else None
    resume_from = opt_seq(params, "resume_from")
    snapshot = opt_bool(params, "snapshot")
    market = market_params(params, channel.filters)
    return SubscribeParams(
        channel=name, exchange=exchange, symbols=opt_str_list(params, "symbols"),
        bot_ids=opt_str_list(params, "bot_ids"), resume_from=resume_from,
        snapshot=(resume_from is None) if snapshot is None else snapshot, **market,
    )


def market_params(params: Mapping[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    """The market-data params a channel or action takes (``allowed``), validated: ``symbol``
    (required where allowed), ``interval`` (required), ``depth`` and ``limit``."""
    found: dict[str, Any] = {}
    if "symbol" in allowed:
        found["symbol"] = req_str(params, "symbol")
    if "interval" in allowed:
        found["interval"] = opt_choice(params, "interval", tuple(INTERVALS))
        if found["interval"] is None:
            raise bad_params(f"'interval' is required (one of {', '.join(INTERVALS)})")
    if "depth" in allowed:
        depth = params.get("depth", DEFAULT_DEPTH)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth not in DEPTHS:
            raise bad_params(f"'depth' must be one of {', '.join(str(d) for d in sorted(DEPTHS))}")
        found["depth"] = depth
    if "limit" in allowed:
        found["limit"] = opt_int(params, "limit", 1, MAX_LIST_LIMIT)
    return found


HEARTBEAT_RANGE_S = (1, 60)


def parse_heartbeat_s(value: str | None) -> int | None:
    """The ``?heartbeat_s=N`` connection option (SPEC §9.3): None (no heartbeats) or 1..60."""
    if value is None or value == "":
        return None
    low, high = HEARTBEAT_RANGE_S
    if not value.isdigit() or not low <= int(value) <= high:
        raise ValueError(f"heartbeat_s must be an integer from {low} to {high}")
    return int(value)


def parse_batch_ms(value: str | None, limit: int) -> int | None:
    """The ``?batch_ms=N`` connection option: None (no batching) or 1..``limit``."""
    if value is None or value == "":
        return None
    if not value.isdigit() or not 1 <= int(value) <= limit:
        raise ValueError(f"batch_ms must be an integer from 1 to {limit}")
    return int(value)


# ------------------------------------------------------------------ frames


@dataclass(frozen=True)
class Reply:
    """A frame to send back and its type (for ``bridge_messages_sent_total``)."""

    frame: str
    kind: str = "response"


def ok(request: Request, result: Any) -> Reply:
    """The successful response to ``request``."""
    return Reply(response_frame(request.action, request.request_id, result))


FEATURES = ("book", "trades", "candles", "heartbeat", "refresh")   # of SPEC §9's list, what this version serves


def welcome_frame(session_id: str, limits: Mapping[str, Any]) -> str:
    return dumps({"type": "connection", "status": "connected", "session_id": session_id,
                  "protocol": PROTOCOL_VERSION, "features": list(FEATURES), "limits": dict(limits)})


def response_frame(action: str, request_id: RequestId, result: Any) -> str:
    return dumps({"type": "response", "action": action, "request_id": request_id,
                  "success": True, "result": result})


def error_response_frame(action: str, request_id: RequestId, code: str, message: str) -> str:
    return dumps({"type": "response", "action": action, "request_id": request_id,
                  "success": False, "error": {"code": code, "message": message}})


def error_frame(code: str, message: str, request_id: RequestId = None) -> str:
    """An error not tied to an action (the frame could not be read as a request)."""
    frame: dict[str, Any] = {"type": "error", "success": False,
                             "error": {"code": code, "message": message}}
    if request_id is not None:
        frame["request_id"] = request_id
    return dumps(frame)


def protocol_error_frame(error: ProtocolError) -> str:
    """The reply to a :class:`ProtocolError`: a response when the action is known, else ``error``."""
    if error.action is not None:
        return error_response_frame(error.action, error.request_id, error.code, error.message)
    return error_frame(error.code, error.message, error.request_id)


def unknown_action_error(request: Request) -> ProtocolError:
    return ProtocolError(UNKNOWN_ACTION, f"Unknown action {_short(request.action, 64)!r}",
                         request.request_id, request.action)


def token_expiring_frame(expires_at: float) -> str:
    return dumps({"type": "token_expiring", "expires_at": expires_at})


def heartbeat_frame(server_time: float) -> str:
    return dumps({"type": "heartbeat", "server_time": server_time})


def pong_frame(request_id: RequestId, server_time: float) -> str:
    return dumps({"type": "pong", "request_id": request_id, "server_time": server_time})


def stream_status_frame(subscription_id: str, status: str, recovered: bool) -> str:
    return dumps({"type": "stream_status", "subscription_id": subscription_id,
                  "status": status, "recovered": recovered})

