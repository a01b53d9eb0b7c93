"""``--jwks-url`` without sockets: JWKS documents to keys, the cache's decisions, verification
by ``kid``, and the flags (bridge/jwks.py, bridge/auth.py, bridge/config.py).

The key server itself, rotation over the wire and real WebSocket connections are in
test_jwks.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from bridge.auth import Authenticator, AuthError, UnknownKeyError
from bridge.config import BridgeConfig, ConfigError, load_config
from bridge.jwks import (BAD_FIELDS, DUPLICATE_KID, FAILURE_RETRY_S, MALFORMED, MISSING_KID,
                         NO_USABLE_KEYS, NOT_FOR_SIGNING, UNKNOWN_KID_INTERVAL_S, UNSUPPORTED_ALG,
                         UNSUPPORTED_KTY, JwksCache, JwksDocument, JwksError, parse_jwks)
from bridge.jwks_fetch import JwksClient, client_ssl_context
from tests.factories.keys import NO_KID, SigningKey, SigningKeyFactory, generate, jwks
from tests.infra.tokens import make_token

BOTH = ("RS256", "ES256")


def body(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return SigningKeyFactory(algorithm="RS256")


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return SigningKeyFactory(algorithm="ES256")


# ------------------------------------------------------------------ documents


def test_rsa_and_ec_keys_are_read_by_kid_and_alg_is_implied_when_absent(rsa_key, ec_key) -> None:
    document = parse_jwks(body(jwks(rsa_key, ec_key)), BOTH)
    assert {kid: key.algorithm for kid, key in document.keys.items()} == {
        rsa_key.kid: "RS256", ec_key.kid: "ES256"}
    assert document.skipped == ()
    implied = parse_jwks(body(jwks(rsa_key.jwk(alg=None, use=None), ec_key.jwk(alg=None))), BOTH)
    assert {key.algorithm for key in implied.keys.values()} == {"RS256", "ES256"}


@pytest.mark.parametrize("raw, message", [
    (b"<html>502 Bad Gateway</html>", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "no \"keys\" list"),
    (b'{"keys": {"kid": "a"}}', "no \"keys\" list"),
    (b'{"issuer": "idp"}', "no \"keys\" list"),
    (b'{"keys": [' + b" " * (1 << 20) + b"]}", "over 1048576"),
])
def test_a_document_that_is_not_a_key_set_is_malformed(raw: bytes, message: str) -> None:
    with pytest.raises(JwksError) as info:
        parse_jwks(raw, BOTH)
    assert info.value.reason == MALFORMED and message in str(info.value)


def bad_keys(rsa: SigningKey, ec: SigningKey) -> list[tuple[Any, str, str]]:
    """(JWK, reason, message fragment): one way each to publish a key the bridge cannot use."""
    weak = SigningKey("weak", "RS256", generate("RS256", rsa_bits=1024))
    p384 = {**ec.jwk(kid="p384", alg=None), "crv": "P-384", "x": "AAAA", "y": "AAAA"}
    return [
        ("not-an-object", BAD_FIELDS, "not a JSON object"),
        (rsa.jwk(kid=None), MISSING_KID, "no \"kid\""),
        (rsa.jwk(kid=""), MISSING_KID, "no \"kid\""),
        (rsa.jwk(kid="enc", use="enc"), NOT_FOR_SIGNING, "'enc'"),
        ({"kid": "hmac", "kty": "oct", "k": "c2VjcmV0"}, UNSUPPORTED_KTY, "kty 'oct'"),
        ({"kid": "ed", "kty": "OKP", "crv": "Ed25519", "x": "AAAA"}, UNSUPPORTED_KTY, "kty 'OKP'"),
        (rsa.jwk(kid="hs", alg="HS256"), UNSUPPORTED_ALG, "alg 'HS256'"),
        (rsa.jwk(kid="rs384", alg="RS384"), UNSUPPORTED_ALG, "alg 'RS384'"),
        (p384, UNSUPPORTED_ALG, "alg None (kty 'EC', crv 'P-384')"),
        (ec.jwk(kid="mixed", alg="RS256"), BAD_FIELDS, "alg RS256 needs kty 'RSA'"),
        (rsa.jwk(kid="private", d="AQAB"), BAD_FIELDS, "private key material (d)"),
        (rsa.jwk(kid="n-number", n=12345), BAD_FIELDS, "RSA key without string n"),
        (ec.jwk(kid="no-y", y=None), BAD_FIELDS, "EC key without string y"),
        (rsa.jwk(kid="zero", n="AA"), BAD_FIELDS, "not a valid RSA public key"),
        (ec.jwk(kid="off-curve", y=ec.jwk()["x"]), BAD_FIELDS, "not a valid EC public key"),
        (ec.jwk(kid="short", x="AAAA"), BAD_FIELDS, "not a valid EC public key"),
        (weak.jwk(), BAD_FIELDS, "RSA key of 1024 bits"),
    ]


def test_each_bad_key_is_skipped_with_its_reason_and_the_good_keys_are_kept(rsa_key, ec_key) -> None:
    cases = bad_keys(rsa_key, ec_key)
    document = parse_jwks(body(jwks(*[jwk for jwk, _, _ in cases], rsa_key, ec_key)), BOTH)
    assert sorted(document.keys) == sorted([rsa_key.kid, ec_key.kid])
    got = [(skip.reason, str(skip)) for skip in document.skipped]
    assert len(got) == len(cases), got
    for (reason, message), (_jwk, want_reason, fragment) in zip(got, cases):
        assert reason == want_reason and fragment in message, (reason, message)


def test_a_repeated_kid_keeps_the_first_key(rsa_key) -> None:
    other = SigningKeyFactory(kid=rsa_key.kid)
    document = parse_jwks(body(jwks(rsa_key, other)), BOTH)
    assert document.keys[rsa_key.kid].key.public_numbers() == rsa_key.private_key.public_key().public_numbers()
    assert [skip.reason for skip in document.skipped] == [DUPLICATE_KID]


def test_only_the_configured_algorithms_are_taken(rsa_key, ec_key) -> None:
    document = parse_jwks(body(jwks(rsa_key, ec_key)), ("RS256",))
    assert list(document.keys) == [rsa_key.kid]
    assert [(s.kid, s.reason) for s in document.skipped] == [(ec_key.kid, UNSUPPORTED_ALG)]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                    max_leaves=20)
JWK_LIKE = st.fixed_dictionaries({}, optional={
    "kid": JSON | st.text(max_size=8), "kty": st.sampled_from(["RSA", "EC", "oct", ""]) | JSON,
    "alg": st.sampled_from(["RS256", "ES256", "none"]) | JSON, "crv": st.just("P-256") | JSON,
    "n": st.text() | JSON, "e": st.just("AQAB") | JSON, "x": st.text() | JSON, "y": st.text() | JSON,
    "use": st.just("sig") | JSON})


@settings(max_examples=300, deadline=None)
@given(st.lists(JWK_LIKE | JSON, max_size=6) | JSON)
@example([{"kid": "0", "kty": "RSA", "alg": []}])                 # an unhashable alg: was a TypeError
def test_any_json_is_a_document_or_a_jwks_error_never_a_crash(entries: Any) -> None:
    raw = json.dumps({"keys": entries} if isinstance(entries, list) else entries).encode()
    try:
        document = parse_jwks(raw, BOTH)
    except JwksError as exc:
        assert exc.reason == MALFORMED
        return
    assert len(document.keys) + len(document.skipped) == len(entries)


# ------------------------------------------------------------------ the cache


def document_of(*keys: SigningKey) -> JwksDocument:
    return parse_jwks(body(jwks(*keys)), BOTH)


def test_an_unknown_kid_may_refetch_once_per_10_s() -> None:
    cache = JwksCache(refresh_s=300.0)
    assert cache.unknown_kid_fetch_allowed(1000.0)
    cache.started(1000.0, unknown_kid=True)
    assert not cache.unknown_kid_fetch_allowed(1000.0 + UNKNOWN_KID_INTERVAL_S - 0.01)
    cache.started(1005.0)   # a periodic fetch does not use up the unknown-kid allowance
    assert cache.unknown_kid_fetch_allowed(1000.0 + UNKNOWN_KID_INTERVAL_S)


def test_the_periodic_fetch_comes_every_refresh_s_and_sooner_while_failing(rsa_key) -> None:
    cache = JwksCache(refresh_s=300.0)
    assert cache.next_fetch_at(5.0) == 5.0                       # none made yet: at once
    cache.started(10.0)
    cache.succeeded(document_of(rsa_key), 10.5)
    assert cache.next_fetch_at(11.0) == 310.0
    cache.started(310.0)
    cache.failed("connection refused", 310.1)
    assert cache.next_fetch_at(311.0) == 310.0 + FAILURE_RETRY_S
    assert JwksCache(refresh_s=2.0, attempted_at=0.0, failure="x").next_fetch_at(0.0) == 2.0


def test_a_fetch_replaces_the_keys_and_a_failure_keeps_them(rsa_key, ec_key) -> None:
    cache = JwksCache(refresh_s=300.0)
    assert cache.not_ready_reason() == "jwks: no keys (first fetch not done)"
    change = cache.succeeded(document_of(rsa_key), 100.0)
    assert change.added == (rsa_key.kid,) and change.removed == ()
    change = cache.succeeded(document_of(ec_key), 200.0)          # rotation: the old key is gone
    assert change.added == (ec_key.kid,) and change.removed == (rsa_key.kid,)
    assert cache.key(rsa_key.kid) is None and cache.key(ec_key.kid) is not None
    assert cache.detail(200.0) is None and cache.not_ready_reason() is None
    cache.failed("HTTP 503 Service Unavailable", 260.0)
    cache.failed("connection refused", 270.0)
    assert cache.key(ec_key.kid) is not None
    assert cache.detail(290.0) == ("jwks: key server failing for 30 s (connection refused); "
                                   "using 1 cached keys fetched 90 s ago")
    with pytest.raises(JwksError) as info:                        # a document with no usable key
        cache.succeeded(parse_jwks(b'{"keys": [{"kty": "oct", "kid": "h"}]}', BOTH), 300.0)
    assert info.value.reason == NO_USABLE_KEYS
    assert list(cache.keys) == [ec_key.kid] and cache.failing_since == 260.0
    cache.succeeded(document_of(ec_key), 310.0)
    assert cache.detail(310.0) is None and cache.failure is None


def test_without_any_key_the_bridge_is_not_ready() -> None:
    cache = JwksCache(refresh_s=300.0)
    cache.failed("TLS: certificate verify failed", 1.0)
    assert cache.not_ready_reason() == "jwks: no keys (TLS: certificate verify failed)"
    assert cache.detail(2.0) is None


# ------------------------------------------------------------------ verification by kid

URL = "http://127.0.0.1:9/jwks.json"   # never fetched here: the cache is filled directly


def authenticator(*keys: SigningKey, **config: Any) -> Authenticator:
    settings = BridgeConfig(jwks_url=URL, **config)
    client = JwksClient(settings, CollectorRegistry())
    client.cache.succeeded(document_of(*keys), 0.0)
    return Authenticator(settings, client)


def refused(auth: Authenticator, token: str | None) -> AuthError:
    with pytest.raises(AuthError) as info:
        auth.authenticate(token)
    return info.value


def test_a_token_is_verified_with_the_key_its_kid_names(rsa_key, ec_key) -> None:
    auth = authenticator(rsa_key, ec_key)
    assert auth.authenticate(rsa_key.token("bob", scope="read")).user_id == "bob"
    assert auth.authenticate(ec_key.token("carol")).user_id == "carol"
    assert refused(auth, rsa_key.token(exp=-5)).reason == "Token expired"
    assert refused(auth, None).reason == "Authentication required"


def test_no_kid_an_unknown_kid_or_a_mismatched_key_is_an_invalid_token(rsa_key, ec_key) -> None:
    auth = authenticator(rsa_key)
    impostor = SigningKeyFactory(kid=rsa_key.kid)                 # the right kid, another key
    for token in (rsa_key.token(kid=NO_KID), rsa_key.token(kid=""), impostor.token(),
                  ec_key.token(kid=rsa_key.kid),                  # ES256 against an RS256 key
                  make_token("alice", headers={"kid": rsa_key.kid}),  # HS256: never with a JWKS
                  "not-a-jwt"):
        error = refused(auth, token)
        assert error.reason == "Invalid token" and not isinstance(error, UnknownKeyError)
    unknown = refused(auth, ec_key.token())
    assert isinstance(unknown, UnknownKeyError) and unknown.kid == ec_key.kid
    assert unknown.reason == "Invalid token"


def test_issuer_and_audience_still_apply_to_jwks_tokens(rsa_key) -> None:
    auth = authenticator(rsa_key, jwt_issuer="https://idp.example", jwt_audience="trading")
    assert auth.authenticate(rsa_key.token(iss="https://idp.example", aud="trading")).user_id == "alice"
    assert refused(auth, rsa_key.token(iss="https://evil.example", aud="trading")).reason == "Invalid token"


# ------------------------------------------------------------------ flags


def test_jwks_flags_and_their_environment_twins() -> None:
    config = load_config(["--jwks-url", "https://idp.example/jwks.json", "--jwks-refresh-s", "60"],
                         environ={"BRIDGE_JWKS_TIMEOUT_S": "2.5", "BRIDGE_JWKS_CA_FILE": "/ca.pem"})
    assert (config.jwks_url, config.jwks_refresh_s, config.jwks_timeout_s, config.jwks_ca_file) == (
        "https://idp.example/jwks.json", 60.0, 2.5, "/ca.pem")
    assert config.algorithms == ("RS256", "ES256")
    defaults = load_config([], environ={"BRIDGE_JWKS_URL": "http://127.0.0.1:8000/jwks"})
    assert (defaults.jwks_refresh_s, defaults.jwks_timeout_s, defaults.jwks_ca_file) == (300.0, 5.0, None)


@pytest.mark.parametrize("argv, message", [
    (["--jwks-url", "https://idp/j", "--jwt-secret", "s"], "either --jwks-url or --jwt-secret"),
    (["--jwks-url", "ftp://idp/j"], "--jwks-url must be an http:// or https:// URL"),
    (["--jwks-url", "idp.example/jwks"], "--jwks-url must be an http:// or https:// URL"),
    (["--jwks-url", "https://[::1/j"], "--jwks-url must be an http:// or https:// URL"),
    (["--jwks-ca-file", "/ca.pem"], "--jwks-ca-file needs --jwks-url"),
    (["--jwks-url", "http://idp/j", "--jwks-ca-file", "/ca.pem"], "applies to an https:// --jwks-url only"),
    (["--jwks-url", "https://idp/j", "--jwt-algorithms", "RS256 HS256"], "--jwt-algorithms HS256 cannot be used with --jwks-url"),
    (["--jwks-url", "https://idp/j", "--jwt-algorithms", "PS256"], "(allowed: RS256, ES256)"),
    (["--jwks-url", "https://idp/j", "--jwks-refresh-s", "0"], "--jwks-refresh-s must be > 0"),
    (["--jwks-url", "https://idp/j", "--jwks-timeout-s", "31"], "--jwks-timeout-s must be > 0 and <= 30"),
    (["--jwks-url", "https://idp/j", "--jwks-timeout-s", "soon"], "--jwks-timeout-s: expected a number"),
])
def test_bad_jwks_settings_fail_in_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(argv, environ={})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_ca_file_that_is_missing_or_not_pem_fails_in_one_line(tmp_path) -> None:
    for content, expected in ((None, "No such file"), ("hello", "--jwks-ca-file")):
        path = tmp_path / "ca.pem"
        if content is not None:
            path.write_text(content)
        with pytest.raises(ConfigError) as info:
            client_ssl_context(str(path))
        assert expected in str(info.value) and "\n" not in str(info.value)
