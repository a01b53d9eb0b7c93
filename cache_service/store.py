"""The Redis layout and the atomic write scripts.

Layout (prefix ``cache:v1:``; the ``{...}`` part of each key is its Redis Cluster hash tag, so
keys with one tag share a slot: see cache_service/slots.py and docs/cache_service.md):

- tickers of exchange EX: hash ``{tickers:EX}:latest`` (symbol -> Ticker bytes), change feed
  ``{tickers:EX}:stream`` (fields ``d`` = bytes, ``s`` = symbol); set ``exchanges`` (no tag:
  its own slot) lists the exchanges.
- orders: hash ``{orders}:user:<user_id>`` (order_id -> Order bytes), hash ``{orders}:owner``
  (order_id -> user_id) so GetOrder is one lookup and an owner change drops the old copy,
  set ``{orders}:users``; change feed ``{orders}:stream`` (``d``, ``u`` user, ``b`` bot, ``s``
  symbol). Every order key has the one tag ``{orders}``: the change feed is one ordered stream
  of every user's orders (StreamOrders of all users, resume by one seq), and an owner change
  moves a record between two users' hashes in the same script, so they share a slot.
- bots: the same shape under ``{bots}`` (``{bots}:user:<user_id>``, ``{bots}:owner``,
  ``{bots}:users``, ``{bots}:stream`` with ``d``, ``u``, ``b``).
- terminal orders (filled, canceled, rejected): sorted set ``{orders}:expiry`` (order_id scored
  by the Redis clock, in ms, of its last terminal write), kept by the same write script; an
  order that is written non-terminal again leaves it. The retention sweep
  (cache_service/order_retention.py) drops orders older than ``--terminal-order-retention-s``
  from ``{orders}:user:*``, ``{orders}:owner`` and the set, in one script; the change feed keeps
  its own ``MAXLEN`` retention. Bots never expire.

Each write and its XADD run as ONE Lua script, so the latest state and the change feed never
disagree, and the script returns the new stream id: the ``seq`` the writer gets back is the
``seq`` every subscriber sees. Streams are capped with ``MAXLEN ~ stream_maxlen``. A batch of
tickers is one script call (up to ``WRITE_BATCH`` tickers); on a cluster, one per exchange in
the batch (a script's keys must share a slot), the seqs still in the batch's order.

Index sets (``exchanges``; the books of an exchange, cache_service/book_store.py) are written
before the data they index, by SADD on the same connection (a cluster: on the set's own node,
confirmed like any write): a failed write may leave an exchange listed with nothing under it,
never data that no listing finds. Scripts run by EVALSHA, loaded
again only when Redis answers NOSCRIPT (a restarted or failed-over Redis): redis-py's pipelined
``Script`` would ask ``SCRIPT EXISTS`` before every write, a round trip each time.

Durability (``min_replica_acks`` > 0, the default with Sentinel): every write script (and every
pipelined batch of them) is followed by ``WAIT N timeout`` on the SAME connection, and a write
fewer than N replicas confirmed raises ``Unavailable`` instead of returning a seq. Redis
replication is asynchronous, so without this a write acknowledged by a primary that is then
replaced (failover to a lagging replica; a planned failover while the old primary still takes
writes) is lost. An unconfirmed write may still exist (at-least-once); a returned seq survives
a failover. On a cluster, ``WAIT`` runs on the node that took the write and counts its own
replicas. Finding the current primary after a failover is cache_service.pinned's job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from cache_service.errors import Unavailable
from cache_service.pinned import Command, PinnedConnection
from cache_service.redis_url import RedisClient
from cache_service.slots import PREFIX, slot_groups, slot_of, tagged
from marketbridge.api.v1 import cache_pb2
from marketbridge.vocabulary import TERMINAL_ORDER_STATUSES

__all__ = ["PREFIX", "WRITE_BATCH", "ORDERS", "BOTS", "EXCHANGES", "Index", "OwnedKind", "Store",
           "ticker_stream", "tickers_key"]

WRITE_BATCH = 500
EXCHANGES = f"{PREFIX}exchanges"

# Index sets a write adds members to before it runs: (set key, members).
Index = Sequence[tuple[str, Sequence[str]]]

# One call writes a whole batch of tickers (one Lua call, not one per ticker: the per-call
# cost of Redis and of redis-py dwarfs the per-ticker work).
# KEYS: (latest hash, stream) of each exchange in the batch
# ARGV: maxlen, then (exchange index, symbol, bytes) per ticker. Returns the stream ids in
#       ticker order.
_TICKERS_WRITE = """
local maxlen = ARGV[1]
local ids = {}
for a = 2, #ARGV, 3 do
  local k = tonumber(ARGV[a]) * 2 - 1
  local symbol, data = ARGV[a + 1], ARGV[a + 2]
  redis.call('HSET', KEYS[k], symbol, data)
  ids[#ids + 1] = redis.call('XADD', KEYS[k + 1], 'MAXLEN', '~', maxlen, '*', 'd', data, 's', symbol)
end
return ids
"""

# KEYS: owner hash, users set, new owner's records hash, stream, expiry set
# ARGV: id, user, bytes, maxlen, records-hash prefix, terminal ('1': into the expiry set at
#       Redis's clock, '0': out of it, '': a kind that never expires), then stream field pairs
_OWNED_WRITE = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old and old ~= ARGV[2] then redis.call('HDEL', ARGV[5] .. old, ARGV[1]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
if ARGV[6] == '1' then
  local now = redis.call('TIME')
  redis.call('ZADD', KEYS[5], now[1] * 1000 + math.floor(now[2] / 1000), ARGV[1])
elseif ARGV[6] == '0' then
  redis.call('ZREM', KEYS[5], ARGV[1])
end
local fields = {'d', ARGV[3]}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
return redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', unpack(fields))
"""

# Drop the terminal records whose last write is older than the retention, at most a batch.
# KEYS: expiry set, owner hash, users set; ARGV: retention ms, batch, records-hash prefix.
# An owner left with no records leaves the users set. Returns how many were dropped.
_OWNED_EXPIRE = """
local now = redis.call('TIME')
local cutoff = now[1] * 1000 + math.floor(now[2] / 1000) - tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  local owner = redis.call('HGET', KEYS[2], id)
  if owner then
    local records = ARGV[3] .. owner
    redis.call('HDEL', records, id)
    if redis.call('HLEN', records) == 0 then redis.call('SREM', KEYS[3], owner) end
  end
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[1], id)
end
return #due
"""

# KEYS: owner hash; ARGV: id, records-hash prefix. Returns {owner, bytes} or nil.
_OWNED_READ = """
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if not owner then return nil end
local data = redis.call('HGET', ARGV[2] .. owner, ARGV[1])
if not data then return nil end
return {owner, data}
"""

M = TypeVar("M", bound=Message)


def ticker_stream(exchange: str) -> str:
    """The change-feed key of one exchange's tickers."""
    return tagged(f"tickers:{exchange}", "stream")


def tickers_key(exchange: str) -> str:
    """The latest tickers of one exchange (symbol -> Ticker bytes)."""
    return tagged(f"tickers:{exchange}", "latest")


@dataclass(frozen=True)
class OwnedKind(Generic[M]):
    """What differs between orders and bots: names, message type, stream fields."""

    name: str  # "orders" / "bots": also the change-feed channel
    singular: str  # "order" / "bot"
    message: type[M]
    record_id: Callable[[M], str]
    stream_fields: Callable[[M], list[str]]
    # Whether a record is finished and may expire (orders: a terminal status); None: the
    # kind never expires (bots).
    terminal: Callable[[M], bool] | None = None

    @property
    def records_prefix(self) -> str:
        return tagged(self.name, "user:")

    @property
    def owner_key(self) -> str:
        return tagged(self.name, "owner")

    @property
    def users_key(self) -> str:
        return tagged(self.name, "users")

    @property
    def stream(self) -> str:
        return tagged(self.name, "stream")

    @property
    def expiry_key(self) -> str:
        return tagged(self.name, "expiry")

    def expiry_flag(self, record: M) -> str:
        """ARGV of _OWNED_WRITE: '1' into the expiry set, '0' out of it, '' never tracked."""
        if self.terminal is None:
            return ""
        return "1" if self.terminal(record) else "0"


ORDERS: OwnedKind[cache_pb2.Order] = OwnedKind(
    name="orders",
    singular="order",
    message=cache_pb2.Order,
    record_id=lambda o: o.order_id,
    stream_fields=lambda o: ["u", o.user_id, "b", o.bot_id, "s", o.symbol],
    terminal=lambda o: o.status in TERMINAL_ORDER_STATUSES,
)
BOTS: OwnedKind[cache_pb2.Bot] = OwnedKind(
    name="bots",
    singular="bot",
    message=cache_pb2.Bot,
    record_id=lambda b: b.bot_id,
    stream_fields=lambda b: ["u", b.user_id, "b", b.bot_id],
)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Store:
    """Reads and writes of the three entities. Writes are atomic Lua scripts (one per
    ``WRITE_BATCH`` tickers), pipelined with ``WAIT`` when replicas must confirm them."""

    def __init__(self, redis: RedisClient, stream_maxlen: int, min_replica_acks: int = 0,
                 replica_ack_timeout_ms: int = 500,
                 unconfirmed: Callable[[], None] = lambda: None) -> None:
        self.redis = redis
        self.stream_maxlen = stream_maxlen
        self.min_replica_acks = min_replica_acks
        self.replica_ack_timeout_ms = replica_ack_timeout_ms
        self.unconfirmed = unconfirmed   # counts a write the replicas did not confirm in time
        self._tickers_write = redis.register_script(_TICKERS_WRITE)
        self._owned_write = redis.register_script(_OWNED_WRITE)
        self._owned_read = redis.register_script(_OWNED_READ)
        self._owned_expire = redis.register_script(_OWNED_EXPIRE)

    # ------------------------------------------------------------ durable writes

    @property
    def cluster(self) -> bool:
        """Whether Redis is a cluster: a script's keys must then share one slot."""
        return isinstance(self.redis, RedisCluster)

    def groups(self, keys: Sequence[str]) -> list[list[int]]:
        """Which items of a batch one script call may write together: ``keys[i]`` is a key of
        item i; the indices grouped by slot on a cluster, all of them in one group otherwise."""
        return slot_groups(keys, self.cluster)

    def connection(self) -> PinnedConnection:
        """A connection to hold for many writes in a row (bulk ingest): see cache_service.pinned
        (on a cluster, connections of its own, which a failover elsewhere leaves alone)."""
        return PinnedConnection(self.redis, own=True)

    async def _write(self, script: AsyncScript, keys: list[str], args: list[object],
                     conn: PinnedConnection | None = None, index: Index = ()) -> object:
        """Add ``index`` members, then run one write script by EVALSHA (then WAIT, when
        configured) and return its result, on ``conn`` when the caller holds one, else on a
        connection held for this call. On a single Redis it is all one round trip.

        NOSCRIPT means Redis did not run it (a restarted Redis forgot its scripts; on a
        cluster, a node that took over a slot or answers an ASK never had them): load it on
        the node that answered, through the same connection, and run it again, once (the SADDs
        again too: they are idempotent). Not through the cluster client's ``script_load``
        (every node it counts as a primary): its count can miss the very node that answered
        (see cache_service.pinned ``_learn_moved``), and then the retry failed NOSCRIPT again.
        """
        if conn is None:
            async with PinnedConnection(self.redis) as call:
                return await self._write(script, keys, args, call, index)
        route = keys[0]
        ahead: list[Command] = []
        for set_key, members in index:
            sadd = ("SADD", set_key, *members)
            if self.cluster and slot_of(set_key) != slot_of(route):
                await self._durable(conn, set_key, [sadd])
            else:
                ahead.append(sadd)
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        for attempt in (1, 2):
            try:
                return (await self._durable(conn, route, [*ahead, command]))[-1]
            except NoScriptError:
                if attempt == 2:
                    raise
            await conn.execute(("SCRIPT", "LOAD", script.script), key=route)
        raise AssertionError("unreachable")  # pragma: no cover

    async def run_write(self, script: AsyncScript, keys: list[str], args: list[object],
                        conn: PinnedConnection | None = None, index: Index = ()) -> object:
        """The durable write path (index SADDs, EVALSHA, NOSCRIPT reload, WAIT) for another
        module's script: the book and trade stores write through it so every write obeys the
        same rules. ``keys`` must share a slot on a cluster (split with ``groups``)."""
        return await self._write(script, keys, args, conn, index)

    async def _durable(self, conn: PinnedConnection, key: str, commands: list[Command]) -> list[Any]:
        """``commands`` (in ``key``'s slot) alone, or pipelined with ``WAIT`` when replicas must
        confirm; their replies. Raises Unavailable when fewer than ``min_replica_acks`` did
        (the write may still exist: the caller must not report a seq)."""
        if not self.min_replica_acks:
            return await conn.execute(*commands, key=key)
        *replies, confirmed = await conn.execute(
            *commands, ("WAIT", self.min_replica_acks, self.replica_ack_timeout_ms), key=key)
        if int(confirmed) < self.min_replica_acks:
            self.unconfirmed()
            raise Unavailable(
                f"write not confirmed by replicas ({confirmed} of {self.min_replica_acks} within "
                f"{self.replica_ack_timeout_ms} ms); it may or may not have been applied, retry")
        return replies

    async def read_together(self, key: str, *commands: Command) -> list[Any]:
        """The raw replies of ``commands`` (all in ``key``'s slot) run as one MULTI/EXEC: a
        consistent view of several keys, e.g. a list and its feed's position. On a held
        connection, since redis-py's cluster transactions mis-parse some replies (XREVRANGE)."""
        async with PinnedConnection(self.redis) as conn:
            replies = await conn.execute(("MULTI",), *commands, ("EXEC",), key=key)
        return list(replies[-1])

    # ------------------------------------------------------------ tickers

    def _tickers_call(self, tickers: Sequence[cache_pb2.Ticker]) -> tuple[list[str], list[object], list[str]]:
        """KEYS and ARGV of _TICKERS_WRITE for a batch, and its exchanges."""
        exchanges: dict[str, int] = {}
        rows: list[object] = []
        for ticker in tickers:
            exchange = ticker.exchange
            index = exchanges.get(exchange)
            if index is None:
                index = exchanges[exchange] = len(exchanges) + 1
            rows += (index, ticker.symbol, ticker.SerializeToString())
        keys: list[str] = []
        for exchange in exchanges:
            keys += (tickers_key(exchange), ticker_stream(exchange))
        return keys, [self.stream_maxlen, *rows], list(exchanges)

    async def publish_ticker(self, ticker: cache_pb2.Ticker) -> str:
        """Store the latest ticker and append it to its exchange's feed; return the seq."""
        (seq,) = await self.publish_tickers([ticker])
        return seq

    async def publish_tickers(self, tickers: Sequence[cache_pb2.Ticker],
                              conn: PinnedConnection | None = None) -> list[str]:
        """The same write for many tickers, in order: one script call per ``WRITE_BATCH``
        (on ``conn`` when the caller holds one, as bulk ingest does); on a cluster one per
        exchange of each batch.

        Each call is atomic; a failure ends the call after the calls before it were written.
        """
        seqs: list[str] = []
        for start in range(0, len(tickers), WRITE_BATCH):
            batch = tickers[start:start + WRITE_BATCH]
            ids = [""] * len(batch)
            for group in self.groups([ticker_stream(t.exchange) for t in batch]):
                keys, args, exchanges = self._tickers_call([batch[i] for i in group])
                written = await self._write(self._tickers_write, keys, args, conn, [(EXCHANGES, exchanges)])
                for i, seq in zip(group, written, strict=True):  # type: ignore[call-overload]
                    ids[i] = _text(seq)
            seqs += ids
        return seqs

    async def get_ticker(self, exchange: str, symbol: str) -> cache_pb2.Ticker | None:
        data = await self.redis.hget(tickers_key(exchange), symbol)
        return None if data is None else cache_pb2.Ticker.FromString(data)

    async def exchanges(self) -> list[str]:
        return sorted(_text(e) for e in await self.redis.smembers(EXCHANGES))

    async def list_tickers(self, exchange: str, symbols: Sequence[str]) -> list[cache_pb2.Ticker]:
        """Latest tickers of one exchange (or all), optionally only some symbols; sorted."""
        exchanges = [exchange] if exchange else await self.exchanges()
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in exchanges:
                if symbols:
                    pipe.hmget(tickers_key(name), list(symbols))
                else:
                    pipe.hvals(tickers_key(name))
            results = await pipe.execute()
        tickers = [cache_pb2.Ticker.FromString(d) for rows in results for d in rows if d is not None]
        tickers.sort(key=lambda t: (t.exchange, t.symbol))
        return tickers

    # ------------------------------------------------------------ orders and bots

    async def upsert(self, kind: OwnedKind[M], record: M) -> str:
        """Store ``record`` under its owner (dropping a previous owner's copy); return the seq."""
        record_id, user_id = kind.record_id(record), record.user_id  # type: ignore[attr-defined]
        keys = [kind.owner_key, kind.users_key, kind.records_prefix + user_id, kind.stream,
                kind.expiry_key]
        args = [record_id, user_id, record.SerializeToString(), self.stream_maxlen,
                kind.records_prefix, kind.expiry_flag(record), *kind.stream_fields(record)]
        return _text(await self._write(self._owned_write, keys, args))  # type: ignore[arg-type]

    async def expire(self, kind: OwnedKind[M], retention_s: float, batch: int) -> int:
        """Drop up to ``batch`` finished records whose last write is more than ``retention_s``
        old (by Redis's clock, so replicas of this service agree on what is due); return how
        many went. Atomic: a record is gone from every key or from none."""
        keys = [kind.expiry_key, kind.owner_key, kind.users_key]
        args = [int(retention_s * 1000), batch, kind.records_prefix]
        return int(await self._write(self._owned_expire, keys, args))  # type: ignore[call-overload]

    async def get(self, kind: OwnedKind[M], record_id: str) -> M | None:
        """The record with this id, whoever owns it (scoping is the caller's job)."""
        found = await self._owned_read(keys=[kind.owner_key], args=[record_id, kind.records_prefix])
        if not found:
            return None
        return kind.message.FromString(found[1])

    async def list(self, kind: OwnedKind[M], user_id: str) -> list[M]:
        """Every record of one user, or of every user when ``user_id`` is empty."""
        if user_id:
            users = [user_id]
        else:
            users = sorted(_text(u) for u in await self.redis.smembers(kind.users_key))
        async with self.redis.pipeline(transaction=False) as pipe:
            for user in users:
                pipe.hvals(kind.records_prefix + user)
            results = await pipe.execute()
        return [kind.message.FromString(d) for rows in results for d in rows]
