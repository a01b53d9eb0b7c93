"""``--allowed-origins`` (SPEC §9.3): a handshake from a page of another origin gets HTTP 403."""

from __future__ import annotations

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from bridge.config import ConfigError, load_config
from bridge.origins import OriginPolicy, normalize_origin
from tests.bridge.client import client
from tests.infra.bridge_runner import running_bridge
from tests.infra.tokens import make_token

pytestmark = pytest.mark.cluster_too  # SPEC §9.3 allowed origins on a cluster too (SPEC §9.4)

ALICE = make_token("alice")


def test_origins_are_compared_normalized() -> None:
    assert normalize_origin("HTTPS://App.Example.com:443/") == "https://app.example.com"
    assert normalize_origin("http://localhost:8080") == "http://localhost:8080"
    policy = OriginPolicy.parse(("https://app.example.com", "http://localhost:8080"))
    assert policy.allows("https://APP.example.com") and policy.allows("http://localhost:8080")
    assert policy.allows(None)                       # not a browser: nothing to check
    for other in ("https://evil.example", "http://app.example.com", "http://localhost:8081",
                  "null", "https://app.example.com.evil.example", "garbage"):
        assert not policy.allows(other), other
    assert OriginPolicy.parse(("*",)).allows("https://anything.example")


@pytest.mark.parametrize("value", ["ftp://x", "https://a.example/path", "https://", "https://a.example?q=1"])
def test_a_bad_origin_setting_is_one_line(value) -> None:
    with pytest.raises(ConfigError, match="--allowed-origins: .* is not an origin"):
        load_config(["--allowed-origins", value, "--jwt-secret", "s"], {})


async def test_a_foreign_origin_gets_403_and_an_allowed_one_connects(cache) -> None:
    async with running_bridge(cache.target, allowed_origins=("https://app.example.com",)) as b:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(b.ws_url(ALICE), origin="https://evil.example", open_timeout=10):
                pass
        assert refused.value.response.status_code == 403
        async with client(b.ws_url(ALICE), origin="https://app.example.com") as c:
            assert c.welcome["status"] == "connected"
        async with client(b.ws_url(ALICE)) as c:      # no Origin header: not a browser
            assert c.welcome["status"] == "connected"
        assert b.app.metrics.value("bridge_connections_total", {"outcome": "origin_refused"}) == 1


async def test_the_default_allows_any_origin(bridge) -> None:
    async with client(bridge.ws_url(ALICE), origin="https://anything.example") as c:
        assert c.welcome["status"] == "connected"
