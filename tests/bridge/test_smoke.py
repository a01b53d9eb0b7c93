from tests.bridge.client import client
from tests.infra.tokens import make_token


async def test_smoke(bridge, feed):
    async with client(bridge.ws_url(make_token("alice"))) as c:
        pong = await c.request("ping")
        assert pong["type"] == "pong"
        await feed.ticker(symbol="BTC/USDT", price=1.0)
        res = await c.subscribe(channel="tickers", exchange="binance", symbols=["BTC/USDT"])
        assert res["snapshot"][0]["price"] == 1.0, res
        await feed.ticker(symbol="BTC/USDT", price=2.0)
        (u,) = await c.updates(1)
        assert u["result"]["price"] == 2.0, u
