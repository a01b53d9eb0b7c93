"""The baseline the bridge is compared with: a plain ``websockets`` pub/sub relay.

One Redis pub/sub subscription; every message on the channel is broadcast verbatim to every
connected client with ``websockets.broadcast`` (encoded once, written to each socket, no
per-client work, no auth, no backpressure handling). It is the simplest fan-out server one
would write, and so the floor the bridge has to beat while doing auth, limits and resume.

Clients that connect with ``?batch_ms=N`` get the messages of each ``--batch-ms`` window
joined into one ``batch`` frame, built once and broadcast to all of them: the reference for
what a broadcast-once batching design costs per update.

    python -m bench.baseline_pubsub --redis-url redis://127.0.0.1:6379 --port 8090
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from urllib.parse import parse_qs, urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from websockets.asyncio.server import ServerConnection, broadcast, serve

RESUBSCRIBE_DELAY_S = 0.1


class Relay:
    """The connected clients (plain and batched) and the pub/sub loop that feeds them."""

    def __init__(self, batch_ms: int) -> None:
        self.clients: set[ServerConnection] = set()
        self.batch_clients: set[ServerConnection] = set()
        self.batch_s = batch_ms / 1000.0
        self.pending: list[str] = []
        self.flush_scheduled = False
        self.resubscribes = 0

    async def handler(self, connection: ServerConnection) -> None:
        """Keep the client registered until it goes away; whatever it sends is ignored."""
        query = parse_qs(urlsplit(connection.request.path).query) if connection.request else {}
        group = self.batch_clients if "batch_ms" in query else self.clients
        group.add(connection)
        try:
            async for _ in connection:
                pass
        finally:
            group.discard(connection)

    def relay(self, text: str) -> None:
        """Broadcast to plain clients now; queue for the batched ones' next window."""
        if self.clients:
            broadcast(self.clients, text)
        if self.batch_clients:
            self.pending.append(text)
            if not self.flush_scheduled:
                self.flush_scheduled = True
                asyncio.get_running_loop().call_later(self.batch_s, self.flush)

    def flush(self) -> None:
        """One batch frame for the window, encoded once, written to every batched client."""
        pending, self.pending, self.flush_scheduled = self.pending, [], False
        if pending and self.batch_clients:
            broadcast(self.batch_clients, '{"type":"batch","updates":[' + ",".join(pending) + "]}")

    async def pump(self, redis_url: str, channel: str, subscribed: asyncio.Event) -> None:
        """Broadcast each pub/sub message to every client until cancelled, subscribing again
        when Redis drops the subscription (it does when the relay lags past the pub/sub
        output-buffer limit; what was published meanwhile is lost, as pub/sub is)."""
        while True:
            try:
                await self._pump_once(redis_url, channel, subscribed)
            except (RedisError, OSError) as exc:
                print(f"baseline: pub/sub lost ({exc}); subscribing again", file=sys.stderr)
                self.resubscribes += 1
                await asyncio.sleep(RESUBSCRIBE_DELAY_S)

    async def _pump_once(self, redis_url: str, channel: str, subscribed: asyncio.Event) -> None:
        client = aioredis.Redis.from_url(redis_url)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            subscribed.set()
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None:
                    self.relay(message["data"].decode())
        finally:
            await pubsub.aclose()
            await client.aclose()


async def run(redis_url: str, host: str, port: int, channel: str, batch_ms: int = 10) -> None:
    """Serve until SIGTERM or SIGINT; the port opens only once the channel is subscribed."""
    relay = Relay(batch_ms)
    subscribed = asyncio.Event()
    pump = asyncio.create_task(relay.pump(redis_url, channel, subscribed))
    await asyncio.wait(
        [pump, asyncio.create_task(subscribed.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    if pump.done():
        pump.result()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(relay.handler, host, port, compression=None, max_size=65536):
        gc.freeze()  # as the bridge and the cache service do after startup: the same footing
        await stop.wait()
    pump.cancel()
    await asyncio.gather(pump, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_pubsub", description=__doc__)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--channel", default="bench:tickers")
    parser.add_argument("--batch-ms", type=int, default=10, help="window of ?batch_ms clients")
    args = parser.parse_args()
    asyncio.run(run(args.redis_url, args.host, args.port, args.channel, args.batch_ms))


if __name__ == "__main__":
    main()
