"""Token lifecycle (SPEC §9.3): token_expiring, refresh, close 1008 ``Token expired`` at exp."""

from __future__ import annotations

import time

import pytest

from bridge.auth import Identity
from bridge.errors import BridgeError
from bridge.token_life import EXPIRE, WARN, TokenLife
from tests.bridge.client import client
from tests.infra.bridge_runner import running_bridge
from tests.infra.tokens import make_token

pytestmark = pytest.mark.cluster_too  # SPEC §9.3 token lifecycle holds on a cluster too (SPEC §9.4)


def test_the_clock_warns_then_expires_and_a_refresh_moves_it() -> None:
    life = TokenLife(expires_at=100.0, warning_s=30.0)
    assert life.next(10.0) == (WARN, 70.0)
    assert life.next(95.0) == (WARN, 95.0)          # less left than the warning: at once
    life.warned = True
    assert life.next(95.0) == (EXPIRE, 100.0)
    alice = Identity("alice", frozenset({"read"}), 100.0)
    assert life.refreshed(alice, Identity("alice", frozenset({"read"}), 500.0)) == 500.0
    assert life.next(95.0) == (WARN, 470.0) and not life.warned
    for other in (Identity("bob", frozenset({"read"}), 900.0), Identity("alice", frozenset({"admin"}), 900.0)):
        with pytest.raises(BridgeError, match="FORBIDDEN"):
            life.refreshed(alice, other)
    assert life.expires_at == 500.0
    assert TokenLife(None, 30.0).next(0.0) is None


async def test_a_connection_is_warned_then_closed_at_exp(cache) -> None:
    async with running_bridge(cache.target, token_warning_s=2.0) as b:
        token = make_token("alice", exp=3)
        exp = int(time.time() + 3)
        async with client(b.ws_url(token)) as c:
            warning = await c.wait_for(lambda f: f["type"] == "token_expiring", timeout=10)
            assert abs(warning["expires_at"] - exp) <= 1
            assert time.time() < warning["expires_at"]
            code, reason = await c.closed(timeout=10)
        assert (code, reason) == (1008, "Token expired")
        assert time.time() >= warning["expires_at"]


async def test_a_refresh_for_the_same_user_extends_the_connection(cache) -> None:
    async with running_bridge(cache.target, token_warning_s=1.0) as b:
        async with client(b.ws_url(make_token("alice", exp=2))) as c:
            reply = await c.request("refresh", {"token": make_token("alice", exp=3600)})
            assert reply["success"] and reply["result"]["expires_at"] > time.time() + 3000
            with pytest.raises(TimeoutError):   # the old exp (2 s) passes: no warning, no close
                await c.wait_for(lambda f: f["type"] == "token_expiring", timeout=3.5)
            assert (await c.request("ping"))["type"] == "pong"


async def test_a_refresh_for_another_user_is_forbidden_and_the_old_exp_stands(cache) -> None:
    async with running_bridge(cache.target, token_warning_s=1.0) as b:
        async with client(b.ws_url(make_token("alice", exp=2))) as c:
            reply = await c.request("refresh", {"token": make_token("bob", exp=3600)})
            assert reply["error"]["code"] == "FORBIDDEN" and "another user" in reply["error"]["message"]
            bad = await c.request("refresh", {"token": "not-a-jwt"})
            assert bad["error"]["code"] == "FORBIDDEN" and "Invalid token" in bad["error"]["message"]
            missing = await c.request("refresh", {})
            assert missing["error"]["code"] == "INVALID_PARAMS"
            assert await c.closed(timeout=10) == (1008, "Token expired")


async def test_a_token_without_exp_is_refused_unless_allowed(cache) -> None:
    async with running_bridge(cache.target, jwt_allow_no_exp=False) as b:
        async with client(b.ws_url(make_token("alice", exp=None)), welcome=False) as c:
            assert await c.closed() == (1008, "Invalid token")
    async with running_bridge(cache.target) as b:   # the local default: allowed, never expires
        async with client(b.ws_url(make_token("alice", exp=None))) as c:
            assert "refresh" in c.welcome["features"]
            assert (await c.request("ping"))["type"] == "pong"
