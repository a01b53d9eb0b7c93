"""A WebSocket client of the bridge that records everything it receives into the ledger.

It behaves like a well-written trading client: it subscribes, follows ``stream_status`` frames,
and, when the scenario allows a close code (1001 on a bridge restart, 1013 for a slow consumer),
reconnects and resubscribes with ``resume_from`` = the last seq it received on each stream.
Any other close is recorded and fails the ledger check.

Market data (docs/protocol.md section 10): trades are recorded like orders (by trade id, see
tests/infra/ledger.py). For each ``book`` subscription the client keeps a copy
(:class:`marketbridge.market.client_book.ClientBook`) exactly as the protocol asks: load the
subscribe snapshot, apply every ``book_update`` (ClientBook.apply verifies its checksum), replace
the copy on ``snapshot: true``, hold it as stale on ``stale: true`` until the next snapshot.
A mismatch, or an update while stale, is recorded in the ledger as a book problem. A resumed book
subscription resumes from the last seq its copy is at (the subscribe result's seq included), so
the replay applies to that copy.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from marketbridge.market.client_book import ChecksumMismatch, ClientBook
from marketbridge.market.merge import BookUpdate
from tests.infra.ledger import Ledger, seq_key, stream_of

OPEN_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 15.0
SUBSCRIBE_RETRY_S = 30.0
RETRYABLE = ("UNAVAILABLE", "TIMEOUT")
RECONNECT_WINDOW_S = 60.0
RECONNECT_PAUSE_S = 0.1
REPLAY_EVERYTHING = "0-0"


@dataclass(frozen=True)
class SubSpec:
    """What to subscribe to."""

    channel: str
    exchange: str = ""
    symbols: tuple[str, ...] | None = None
    bot_ids: tuple[str, ...] | None = None
    recorded: bool = True   # False: extra load on the first connection only, not in the ledger
    symbol: str = ""        # book: the one symbol of the subscription
    depth: int = 10         # book

    @property
    def stream(self) -> str:
        return stream_of(self.channel, self.exchange, self.symbol, self.depth)

    def params(self, resume_from: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"channel": self.channel}
        if self.channel in ("tickers", "trades", "book"):
            params["exchange"] = self.exchange
        if self.channel == "book":
            params["symbol"] = self.symbol
            params["depth"] = self.depth
        if self.symbols is not None:
            params["symbols"] = list(self.symbols)
        if self.bot_ids is not None:
            params["bot_ids"] = list(self.bot_ids)
        if resume_from is not None:
            params["resume_from"] = resume_from
            params["snapshot"] = False
        return params


@dataclass
class BookCopy:
    """A client's copy of one book subscription, and where it stands."""

    book: ClientBook
    seq: str = ""            # the newest seq the copy is at (what a resume starts from)
    stale: bool = False      # told stale: no update may come until a snapshot
    snapshots: int = 0       # `snapshot: true` updates that replaced the copy
    updates: int = 0         # updates applied (each one's checksum verified)

    def load(self, result: dict[str, Any]) -> None:
        self.book.load([tuple(level) for level in result["bids"]], [tuple(level) for level in result["asks"]])
        self.stale = bool(result.get("stale"))


class LedgerClient:
    """One logical client: possibly several connections in a row, one ledger record."""

    def __init__(self, ledger: Ledger, name: str, url: Callable[[], str], subs: list[SubSpec],
                 user: str, admin: bool = False, reconnect_on: frozenset[int] = frozenset(),
                 recv_buffer: int | None = None, max_queue: int = 16) -> None:
        self.ledger = ledger
        self.name = name
        self.url = url
        self.subs = subs
        self.record = ledger.client(name, user, admin)
        self.reconnect_on = reconnect_on
        self.recv_buffer = recv_buffer
        self.max_queue = max_queue
        self.ws: ClientConnection | None = None
        self.sub_streams: dict[str, SubSpec] = {}
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.subscribing: dict[int, SubSpec] = {}
        self.ids = itertools.count(1)
        self.errors: list[dict[str, Any]] = []
        self.subscribe_retries = 0   # subscribes answered "try again" and sent again
        self.progress = asyncio.Event()
        self.connections = 0
        self.task: asyncio.Task[None] | None = None
        self.resubscribing: asyncio.Task[None] | None = None
        self.closing = False
        self.reading = asyncio.Event()
        self.reading.set()
        self.books: dict[str, BookCopy] = {}   # by stream (book:<exchange>:<symbol>:<depth>)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect, subscribe to everything, and keep reading in the background."""
        await self._connect()
        self.task = asyncio.create_task(self._run(), name=f"client-{self.name}")
        await self._subscribe_all(resume=False)

    async def close(self) -> None:
        self.closing = True
        self.reading.set()
        if self.ws is not None:
            await self.ws.close()
        tasks = [t for t in (self.task, self.resubscribing) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    def stall(self) -> None:
        """Stop reading (a slow consumer): frames pile up in the socket, then at the bridge."""
        self.reading.clear()

    def unstall(self) -> None:
        self.reading.set()

    async def _connect(self) -> None:
        # a client that stalls on a small buffer reads uncompressed frames: deflated ones are so
        # small that backing the bridge up would take far longer than the scenario allows
        compression = None if self.recv_buffer is not None else "deflate"
        self.ws = await websockets.connect(self.url(), open_timeout=OPEN_TIMEOUT_S, max_size=None,
                                           max_queue=self.max_queue, sock=self._socket(),
                                           compression=compression)
        welcome = json.loads(await asyncio.wait_for(self.ws.recv(), OPEN_TIMEOUT_S))
        assert welcome.get("type") == "connection", welcome
        self.connections += 1

    def _socket(self) -> socket.socket | None:
        """A socket with a small receive buffer, so a stalled reader backs up quickly."""
        if self.recv_buffer is None:
            return None
        parts = urlsplit(self.url())
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.recv_buffer)
        sock.settimeout(OPEN_TIMEOUT_S)
        sock.connect((parts.hostname, parts.port))
        sock.setblocking(False)
        return sock

    async def _reconnect(self) -> None:
        """Connect again until the bridge takes us (it may be restarting)."""
        async with asyncio.timeout(RECONNECT_WINDOW_S):
            while True:
                try:
                    await self._connect()
                    return
                except (OSError, InvalidHandshake, InvalidStatus, TimeoutError, ConnectionClosed):
                    await asyncio.sleep(RECONNECT_PAUSE_S)

    async def _run(self) -> None:
        while True:
            assert self.ws is not None
            try:
                async for frame in self.ws:
                    await self.reading.wait()
                    self._on_frame(json.loads(frame))
            except ConnectionClosed:
                pass
            code = self.ws.close_code if self.ws.close_code is not None else 1006
            for future in self.pending.values():
                future.cancel()
            self.pending.clear()
            if self.closing:
                return
            self.ledger.closed(self.name, code, self.ws.close_reason or "")
            self.progress.set()
            if code not in self.reconnect_on:
                return
            await self._reconnect()
            # A task of its own: the replies it waits for are read by this loop.
            self.resubscribing = asyncio.create_task(self._subscribe_all(resume=True))
            self.resubscribing.add_done_callback(self._resubscribed)

    def _resubscribed(self, task: asyncio.Task[None]) -> None:
        """A failed resubscription is the client's error, shown with the verdict, not lost."""
        if not task.cancelled() and task.exception() is not None:
            self.errors.append({"resubscribe": repr(task.exception())})

    # ------------------------------------------------------------ requests

    async def request(self, action: str, params: dict[str, Any] | None = None,
                      timeout: float = REQUEST_TIMEOUT_S,
                      subscribing: SubSpec | None = None) -> dict[str, Any]:
        """Send one request and wait for its reply frame."""
        assert self.ws is not None
        request_id = next(self.ids)
        if subscribing is not None:
            self.subscribing[request_id] = subscribing
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        await self.ws.send(json.dumps({"action": action, "request_id": request_id,
                                       "params": params or {}}))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self.pending.pop(request_id, None)
            self.subscribing.pop(request_id, None)

    async def _subscribe_all(self, resume: bool) -> None:
        self.sub_streams.clear()
        for spec in self.subs:
            if resume and not spec.recorded:
                continue
            await self._subscribe(spec, resume)

    async def _subscribe(self, spec: SubSpec, resume: bool) -> None:
        """Subscribe; an answer that says "try again" (UNAVAILABLE, TIMEOUT: the bridge could not
        reach the cache service at that moment) is tried again, as docs/clients.md asks of a
        client: with a pause doubling up to 2 s, for at most SUBSCRIBE_RETRY_S; each retry is
        counted."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + SUBSCRIBE_RETRY_S
        pause = RECONNECT_PAUSE_S
        while True:
            resume_from = self._resume_point(spec) if resume else None
            reply = await self.request("subscribe", spec.params(resume_from), subscribing=spec)
            if reply.get("success"):
                return
            code = (reply.get("error") or {}).get("code")
            assert code in RETRYABLE and loop.time() + pause < give_up_at, f"{self.name}: subscribe failed: {reply}"
            self.subscribe_retries += 1
            await asyncio.sleep(pause)
            pause = min(2.0, pause * 2)

    def _resume_point(self, spec: SubSpec) -> str:
        """Where a resubscription resumes: the last seq received, or for a book the seq its
        copy is at (a replay from anywhere else would not apply to the copy)."""
        copy = self.books.get(spec.stream)
        if spec.channel == "book" and copy is not None and copy.seq:
            return copy.seq
        return self.record.last_seq(spec.stream) or REPLAY_EVERYTHING

    def _subscribed(self, spec: SubSpec, reply: dict[str, Any]) -> None:
        """Bind the subscription id at once: its updates may be the very next frames."""
        if not reply.get("success"):
            return
        result = reply["result"]
        self.sub_streams[result["subscription_id"]] = spec
        if not spec.recorded:
            return
        self.ledger.subscribed(self.name, spec.channel, spec.exchange, spec.symbols, spec.bot_ids,
                               stream=spec.stream)
        if spec.channel == "book":
            self._book_subscribed(spec, result)
        if not result.get("recovered", True):
            self.ledger.status(self.name, spec.stream, "subscribed", False)

    # ------------------------------------------------------------ frames

    def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "update":
            self._on_update(frame)
        elif kind == "batch":
            for update in frame["updates"]:
                self._on_update(update)
        elif kind == "stream_status":
            spec = self.sub_streams.get(frame["subscription_id"])
            if spec is not None and spec.recorded:
                self.ledger.status(self.name, spec.stream, frame["status"], frame["recovered"])
        elif kind in ("response", "pong"):
            spec = self.subscribing.pop(frame.get("request_id"), None)  # type: ignore[arg-type]
            if spec is not None:
                self._subscribed(spec, frame)
            future = self.pending.get(frame.get("request_id"))  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(frame)
        elif kind == "error":
            self.errors.append(frame)
        self.progress.set()

    def _on_update(self, update: dict[str, Any]) -> None:
        spec = self.sub_streams.get(update["subscription_id"])
        if spec is None or not spec.recorded:   # of a previous connection, or extra load
            return
        if spec.channel == "book":
            self._book_update(spec, update["seq"], update["result"])
            return
        self.ledger.received(self.name, spec.channel, update["seq"], update["result"])

    # ------------------------------------------------------------ books

    def _book_subscribed(self, spec: SubSpec, result: dict[str, Any]) -> None:
        """A fresh subscription loads its snapshot; a resumed one keeps the copy it had."""
        copy = self.books.get(spec.stream)
        snapshot = result.get("snapshot")
        if copy is None or isinstance(snapshot, dict):
            copy = self.books[spec.stream] = BookCopy(ClientBook(spec.depth))
            if not isinstance(snapshot, dict):
                self.ledger.book_problem(self.name, spec.stream, f"no snapshot to start from: {result}")
                copy.stale = True
                return
            copy.load(snapshot)
            if not copy.stale and copy.book.checksum() != snapshot["checksum"]:
                self.ledger.book_problem(self.name, spec.stream, "the subscribe snapshot fails its checksum")
        if result.get("seq") and (not copy.seq or seq_key(result["seq"]) > seq_key(copy.seq)):
            copy.seq = result["seq"]

    def _book_update(self, spec: SubSpec, seq: str, result: dict[str, Any]) -> None:
        """One ``book_update``, applied as docs/protocol.md 10.3 says."""
        self.ledger.received_on(self.name, spec.stream, seq, spec.symbol)
        copy = self.books[spec.stream]
        copy.seq = seq
        if result.get("stale"):
            copy.stale = True
        elif result.get("snapshot"):
            copy.load(result)
            copy.snapshots += 1
            if copy.book.checksum() != result["checksum"]:
                self.ledger.book_problem(self.name, spec.stream, f"snapshot at {seq} fails its checksum")
        elif copy.stale:
            self.ledger.book_problem(self.name, spec.stream, f"update {seq} while the book is stale")
        else:
            try:
                copy.book.apply(BookUpdate(tuple(map(tuple, result["bids"])),
                                           tuple(map(tuple, result["asks"])), result["checksum"]))
                copy.updates += 1
            except ChecksumMismatch as exc:
                self.ledger.book_problem(self.name, spec.stream, f"update {seq}: {exc}")
                copy.stale = True   # a real client re-subscribes; the scenario fails anyway


async def settle(ledger: Ledger, clients: list[LedgerClient], timeout: float = 30.0) -> None:
    """Wait until every client got everything it is owed (or ``timeout``; the check then fails)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        alive = [c for c in clients if c.task is not None and not c.task.done()]
        pending = [c for c in alive if ledger.check(c.name).missing
                   or any(s == "interrupted" for s in c.record.last_status.values())]
        if not pending:
            return
        for client in pending:
            client.progress.clear()
        waits = [asyncio.ensure_future(c.progress.wait()) for c in pending]
        await asyncio.wait(waits, timeout=min(1.0, max(0.0, deadline - loop.time())),
                           return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
