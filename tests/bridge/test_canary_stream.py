"""The canary and upstream lag through a real bridge and cache service (SPEC §9.5, §9.6):
the bridge follows the canary without any client, clients cannot subscribe to it, and every
upstream message's lag is observed under its channel's label only."""

from __future__ import annotations

import pytest

from tests.bridge.client import client
from tests.infra.eventually import eventually
from tests.infra.tokens import make_token

ALICE = make_token("alice")

pytestmark = pytest.mark.cluster_too  # SPEC §9.4, §9.6: the canary holds on a cluster


async def test_the_bridge_follows_the_canary_on_its_own_and_clients_cannot(bridge) -> None:
    canary = bridge.app.canary
    assert canary is not None
    await eventually(lambda: canary.count >= 1, 10, what="a canary reached the bridge")
    assert bridge.app.not_ready_reason() is None
    assert bridge.app.metrics.value("bridge_upstream_streams") == 0   # the clients' topics only
    assert bridge.app.metrics.value("bridge_canary_age_seconds") < 3 * canary.interval_s
    async with client(bridge.ws_url(ALICE)) as c:
        reply = await c.request("subscribe", {"channel": "canary"})
        assert reply["success"] is False and reply["error"]["code"] == "INVALID_PARAMS", reply
        assert "canary" not in reply["error"]["message"]   # not even named as a choice


async def test_upstream_lag_is_observed_per_message_by_channel(bridge, feed) -> None:
    metrics = bridge.app.metrics
    async with client(bridge.ws_url(ALICE)) as c:
        await c.subscribe(channel="tickers", exchange="binance")
        for i in range(5):
            await feed.ticker(symbol="BTC/USDT", price=10.0 + i)
        await c.updates(5)
    count = metrics.value("bridge_upstream_lag_seconds_count", {"channel": "tickers"})
    assert 1 <= count <= 5   # one per upstream message, however many events it carried
    assert metrics.value("bridge_upstream_lag_seconds_sum", {"channel": "tickers"}) >= 0
    labels = {sample.labels.get("channel") for family in metrics.registry.collect()
              if family.name == "bridge_upstream_lag_seconds" for sample in family.samples}
    assert labels <= {"tickers", "canary"}, labels   # a channel, never a symbol or exchange
