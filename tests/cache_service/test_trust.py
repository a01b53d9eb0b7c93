"""Whose user metadata the cache service believes (cache_service/trust.py, docs/cache_service.md
"Trust model"): in ``any`` mode every caller's ``x-user-id``; in ``mtls`` mode only that of the
allowed client certificates, other peers being internal writers (no user metadata) or refused
PERMISSION_DENIED. Real gRPC with real mTLS (one CA, a server and two client certificates),
real Redis, a real bridge."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from cache_service.trust import LogThrottle, Peer, UserMetadataPolicy
from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.api.v1 import cache_pb2_grpc
from marketbridge.metadata import SCOPE_HEADER, USER_HEADER
from tests.bridge.client import client
from tests.factories import OrderFactory, TickerFactory
from tests.infra.bridge_runner import running_bridge
from tests.infra.cache_calls import ALICE, rpc_error
from tests.infra.cache_service_runner import InProcessCacheService, running_cache_service
from tests.infra.certs import CertDir, make_pki_clients
from tests.infra.tokens import make_token

pytestmark = pytest.mark.cluster_too  # SPEC §9.4: the trust model (§3 scoping) on a cluster too

TIMEOUT = 10.0
SERVER_NAMES = ["localhost", "127.0.0.1"]
BRIDGE, FEED = "bridge", "feed-handler"
Pki = tuple[CertDir, dict[str, CertDir]]
Stub = cache_pb2_grpc.CacheServiceStub


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """One CA; the server's certificate and the bridge's and a feed handler's client ones."""
    return make_pki_clients(tmp_path, SERVER_NAMES, [BRIDGE, FEED])


def mtls_settings(server: CertDir, **trust: Any) -> dict[str, Any]:
    """CacheConfig fields of a service that requires client certificates of the test CA."""
    return {"tls_cert_file": str(server.cert), "tls_key_file": str(server.key),
            "tls_client_ca_file": str(server.ca), **trust}


@asynccontextmanager
async def as_peer(svc: InProcessCacheService, peer: CertDir) -> AsyncIterator[Stub]:
    """A stub whose channel presents ``peer``'s client certificate."""
    credentials = grpc.ssl_channel_credentials(peer.ca.read_bytes(), peer.key.read_bytes(),
                                               peer.cert.read_bytes())
    async with grpc.aio.secure_channel(f"localhost:{svc.port}", credentials) as channel:
        yield cache_pb2_grpc.CacheServiceStub(channel)


def sample(svc: InProcessCacheService, name: str, **labels: str) -> float:
    assert svc.server is not None
    return svc.server.metrics.registry.get_sample_value(name, labels) or 0.0


async def write_orders(stub: Stub) -> tuple[pb.Order, pb.Order]:
    """An order of alice's and one of bob's, written as an internal writer (no user metadata)."""
    alices, bobs = OrderFactory(user_id="alice"), OrderFactory(user_id="bob")
    for order in (alices, bobs):
        await stub.UpsertOrder(pb.UpsertOrderRequest(order=order), timeout=TIMEOUT)
    return alices, bobs


async def order_ids(stub: Stub, metadata: Any = None) -> set[str]:
    reply = await stub.ListOrders(pb.ListOrdersRequest(), metadata=metadata, timeout=TIMEOUT)
    return {o.order_id for o in reply.orders}


# ---------------------------------------------------------------- the decision, sans I/O

def test_peer_names_come_from_the_certificate_cn_and_sans() -> None:
    auth = {"x509_common_name": [b"bridge"], "transport_security_type": [b"ssl"],
            "x509_subject_alternative_name": [b"bridge", b"spiffe://mb/bridge"]}
    assert Peer.from_auth_context(auth).names == ("bridge", "spiffe://mb/bridge")
    assert Peer.from_auth_context({"transport_security_type": [b"insecure"]}).shown == "no client certificate"


@pytest.mark.parametrize(("metadata", "peer", "refused"), [
    (ALICE, ("bridge",), False),
    (ALICE, ("feed-handler",), True),
    (ALICE, ("other-cn", "bridge"), False),                 # a SAN may be the allowed name
    (ALICE, (), True),                                       # no certificate at all
    ([(SCOPE_HEADER, "admin")], ("feed-handler",), True),    # a scope alone claims a user too
    ([(USER_HEADER, "")], ("feed-handler",), True),          # so does an empty id
    ([("x-request-id", "1")], ("feed-handler",), False),     # an internal writer
    (None, (), False),
])
def test_mtls_policy(metadata: Any, peer: tuple[str, ...], refused: bool) -> None:
    policy = UserMetadataPolicy("mtls", frozenset({"bridge"}))
    assert (policy.refusal(metadata, Peer(peer)) is not None) is refused
    assert UserMetadataPolicy().refusal(metadata, Peer(peer)) is None   # "any" believes everyone


def test_log_throttle_holds_back_and_then_counts() -> None:
    throttle = LogThrottle(10.0)
    assert throttle.admit(0.0) == 0
    assert throttle.admit(1.0) is None and throttle.admit(9.9) is None
    assert throttle.admit(10.0) == 2
    assert throttle.admit(25.0) == 0


# ---------------------------------------------------------------- "any": as before

async def test_any_mode_believes_every_callers_user_metadata(redis_url: str, pki: Pki) -> None:
    server, clients = pki
    async with (running_cache_service(redis_url, **mtls_settings(server)) as svc,
                as_peer(svc, clients[FEED]) as feed, as_peer(svc, clients[BRIDGE]) as bridge):
        alices, bobs = await write_orders(feed)
        for stub in (feed, bridge):
            assert await order_ids(stub, ALICE) == {alices.order_id}
            assert await order_ids(stub) == {alices.order_id, bobs.order_id}
        assert sample(svc, "cache_user_metadata_refused_total") == 0


# ---------------------------------------------------------------- "mtls"

async def test_mtls_mode_the_bridge_speaks_for_users_others_write(redis_url: str, pki: Pki) -> None:
    server, clients = pki
    settings = mtls_settings(server, user_metadata_from="mtls", user_metadata_peers=(BRIDGE,))
    async with (running_cache_service(redis_url, **settings) as svc,
                as_peer(svc, clients[FEED]) as feed, as_peer(svc, clients[BRIDGE]) as bridge):
        alices, bobs = await write_orders(feed)
        tickers = TickerFactory.build_batch(3)
        reply = await feed.PublishTickers(iter([pb.PublishTickerRequest(ticker=t) for t in tickers]),
                                          timeout=TIMEOUT)
        assert reply.accepted == len(tickers)
        first = tickers[0]
        got = await bridge.GetTicker(pb.GetTickerRequest(exchange=first.exchange, symbol=first.symbol),
                                     metadata=ALICE, timeout=TIMEOUT)
        assert got == first
        assert await order_ids(bridge, ALICE) == {alices.order_id}
        assert await order_ids(bridge) == {alices.order_id, bobs.order_id}   # the bridge, internally
        assert await order_ids(feed) == {alices.order_id, bobs.order_id}
        assert sample(svc, "cache_user_metadata_refused_total") == 0


async def test_mtls_mode_refuses_user_metadata_from_other_peers(redis_url: str, pki: Pki,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    server, clients = pki
    settings = mtls_settings(server, user_metadata_from="mtls", user_metadata_peers=(BRIDGE,))
    caplog.set_level(logging.WARNING, logger="cache_service.interceptor")
    async with (running_cache_service(redis_url, **settings) as svc,
                as_peer(svc, clients[FEED]) as feed):
        await write_orders(feed)
        ticker = TickerFactory()
        refused = [
            feed.ListOrders(pb.ListOrdersRequest(), metadata=ALICE, timeout=TIMEOUT),
            feed.ListOrders(pb.ListOrdersRequest(), metadata=[(SCOPE_HEADER, "admin")], timeout=TIMEOUT),
            feed.PublishTicker(pb.PublishTickerRequest(ticker=ticker), metadata=ALICE, timeout=TIMEOUT),
            feed.PublishTickers(iter([pb.PublishTickerRequest(ticker=ticker)]), metadata=ALICE,
                                timeout=TIMEOUT),
        ]
        for call in refused:
            error = await rpc_error(call)
            assert error.code() == grpc.StatusCode.PERMISSION_DENIED, error
            assert "may not send user metadata" in (error.details() or "")
        stream = feed.StreamOrders(pb.StreamOrdersRequest(), metadata=ALICE, timeout=TIMEOUT)
        assert (await rpc_error(stream.read())).code() == grpc.StatusCode.PERMISSION_DENIED
        missing = await rpc_error(feed.GetTicker(pb.GetTickerRequest(exchange=ticker.exchange,
                                                                     symbol=ticker.symbol), timeout=TIMEOUT))
        assert missing.code() == grpc.StatusCode.NOT_FOUND                  # the refused writes wrote nothing
        assert sample(svc, "cache_user_metadata_refused_total") == 5
        assert sample(svc, "cache_grpc_requests_total", method="ListOrders", code="PERMISSION_DENIED") == 2
    lines = [r.getMessage() for r in caplog.records if "carries user metadata" in r.getMessage()]
    assert len(lines) == 1 and FEED in lines[0] and BRIDGE in lines[0]   # one line, not five


async def test_mtls_mode_matches_a_subject_alternative_name(redis_url: str, pki: Pki) -> None:
    server, clients = pki   # the server's certificate: CN localhost, SANs localhost and 127.0.0.1
    settings = mtls_settings(server, user_metadata_from="mtls", user_metadata_peers=("127.0.0.1",))
    async with (running_cache_service(redis_url, **settings) as svc,
                as_peer(svc, server) as by_san, as_peer(svc, clients[BRIDGE]) as bridge):
        alices, _bobs = await write_orders(bridge)
        assert await order_ids(by_san, ALICE) == {alices.order_id}
        assert (await rpc_error(order_ids(bridge, ALICE))).code() == grpc.StatusCode.PERMISSION_DENIED


# ---------------------------------------------------------------- through a real bridge

async def test_a_bridge_with_the_allowed_certificate_serves_users(redis_url: str, pki: Pki) -> None:
    server, clients = pki
    settings = mtls_settings(server, user_metadata_from="mtls", user_metadata_peers=(BRIDGE,))
    async with running_cache_service(redis_url, **settings) as svc, as_peer(svc, clients[FEED]) as feed:
        alices, _bobs = await write_orders(feed)
        for peer, allowed in ((clients[BRIDGE], True), (clients[FEED], False)):
            tls = {"grpc_tls_ca_file": str(peer.ca), "grpc_tls_cert_file": str(peer.cert),
                   "grpc_tls_key_file": str(peer.key)}
            async with (running_bridge(f"localhost:{svc.port}", **tls) as b,
                        client(b.ws_url(make_token("alice"))) as c):
                reply = await c.request("list_orders")
                if allowed:
                    assert reply["success"], reply
                    assert [o["order_id"] for o in reply["result"]] == [alices.order_id]
                else:   # a bridge with another certificate cannot speak for alice
                    assert reply["error"]["code"] == "FORBIDDEN", reply
        assert sample(svc, "cache_user_metadata_refused_total") >= 1
