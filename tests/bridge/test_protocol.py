"""The protocol core without sockets: parsing, params validation, frames (incl. hypothesis)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import protocol as p
from bridge.channels import CHANNELS
from bridge.errors import INVALID_MESSAGE, INVALID_PARAMS, UNKNOWN_ACTION, BridgeError


def test_parse_valid_request() -> None:
    req = p.parse_request('{"action":"ping","request_id":7,"params":{"a":1}}')
    assert req == p.Request("ping", 7, {"a": 1})
    assert p.parse_request('{"action":"ping"}') == p.Request("ping", None, {})
    assert p.parse_request('{"action":"ping","params":null}').params == {}


@pytest.mark.parametrize("frame, detail", [
    (b"\x00\x01", "binary frames"),
    ("not json", "not valid JSON"),
    ("[1,2]", "expected a JSON object, got an array"),
    ('"x"', "got a string"),
    ("3", "got a number"),
    ("true", "got a boolean"),
    ("null", "got null"),
    ('{"request_id":1}', "'action' must be a non-empty string"),
    ('{"action":""}', "'action' must be a non-empty string"),
    ('{"action":5}', "'action' must be a non-empty string"),
    ('{"action":"ping","request_id":1.5}', "'request_id' must be a string or an integer"),
    ('{"action":"ping","request_id":true}', "'request_id' must be a string or an integer"),
])
def test_invalid_frames(frame: str | bytes, detail: str) -> None:
    with pytest.raises(p.ProtocolError) as info:
        p.parse_request(frame)
    assert info.value.code == INVALID_MESSAGE
    assert info.value.message.startswith("Invalid message format: ")
    assert detail in info.value.message
    frame_json = json.loads(p.protocol_error_frame(info.value))
    assert frame_json["type"] == "error" and frame_json["success"] is False
    assert frame_json["error"]["code"] == INVALID_MESSAGE


def test_invalid_frame_keeps_request_id() -> None:
    with pytest.raises(p.ProtocolError) as info:
        p.parse_request('{"request_id":"x","action":3}')
    assert json.loads(p.protocol_error_frame(info.value))["request_id"] == "x"


def test_params_not_object_is_a_response_error() -> None:
    with pytest.raises(p.ProtocolError) as info:
        p.parse_request('{"action":"get_ticker","request_id":"a","params":[1]}')
    frame = json.loads(p.protocol_error_frame(info.value))
    assert frame == {"type": "response", "action": "get_ticker", "request_id": "a",
                     "success": False, "error": {"code": INVALID_PARAMS,
                                                 "message": "'params' must be a JSON object"}}


def test_unknown_action_error() -> None:
    frame = json.loads(p.protocol_error_frame(p.unknown_action_error(p.Request("nope", 1, {}))))
    assert frame["error"]["code"] == UNKNOWN_ACTION and frame["action"] == "nope"


@given(st.one_of(st.binary(max_size=64), st.text(max_size=64),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                              | st.text(max_size=8),
                              lambda kids: st.lists(kids, max_size=4)
                              | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                              max_leaves=12).map(json.dumps)))
@settings(max_examples=300, deadline=None)
def test_random_frames_never_crash(frame: str | bytes) -> None:
    """Any frame is either a request or a ProtocolError whose reply is a valid JSON object."""
    try:
        req = p.parse_request(frame)
    except p.ProtocolError as exc:
        reply = json.loads(p.protocol_error_frame(exc))
        assert reply["success"] is False and reply["type"] in ("error", "response")
    else:
        assert isinstance(req.action, str) and req.action
        assert isinstance(req.params, dict)
        assert req.request_id is None or isinstance(req.request_id, str | int)


@given(st.dictionaries(st.sampled_from(["channel", "exchange", "symbols", "bot_ids",
                                        "resume_from", "snapshot", "other"]),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5),
                                 st.lists(st.text(max_size=5), max_size=3)), max_size=6))
@settings(max_examples=300, deadline=None)
def test_random_subscribe_params(params: dict) -> None:
    """Validation either yields a consistent SubscribeParams or INVALID_PARAMS, nothing else."""
    try:
        sp = p.subscribe_params(params)
    except BridgeError as exc:
        assert exc.code == INVALID_PARAMS and exc.message
    else:
        assert sp.channel in CHANNELS
        assert (sp.exchange is not None) == (sp.channel == "tickers")


def test_subscribe_params_rules() -> None:
    sp = p.subscribe_params({"channel": "tickers", "exchange": "binance",
                             "symbols": ["A", "B", "A"]})
    assert sp.symbols == ("A", "B") and sp.snapshot is True and sp.resume_from is None
    sp = p.subscribe_params({"exchange": "x", "resume_from": "1-0"}, implied="tickers")
    assert sp.channel == "tickers" and sp.snapshot is False
    assert p.subscribe_params({"channel": "orders", "resume_from": "1-0", "snapshot": True}).snapshot
    cases = [
        ({}, "'channel' is required"),
        ({"channel": "news"}, "'channel' must be one of"),
        ({"channel": "tickers"}, "'exchange' is required"),
        ({"channel": "tickers", "exchange": ""}, "'exchange' must be a non-empty string"),
        ({"channel": "tickers", "exchange": "a\x00b"}, "without control characters"),
        ({"channel": "tickers", "exchange": "b", "symbols": ["A\n"]}, "'symbols' must be a list"),
        ({"channel": "tickers", "exchange": "b", "symbols": "BTC"}, "'symbols' must be a list"),
        ({"channel": "tickers", "exchange": "b", "bot_ids": []}, "unknown parameter 'bot_ids'"),
        ({"channel": "bots", "symbols": []}, "unknown parameter 'symbols'"),
        ({"channel": "orders", "resume_from": "abc"}, "'resume_from' must be a sequence id"),
        ({"channel": "orders", "snapshot": "yes"}, "'snapshot' must be true or false"),
    ]
    for params, message in cases:
        with pytest.raises(BridgeError, match=message):
            p.subscribe_params(params)
    with pytest.raises(BridgeError, match="must be 'bots'"):
        p.subscribe_params({"channel": "orders"}, implied="bots")


def test_scalar_validators() -> None:
    assert p.opt_int({"limit": 5}, "limit", 1, 10) == 5
    for bad in (0, 11, True, "5"):
        with pytest.raises(BridgeError, match="integer from 1 to 10"):
            p.opt_int({"limit": bad}, "limit", 1, 10)
    with pytest.raises(BridgeError, match="must be one of"):
        p.opt_choice({"status": "weird"}, "status", p.ORDER_STATUSES)


def test_batch_ms() -> None:
    assert p.parse_batch_ms(None, 1000) is None
    assert p.parse_batch_ms("", 1000) is None
    assert p.parse_batch_ms("10", 1000) == 10
    for bad in ("0", "1001", "-1", "x", "1.5"):
        with pytest.raises(ValueError, match="batch_ms must be an integer from 1 to 1000"):
            p.parse_batch_ms(bad, 1000)


def test_frames_are_json_objects_with_type() -> None:
    frames = [p.welcome_frame("s", {"a": 1}), p.response_frame("x", 1, [1]),
              p.error_response_frame("x", None, "C", "m"), p.error_frame("C", "m"),
              p.pong_frame("r", 1.5), p.stream_status_frame("s1", "resumed", True)]
    types = [json.loads(f)["type"] for f in frames]
    assert types == ["connection", "response", "response", "error", "pong", "stream_status"]
    welcome = json.loads(frames[0])
    assert welcome["status"] == "connected" and welcome["protocol"] == 1
