"""Bad tokens over real WebSockets: each gets the SPEC close and none reaches the cache service.

A real bridge in front of a real cache service over real Redis. "Reaches" is read where the
service counts every RPC it handles (``cache_grpc_requests_total`` on its /metrics, kept by
its interceptor for every method, health included): the sum over the CacheService methods
(health checks are the bridge's own readiness probe, not a client's) must not move while a
bad token is refused. The count is taken after the close frame arrives: the bridge admits a
connection in order (auth, then caps, then the session), so a call made on its behalf would
have finished, and been counted, before the close was sent. A valid token's ``get_ticker``
moving the same count by one shows the counting point sees the bridge's calls.

Decisions (docs/protocol.md, section 1):

- ``kid`` with a static key (``--jwt-secret``, ``--jwt-public-key-file``): there is one key, so
  the ``kid`` header is not consulted; a token naming an unknown ``kid`` is verified against
  that key (signed by another key: ``Invalid token``; by the configured one: admitted, as
  identity providers put a ``kid`` in every token). With ``--jwks-url`` an unknown ``kid`` is
  ``Invalid token`` after one refetch (tests/bridge/test_jwks.py; here: that it never
  reaches the cache service).
- Oversized tokens (64 KiB in the query or in ``Authorization``) go past the request-head
  limits of the handshake: HTTP 431 before any WebSocket exists (bridge/handshake_guard.py).
  Asserted here only that the connection is refused with 431/414/400 or a 1008 with a
  documented reason, and that nothing goes upstream.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives import serialization
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import InvalidStatus

from tests.bridge.client import client
from tests.factories.bad_tokens import claims, hmac_token, padded, segments, tampered, unsigned
from tests.factories.keys import NO_KID, SigningKey, SigningKeyFactory, jwks
from tests.infra.bridge_runner import RunningBridge, running_bridge
from tests.infra.cache_service_runner import InProcessCacheService
from tests.infra.jwks_server import JwksServer
from tests.infra.tokens import TEST_SECRET, make_token

pytestmark = pytest.mark.timeout(60)

AUDIENCE = "marketbridge"
ISSUER = "https://idp.example"
# the chart's stance: aud and iss checked, exp required
STRICT = {"jwt_audience": AUDIENCE, "jwt_issuer": ISSUER, "jwt_allow_no_exp": False}
OTHER_SECRET = "another-secret-of-the-same-length-0123456789"
INVALID, EXPIRED = (1008, "Invalid token"), (1008, "Token expired")
DOCUMENTED_REASONS = {"Invalid token", "Token expired", "Authentication required"}
REFUSED_STATUSES = {400, 414, 431}
OVERSIZED_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def keys() -> list[SigningKey]:
    """The configured RS256 key, another RS256 key, an ES256 key (RSA generation is slow)."""
    return [cast(SigningKey, SigningKeyFactory(algorithm=alg))
            for alg in ("RS256", "RS256", "ES256")]


def pem(key: SigningKey) -> str:
    return key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def good(**extra: Any) -> dict[str, Any]:
    """The claims STRICT accepts, plus or overriding ``extra`` (None removes a claim)."""
    merged = {**claims(aud=AUDIENCE, iss=ISSUER), **extra}
    return {name: value for name, value in merged.items() if value is not None}


def hs(**extra: Any) -> str:
    """An HS256 token under the bridge's secret with ``good(**extra)``."""
    return hmac_token(good(**extra), TEST_SECRET.encode())


# ------------------------------------------------------------------ the cases


@dataclass(frozen=True)
class Case:
    """A token (built once the keys exist), the bridge it meets, the close it must get."""

    name: str
    token: Callable[[list[SigningKey]], str]
    close: tuple[int, str] = INVALID
    config: str = "secret"     # "secret": HS256 + STRICT; "public_key": the RS256 PEM + STRICT


# for make_token and SigningKey.token, whose exp is relative (seconds from now)
AUD_ISS: dict[str, Any] = {"aud": AUDIENCE, "iss": ISSUER}


def later(seconds: float) -> int:
    """A claim time ``seconds`` from now (negative: ago), read when the case runs."""
    return int(time.time() + seconds)


SECRET_CASES = [
    Case("expired", lambda k: hs(exp=later(-60)), EXPIRED),
    Case("expired_in_1970", lambda k: hs(exp=1), EXPIRED),
    Case("not_yet_valid_nbf", lambda k: hs(nbf=later(3600))),
    Case("issued_in_the_future_iat", lambda k: hs(iat=later(3600))),
    Case("wrong_audience", lambda k: hs(aud="someone-else")),
    Case("no_audience", lambda k: hs(aud=None)),
    Case("wrong_issuer", lambda k: hs(iss="https://evil.example")),
    Case("no_issuer", lambda k: hs(iss=None)),
    Case("no_exp", lambda k: hs(exp=None)),
    Case("exp_not_a_number", lambda k: hs(exp="tomorrow")),
    Case("no_sub", lambda k: hs(sub=None)),
    Case("sub_not_a_string", lambda k: hs(sub=42)),
    Case("scope_not_a_string", lambda k: hs(scope=7)),
    Case("alg_none", lambda k: unsigned(good())),
    Case("alg_None", lambda k: unsigned(good(), alg="None")),
    Case("alg_none_with_a_signature", lambda k: unsigned(good()) + "c2lnbmF0dXJl"),
    Case("another_secret", lambda k: hmac_token(good(), OTHER_SECRET.encode())),
    Case("unknown_kid_another_secret", lambda k: hmac_token(good(), OTHER_SECRET.encode(),
                                                            kid="no-such-key")),
    Case("hs512_not_allowed", lambda k: hmac_token(good(), TEST_SECRET.encode(), alg="HS512")),
    Case("payload_tampered", lambda k: tampered(hs(), sub="root", scope="admin")),
    Case("rs256_when_a_secret_is_configured", lambda k: k[0].token(**AUD_ISS)),
    Case("garbage", lambda k: "garbage"),
    Case("three_dots", lambda k: "..."),
    Case("two_segments", lambda k: hs().rsplit(".", 1)[0]),
    Case("four_segments", lambda k: hs() + ".e30"),
    Case("header_not_json", lambda k: segments(b"{not json", good())),
    Case("header_a_list", lambda k: segments(["HS256"], good())),
    Case("payload_not_json", lambda k: segments({"alg": "HS256"}, b"\xff\xfe")),
    Case("payload_a_list", lambda k: hmac_token([1, 2], TEST_SECRET.encode())),
    Case("not_base64", lambda k: "eyJ!!!.eyJ***.sig"),
    Case("large_within_the_header_limit", lambda k: padded(6 * 1024, secret=OTHER_SECRET)),
]
PUBLIC_KEY_CASES = [
    # key confusion: HS256 under the PEM text, which is public: verified as HMAC, it would pass
    Case("hs256_signed_with_the_public_key", lambda k: hmac_token(good(), pem(k[0]).encode()),
         config="public_key"),
    Case("hs256_signed_with_a_secret", lambda k: hs(), config="public_key"),
    Case("rs256_another_key", lambda k: k[1].token(**AUD_ISS), config="public_key"),
    Case("unknown_kid_another_key", lambda k: k[1].token(kid="no-such-key", **AUD_ISS),
         config="public_key"),
    Case("es256_another_key", lambda k: k[2].token(**AUD_ISS), config="public_key"),
    Case("alg_none", lambda k: unsigned(good()), config="public_key"),
    Case("rs512_not_allowed", lambda k: make_token("alice", algorithm="RS512",
                                                   key=k[0].private_key, **AUD_ISS),
         config="public_key"),
    Case("expired", lambda k: k[0].token(exp=-60, **AUD_ISS), EXPIRED,
         config="public_key"),
]


def bridge_config(name: str, keys: list[SigningKey]) -> dict[str, Any]:
    if name == "public_key":
        return {**STRICT, "jwt_public_key": pem(keys[0])}
    return dict(STRICT)


# ------------------------------------------------------------------ counting and connecting


def cache_calls(cache: InProcessCacheService) -> float:
    """CacheService RPCs the service handled, by its own /metrics (health checks left out)."""
    url = f"http://127.0.0.1:{cache.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples
               if sample.name == "cache_grpc_requests_total"
               and not sample.labels["method"].startswith("grpc."))


@dataclass
class Upstream:
    """The bridge under test, and what the cache service counted when it started."""

    bridge: RunningBridge
    cache: InProcessCacheService
    start: float = field(init=False)

    def __post_init__(self) -> None:
        self.start = cache_calls(self.cache)

    def calls(self) -> float:
        return cache_calls(self.cache) - self.start


@asynccontextmanager
async def serving(cache: InProcessCacheService, **config: Any) -> AsyncIterator[Upstream]:
    async with running_bridge(cache.target, **config) as b:
        yield Upstream(b, cache)


async def refusal(url: str, headers: dict[str, str] | None = None) -> tuple[int | None, str]:
    """The close a connection gets before any frame (the test fails on a welcome)."""
    async with client(url, welcome=False, additional_headers=headers or {}) as c:
        return await c.closed(timeout=10)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def both_ways(b: RunningBridge, token: str) -> list[tuple[int | None, str]]:
    """The closes for ``token`` in ``?token=`` and in ``Authorization: Bearer``."""
    return [await refusal(b.ws_url(token)), await refusal(b.url, bearer(token))]


def refused_total(b: RunningBridge) -> float:
    return b.app.metrics.value("bridge_connections_total", {"outcome": "auth_failed"})


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("config", ["secret", "public_key"])
async def test_bad_tokens_are_closed_with_the_spec_reason_and_never_go_upstream(
        cache: InProcessCacheService, keys: list[SigningKey], config: str) -> None:
    """Every case of one bridge configuration, each sent in the query and in the header; the
    table of what each got (closes, cache calls) is compared whole, so a failure names every
    case that went wrong."""
    cases = [case for case in SECRET_CASES + PUBLIC_KEY_CASES if case.config == config]
    async with serving(cache, **bridge_config(config, keys)) as up:
        got: dict[str, tuple[list[tuple[int | None, str]], float]] = {}
        for case in cases:
            before = up.calls()
            closes = await both_ways(up.bridge, case.token(keys))
            got[case.name] = (closes, up.calls() - before)
        assert got == {case.name: ([case.close, case.close], 0) for case in cases}
        assert refused_total(up.bridge) == 2 * len(cases)


async def test_no_token_is_authentication_required(cache: InProcessCacheService) -> None:
    async with serving(cache, **STRICT) as up:
        assert await refusal(up.bridge.url) == (1008, "Authentication required")
        assert await refusal(up.bridge.url, {"Authorization": "Bearer "}) == \
            (1008, "Authentication required")
        assert up.calls() == 0


async def test_the_counting_point_sees_a_valid_tokens_calls(cache: InProcessCacheService) -> None:
    """The positive control: the same count moves by one for one call by a valid token."""
    async with serving(cache, **STRICT) as up:
        async with client(up.bridge.ws_url(hs())) as c:
            reply = await c.request("get_ticker", {"exchange": "binance", "symbol": "NOPE/USDT"})
            assert reply["error"]["code"] == "NOT_FOUND"
        assert up.calls() == 1


async def test_with_a_static_key_the_kid_is_not_consulted(
        cache: InProcessCacheService, keys: list[SigningKey]) -> None:
    """One configured key: a token naming an unknown ``kid`` is judged by its signature."""
    for config, token in (("secret", hmac_token(good(), TEST_SECRET.encode(), kid="no-such-key")),
                          ("public_key", keys[0].token(kid="rotated-away", **AUD_ISS))):
        async with serving(cache, **bridge_config(config, keys)) as up:
            assert await admitted(up.bridge, token)


async def admitted(b: RunningBridge, token: str) -> bool:
    """Whether ``token`` gets the welcome frame."""
    async with client(b.ws_url(token)) as c:
        return c.welcome is not None


async def test_jwks_unknown_kid_and_no_kid_never_go_upstream(
        cache: InProcessCacheService, keys: list[SigningKey]) -> None:
    published, unpublished, _ec = keys
    with JwksServer() as server:
        server.publish(jwks(published))
        config = {"jwt_audience": AUDIENCE, "jwt_issuer": ISSUER, "jwks_url": server.url,
                  "jwks_timeout_s": 3.0}
        async with serving(cache, **config) as up:
            for token in (unpublished.token(**AUD_ISS),
                          unpublished.token(kid=published.kid, **AUD_ISS),
                          published.token(kid=NO_KID, **AUD_ISS),
                          hmac_token(good(), pem(published).encode(), kid=published.kid)):
                assert await both_ways(up.bridge, token) == [INVALID, INVALID]
            assert up.calls() == 0


async def oversized_outcome(url: str, headers: dict[str, str]) -> int | tuple[int | None, str]:
    """The HTTP status of a refused handshake, or the (code, reason) of a close after one."""
    try:
        return await refusal(url, headers)
    except InvalidStatus as exc:
        return exc.response.status_code


def documented_refusal(outcome: int | tuple[int | None, str]) -> bool:
    """Refused before the WebSocket (431 from the head limits; 414 or 400 from a proxy's or
    websockets' own), or closed 1008 with one of the reasons docs/protocol.md lists."""
    if isinstance(outcome, int):
        return outcome in REFUSED_STATUSES
    return outcome[0] == 1008 and outcome[1] in DOCUMENTED_REASONS


@pytest.mark.parametrize("where", ["query", "authorization"])
async def test_an_oversized_token_is_refused_and_never_goes_upstream(
        cache: InProcessCacheService, where: str) -> None:
    token = padded(OVERSIZED_BYTES, secret=OTHER_SECRET)
    assert len(token) >= OVERSIZED_BYTES
    async with serving(cache, **STRICT) as up:
        url, headers = ((up.bridge.ws_url(token), {}) if where == "query"
                        else (up.bridge.url, bearer(token)))
        outcome = await oversized_outcome(url, headers)
        assert documented_refusal(outcome), outcome
        assert up.bridge.app.metrics.value("bridge_connections_total", {"outcome": "accepted"}) == 0
        assert up.calls() == 0
