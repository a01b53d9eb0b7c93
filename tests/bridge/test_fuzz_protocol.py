r"""Fuzzing the frame parser and every action's params with hypothesis (issue 16).

The property, for any frame and any params: nothing but a :class:`~bridge.protocol.Request`
or an error with a SPEC §4 code comes out of the sans-I/O layer (``bridge/protocol.py`` and
the params validators of ``bridge/actions.py``), and the reply that error becomes is a JSON
object that can go on the socket (UTF-8 encodable). Anything else raised would cost the
client an ``INTERNAL`` (a handler) or its connection (the parser runs in the read loop).

Bounded and repeatable: ``derandomize=True`` (the same examples on every run, so CI cannot go
red by luck), no example database, and example counts that keep the file to a few seconds on
a 2-core machine. Bugs found, fixed in bridge/protocol.py and bridge/actions.py, and kept as
``@example`` regressions:

- ``resume_from`` passed as ``"1-0\n"`` or in other digits (``"\u0661-\u0660"``): ``\d`` and
  ``$`` are lax; the value came back in the subscribe result's ``seq``.
- A lone surrogate (``"\ud800"``, which the stdlib fallback decoder lets through) in an id or
  a token passed validation, then protobuf or PyJWT raised (``INTERNAL``); in ``action`` it
  made the reply unsendable.
- Under the fallback decoder, deep nesting raised ``RecursionError`` out of the parser, that
  is out of the connection's read loop.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bridge import actions
from bridge.channels import ALIASES, CHANNELS
from bridge.errors import BridgeError
from bridge.protocol import (
    ProtocolError,
    SubscribeParams,
    error_response_frame,
    parse_request,
    protocol_error_frame,
    response_frame,
    subscribe_params,
    unknown_action_error,
)
from tests.factories.requests import ACTION_PARAMS, SPEC_CODES, SUBSCRIBE_PARAMS, alias_params

ROOT = Path(__file__).resolve().parents[2]
Validator = Callable[[Mapping[str, Any]], object]

# Every action's params validator: what its handler runs before any upstream call.
VALIDATORS: dict[str, Validator] = {
    "ping": actions.no_params, "get_ticker": actions.ticker_request,
    "list_tickers": actions.tickers_request, "get_order": actions.order_request,
    "list_orders": actions.orders_request, "get_bot": actions.bot_request,
    "list_bots": actions.no_params, "get_book": actions.book_request,
    "list_trades": actions.trades_request, "list_candles": actions.candles_request,
    "refresh": actions.refresh_token, "unsubscribe": actions.subscription_id,
    "subscribe": subscribe_params,
    **{alias: partial(subscribe_params, implied=channel.name)
       for alias, channel in ALIASES.items()},
}
# What the sans-I/O layer may answer; the other SPEC codes need the cache service or a limit.
PARSE_CODES = frozenset({"INVALID_MESSAGE", "UNKNOWN_ACTION", "INVALID_PARAMS"})
assert PARSE_CODES <= SPEC_CODES
ASCII_SEQ = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
ACTION_NAME = re.compile(r"ping|refresh|(un)?subscribe|(get|list|stream)_[a-z]+")

# 300 examples a test: 2-4 s each here, 5-10 s under coverage on a loaded 2-core machine
FUZZ = settings(max_examples=300, deadline=timedelta(seconds=2), derandomize=True,
                database=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ strategies

# Every code point, lone surrogates included (st.text leaves them out by default): the stdlib
# fallback decoder hands them to the validators, and json.dumps escapes them into frames.
ANY_CHAR = st.characters(codec=None) | st.characters(categories=["Cs"])
NASTY_TEXT = st.sampled_from(["", "\n", " ", "\x00", "\u202eRTL\u202c", "\ud800", "\udfff",
                              "\U0001f4a5", "\ufeff", "a\nb", "1-0\n", "\u0661-\u0660",
                              "BTC/USDT\x7f"])
LONG_TEXT = st.tuples(st.sampled_from("aé\u202e\U0001f4a5"), st.integers(200, 70_000)).map(
    lambda pair: pair[0] * pair[1])
TEXT = st.text(ANY_CHAR, max_size=12) | NASTY_TEXT | LONG_TEXT
HUGE_INTS = st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**400])
NUMBERS = (st.integers() | HUGE_INTS
           | st.floats(allow_nan=True, allow_infinity=True))   # json.dumps writes NaN, Infinity
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT
JSON_VALUES = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(TEXT, kids, max_size=4), max_leaves=10)
ODD_NAMES = ["", "x", "Symbol", "exchange ", "params", "request_id", "\ud800", "\x00"]


def nested(depth: int, kind: str) -> str:
    """JSON nested ``depth`` levels deep (orjson stops at 1,024; a 64 KiB frame holds 65,536)."""
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


DEEP = st.builds(nested, st.integers(1, 70_000), st.sampled_from(["array", "object"]))
LITERALS = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400,
                            str(2**64), str(2**64 - 1), str(-(2**63) - 1), '"\\ud800"',
                            '"\\udfff\\ud800"', '"\\u0000"', "01", "+1", ".5", "tru"])


# What a lax seq pattern lets through: any Unicode digits ("\u0661"), a trailing newline
SEQ_LIKE = st.from_regex(r"^\d{1,20}-\d{1,20}$")


def twisted(value: Any) -> st.SearchStrategy[Any]:
    """A valid value with a twist: a string with something before or after it (a newline, a
    surrogate, a control or bidi character), a seq id of the wrong digits, a list with one
    more item."""
    if isinstance(value, str):
        affixed = st.tuples(NASTY_TEXT | TEXT, st.booleans()).map(
            lambda t: value + t[0] if t[1] else t[0] + value)
        return SEQ_LIKE | affixed if ASCII_SEQ.fullmatch(value) else affixed
    if isinstance(value, list):
        return st.lists(NASTY_TEXT | TEXT, min_size=1, max_size=2).map(lambda more: value + more)
    return SCALARS


def with_template(template: Mapping[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``template`` broken one way or another, mostly near enough to reach deep into
    validation: at most one valid param left out, one set to another value (most often the
    valid one twisted; else any string, scalar or JSON; ``None`` and valid values among them,
    so passing params are fuzzed too), and mostly nothing more, since an unknown name stops
    validation at once; else up to two more names, odd or known, with any JSON value."""
    names = sorted(template)
    more = st.dictionaries(st.sampled_from(names + ODD_NAMES) | TEXT, JSON_VALUES, max_size=2)
    if not names:
        return st.just({}) | more
    dropped = st.sets(st.sampled_from(names), max_size=1)
    change = st.sampled_from(names).flatmap(lambda name: st.tuples(st.just(name), st.one_of(
        twisted(template[name]), twisted(template[name]), TEXT, SCALARS, JSON_VALUES)))
    extra: st.SearchStrategy[dict[str, Any]] = st.one_of(st.just({}), st.just({}), more)
    return st.tuples(dropped, change, extra).map(lambda t: {
        **{n: template[n] for n in names if n not in t[0]}, t[1][0]: t[1][1], **t[2]})


def templates(action: str) -> list[dict[str, Any]]:
    """Valid params of ``action``: one per channel for subscribe and its aliases."""
    if action == "subscribe":
        return list(SUBSCRIBE_PARAMS.values())
    if action in ALIASES:
        return [alias_params(ALIASES[action].name)]
    return [ACTION_PARAMS[action]]


def action_params() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """An action of ``VALIDATORS`` and params for it, near its valid ones."""
    return st.sampled_from(sorted(VALIDATORS)).flatmap(
        lambda action: st.tuples(st.just(action), st.sampled_from(templates(action)).flatmap(
            with_template)))


def request_like() -> st.SearchStrategy[str]:
    """A frame shaped like a request: a real or odd action, any request_id, any params."""
    actions_ = st.sampled_from(sorted(VALIDATORS)) | st.sampled_from(["", "PING", "ping "]) | TEXT
    request_ids = st.none() | st.integers() | HUGE_INTS | TEXT | JSON_VALUES
    params = action_params().map(lambda pair: pair[1]) | JSON_VALUES
    frame = st.fixed_dictionaries({"action": actions_ | JSON_VALUES},
                                  optional={"request_id": request_ids, "params": params})
    return frame.map(json.dumps)


def spliced() -> st.SearchStrategy[str]:
    """A request whose request_id or a param is raw JSON text json.dumps cannot write."""
    raw = LITERALS | DEEP
    return st.tuples(st.sampled_from(sorted(VALIDATORS)), raw, st.booleans()).map(
        lambda t: (f'{{"action":"{t[0]}","request_id":{t[1]}}}' if t[2]
                   else f'{{"action":"{t[0]}","params":{{"exchange":{t[1]},"limit":{t[1]}}}}}'))


# request-shaped frames twice over: the rest stops at the parser, they go on into the params
FRAMES = st.one_of(st.binary(max_size=64), st.text(ANY_CHAR, max_size=64),
                   JSON_VALUES.map(json.dumps), DEEP, LITERALS, spliced(), request_like(),
                   request_like())

# ------------------------------------------------------------------ the property


def check_reply(frame: str, code: str | None) -> None:
    """A reply the bridge would send: UTF-8 encodable, a JSON object with a type, the code."""
    reply = json.loads(frame.encode("utf-8"))
    assert isinstance(reply, dict) and reply["type"] in ("error", "response"), reply
    if code is not None:
        assert reply["error"]["code"] == code


def outcome(frame: str | bytes) -> str:
    """What the dispatcher answers ``frame`` before any upstream call: a code, or ``ok``
    (handed to the action's handler). Raises only if the property breaks."""
    try:
        request = parse_request(frame)
    except ProtocolError as exc:
        assert exc.code in PARSE_CODES, exc.code
        check_reply(protocol_error_frame(exc), exc.code)
        return exc.code
    assert isinstance(request.action, str) and request.action and isinstance(request.params, dict)
    assert request.request_id is None or type(request.request_id) in (str, int)
    validator = VALIDATORS.get(request.action)
    if validator is None:
        error = unknown_action_error(request)
        check_reply(protocol_error_frame(error), error.code)
        return error.code
    code = validate(request.action, request.params)
    if code is None:
        check_reply(response_frame(request.action, request.request_id, {}), None)
        return "ok"
    check_reply(error_response_frame(request.action, request.request_id, code, "m"), code)
    return code


def validate(action: str, params: Mapping[str, Any]) -> str | None:
    """Run ``action``'s validator: None when the params pass (the result is checked to be
    something the upstream call can carry), else the error's code."""
    try:
        result = VALIDATORS[action](params)
    except BridgeError as exc:
        assert exc.code == "INVALID_PARAMS" and exc.message, exc
        check_reply(error_response_frame(action, None, exc.code, exc.message), exc.code)
        return exc.code
    check_valid(result)
    return None


def check_valid(result: object) -> None:
    """What passed validation is fit to go upstream: a message protobuf serialises, a token
    and ids that encode, a resume point that is a plain seq id."""
    if isinstance(result, SubscribeParams):
        assert result.channel in CHANNELS
        assert result.resume_from is None or ASCII_SEQ.fullmatch(result.resume_from)
        names = (*(result.symbols or ()), *(result.bot_ids or ()))
        for text in (result.exchange, result.symbol, *names):
            assert text is None or text.encode()
    elif isinstance(result, str):
        assert result.encode()
    elif result is not None:
        result.SerializeToString()  # type: ignore[attr-defined]


# ------------------------------------------------------------------ tests


def test_every_action_has_a_fuzzed_validator() -> None:
    """A new action without a validator here would go unfuzzed; docs/protocol.md's tables
    name the same actions (``refresh`` is documented in its own section, 10.6)."""
    assert set(VALIDATORS) == set(actions.ACTIONS)
    doc = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    first_cells = re.findall(r"^\| ([^|]+)\|", doc, re.MULTILINE)
    documented = {name for cell in first_cells for name in re.findall(r"`([a-z_]+)`", cell)
                  if ACTION_NAME.fullmatch(name)}
    assert documented | {"refresh"} == set(actions.ACTIONS)


def test_templates_pass_validation() -> None:
    """The strategies start from valid params, so the success path is fuzzed too."""
    for action in VALIDATORS:
        for template in templates(action):
            assert validate(action, template) is None, (action, template)


@given(st.one_of(SEQ_LIKE, TEXT, twisted("binance")),
       st.sampled_from(["resume_from", "exchange"]))
@FUZZ
def test_any_string_for_an_id_or_a_seq(value: str, name: str) -> None:
    """The string rules on their own, where a near miss is one draw away: an id that passes
    encodes (protobuf, PyJWT and the socket take only UTF-8), a seq that passes is plain
    ASCII ``<ms>-<n>`` (it comes back in the subscribe result)."""
    validate("subscribe", {"channel": "trades", "exchange": "binance", name: value})


@given(action_params())
@example(("get_ticker", {"exchange": "\ud800", "symbol": "BTC/USDT"}))   # protobuf raised
@example(("list_tickers", {"symbols": ["BTC/USDT", "\udfff"]}))
@example(("refresh", {"token": "a.\ud800.c"}))                            # PyJWT raised
@example(("subscribe", {"channel": "orders", "resume_from": "1-0\n"}))    # came back as seq
@example(("stream_trades", {"exchange": "x", "resume_from": "\u0661-\u0660"}))
@example(("get_book", {"exchange": "x", "symbol": "y", "depth": 10**400}))
@FUZZ
def test_any_params_of_any_action(case: tuple[str, dict[str, Any]]) -> None:
    """Any params: the validator passes something the upstream call can carry, or says
    INVALID_PARAMS; never another exception."""
    action, params = case
    validate(action, params)


@given(FRAMES)
@example(b"\xff\xfe\x00")
@example("[" * 65_536)
@example('{"action":"subscribe","request_id":1,'
         '"params":{"channel":"orders","resume_from":"0-0\\n"}}')
@example('{"action":"get_ticker","request_id":18446744073709551615,'
         '"params":{"exchange":"a","symbol":"b"}}')
@example('{"action":"ping","request_id":18446744073709551616}')
@FUZZ
def test_any_frame(frame: str | bytes) -> None:
    """Any frame: a request whose params pass, or one error with a SPEC code."""
    assert outcome(frame) in PARSE_CODES | {"ok"}


def test_regressions_answer_invalid_params() -> None:
    """The bugs the fuzzing found, as the frames a client would send."""
    for frame in ('{"action":"subscribe","params":{"channel":"orders","resume_from":"1-0\\n"}}',
                  '{"action":"stream_orders","params":{"resume_from":"\u0661-\u0660"}}'):
        assert outcome(frame) == "INVALID_PARAMS"


# The stdlib decoder (bench --no-orjson) accepts what orjson refuses: NaN, 1e400 (inf), lone
# surrogates, and it recurses per level of nesting.
FALLBACK_FRAMES = ["[" * 65_536, '{"a":' * 20_000 + "1" + "}" * 20_000,
                   '{"action":"ping","request_id":NaN}', '{"action":"x\\ud800"}',
                   '{"action":"ping","request_id":"\\ud800"}',
                   '{"action":"get_ticker","params":{"exchange":"\\ud800","symbol":"s"}}',
                   '{"action":"refresh","params":{"token":"\\udfff"}}',
                   '{"action":"list_trades","params":{"exchange":"a","limit":1e400}}',
                   '{"action":"get_book","params":{"exchange":"a","symbol":"b","depth":Infinity}}']
FALLBACK_SCRIPT = """
import json, sys
sys.modules["orjson"] = None   # as bench.launch --no-orjson
from bridge import codec
assert codec.loads is json.loads, "orjson still loaded"
from hypothesis import given, settings
from tests.bridge.test_fuzz_protocol import FRAMES, FUZZ, PARSE_CODES, outcome
codes = [outcome(frame) for frame in json.loads(sys.stdin.read())]
settings(FUZZ, max_examples=150)(given(FRAMES)(
    lambda frame: None if outcome(frame) in PARSE_CODES | {"ok"} else 1 / 0))()
print(json.dumps(codes))
"""


def test_stdlib_fallback_decoder_keeps_the_property() -> None:
    """Deep nesting raised RecursionError out of the parser (the read loop) and a lone
    surrogate made an unsendable reply; a real interpreter without orjson checks the
    regressions, then fuzzes every kind of frame through that decoder."""
    run = subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT], input=json.dumps(FALLBACK_FRAMES),
                         capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    codes = json.loads(run.stdout)
    assert codes == ["INVALID_MESSAGE"] * 5 + ["INVALID_PARAMS"] * 4, codes
