"""The asyncio layer: one websocket at a time, driven by the sans-I/O :class:`Session`.

It only moves bytes and time: it connects (with the token, ``?batch_ms``, ``?heartbeat_s``),
feeds every frame to the session, carries out the events it returns, declares a silent
connection dead (liveness), and reconnects with backoff. Every protocol rule lives in
:mod:`marketbridge_client.core`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit, parse_qsl

import websockets
from websockets.asyncio.client import ClientConnection

from marketbridge_client.book import OrderBook
from marketbridge_client.core import (Backoff, Deliver, Event, Frame, Liveness, Reply, Send,
                                      Session, SubscribeFailed, Subscription, TokenExpiring,
                                      Update, close_advice, parse_seq)
from marketbridge_client.errors import (ClientError, ConnectionClosed, MessageTooBig, NotConnected,
                                        RequestError, RequestTimeout)

log = logging.getLogger("marketbridge_client")

TokenSource = str | Callable[[], str | Awaitable[str]] | None
DEFAULT_MAX_QUEUE = 100_000


class Stream:
    """One subscription as an async iterator of :class:`Update`; its state stays current
    across reconnects (``records``, ``book``, ``last_seq``) whether or not it is iterated.

    The iterator's queue is bounded (``max_queue``): a consumer that falls that far behind
    loses the oldest items (counted in ``dropped``), never the state.
    """

    def __init__(self, client: Client, sub: Subscription, max_queue: int) -> None:
        self._client = client
        self.subscription = sub
        self._items: deque[Update] = deque(maxlen=max_queue)
        self._wake = asyncio.Event()
        self.dropped = 0
        self.received = 0

    @property
    def channel(self) -> str:
        return self.subscription.channel

    @property
    def records(self) -> dict[Any, Frame]:
        """The entities as they now stand, by key: ``(exchange, symbol)``, ``order_id``, ..."""
        return dict(self.subscription.records)

    @property
    def book(self) -> OrderBook | None:
        return self.subscription.book

    @property
    def last_seq(self) -> str | None:
        return self.subscription.last_seq

    @property
    def stale(self) -> bool:
        """``interrupted`` and not yet ``resumed``: the data may be old."""
        return self.subscription.stale

    def _push(self, update: Update) -> None:
        if len(self._items) == self._items.maxlen:
            self.dropped += 1
        self._items.append(update)
        self.received += 1
        self._wake.set()

    def _fail(self) -> None:
        self._wake.set()

    def __aiter__(self) -> AsyncIterator[Update]:
        return self

    async def __anext__(self) -> Update:
        while not self._items:
            error = self.subscription.error
            if error is not None:
                raise error
            if not self.subscription.active:
                raise StopAsyncIteration
            self._wake.clear()
            await self._wake.wait()
        return self._items.popleft()

    async def wait_for(self, check: Callable[[Stream], bool], timeout: float) -> None:
        """Until ``check(self)`` holds (re-checked on every item); TimeoutError after ``timeout``."""
        async with asyncio.timeout(timeout):
            while True:
                self._wake.clear()
                if check(self):
                    return
                if self.subscription.error is not None:
                    raise self.subscription.error
                await self._wake.wait()

    async def wait_seq(self, seq: str, timeout: float) -> None:
        """Until this subscription has processed ``seq`` (or later)."""
        target = parse_seq(seq)
        await self.wait_for(lambda s: s.last_seq is not None and parse_seq(s.last_seq) >= target,
                            timeout)

    async def close(self) -> None:
        """Unsubscribe; the iterator ends."""
        await self._client._remove(self)

    async def __aenter__(self) -> Stream:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


class Client:
    """A marketbridge client: requests, subscriptions, reconnects. Use as ``async with``."""

    def __init__(self, url: str, token: TokenSource = None, *, batch_ms: int | None = None,
                 heartbeat_s: int | None = 10, heartbeat_misses: int = 3,
                 request_timeout: float = 10.0, open_timeout: float = 10.0,
                 backoff: Backoff | None = None, max_queue: int = DEFAULT_MAX_QUEUE,
                 ping_every_s: float = 30.0, proxy: str | None = None) -> None:
        self.url, self.token = url, token
        self.batch_ms, self.heartbeat_s, self.heartbeat_misses = batch_ms, heartbeat_s, heartbeat_misses
        self.request_timeout, self.open_timeout = request_timeout, open_timeout
        self.backoff = backoff or Backoff()
        self.max_queue, self.ping_every_s, self.proxy = max_queue, ping_every_s, proxy
        self.session = Session()
        self.connections = 0          # welcomes received so far
        self.dead_connections = 0     # connections declared dead by liveness
        self.refreshes = 0            # tokens renewed on token_expiring
        self.last_close: ConnectionClosed | None = None
        self.error: ClientError | None = None   # fatal: the client stopped
        self._ws: ClientConnection | None = None
        self._streams: dict[int, Stream] = {}
        self._replies: dict[int, asyncio.Future[Frame]] = {}
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._run_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._renew_token = False

    # ------------------------------------------------------------------ lifecycle
    async def connect(self, timeout: float = 30.0) -> Frame:
        """Start, and return the first welcome; raise the fatal error (e.g. PolicyViolation)."""
        if self._run_task is None:
            self._run_task = asyncio.create_task(self._run())
        await self.wait_until(lambda: self.session.welcome is not None, timeout)
        assert self.session.welcome is not None
        return self.session.welcome

    async def close(self) -> None:
        self._closing.set()
        if self._ws is not None:
            await self._ws.close()
        if self._run_task is not None:
            # a connect in progress would hold us up to open_timeout: cut it short
            done, _ = await asyncio.wait([self._run_task], timeout=3.0)
            if not done:
                self._run_task.cancel()
            await asyncio.gather(self._run_task, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._fail_all(NotConnected("client closed"))

    async def __aenter__(self) -> Client:
        try:
            await self.connect()
        except BaseException:
            await self.close()      # __aexit__ will not run: do not leave the loop reconnecting
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def wait_until(self, check: Callable[[], bool], timeout: float) -> None:
        """Until ``check()`` holds, re-checked at every connect and close; raises the client's
        fatal error if it stops, TimeoutError after ``timeout``."""
        async with asyncio.timeout(timeout):
            while True:
                self._changed.clear()
                if check():
                    return
                if self.error is not None:
                    raise self.error
                await self._changed.wait()

    # ------------------------------------------------------------------ requests
    async def request(self, action: str, params: Frame | None = None,
                      timeout: float | None = None) -> Any:
        """Send a request and return its ``result``; RequestError with the server's code."""
        timeout = self.request_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(timeout):
                await self.wait_until(lambda: self.session.welcome is not None, timeout)
                request_id, frame = self.session.request(action, params)
                future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
                self._replies[request_id] = future
                try:
                    await self._send(frame)
                    reply = await future
                finally:
                    self._replies.pop(request_id, None)
        except TimeoutError:
            raise RequestTimeout(f"{action}: no reply within {timeout:g} s") from None
        if reply.get("type") == "pong":
            return reply
        if not reply.get("success"):
            raise RequestError.from_frame(reply)
        return reply.get("result")

    async def ping(self) -> Frame:
        result: Frame = await self.request("ping")
        return result

    async def get_ticker(self, exchange: str, symbol: str) -> Frame:
        return await self.request("get_ticker", {"exchange": exchange, "symbol": symbol})  # type: ignore[no-any-return]

    async def list_tickers(self, exchange: str | None = None, symbols: list[str] | None = None) -> list[Frame]:
        return await self.request("list_tickers", {"exchange": exchange, "symbols": symbols})  # type: ignore[no-any-return]

    async def get_order(self, order_id: str) -> Frame:
        return await self.request("get_order", {"order_id": order_id})  # type: ignore[no-any-return]

    async def list_orders(self, status: str | None = None, symbol: str | None = None,
                          bot_id: str | None = None, limit: int | None = None) -> list[Frame]:
        return await self.request("list_orders", {"status": status, "symbol": symbol,  # type: ignore[no-any-return]
                                                  "bot_id": bot_id, "limit": limit})

    async def get_bot(self, bot_id: str) -> Frame:
        return await self.request("get_bot", {"bot_id": bot_id})  # type: ignore[no-any-return]

    async def list_bots(self) -> list[Frame]:
        return await self.request("list_bots")  # type: ignore[no-any-return]

    async def get_book(self, exchange: str, symbol: str, depth: int | None = None) -> Frame:
        return await self.request("get_book", {"exchange": exchange, "symbol": symbol, "depth": depth})  # type: ignore[no-any-return]

    async def list_trades(self, exchange: str, symbols: list[str] | None = None,
                          limit: int | None = None) -> list[Frame]:
        return await self.request("list_trades", {"exchange": exchange, "symbols": symbols,  # type: ignore[no-any-return]
                                                  "limit": limit})

    async def list_candles(self, exchange: str, symbol: str, interval: str,
                           limit: int | None = None) -> list[Frame]:
        return await self.request("list_candles", {"exchange": exchange, "symbol": symbol,  # type: ignore[no-any-return]
                                                   "interval": interval, "limit": limit})

    # ------------------------------------------------------------------ subscriptions
    def subscribe(self, channel: str, **params: Any) -> Stream:
        """A subscription kept across reconnects: ``async for update in client.subscribe(...)``."""
        sub = Subscription(channel, params)
        stream = Stream(self, sub, self.max_queue)
        self._streams[id(sub)] = stream
        self._spawn(self._execute(self.session.add(sub)))
        return stream

    async def _remove(self, stream: Stream) -> None:
        self._streams.pop(id(stream.subscription), None)
        await self._execute(self.session.remove(stream.subscription))
        stream._fail()

    # ------------------------------------------------------------------ the connection loop
    async def _run(self) -> None:
        """Connect, serve, and after each close decide (close_advice) whether and when to retry."""
        while not self._closing.is_set():
            code, reason = await self._connect_once()
            if self._closing.is_set():
                return
            advice = close_advice(code, reason, can_renew_token=callable(self.token))
            self.last_close = advice.error
            self._changed.set()
            if not advice.retry:
                self._stop(advice.error)
                return
            self._renew_token = advice.renew_token
            if advice.immediate:
                self.backoff.reset()
            delay = self.backoff.next()
            log.info("marketbridge: %s; reconnecting in %.2f s", advice.error, delay)
            try:
                await asyncio.wait_for(self._closing.wait(), delay)
            except TimeoutError:
                pass

    async def _connect_once(self) -> tuple[int, str]:
        """One connection, from opening to close: its close code and reason (1006: no close frame)."""
        try:
            token = await self._get_token()
            headers = {"Authorization": f"Bearer {token}"} if token else None
            async with websockets.connect(self._url(), additional_headers=headers, max_size=None,
                                          open_timeout=self.open_timeout, close_timeout=2,
                                          proxy=self.proxy, compression=None) as ws:
                self._ws = ws
                try:
                    return await self._serve(ws)
                finally:
                    self._ws = None
                    self.session.disconnected()
                    self._fail_replies(NotConnected("connection lost"))
        except websockets.ConnectionClosed as closed:
            return _close_of(closed)
        except (OSError, TimeoutError, websockets.InvalidHandshake) as error:
            return 1006, f"connect failed: {error}"
        except Exception as error:  # noqa: BLE001 - a frame we could not handle: start afresh
            log.exception("marketbridge: connection failed")
            return 1011, f"client error: {error!r}"

    async def _serve(self, ws: ClientConnection) -> tuple[int, str]:
        welcome = json.loads(await asyncio.wait_for(ws.recv(), self.open_timeout))
        self.connections += 1
        events = self.session.connected(welcome)
        self.backoff.reset()
        self._changed.set()
        liveness = self._liveness(welcome)
        watchdog = asyncio.create_task(self._watch(ws, liveness))
        try:
            await self._execute(events)
            async for raw in ws:
                if liveness is not None:
                    liveness.seen(asyncio.get_running_loop().time())
                await self._execute(self.session.receive(json.loads(raw)))
        except websockets.ConnectionClosed:
            pass
        finally:
            watchdog.cancel()
        if watchdog.done() and not watchdog.cancelled() and watchdog.result():
            return 1006, watchdog.result()
        return _close_of_ws(ws)

    def _liveness(self, welcome: Frame) -> Liveness | None:
        heartbeat_s = (welcome.get("limits") or {}).get("heartbeat_s")
        if not heartbeat_s:
            return None
        liveness = Liveness(float(heartbeat_s), self.heartbeat_misses)
        liveness.seen(asyncio.get_running_loop().time())
        return liveness

    async def _watch(self, ws: ClientConnection, liveness: Liveness | None) -> str:
        """Abort a connection that stayed silent past the liveness bound (a stalled network
        closes nothing, so only this notices); send a ``ping`` action now and then so the
        server's idle timeout never fires. Returns why it aborted."""
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self.ping_every_s
        while True:
            wait = next_ping - loop.time()
            if liveness is not None:
                wait = min(wait, liveness.remaining(loop.time()))
            await asyncio.sleep(max(wait, 0.01))
            now = loop.time()
            if liveness is not None and liveness.dead(now):
                self.dead_connections += 1
                why = f"no frame for {liveness.limit_s:g} s (heartbeat_s {self.heartbeat_s})"
                log.warning("marketbridge: %s: connection dead", why)
                ws.transport.abort()
                return why
            if now >= next_ping:
                next_ping = now + self.ping_every_s
                self._spawn(self._quiet(self.ping()))

    async def _get_token(self) -> str | None:
        if self.token is None or isinstance(self.token, str):
            return self.token
        value = self.token()
        token = await value if inspect.isawaitable(value) else value
        self._renew_token = False
        return str(token)

    def _url(self) -> str:
        parts = urlsplit(self.url)
        query = dict(parse_qsl(parts.query))
        if self.batch_ms:
            query["batch_ms"] = str(self.batch_ms)
        if self.heartbeat_s:
            query["heartbeat_s"] = str(self.heartbeat_s)
        return urlunsplit(parts._replace(query=urlencode(query)))

    # ------------------------------------------------------------------ events
    async def _execute(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Deliver):
                stream = self._streams.get(id(event.subscription))
                if stream is not None:
                    stream._push(event.update)
            elif isinstance(event, Send):
                await self._send(event.frame, quiet=True)
            elif isinstance(event, Reply):
                future = self._replies.get(event.request_id)
                if future is not None and not future.done():
                    future.set_result(event.frame)
            elif isinstance(event, SubscribeFailed):
                self._subscribe_failed(event)
            elif isinstance(event, TokenExpiring):
                self._spawn(self._quiet(self._refresh()))

    async def _send(self, frame: Frame, quiet: bool = False) -> None:
        """Write a frame; MessageTooBig before sending one over ``max_frame_bytes`` (the server
        would close 1009)."""
        text = json.dumps(frame, separators=(",", ":"))
        limit = self.session.limits.get("max_frame_bytes")
        if limit and len(text.encode()) > limit:
            raise MessageTooBig(1009, f"{frame.get('action')}: {len(text.encode())} bytes exceeds "
                                      f"max_frame_bytes {limit}")
        ws = self._ws
        if ws is None:
            if quiet:
                return          # the next welcome re-sends what matters (subscriptions)
            raise NotConnected("not connected")
        try:
            await ws.send(text)
        except websockets.ConnectionClosed:
            if not quiet:
                raise NotConnected("connection lost") from None

    def _subscribe_failed(self, event: SubscribeFailed) -> None:
        sub = event.subscription
        if event.retry:
            welcome = self.session.welcome
            self._spawn(self._resubscribe_later(sub, welcome, sub.retry_backoff.next()))
            return
        sub.error = event.error
        stream = self._streams.get(id(sub))
        if stream is not None:
            stream._fail()

    async def _resubscribe_later(self, sub: Subscription, welcome: Frame | None, delay: float) -> None:
        """Retry a subscribe the upstream could not serve, on the same connection."""
        await asyncio.sleep(delay)
        if sub.active and welcome is not None and self.session.welcome is welcome and sub.id is None:
            await self._send(self.session.subscribe_frame(sub), quiet=True)

    async def _refresh(self) -> None:
        """``token_expiring``: send a fresh token from the callback (a fixed token cannot be)."""
        if callable(self.token):
            token = await self._get_token()
            await self.request("refresh", {"token": token})
            self.refreshes += 1
            self._changed.set()

    # ------------------------------------------------------------------ failure
    def _stop(self, error: ClientError) -> None:
        """A close that retrying cannot fix (1008 without a new token): fail everything."""
        self.error = error
        self._closing.set()
        self._fail_all(error)
        self._changed.set()

    def _fail_all(self, error: ClientError) -> None:
        self._fail_replies(error)
        for stream in self._streams.values():
            if stream.subscription.error is None and stream.subscription.active:
                stream.subscription.error = error
            stream._fail()

    def _fail_replies(self, error: ClientError) -> None:
        for future in self._replies.values():
            if not future.done():
                future.set_exception(error)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _quiet(coro: Awaitable[Any]) -> None:
        """Background requests (ping, refresh) must not end the client when they fail."""
        try:
            await coro
        except ClientError as error:
            log.info("marketbridge: background request failed: %s", error)


def _close_of(closed: websockets.ConnectionClosed) -> tuple[int, str]:
    frame = closed.rcvd
    return (frame.code, frame.reason) if frame is not None else (1006, "no close frame")


def _close_of_ws(ws: ClientConnection) -> tuple[int, str]:
    """The close frame received, or 1006 when the TCP connection ended without one."""
    return ws.close_code or 1006, ws.close_reason or ""
