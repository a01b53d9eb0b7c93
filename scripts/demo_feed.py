"""Demo feed: a make-believe market and two traders, written into the cache service over gRPC.

It exists so that ``make up`` (and anyone trying the bridge) sees real traffic: about 20
symbols on two exchanges doing a random walk, published with the bulk ``PublishTickers`` client
stream, and the orders and bots of two demo users (``alice``, ``bob``) written with
``UpsertOrder`` / ``UpsertBot``, as an exchange gateway and a bot engine would. Each symbol
also has an order book and a trades tape (:mod:`scripts.demo_market`), published with the
``PublishBook`` and ``PublishTrades`` client streams; the books' mids follow the tickers.

The simulation (:class:`Market`, :class:`TradingDesk`) is plain, seeded, I/O-free code; the
asyncio layer below only paces it and ships what it produces. The feed is an internal writer,
so it sends no ``x-user-id`` metadata: each record's ``user_id`` names its owner.

The feed outlives the cache service: a lost or refused connection is retried with capped
exponential backoff, and every reconnect first re-sends the full current state so a restarted
(or emptied) cache shows every symbol, order and bot again. Ctrl-C / SIGTERM stop it cleanly.

    python -m scripts.demo_feed --target 127.0.0.1:50051 --rate 50
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import signal
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields

import grpc

from marketbridge.api.v1 import cache_pb2, cache_pb2_grpc
from marketbridge.backoff import Backoff
from marketbridge.channel import open_channel as open_grpc_channel
from marketbridge.market.book import SNAPSHOT_NEEDED
from marketbridge.settings import ConfigError, RaisingParser, add_flags, convert, gather
from scripts.demo_market import DepthMarket

log = logging.getLogger("demo_feed")

ENV_PREFIX = "FEED_"
EXCHANGES = ("binance", "kraken")
# Base prices, roughly where these markets trade; each exchange quotes them slightly apart.
BASE_PRICES: Mapping[str, float] = {
    "BTC/USDT": 67000.0,
    "ETH/USDT": 3500.0,
    "SOL/USDT": 150.0,
    "BNB/USDT": 580.0,
    "XRP/USDT": 0.6,
    "ADA/USDT": 0.45,
    "DOGE/USDT": 0.15,
    "AVAX/USDT": 35.0,
    "DOT/USDT": 7.0,
    "LINK/USDT": 15.0,
}
DEMO_USERS = ("alice", "bob")
BOT_MESSAGES = (
    "waiting for fill",
    "grid rebalanced",
    "order placed",
    "take-profit moved",
    "watching spread",
)


# ---------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class FeedConfig:
    """Every setting of the feed, built once from flags and ``FEED_*`` variables."""

    target: str = "127.0.0.1:50051"
    rate: float = 50.0
    trade_interval: float = 1.0
    window: float = 30.0
    seed: int | None = None
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    backoff_max: float = 10.0
    log_level: str = "INFO"
    book_rate: float = 300.0
    trade_rate: float = 20.0

    def __post_init__(self) -> None:
        if not self.target:
            raise ConfigError("--target must name the cache service, e.g. 127.0.0.1:50051")
        for name in ("rate", "trade_interval", "window", "backoff_max", "book_rate",
                     "trade_rate"):
            if getattr(self, name) <= 0:
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}"
                )
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ConfigError("--tls-cert-file and --tls-key-file go together")
        for name in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise ConfigError(f"--{name.replace('_', '-')}: no such file: {path}")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(
                f"--log-level must be DEBUG, INFO, WARNING or ERROR, got {self.log_level}"
            )


FLAG_HELP: dict[str, str | None] = {
    "target": "cache service HOST:PORT",
    "rate": "ticks per second, all symbols together",
    "trade_interval": "seconds between order/bot updates",
    "window": "seconds per PublishTickers call (each ends with an accepted count)",
    "seed": "random seed, for a repeatable market",
    "tls_ca_file": None,
    "tls_cert_file": None,
    "tls_key_file": None,
    "log_level": None,
    "book_rate": "order book deltas per second, all books together",
    "trade_rate": "trades per second, all symbols together",
}


def parse_config(argv: Sequence[str], environ: Mapping[str, str]) -> FeedConfig:
    """Flags win over ``FEED_<FLAG>`` variables, which win over the defaults."""
    parser = RaisingParser(
        prog="python -m scripts.demo_feed", description=__doc__.split("\n\n")[0]
    )
    add_flags(parser, FLAG_HELP, FLAG_HELP.get)
    args = vars(parser.parse_args(list(argv)))
    types = {f.name: f.type for f in fields(FeedConfig)}
    # An empty value (FEED_SEED=) means "not set": the default applies.
    values = {name: convert(raw, types[name])
              for name, raw in gather(args, FLAG_HELP, environ, ENV_PREFIX).items() if raw.text != ""}
    values["log_level"] = str(values.get("log_level", FeedConfig.log_level)).upper()
    return FeedConfig(**values)


# ---------------------------------------------------------------------------- simulation


@dataclass
class Instrument:
    """One symbol on one exchange: its walk state and the day's reference price."""

    exchange: str
    symbol: str
    price: float
    open_24h: float
    volume: float

    def ticker(self, now: float) -> cache_pb2.Ticker:
        spread = self.price * 0.0002
        return cache_pb2.Ticker(
            exchange=self.exchange,
            symbol=self.symbol,
            price=_round_price(self.price),
            bid=_round_price(self.price - spread / 2),
            ask=_round_price(self.price + spread / 2),
            last=_round_price(self.price),
            volume=round(self.volume, 4),
            change_24h=round((self.price / self.open_24h - 1.0) * 100.0, 3),
            time=now,
        )


def _round_price(price: float) -> float:
    """Keep about six significant digits, as an exchange's tick size would."""
    if price <= 0:
        return price
    digits = max(0, 5 - math.floor(math.log10(price)))
    return round(price, digits)


class Market:
    """A geometric random walk per instrument; each :meth:`tick` moves one instrument."""

    def __init__(
        self,
        rng: random.Random,
        exchanges: Sequence[str] = EXCHANGES,
        base_prices: Mapping[str, float] = BASE_PRICES,
        volatility: float = 0.0008,
    ) -> None:
        self._rng = rng
        self._volatility = volatility
        self.instruments: list[Instrument] = []
        for exchange in exchanges:
            for symbol, base in base_prices.items():
                price = base * rng.uniform(0.995, 1.005)
                self.instruments.append(
                    Instrument(
                        exchange=exchange,
                        symbol=symbol,
                        price=price,
                        open_24h=price * rng.uniform(0.95, 1.05),
                        volume=rng.uniform(1e3, 1e6) / math.sqrt(base),
                    )
                )
        self._by_key = {(i.exchange, i.symbol): i for i in self.instruments}

    def price(self, exchange: str, symbol: str) -> float:
        return self._by_key[(exchange, symbol)].price

    def snapshot(self, now: float) -> list[cache_pb2.Ticker]:
        """Every instrument's current ticker: what a fresh (or restarted) cache needs first."""
        return [instrument.ticker(now) for instrument in self.instruments]

    def tick(self, now: float) -> cache_pb2.Ticker:
        instrument = self._rng.choice(self.instruments)
        instrument.price *= math.exp(self._rng.gauss(0.0, self._volatility))
        instrument.volume += (
            abs(self._rng.gauss(0.0, 1.0)) * 50.0 / math.sqrt(instrument.price + 1.0)
        )
        return instrument.ticker(now)


# Order lifecycle: new -> open -> partially_filled (one or more fills) -> filled, or canceled.
_NEXT_STATUS = {"new": "open", "open": "partially_filled"}
_TERMINAL = frozenset({"filled", "canceled", "rejected"})


@dataclass
class Trader:
    """One demo user's book: live orders (bounded) and bots."""

    user_id: str
    bots: list[cache_pb2.Bot] = field(default_factory=list)
    orders: list[cache_pb2.Order] = field(default_factory=list)
    next_order: int = 1


class TradingDesk:
    """Orders and bots for the demo users; :meth:`step` returns what changed."""

    MAX_LIVE_ORDERS = 4

    def __init__(
        self, rng: random.Random, market: Market, users: Sequence[str] = DEMO_USERS
    ) -> None:
        self._rng = rng
        self._market = market
        self.traders = [self._trader(index, user) for index, user in enumerate(users)]

    def _trader(self, index: int, user: str) -> Trader:
        symbols = list(BASE_PRICES)
        trader = Trader(user_id=user)
        for n in range(2 if index == 0 else 1):
            exchange = EXCHANGES[(index + n) % len(EXCHANGES)]
            picked = self._rng.sample(symbols, 2)
            trader.bots.append(
                cache_pb2.Bot(
                    bot_id=f"{user}-bot-{n + 1}",
                    user_id=user,
                    name=("grid " if n == 0 else "dca ") + picked[0].split("/")[0],
                    status="running",
                    exchange=exchange,
                    symbols=picked,
                    pnl=round(self._rng.uniform(-50, 150), 2),
                    message="started",
                    updated_at=time.time(),
                )
            )
        return trader

    def state(self) -> tuple[list[cache_pb2.Order], list[cache_pb2.Bot]]:
        """Every order and bot held now (sent in full after each reconnect)."""
        orders = [o for t in self.traders for o in t.orders]
        bots = [b for t in self.traders for b in t.bots]
        return orders, bots

    def step(self, now: float) -> tuple[list[cache_pb2.Order], list[cache_pb2.Bot]]:
        """Advance each trader once: one order moves or is placed, bots' pnl drifts."""
        orders: list[cache_pb2.Order] = []
        bots: list[cache_pb2.Bot] = []
        for trader in self.traders:
            orders.append(self._advance_orders(trader, now))
            if self._rng.random() < 0.5:
                bots.append(self._drift_bot(self._rng.choice(trader.bots), now))
        return orders, bots

    def _advance_orders(self, trader: Trader, now: float) -> cache_pb2.Order:
        trader.orders = [o for o in trader.orders if o.status not in _TERMINAL]
        if not trader.orders or (
            len(trader.orders) < self.MAX_LIVE_ORDERS and self._rng.random() < 0.3
        ):
            order = self._place(trader, now)
            trader.orders.append(order)
            return order
        order = self._rng.choice(trader.orders)
        self._progress(order, now)
        return order

    def _place(self, trader: Trader, now: float) -> cache_pb2.Order:
        bot = self._rng.choice(trader.bots + [None])
        exchange = bot.exchange if bot else self._rng.choice(EXCHANGES)
        symbol = self._rng.choice(list(bot.symbols)) if bot else self._rng.choice(list(BASE_PRICES))
        side = self._rng.choice(("buy", "sell"))
        price = self._market.price(exchange, symbol) * (0.998 if side == "buy" else 1.002)
        order = cache_pb2.Order(
            order_id=f"{trader.user_id}-{trader.next_order:05d}",
            user_id=trader.user_id,
            bot_id=bot.bot_id if bot else "",
            exchange=exchange,
            symbol=symbol,
            side=side,
            order_type=self._rng.choice(("limit", "limit", "market", "stop_limit")),
            status="new",
            price=_round_price(price),
            amount=round(1000.0 / price, 6) or 1.0,
            filled=0.0,
            created_at=now,
            updated_at=now,
        )
        trader.next_order += 1
        return order

    def _progress(self, order: cache_pb2.Order, now: float) -> None:
        if order.status == "partially_filled":
            order.filled = min(
                order.amount, order.filled + order.amount * self._rng.uniform(0.2, 0.6)
            )
            if order.filled >= order.amount * 0.999:
                order.filled, order.status = order.amount, "filled"
        elif order.status == "open" and self._rng.random() < 0.1:
            order.status = "canceled"
        else:
            order.status = _NEXT_STATUS[order.status]
            if order.status == "partially_filled":
                order.filled = order.amount * self._rng.uniform(0.1, 0.5)
        order.filled = round(order.filled, 8)
        order.updated_at = now

    def _drift_bot(self, bot: cache_pb2.Bot, now: float) -> cache_pb2.Bot:
        bot.pnl = round(bot.pnl + self._rng.gauss(0.0, 5.0), 2)
        bot.message = self._rng.choice(BOT_MESSAGES)
        bot.updated_at = now
        return bot


# ---------------------------------------------------------------------------- gRPC layer

# Reconnect fast after a cache service restart (gRPC's own default backoff grows to 120 s).
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.keepalive_time_ms", 20000),
)
CALL_TIMEOUT_S = 5.0
RECONNECT_FIRST_S = 0.25
RECONNECT_JITTER = (0.8, 1.2)


def open_channel(config: FeedConfig) -> grpc.aio.Channel:
    """A plaintext channel, or TLS (with a client certificate for mTLS) when files are given."""
    def read(path: str | None) -> bytes | None:
        if not path:
            return None
        with open(path, "rb") as handle:
            return handle.read()

    return open_grpc_channel(
        config.target,
        CHANNEL_OPTIONS,
        ca=read(config.tls_ca_file),
        cert=read(config.tls_cert_file),
        key=read(config.tls_key_file),
    )


class Feed:
    """Ships the simulation into the cache service until ``stop`` is set."""

    def __init__(self, config: FeedConfig, stop: asyncio.Event) -> None:
        rng = random.Random(config.seed)
        self.config = config
        self.market = Market(rng)
        self.desk = TradingDesk(rng, self.market)
        self.depth = DepthMarket(
            rng, self.market, [(i.exchange, i.symbol) for i in self.market.instruments])
        self.books = DepthPublisher(config, self.depth, stop, self._sleep)
        self._stop = stop
        self._backoff = Backoff(RECONNECT_FIRST_S, config.backoff_max, jitter=RECONNECT_JITTER)
        self.published = 0
        self.outages = 0   # sessions the cache service ended (each logged, then retried)

    async def run(self) -> None:
        async with open_channel(self.config) as channel, asyncio.TaskGroup() as depth:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            depth.create_task(self.books.run(stub))   # books and trades retry on their own
            while not self._stop.is_set():
                error: BaseException | None = None
                try:
                    await self._session(stub)
                except* (grpc.aio.AioRpcError, OSError) as group:
                    error = group.exceptions[0]
                if error is not None and not self._stop.is_set():
                    self.outages += 1
                    delay = self._backoff.delay()
                    log.warning(
                        "cache service at %s: %s; retrying in %.1fs",
                        self.config.target,
                        _describe(error),
                        delay,
                    )
                    await self._sleep(delay)

    async def _session(self, stub: cache_pb2_grpc.CacheServiceStub) -> None:
        """One connected period: full state first, then ticks and trading side by side."""
        await self._send_state(stub)
        self._backoff.reset()
        log.info(
            "connected to %s: %d instruments, %d users; publishing %.0f ticks/s",
            self.config.target,
            len(self.market.instruments),
            len(self.desk.traders),
            self.config.rate,
        )
        async with asyncio.TaskGroup() as group:
            group.create_task(self._publish_ticks(stub))
            group.create_task(self._trade(stub))

    async def _send_state(self, stub: cache_pb2_grpc.CacheServiceStub) -> None:
        now = time.time()
        response = await stub.PublishTickers(
            _requests(self.market.snapshot(now)), timeout=CALL_TIMEOUT_S
        )
        self.published += response.accepted
        orders, bots = self.desk.state()
        await self._upsert(stub, orders, bots)

    async def _publish_ticks(self, stub: cache_pb2_grpc.CacheServiceStub) -> None:
        """Back-to-back ``PublishTickers`` calls of ``window`` seconds each."""
        while not self._stop.is_set():
            call = stub.PublishTickers(
                self._paced_ticks(), timeout=self.config.window + CALL_TIMEOUT_S
            )
            response = await call
            self.published += response.accepted
            log.info(
                "published %d ticks (total %d, last seq %s)",
                response.accepted,
                self.published,
                response.last_seq or "-",
            )

    async def _paced_ticks(self) -> AsyncIterator[cache_pb2.PublishTickerRequest]:
        """``rate`` ticks per second for one window, on a fixed schedule (no drift)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        step = 0.05
        sent = 0
        while not self._stop.is_set() and loop.time() - start < self.config.window:
            due = int((loop.time() - start) * self.config.rate) + 1 - sent
            if due > 0:   # every tick due now in one message: far cheaper than one each
                now = time.time()
                yield cache_pb2.PublishTickerRequest(
                    tickers=[self.market.tick(now) for _ in range(due)])
                sent += due
            await self._sleep(step)

    async def _trade(self, stub: cache_pb2_grpc.CacheServiceStub) -> None:
        while not self._stop.is_set():
            await self._sleep(self.config.trade_interval)
            if self._stop.is_set():
                return
            orders, bots = self.desk.step(time.time())
            await self._upsert(stub, orders, bots)

    async def _upsert(
        self,
        stub: cache_pb2_grpc.CacheServiceStub,
        orders: Sequence[cache_pb2.Order],
        bots: Sequence[cache_pb2.Bot],
    ) -> None:
        for order in orders:
            await stub.UpsertOrder(
                cache_pb2.UpsertOrderRequest(order=order), timeout=CALL_TIMEOUT_S
            )
        for bot in bots:
            await stub.UpsertBot(cache_pb2.UpsertBotRequest(bot=bot), timeout=CALL_TIMEOUT_S)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when asked to stop."""
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            pass


# ---------------------------------------------------------------------------- books and trades

BOOK_STEP_S = 0.02    # the book stream's pacing tick: at 300 deltas/s about six a tick
TRADE_BATCH_S = 0.1   # the trades made in this time travel in one PublishTradesRequest


def snapshot_needed(error: BaseException) -> bool:
    """The service refused a delta (a gap, or no snapshot yet): resync now, no backoff."""
    return (
        isinstance(error, grpc.aio.AioRpcError)
        and error.code() == grpc.StatusCode.FAILED_PRECONDITION
        and (error.details() or "").startswith(SNAPSHOT_NEEDED)
    )


class DepthPublisher:
    """Ships a :class:`DepthMarket`: books with ``PublishBook``, trades with ``PublishTrades``.

    Each stream has a reconnect loop of its own, apart from the ticker session, so that a
    cache service ending the book stream (a refused delta; an older service without books)
    stops neither the tickers nor the trades.

    Every book message, the deltas trades make included, goes through one queue in the order
    the simulation made it, since each carries its book's next sequence number. When a book
    call fails we cannot know which messages in flight the service applied, so the next call
    starts with a snapshot of every book and drops the queue (the snapshots contain it).
    """

    def __init__(self, config: FeedConfig, depth: DepthMarket, stop: asyncio.Event,
                 sleep: Callable[[float], Awaitable[None]]) -> None:
        self.config = config
        self.depth = depth
        self._stop = stop
        self._sleep = sleep
        self._queue: deque[cache_pb2.PublishBookRequest] = deque()
        self._synced = False   # the service holds every book message since our last snapshots
        self._book_calls = 0   # numbers the PublishBook calls: only the newest one may send
        self.book_messages = 0   # accepted by the service
        self.trades = 0          # accepted by the service
        self.resyncs = 0         # book calls the service ended with "snapshot needed"
        self.outages = 0         # calls ended by anything else (each logged, then retried)

    async def run(self, stub: cache_pb2_grpc.CacheServiceStub) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._keep_calling("PublishBook", self._book_call, stub))
            group.create_task(self._keep_calling("PublishTrades", self._trade_call, stub))

    async def _keep_calling(
        self, name: str,
        call: Callable[[cache_pb2_grpc.CacheServiceStub], Awaitable[None]],
        stub: cache_pb2_grpc.CacheServiceStub,
    ) -> None:
        """Back-to-back calls until stopped; a failed one is retried after a backoff."""
        backoff = Backoff(RECONNECT_FIRST_S, self.config.backoff_max, jitter=RECONNECT_JITTER)
        while not self._stop.is_set():
            try:
                await call(stub)
                backoff.reset()
            except (grpc.aio.AioRpcError, OSError) as error:
                if self._stop.is_set():
                    return
                if snapshot_needed(error):   # the service is fine; only our book is not
                    self.resyncs += 1
                    log.warning("%s: %s; re-sending every book's snapshot", name,
                                _describe(error))
                    continue
                self.outages += 1
                delay = backoff.delay()
                log.warning("%s to %s: %s; retrying in %.1fs", name, self.config.target,
                            _describe(error), delay)
                await self._sleep(delay)

    async def _book_call(self, stub: cache_pb2_grpc.CacheServiceStub) -> None:
        self._book_calls += 1
        try:
            response = await stub.PublishBook(
                self._paced_books(self._book_calls), timeout=self.config.window + CALL_TIMEOUT_S)
        except BaseException:
            self._synced = False
            raise
        self.book_messages += response.accepted
        log.info("published %d book messages (total %d)", response.accepted,
                 self.book_messages)

    async def _trade_call(self, stub: cache_pb2_grpc.CacheServiceStub) -> None:
        response = await stub.PublishTrades(
            self._paced_trades(), timeout=self.config.window + CALL_TIMEOUT_S)
        self.trades += response.accepted
        log.info("published %d trades (total %d)", response.accepted, self.trades)

    async def _paced_books(self, call: int) -> AsyncIterator[cache_pb2.PublishBookRequest]:
        """Snapshots first when out of sync, then ``book_rate`` deltas/s and trades' deltas.

        gRPC may still pull from a failed call's requests for a moment after the call ended;
        had that one taken a message meant for the next call, that call would skip a sequence
        number. So a generator whose call is no longer the newest stops taking messages."""
        if not self._synced:
            self._queue.clear()
            self._queue.extend(self.depth.snapshots(time.time()))
            self._synced = True
        async for due in self._paced(self.config.book_rate, BOOK_STEP_S):
            if call != self._book_calls:
                return
            now = time.time()
            self._queue.extend(self.depth.step(now) for _ in range(due))
            while self._queue and call == self._book_calls:
                yield self._queue.popleft()

    async def _paced_trades(self) -> AsyncIterator[cache_pb2.PublishTradesRequest]:
        """``trade_rate`` trades/s, each batch in one message; their deltas join the books'."""
        async for due in self._paced(self.config.trade_rate, TRADE_BATCH_S):
            if due:
                now = time.time()
                trades = []
                for _ in range(due):
                    trade, delta = self.depth.trade(now)
                    trades.append(trade)
                    if self._synced:   # else the next call's snapshots hold what it took
                        self._queue.append(delta)   # (and an outage does not grow the queue)
                yield cache_pb2.PublishTradesRequest(trades=trades)

    async def _paced(self, rate: float, step: float) -> AsyncIterator[int]:
        """Every ``step`` s for one window: how many items are due at ``rate``/s (no drift)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        made = 0
        while not self._stop.is_set() and loop.time() - start < self.config.window:
            due = max(0, int((loop.time() - start) * rate) + 1 - made)
            made += due
            yield due
            await self._sleep(step)


async def _requests(
    tickers: Sequence[cache_pb2.Ticker],
) -> AsyncIterator[cache_pb2.PublishTickerRequest]:
    yield cache_pb2.PublishTickerRequest(tickers=tickers)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


async def serve(config: FeedConfig) -> None:
    """Run the feed until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    feed = Feed(config, stop)
    task = asyncio.create_task(feed.run())
    await stop.wait()
    # Let the open PublishTickers call end normally (its ticks are accepted), but do not wait
    # long for a cache service that is down.
    try:
        await asyncio.wait_for(task, timeout=3.0)
    except (TimeoutError, asyncio.CancelledError):
        pass
    log.info("stopped (published %d ticks, %d book messages, %d trades)",
             feed.published, feed.books.book_messages, feed.books.trades)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = parse_config(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as exc:
        print(f"demo_feed: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
