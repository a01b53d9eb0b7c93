"""The real stack for the JavaScript client's tests, and the HTTP control the JS side drives.

Redis (a container of the test's own, so it can be restarted), the cache service and a bridge
(in this event loop, real sockets), a publisher writing tickers, orders, a book and trades over
gRPC, and a tiny HTTP server through which the JavaScript tests (Node or a page in Chromium)
ask for faults and for the publisher to stop or start:

    POST /publish?label=L   start publishing (trade ids are ``L-<n>``)
    POST /quiesce           stop publishing; answers once the last write is acknowledged
    POST /fault/bridge      drain the bridge (close 1001) and start a new one on the same port
    POST /fault/redis       restart Redis
    POST /fault/cache       stop the cache service, start it again on the same port
    POST /fault/stall       the TCP proxy in front of the bridge stops forwarding (no close)
    POST /fault/unstall     it forwards again
    POST /token?ttl=S       a token for alice that expires in S seconds (the bridge warns 3 s before)
    GET  /scenario.js       clients/js/test/scenario.js, for a page in Chromium (CORS allowed)

Every answer is JSON; a failed fault is a 500 with the error, so the JS test fails with it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc

from devstack.ports import free_port
from marketbridge.api.v1 import cache_pb2 as pb
from tests.factories import OrderFactory, TickerFactory, TradeFactory
from tests.infra.bridge_runner import RunningBridge, running_bridge
from tests.infra.cache_service_runner import InProcessCacheService, running_cache_service
from tests.infra.feed import Feed
from tests.infra.redis_servers import RedisServer
from tests.infra.tokens import make_token

log = logging.getLogger(__name__)
SCENARIO_JS = Path(__file__).resolve().parents[3] / "clients" / "js" / "test" / "scenario.js"

EXCHANGE = "binance"
SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT")
BOOK_SYMBOL = "BTC/USDT"
ORDER_IDS = tuple(f"alice-js-{n:02d}" for n in range(8))
TOKEN_WARNING_S = 3.0   # token_expiring this long before exp: a refresh test need not wait 30 s
TICK_S = 0.05   # one round of writes every 50 ms: 100 tickers/s, 20 orders, book deltas, trades


@dataclass
class BookModel:
    """The publisher's own book, so that after a failed write it can publish a whole snapshot."""

    rng: random.Random
    bids: dict[str, str] = field(default_factory=dict)
    asks: dict[str, str] = field(default_factory=dict)
    sequence: int = 0
    need_snapshot: bool = True

    def __post_init__(self) -> None:
        for i in range(15):
            self.bids[f"{49999.5 - i * 0.5:.1f}"] = "1.5"
            self.asks[f"{50000.5 + i * 0.5:.1f}"] = "1.5"

    def next_message(self) -> pb.PublishBookRequest:
        """A delta changing one level, or the whole book after a failed write."""
        self.sequence += 1
        if self.need_snapshot:
            return self._levels(snapshot=True, bids=sorted(self.bids.items()),
                                asks=sorted(self.asks.items()))
        side, book, base, sign = ((("bids", self.bids, 49999.5, -1)) if self.rng.random() < 0.5
                                  else ("asks", self.asks, 50000.5, 1))
        price = f"{base + sign * self.rng.randrange(0, 20) * 0.5:.1f}"
        qty = "0" if (price in book and self.rng.random() < 0.3) else f"{self.rng.uniform(0.1, 3):.3f}"
        if qty == "0":
            del book[price]
        else:
            book[price] = qty
        change = [(price, qty)]
        return self._levels(snapshot=False, bids=change if side == "bids" else [],
                            asks=change if side == "asks" else [])

    def _levels(self, snapshot: bool, bids: list[tuple[str, str]],
                asks: list[tuple[str, str]]) -> pb.PublishBookRequest:
        return pb.PublishBookRequest(
            exchange=EXCHANGE, symbol=BOOK_SYMBOL, snapshot=snapshot, sequence=self.sequence,
            time=time.time(),
            bids=[pb.BookLevel(price=p, qty=q) for p, q in bids],
            asks=[pb.BookLevel(price=p, qty=q) for p, q in asks])


class Publisher:
    """Writes a round of every kind of data each TICK_S while started; survives service faults."""

    def __init__(self, target: str) -> None:
        self.feed = Feed(target)
        self.rng = random.Random(15)
        self.book = BookModel(self.rng)
        self.label = "run"
        self.trades = 0
        self.rounds = 0
        self.failures = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def start(self, label: str) -> None:
        if self._task is not None:
            return
        self.label, self.trades = label, 0
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def quiesce(self) -> None:
        """Stop, after the round in flight is acknowledged (or has failed)."""
        if self._task is None:
            return
        self._stop.set()
        task, self._task = self._task, None
        await asyncio.wait_for(task, timeout=30)

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self._round()
                self.rounds += 1
            except grpc.aio.AioRpcError as error:
                # the service or Redis is down: a book write may be lost, so the next is a snapshot
                self.failures += 1
                self.book.need_snapshot = True
                log.debug("publisher: %s", error.code())
            try:
                await asyncio.wait_for(self._stop.wait(), TICK_S)
            except TimeoutError:
                pass

    async def _round(self) -> None:
        now = time.time()
        tickers = [TickerFactory(exchange=EXCHANGE, symbol=s, time=now,
                                 price=round(100 + self.rng.uniform(0, 50), 4))
                   for s in SYMBOLS]
        await self.feed.tickers(tickers)
        order_id = ORDER_IDS[self.rounds % len(ORDER_IDS)]
        await self.feed.order(order_id=order_id, user_id="alice", filled=round(self.rng.uniform(0, 0.1), 6),
                              created_at=1700000000.0, updated_at=now)
        message = self.book.next_message()
        await self.feed.book(message)
        self.book.need_snapshot = False
        trade_id = f"{self.label}-{self.trades}"
        self.trades += 1
        await self.feed.trades(TradeFactory(exchange=EXCHANGE, symbol=self.rng.choice(SYMBOLS),
                                            trade_id=trade_id, time=now))

    async def close(self) -> None:
        await self.quiesce()
        await self.feed.close()


class Stack:
    """Redis, cache service, bridge on a fixed port (restartable), proxy, publisher."""

    def __init__(self, redis: RedisServer, cache: InProcessCacheService, port: int) -> None:
        self.redis = redis
        self.cache = cache
        self.port = port
        self.bridge: RunningBridge | None = None
        self._bridge_stack = AsyncExitStack()
        self.publisher = Publisher(cache.target)
        self.proxy: Any = None   # tests.infra.tcp_proxy.StallingProxy, when the test has one

    async def start_bridge(self) -> None:
        self._bridge_stack = AsyncExitStack()
        self.bridge = await self._bridge_stack.enter_async_context(
            running_bridge(self.cache.target, port=self.port, token_warning_s=TOKEN_WARNING_S))

    async def stop_bridge(self) -> None:
        await self._bridge_stack.aclose()
        self.bridge = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def fault(self, name: str) -> dict[str, Any]:
        started = time.monotonic()
        if name == "bridge":
            await self.stop_bridge()   # drains: every client gets 1001 "server shutting down"
            await self.start_bridge()
        elif name == "redis":
            await asyncio.to_thread(self.redis.restart)
        elif name == "cache":
            await self.cache.stop()
            await self.cache.start()
        elif name == "stall":
            self.proxy.stall()
        elif name == "unstall":
            self.proxy.resume()
        else:
            raise ValueError(f"unknown fault {name!r}")
        return {"fault": name, "seconds": round(time.monotonic() - started, 3)}

    async def handle(self, method: str, path: str, query: dict[str, list[str]]) -> dict[str, Any]:
        if path == "/publish":
            self.publisher.start(query.get("label", ["run"])[0])
            return {"publishing": True}
        if path == "/quiesce":
            await self.publisher.quiesce()
            return {"rounds": self.publisher.rounds, "failures": self.publisher.failures,
                    "trades": self.publisher.trades}
        if path == "/token":
            ttl = float(query.get("ttl", ["60"])[0])
            return {"token": make_token("alice", exp=ttl), "exp": int(time.time() + ttl)}
        if path.startswith("/fault/"):
            return await self.fault(path.removeprefix("/fault/"))
        raise KeyError(path)


Handler = Callable[[str, str, dict[str, list[str]]], Awaitable[dict[str, Any]]]


@asynccontextmanager
async def control_server(handle: Handler) -> AsyncIterator[str]:
    """A one-request-per-connection HTTP/1.1 server on 127.0.0.1; yields its base URL."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode().split()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass   # headers: nothing to read from them
            method, target = request_line[0], request_line[1]
            parts = urlsplit(target)
            # the scenarios, for a page in Chromium (they import nothing of their own)
            if parts.path == "/scenario.js":
                source = SCENARIO_JS.read_bytes()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/javascript\r\n"
                             b"Access-Control-Allow-Origin: *\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(source) + source)
                await writer.drain()
                return
            try:
                status, body = 200, await handle(method, parts.path, parse_qs(parts.query))
            except KeyError:
                status, body = 404, {"error": f"no route {parts.path}"}
            except Exception as error:  # the JS test must see why its fault failed
                log.exception("control %s failed", target)
                status, body = 500, {"error": repr(error)}
            payload = json.dumps(body).encode()
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                         f"Access-Control-Allow-Origin: *\r\nContent-Length: {len(payload)}\r\n"
                         f"Connection: close\r\n\r\n".encode() + payload)
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def js_stack(redis: RedisServer) -> AsyncIterator[Stack]:
    """The whole stack on ``redis`` (a server of the test's own: the Redis fault restarts it)."""
    async with running_cache_service(redis.url) as cache:
        stack = Stack(redis, cache, free_port())
        await stack.start_bridge()
        try:
            yield stack
        finally:
            await stack.publisher.close()
            await stack.stop_bridge()
