"""``--jwks-url`` end to end (SPEC §9.3): a real key server on 127.0.0.1 (HTTP and HTTPS, the
document changed by the test), a real bridge over a real cache service, real WebSockets.

Fetches happen at start, every ``--jwks-refresh-s`` and for an unknown ``kid``; a test that
needs "the next fetch" either sets a short ``jwks_refresh_s`` and waits for the bridge's own
fetch counter, or lets an unknown ``kid`` trigger one. The document logic is tested without
sockets in test_jwks_document.py.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.bridge.client import client
from tests.factories.keys import NO_KID, SigningKey, SigningKeyFactory, jwks
from tests.infra.bridge_runner import RunningBridge, http_get, running_bridge
from tests.infra.certs import make_tls_files
from tests.infra.eventually import eventually
from tests.infra.jwks_server import JwksServer

pytestmark = [pytest.mark.timeout(60), pytest.mark.cluster_too]  # SPEC §9.3 JWKS on a cluster too (SPEC §9.4)


@pytest.fixture(scope="module")
def keys() -> list[SigningKey]:
    """Three identity-provider keys: RS256, ES256, RS256 (generated once: RSA takes a while)."""
    return [SigningKeyFactory(algorithm=alg) for alg in ("RS256", "ES256", "RS256")]


@pytest.fixture
def server() -> Iterator[JwksServer]:
    with JwksServer() as key_server:
        yield key_server


@asynccontextmanager
async def jwks_bridge(cache: Any, server: JwksServer, **config: Any) -> AsyncIterator[RunningBridge]:
    """A bridge taking its keys from ``server``, once its upstream serves (so that ``/readyz``
    speaks of the keys only)."""
    async with running_bridge(cache.target, jwks_url=server.url, jwks_timeout_s=3.0, **config) as b:
        await eventually(lambda: b.app.upstream.serving, timeout=15, what="upstream serving")
        yield b


async def admitted(b: RunningBridge, token: str) -> str:
    """Connect with ``token``; the user the bridge admitted (the test fails on a refusal)."""
    async with client(b.ws_url(token)) as c:
        assert c.welcome is not None
        return b.session(c.welcome["session_id"]).identity.user_id


async def refused(b: RunningBridge, token: str) -> tuple[int | None, str]:
    async with client(b.ws_url(token), welcome=False) as c:
        return await c.closed(timeout=10)


def metric(b: RunningBridge, name: str, **labels: str) -> float:
    return b.app.metrics.value(name, labels)


async def fetched(b: RunningBridge, count: float, trigger: str = "periodic") -> None:
    """Wait until the bridge completed ``count`` fetches of ``trigger`` (its own counter)."""
    await eventually(lambda: metric(b, "bridge_jwks_fetches_total", trigger=trigger) >= count,
                     timeout=15, what=f"{count:g} {trigger} JWKS fetches")


async def get(b: RunningBridge, path: str) -> tuple[int, str]:
    """Status and body of a GET on the bridge (from a thread: the bridge runs in this loop)."""
    status, body, _headers = await asyncio.to_thread(http_get, b.http + path)
    return status, body.strip()


async def readyz(b: RunningBridge) -> tuple[int, str]:
    return await get(b, "/readyz")


async def test_a_token_is_verified_by_the_published_key_its_kid_names(cache, server, keys) -> None:
    rsa, ec, unpublished = keys
    server.publish(jwks(rsa, ec))
    async with jwks_bridge(cache, server) as b:
        assert await admitted(b, rsa.token("alice")) == "alice"
        assert await admitted(b, ec.token("bob")) == "bob"
        impostor = SigningKeyFactory(kid=rsa.kid)        # the right kid, the wrong private key
        for token in (impostor.token(), rsa.token(kid=NO_KID), unpublished.token(kid=ec.kid)):
            assert await refused(b, token) == (1008, "Invalid token")
        assert server.hits == 1                           # the start fetch served every one
        assert metric(b, "bridge_jwks_keys") == 2 and metric(b, "bridge_jwks_fetch_ok") == 1
        assert metric(b, "bridge_jwks_last_success_timestamp_seconds") > 0
        assert await readyz(b) == (200, "ready")


async def test_a_rotated_in_key_is_found_by_one_refetch_and_serves_refresh(cache, server, keys) -> None:
    old, _ec, new = keys
    server.publish(jwks(old))
    async with jwks_bridge(cache, server) as b:
        async with client(b.ws_url(old.token("alice", exp=3600))) as c:
            server.publish(jwks(old, new))                # the IdP adds its next key
            # a burst of connections with the new kid: one fetch, every one admitted
            users = await asyncio.gather(*(admitted(b, new.token("alice")) for _ in range(8)))
            assert users == ["alice"] * 8 and server.hits == 2
            assert metric(b, "bridge_jwks_fetches_total", trigger="unknown_kid") == 1
            reply = await c.request("refresh", {"token": new.token("alice", exp=7200)})
            assert reply["success"], reply                # a refresh verifies by the new kid too


async def test_a_removed_key_is_refused_after_the_next_fetch(cache, server, keys) -> None:
    old, _ec, new = keys
    server.publish(jwks(old, new))
    async with jwks_bridge(cache, server, jwks_refresh_s=0.3) as b:
        async with client(b.ws_url(old.token("alice"))) as still_open:
            assert await admitted(b, old.token("bob")) == "bob"
            server.publish(jwks(new))                     # the IdP retires the old key
            base = metric(b, "bridge_jwks_fetches_total", trigger="periodic")
            await fetched(b, base + 2)                    # one whole fetch after the change
            assert metric(b, "bridge_jwks_keys") == 1
            assert await refused(b, old.token("bob")) == (1008, "Invalid token")
            assert await admitted(b, new.token("bob")) == "bob"
            # a connection admitted before keeps its token's life (docs/protocol.md)
            assert (await still_open.request("ping"))["type"] == "pong"


async def test_unknown_kids_refetch_at_most_once_per_10_s(cache, server, keys) -> None:
    known, ec, unpublished = keys
    server.publish(jwks(known))
    async with jwks_bridge(cache, server) as b:
        assert await refused(b, unpublished.token()) == (1008, "Invalid token")
        assert server.hits == 2                           # start + the one refetch
        for kid in ("made-up-1", "made-up-2", ec.kid, unpublished.kid):
            assert await refused(b, unpublished.token(kid=kid)) == (1008, "Invalid token")
        assert server.hits == 2                           # the others within 10 s: no fetch
        assert metric(b, "bridge_jwks_unknown_kid_total", outcome="refetched") == 1
        assert metric(b, "bridge_jwks_unknown_kid_total", outcome="rate_limited") == 4
        assert await admitted(b, known.token()) == "alice"
        assert metric(b, "bridge_connections_total", outcome="auth_failed") == 5


async def test_a_key_server_that_is_down_leaves_the_cached_keys_in_use(cache, server, keys) -> None:
    cached, ec, _unpublished = keys
    server.publish(jwks(cached))
    async with jwks_bridge(cache, server, jwks_refresh_s=0.3) as b:
        assert await admitted(b, cached.token()) == "alice"
        server.stop()
        await eventually(lambda: metric(b, "bridge_jwks_fetch_failures_total", reason="unreachable") >= 1,
                         timeout=15, what="a failed fetch")
        status, body = await readyz(b)
        assert status == 200 and body.startswith("ready; jwks: key server failing for"), body
        assert "using 1 cached keys fetched" in body
        assert metric(b, "bridge_jwks_fetch_ok") == 0 and metric(b, "bridge_jwks_keys") == 1
        page = (await get(b, "/metrics"))[1]
        assert 'bridge_jwks_fetch_failures_total{reason="unreachable"}' in page
        assert await admitted(b, cached.token("bob")) == "bob"                   # cached key
        assert await refused(b, ec.token()) == (1008, "Invalid token")           # never a guess
        server.start()                                    # back, on the same port
        await eventually(lambda: metric(b, "bridge_jwks_fetch_ok") == 1, timeout=15,
                         what="a successful fetch after the outage")
        assert await readyz(b) == (200, "ready")


async def test_a_bridge_that_never_got_keys_is_not_ready_and_refuses_every_token(cache, keys) -> None:
    down = JwksServer().start()
    down.stop()                                           # a port nobody listens on
    async with jwks_bridge(cache, down) as b:
        status, body = await readyz(b)
        assert status == 503 and body.startswith("jwks: no keys ("), body
        assert await refused(b, keys[0].token()) == (1008, "Invalid token")
        assert metric(b, "bridge_jwks_fetch_failures_total", reason="unreachable") >= 2


async def test_a_key_server_that_never_answers_costs_at_most_the_timeout(cache, keys) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:   # accepts (backlog), never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/jwks.json"
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with running_bridge(cache.target, jwks_url=url, jwks_timeout_s=0.5) as b:
            assert loop.time() - started < 5                  # the start fetch gave up
            assert metric(b, "bridge_jwks_fetch_failures_total", reason="timeout") == 1
            began = loop.time()
            assert await refused(b, keys[0].token()) == (1008, "Invalid token")
            assert 0.4 < loop.time() - began < 5              # one refetch, cut at 0.5 s
            assert metric(b, "bridge_jwks_fetch_failures_total", reason="timeout") == 2


async def test_malformed_documents_keep_the_cache_and_a_partly_bad_one_is_used(
        cache, server, keys, caplog) -> None:
    first, second, _unpublished = keys
    server.publish(jwks(first))
    caplog.set_level(logging.WARNING, logger="bridge.jwks")
    async with jwks_bridge(cache, server, jwks_refresh_s=0.3) as b:
        for document, reason in ((b"<html>oops</html>", "malformed"), (b'{"issuer": "x"}', "malformed"),
                                 (jwks({"kid": "h", "kty": "oct", "k": "c2VjcmV0"}), "no_usable_keys"),
                                 (b'{"error": "busy"}', "malformed")):
            server.publish(document, status=200)
            base = metric(b, "bridge_jwks_fetch_failures_total", reason=reason)
            await eventually(lambda: metric(b, "bridge_jwks_fetch_failures_total", reason=reason) > base,
                             timeout=15, what=f"a {reason} fetch")
            assert metric(b, "bridge_jwks_keys") == 1
        server.publish(b"busy", status=503)
        await eventually(lambda: metric(b, "bridge_jwks_fetch_failures_total", reason="http_status") >= 1,
                         timeout=15, what="an HTTP 503 fetch")
        assert await admitted(b, first.token()) == "alice"   # all along: the cached key
        server.publish(jwks(second, {"kid": "h", "kty": "oct", "k": "c2VjcmV0"},
                            first.jwk(kid="private", d="AQAB")))
        await eventually(lambda: b.app.jwks is not None and b.app.jwks.key(second.kid) is not None,
                         timeout=15, what="the partly bad document applied")
        assert metric(b, "bridge_jwks_skipped_keys_total", reason="unsupported_kty") >= 1
        assert metric(b, "bridge_jwks_skipped_keys_total", reason="bad_fields") >= 1
        log = caplog.text
        assert f"jwks: key 'h' of {server.url} not used (unsupported_kty): kty 'oct'" in log
        assert f"jwks: fetching {server.url} failed (malformed): not JSON" in log
        assert "failed (no_usable_keys): no usable key among 1; keeping 1 cached keys" in log
        assert "failed (http_status): HTTP 503" in log
        assert await admitted(b, second.token()) == "alice"
        assert await refused(b, first.token()) == (1008, "Invalid token")  # no longer published


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[JwksServer, Path]]:
    files = make_tls_files(tmp_path)
    with JwksServer(tls=files) as key_server:
        yield key_server, files.ca


async def test_over_https_with_a_private_ca(cache, tls_server, keys) -> None:
    server, ca = tls_server
    old, _ec, new = keys
    server.publish(jwks(old))
    assert server.url.startswith("https://127.0.0.1:")
    async with jwks_bridge(cache, server, jwks_ca_file=str(ca)) as b:
        assert await admitted(b, old.token()) == "alice"
        server.publish(jwks(new))
        assert await admitted(b, new.token("bob")) == "bob"     # rotation over HTTPS
        assert server.hits == 2 and await readyz(b) == (200, "ready")


async def test_redirects_are_followed_but_never_from_https_to_http(cache, tls_server, server, keys) -> None:
    https, ca = tls_server
    moved = JwksServer().start()
    try:
        moved.publish(jwks(keys[0]))
        server.publish(b"", status=301, headers={"Location": moved.url})       # http -> http
        async with jwks_bridge(cache, server) as b:
            assert await admitted(b, keys[0].token()) == "alice" and moved.hits == 1
        https.publish(b"", status=302, headers={"Location": moved.url})        # https -> http
        async with jwks_bridge(cache, https, jwks_ca_file=str(ca)) as b:
            assert metric(b, "bridge_jwks_fetch_failures_total", reason="http_status") == 1
            assert "refused: not https" in (await readyz(b))[1]
            assert moved.hits == 1                                             # never asked
    finally:
        moved.stop()


async def test_over_https_a_server_the_system_cas_do_not_trust_gives_no_keys(cache, tls_server, keys) -> None:
    server, _ca = tls_server
    server.publish(jwks(keys[0]))
    async with jwks_bridge(cache, server) as b:            # no --jwks-ca-file: system CAs
        assert metric(b, "bridge_jwks_fetch_failures_total", reason="tls") == 1
        status, body = await readyz(b)
        assert status == 503 and "certificate verify failed" in body, body
        assert await refused(b, keys[0].token()) == (1008, "Invalid token")
        assert server.hits == 0                             # no document left the server
