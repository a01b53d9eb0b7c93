"""A minimal bridge client (docs/quickstart.md §3).

    python docs/examples/quickstart_client.py 'ws://127.0.0.1:8080/ws?token=...'
"""

import asyncio
import json
import sys

import websockets

REQUESTS = {  # request_id -> (action, params)
    1: ("subscribe", {"channel": "tickers", "exchange": "binance"}),
    2: ("get_ticker", {"exchange": "binance", "symbol": "BTC/USDT"}),
    3: ("list_orders", {"limit": 3}),
}


async def main(url: str, updates_wanted: int = 3) -> None:
    async with websockets.connect(url, max_size=None) as ws:  # snapshots have no size cap
        print("welcome", json.loads(await ws.recv())["session_id"])
        for request_id, (action, params) in REQUESTS.items():
            request = {"action": action, "request_id": request_id, "params": params}
            await ws.send(json.dumps(request))
        waiting, updates = dict(REQUESTS), 0
        while waiting or updates < updates_wanted:
            frame = json.loads(await ws.recv())
            if frame["type"] == "response":  # replies come as requests finish: match by request_id
                action, _ = waiting.pop(frame["request_id"])
                print(action, json.dumps(frame.get("result", frame.get("error"))))
            elif frame["type"] == "update":
                updates += 1
                print("update", frame["result"]["symbol"], frame["result"]["price"])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
