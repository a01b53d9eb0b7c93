"""Sans-I/O pieces: codec, limits, outbound queue, subscriptions, errors, auth, config."""

from __future__ import annotations

import json

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import codec, errors
from bridge.auth import Authenticator, AuthError, Identity, extract_token
from bridge.config import BridgeConfig, ConfigError, load_config
from bridge.events import Event, seq_key, seq_time_ms
from bridge.limits import ConnectionRegistry, RateLimiter, Verdict
from bridge.outbound import Outbound, Push
from bridge.protocol import SubscribeParams
from bridge.subscriptions import SubscriptionBook, topic_for
from bridge.upstream import HealthTracker
from tests.factories import BotFactory, TickerFactory
from tests.infra.tokens import TEST_SECRET, make_token

# ------------------------------------------------------------------ codec / events

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


def test_seq_order() -> None:
    assert seq_key("10-0") > seq_key("9-5")
    assert seq_key("10-1") > seq_key("10-0")
    assert seq_time_ms("1700000000123-4") == 1700000000123


# ------------------------------------------------------------------ limits

def test_token_bucket_allows_burst_then_rejects_then_refills() -> None:
    rl = RateLimiter(rate=10, burst=5, close_after=10, now=0.0)
    assert [rl.check(0.0) for _ in range(5)] == [Verdict.ALLOW] * 5
    assert rl.check(0.0) is Verdict.REJECT
    assert rl.check(0.1) is Verdict.ALLOW   # 0.1 s * 10/s = one token


def test_sustained_excess_closes_but_pauses_reset_it() -> None:
    rl = RateLimiter(rate=1, burst=1, close_after=3, now=0.0)
    t = 0.0
    verdicts = []
    while t < 5:
        verdicts.append(rl.check(t))
        t += 0.05
    assert Verdict.CLOSE in verdicts
    rl = RateLimiter(rate=1, burst=1, close_after=3, now=0.0)
    for start in (0.0, 2.5, 5.0, 7.5):   # short bursts with pauses longer than a second
        results = [rl.check(start + i * 0.01) for i in range(10)]
        assert Verdict.CLOSE not in results


def test_connection_registry_caps() -> None:
    reg = ConnectionRegistry(max_connections=3, max_per_user=2)
    assert reg.admit("a") is None and reg.admit("a") is None
    refusal = reg.admit("a")
    assert refusal and refusal.code == 1008 and "max connections per user" in refusal.reason
    assert reg.admit("b") is None
    refusal = reg.admit("c")
    assert refusal and refusal.code == 1013 and "max connections" in refusal.reason
    reg.release("a"), reg.release("a"), reg.release("b")
    assert reg.total == 0 and not reg.per_user


# ------------------------------------------------------------------ outbound

def test_tickers_conflate_and_orders_overflow() -> None:
    ob = Outbound(max_backlog=3)
    assert ob.push_update("t1", 1, ("s", "BTC"), 0.0) is Push.QUEUED
    assert ob.push_update("t2", 2, ("s", "BTC"), 0.0) is Push.CONFLATED
    assert ob.push_update("o1", 3, None, 0.0) is Push.QUEUED
    assert ob.push_control("r1", "response") is Push.QUEUED
    assert ob.push_update("o2", 4, None, 0.0) is Push.OVERFLOW
    assert ob.push_control("r2", "response") is Push.OVERFLOW
    assert ob.push_update("t3", 5, ("s", "ETH"), 0.0) is Push.QUEUED   # tickers never close
    out = ob.take(0.0)
    assert [o.frame for o in out] == ["t2", "o1", "r1", "t3"]
    assert out[0].event_ms == [2] and out[2].event_ms == []
    assert ob.take(0.0) == [] and ob.wait_time(0.0) is None
    assert ob.push_update("t4", 6, ("s", "BTC"), 0.0) is Push.QUEUED   # taken: key is free again


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["BTC", "ETH", "SOL"]),
                          st.booleans()), max_size=60), st.sampled_from([1, 3, 10, 1000]))
def test_conflation_keeps_per_subscription_seq_order(pushes: list[tuple[int, str, bool]],
                                                     conflate_above: int) -> None:
    """Whatever mix of symbols, subscriptions, writer takes and conflation bound, each
    subscription's seqs leave the queue strictly increasing, and the latest update of every
    (subscription, symbol) is the last one delivered for it (a client resuming from the last
    seq it saw loses nothing)."""
    ob = Outbound(max_backlog=1000, conflate_above=conflate_above)
    sent: list[tuple[int, str, int]] = []
    latest: dict[tuple[int, str], int] = {}
    for seq, (sub, symbol, take_now) in enumerate(pushes, start=1):
        frame = json.dumps([sub, symbol, seq])
        assert ob.push_update(frame, seq, (sub, symbol), 0.0) is not Push.OVERFLOW
        latest[(sub, symbol)] = seq
        if take_now:
            sent.extend(tuple(json.loads(o.frame)) for o in ob.take(0.0))
    sent.extend(tuple(json.loads(o.frame)) for o in ob.take(0.0))
    assert len(ob) == 0 and ob.wait_time(0.0) is None
    for sub in range(3):
        seqs = [seq for s, _, seq in sent if s == sub]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    last = {(s, sym): seq for s, sym, seq in sent}
    assert last == latest


def test_conflation_moves_the_newer_update_back_and_bounds_the_queue() -> None:
    ob = Outbound(max_backlog=5)
    ob.push_update("btc-10", 10, ("s", "BTC"), 0.0)
    ob.push_update("eth-11", 11, ("s", "ETH"), 0.0)
    assert ob.push_update("btc-12", 12, ("s", "BTC"), 0.0) is Push.CONFLATED
    assert [o.frame for o in ob.take(0.0)] == ["eth-11", "btc-12"]
    for i in range(10_000):   # a reader that never drains: tombstones are compacted away
        ob.push_update(f"x{i}", i, ("s", ("BTC", "ETH")[i % 2]), 0.0)
    assert len(ob) == 2 and len(ob.entries) <= 4
    assert [o.frame for o in ob.take(0.0)] == ["x9998", "x9999"]


def test_health_tracker_needs_consecutive_failures() -> None:
    health = HealthTracker(failures=3)
    assert not health.record(False)             # not serving before the first SERVING
    assert health.record(True)
    assert health.record(False) and health.record(False)   # two slow checks: still ready
    assert health.record(True) and health.failed == 0      # a success resets the count
    assert health.record(False) and health.record(False)
    assert not health.record(False)             # the third in a row: not serving
    assert not health.record(False)
    assert health.record(True)                  # recovers on the first SERVING


def test_batch_mode_waits_then_groups_and_controls_flush() -> None:
    ob = Outbound(max_backlog=100, batch_ms=50)
    ob.push_update('{"u":1}', 1, None, now=10.0)
    ob.push_update('{"u":2}', 2, None, now=10.01)
    assert ob.wait_time(10.02) == pytest.approx(0.03)
    assert ob.take(10.02) == []
    out = ob.take(10.05)
    assert len(out) == 1 and out[0].kind == "batch" and out[0].event_ms == [1, 2]
    assert json.loads(out[0].frame) == {"type": "batch", "updates": [{"u": 1}, {"u": 2}]}
    ob.push_update('{"u":3}', 3, None, now=20.0)
    ob.push_control('{"r":1}', "response")
    ob.push_update('{"u":4}', 4, None, now=20.0)
    out = ob.take(20.0)   # a reply flushes at once, order kept
    assert [o.kind for o in out] == ["batch", "response", "batch"]


# ------------------------------------------------------------------ subscriptions

def _event(symbol: str = "BTC", bot_id: str = "", seq: str = "1-0") -> Event:
    return Event(seq, seq_key(seq), symbol, bot_id, codec.update_tail(seq, "{}"), "{}")


def test_subscription_book_filters_ids_and_limit() -> None:
    book = SubscriptionBook(max_subscriptions=2)
    t = book.add(SubscribeParams("tickers", exchange="x", symbols=("BTC",)), ("tickers", "x"))
    o = book.add(SubscribeParams("orders", bot_ids=("b1",)), ("orders", "u"))
    assert t.id != o.id and len(book) == 2
    assert t.matches(_event("BTC")) and not t.matches(_event("ETH"))
    assert o.matches(_event("ETH", "b1")) and not o.matches(_event("ETH", "b2"))
    assert t.conflation_key(_event()) == (t.id, "BTC") and o.conflation_key(_event()) is None
    with pytest.raises(errors.BridgeError) as info:
        book.add(SubscribeParams("bots"), ("bots", "u"))
    assert info.value.code == errors.SUBSCRIPTION_LIMIT
    assert book.remove(t.id) is t
    with pytest.raises(errors.BridgeError) as info:
        book.remove(t.id)
    assert info.value.code == errors.NOT_FOUND
    assert json.loads(o.frame(_event(seq="7-0")))["action"] == "order_update"


def test_held_events_overflow_closes_unless_a_catch_up_makes_up_for_them() -> None:
    book = SubscriptionBook(max_subscriptions=5)
    plain = book.add(SubscribeParams("orders"), ("orders", "u"))
    assert plain.hold(_event(seq="1-0"), 2) and plain.hold(_event(seq="2-0"), 2)
    assert not plain.hold(_event(seq="3-0"), 2)            # nothing would replay it: close
    resuming = book.add(SubscribeParams("orders"), ("orders", "u"))
    resuming.catching_up = True
    for n in (1, 2, 3):
        assert resuming.hold(_event(seq=f"{n}-0"), 2)
    assert resuming.held == [] and resuming.dropped_key == (3, 0)   # discarded, replay owes 3-0
    assert not resuming.caught_up()
    resuming.delivered(_event(seq="2-0"))
    assert not resuming.caught_up()
    resuming.delivered(_event(seq="3-0"))
    assert resuming.caught_up()


def test_topics() -> None:
    assert topic_for(SubscribeParams("tickers", exchange="x"), "u", False) == ("tickers", "x")
    assert topic_for(SubscribeParams("orders"), "u", False) == ("orders", "u")
    assert topic_for(SubscribeParams("bots"), "u", True) == ("bots", "*")


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("status, code", [
    (grpc.StatusCode.NOT_FOUND, errors.NOT_FOUND),
    (grpc.StatusCode.INVALID_ARGUMENT, errors.INVALID_PARAMS),
    (grpc.StatusCode.UNAVAILABLE, errors.UNAVAILABLE),
    (grpc.StatusCode.DEADLINE_EXCEEDED, errors.TIMEOUT),
    (grpc.StatusCode.PERMISSION_DENIED, errors.FORBIDDEN),
    (grpc.StatusCode.INTERNAL, errors.INTERNAL),
    (grpc.StatusCode.UNKNOWN, errors.INTERNAL),
    (None, errors.INTERNAL),
])
def test_grpc_status_mapping(status: grpc.StatusCode | None, code: str) -> None:
    err = errors.from_grpc(status, "secret detail")
    assert err.code == code
    if code in (errors.NOT_FOUND, errors.INVALID_PARAMS):
        assert err.message == "secret detail"   # the service's own words about the request
    else:
        assert "secret" not in err.message


GENERIC = {
    errors.NOT_FOUND: "Not found",
    errors.INVALID_PARAMS: "Invalid parameters",
    errors.UNAVAILABLE: "Upstream service unavailable, try again",
    errors.TIMEOUT: "Upstream service did not answer in time",
    errors.FORBIDDEN: "Not allowed",
    errors.INTERNAL: "Internal error",
}


@pytest.mark.parametrize("status", [*errors._STATUS_MAP, grpc.StatusCode.INTERNAL,
                                    grpc.StatusCode.UNKNOWN, None])
@pytest.mark.parametrize("details", [None, ""])
def test_grpc_status_without_details_gets_its_own_generic_message(
        status: grpc.StatusCode | None, details: str | None) -> None:
    """An INVALID_ARGUMENT without details used to read "Not found"; each code has its own."""
    err = errors.from_grpc(status, details)
    assert err.message == GENERIC[err.code]


def test_every_mapped_code_has_a_generic_message() -> None:
    assert {mapped for mapped, _ in errors._STATUS_MAP.values()} | {errors.INTERNAL} <= set(
        errors._GENERIC_MESSAGES)
    assert len(set(errors._GENERIC_MESSAGES.values())) == len(errors._GENERIC_MESSAGES)


# ------------------------------------------------------------------ auth

def _auth(**kw: object) -> Authenticator:
    return Authenticator(BridgeConfig(jwt_secret=TEST_SECRET, **kw))  # type: ignore[arg-type]


def test_auth_results() -> None:
    auth = _auth()
    who = auth.authenticate(make_token("bob", scope="read admin"))
    assert who == Identity("bob", frozenset({"read", "admin"})) and who.is_admin
    assert who.scope_header == "admin read"
    for token, reason in [(None, "Authentication required"), ("", "Authentication required"),
                          ("garbage", "Invalid token"),
                          (make_token("bob", secret="other-secret-of-sufficient-length-xx"), "Invalid token"),
                          (make_token(None), "Invalid token"),
                          (make_token("bob", exp=-60), "Token expired")]:
        with pytest.raises(AuthError) as info:
            auth.authenticate(token)
        assert info.value.reason == reason


def test_audience_and_issuer_checked_only_when_configured() -> None:
    token = make_token("erin", aud="trading", iss="idp")
    assert _auth().authenticate(token).user_id == "erin"
    assert _auth(jwt_audience="trading", jwt_issuer="idp").authenticate(token).user_id == "erin"
    for auth in (_auth(jwt_audience="other"), _auth(jwt_issuer="other")):
        with pytest.raises(AuthError, match="Invalid token"):
            auth.authenticate(token)


def test_auth_none_reads_claims_without_verifying() -> None:
    auth = Authenticator(BridgeConfig(auth="none"))
    assert auth.authenticate(None).user_id == "anonymous"
    assert auth.authenticate(make_token("carol", secret="whatever-secret-0123456789abcdef")).user_id == "carol"
    with pytest.raises(AuthError):
        auth.authenticate("garbage")


def test_public_key_auth(tmp_path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    path = tmp_path / "key.pem"
    path.write_bytes(pem)
    config = load_config(["--jwt-public-key-file", str(path)], environ={})
    assert config.algorithms == ("RS256", "ES256")
    token = make_token("dave", algorithm="ES256", key=key)
    assert Authenticator(config).authenticate(token).user_id == "dave"


def test_token_sources() -> None:
    assert extract_token("/ws?token=abc", {}) == "abc"
    assert extract_token("/ws", {"Authorization": "Bearer xyz"}) == "xyz"
    assert extract_token("/ws", {"Authorization": "Basic xyz"}) is None
    assert extract_token("/ws", {}) is None


# ------------------------------------------------------------------ config

def test_config_precedence_and_env() -> None:
    env = {"BRIDGE_JWT_SECRET": "s", "BRIDGE_PORT": "9000", "BRIDGE_MAX_SUBSCRIPTIONS": "7",
           "BRIDGE_JWT_ALGORITHMS": "HS256,HS512", "BRIDGE_IDLE_TIMEOUT": ""}
    config = load_config(["--port", "9001"], environ=env)
    assert config.port == 9001 and config.max_subscriptions == 7
    assert config.jwt_algorithms == ("HS256", "HS512") and config.idle_timeout == 300
    assert "s" not in repr(config).split("jwt_secret")[0] or "jwt_secret" not in repr(config)


@pytest.mark.parametrize("argv, env, message", [
    ([], {}, "--auth jwt needs --jwt-secret or --jwt-public-key-file"),
    (["--auth", "basic"], {}, "--auth must be one of jwt, none"),
    (["--jwt-secret", "s", "--port", "x"], {}, "--port must be an integer"),
    (["--jwt-secret", "s"], {"BRIDGE_RATE_LIMIT": "fast"}, "BRIDGE_RATE_LIMIT must be a number"),
    (["--jwt-secret", "s", "--max-connections", "0"], {}, "--max-connections must be > 0"),
    (["--jwt-secret", "s", "--port", "70000"], {}, "--port must be from 0 to 65535"),
    (["--jwt-secret", "s", "--jwt-algorithms", "RS256"], {}, "cannot be used with a shared secret"),
    (["--jwt-secret", "s", "--jwt-public-key-file", "/nonexistent"], {}, "/nonexistent"),
    (["--jwt-secret", "s", "--log-level", "loud"], {}, "--log-level must be one of"),
    (["--jwt-secret", "s", "--grpc-tls-cert-file", "c"], {}, "must be given together"),
    (["--jwt-secret", "s", "--grpc-target", " "], {}, "--grpc-target must not be empty"),
    (["--jwt-secret", "s", "--shutdown-grace", "-1"], {}, "--shutdown-grace must be >= 0"),
])
def test_bad_config_one_line(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(argv, environ=env)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_key_file_must_be_pem(tmp_path) -> None:
    path = tmp_path / "k"
    path.write_text("hello")
    with pytest.raises(ConfigError, match="not a PEM public key"):
        load_config(["--jwt-public-key-file", str(path)], environ={})
    path.write_text("-----BEGIN PUBLIC KEY-----\n")
    with pytest.raises(ConfigError, match="either --jwt-secret or --jwt-public-key-file"):
        load_config(["--jwt-public-key-file", str(path), "--jwt-secret", "s"], environ={})
