"""A ledger of acknowledged writes and of what every WebSocket client received, and the checks.

Resilience scenarios publish continuously while a fault is injected. Every write the cache
service acknowledged (it returned a ``seq``) is recorded here with the moment it was sent; every
update a client received is recorded against the client. After recovery,
:meth:`Ledger.assert_complete` holds each client to docs/protocol.md and docs/reliability.md:

- orders and bots: every acknowledged write the client may see (its own, or all for an admin,
  through its filters) and sent after its subscription was confirmed is received exactly once,
  in seq order; nothing of another user is ever received;
- tickers: no duplicate, in seq order per symbol, and every acknowledged write is received, or superseded
  by a later received update of the same symbol (the bridge conflates tickers, latest wins), or
  the client was told ``recovered: false``;
- no subscription is left ``interrupted``; no close except the codes the scenario allows.

Market data (docs/protocol.md section 10) has two more modes:

- trades: a ``PublishTrades`` reply acknowledges its call as a whole (``accepted``, ``last_seq``),
  so a trade is recorded by its id (``<symbol>:<trade_id>``), not by a seq
  (:meth:`Ledger.record_trades`); a trade whose call failed is recorded as unknown
  (:meth:`Ledger.record_unknown_trades`): the publisher retries it with the same id
  (at-least-once). Every acknowledged trade must arrive; a trade id may arrive twice only if it
  was unknown once; seqs stay unique and in order, and no trade nobody sent arrives;
- books: state, not events. The client keeps a copy (``ClientBook``) and reports what went
  wrong with it (:meth:`Ledger.book_problem`: a checksum mismatch, an update while stale); the
  scenario compares the copies with the service's book. Book update seqs stay in order.

Sequence ids are Redis Stream ids, compared as ``(ms, n)`` pairs. Order streams and bot streams
are global, ticker and trade streams are per exchange (``tickers:<exchange>``,
``trades:<exchange>``), book streams per book and depth (``book:<exchange>:<symbol>:<depth>``).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

SeqKey = tuple[int, int]
PUBLIC = frozenset({"tickers", "trades", "book"})   # channels with no owner: everyone sees all


def seq_key(seq: str) -> SeqKey:
    """``"<ms>-<n>"`` as a comparable pair (string order is wrong: "9-0" > "10-0")."""
    ms, _, n = seq.partition("-")
    return int(ms), int(n or 0)


def stream_of(channel: str, exchange: str = "", symbol: str = "", depth: int = 10) -> str:
    """The seq namespace of a channel: ``orders``, ``bots``, ``tickers:<exchange>``,
    ``trades:<exchange>`` or ``book:<exchange>:<symbol>:<depth>``."""
    if channel in ("tickers", "trades"):
        return f"{channel}:{exchange}"
    if channel == "book":
        return f"book:{exchange}:{symbol}:{depth}"
    return channel


def by_trade_id(stream: str) -> bool:
    """Whether a stream's writes are known by trade id rather than by seq (see the module doc)."""
    return stream.startswith("trades:")


def entity_key(channel: str, entity: dict[str, Any]) -> str:
    """What identifies the entity an update is about (symbol, order_id, bot_id, trade id)."""
    if channel == "tickers":
        return f"{entity['exchange']}:{entity['symbol']}"
    if channel == "trades":
        return f"{entity['symbol']}:{entity['trade_id']}"
    if channel == "book":
        return str(entity.get("symbol", ""))
    return str(entity["order_id" if channel == "orders" else "bot_id"])


def percentile(values: Iterable[float], pct: float) -> float:
    """Nearest-rank percentile; 0.0 for no values."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Write:
    """One acknowledged write."""

    channel: str
    stream: str
    key: str          # entity_key()
    owner: str        # user id of an order/bot; "" for tickers
    symbol: str
    bot_id: str
    seq: str
    sent_at: float    # time.monotonic() when the call was made
    acked_at: float

    @property
    def order(self) -> SeqKey:
        return seq_key(self.seq)

    @property
    def ident(self) -> str:
        """What the ledger knows the write by: its seq, or for a trade its id (no own seq)."""
        return self.key if by_trade_id(self.stream) else self.seq


@dataclass(frozen=True)
class Received:
    seq: str
    key: str
    owner: str
    at: float

    def ident(self, stream: str) -> str:
        return self.key if by_trade_id(stream) else self.seq


@dataclass
class Interest:
    """One logical subscription of a client: which writes it must see, from when."""

    channel: str
    stream: str
    since: float                       # writes sent after this moment are owed to the client
    symbols: frozenset[str] | None = None
    bot_ids: frozenset[str] | None = None

    def wants(self, write: Write, user: str, admin: bool) -> bool:
        if write.stream != self.stream or write.sent_at <= self.since:
            return False
        if self.channel not in PUBLIC and not admin and write.owner != user:
            return False
        if self.symbols is not None and write.symbol not in self.symbols:
            return False
        return self.bot_ids is None or write.bot_id in self.bot_ids


@dataclass
class ClientRecord:
    """Everything one logical client (across its reconnects) was owed and got."""

    name: str
    user: str
    admin: bool = False
    interests: dict[str, Interest] = field(default_factory=dict)          # by stream
    received: dict[str, list[Received]] = field(default_factory=lambda: defaultdict(list))
    statuses: list[tuple[str, str, bool, float]] = field(default_factory=list)
    closes: list[tuple[int, str, float]] = field(default_factory=list)
    unrecovered: set[str] = field(default_factory=set)                    # streams told recovered:false
    last_status: dict[str, str] = field(default_factory=dict)             # by stream
    book_problems: list[str] = field(default_factory=list)                # what went wrong with a copy

    def last_seq(self, stream: str) -> str | None:
        """The newest seq received on ``stream`` (what a client resumes from)."""
        got = self.received.get(stream)
        return max(got, key=lambda item: seq_key(item.seq)).seq if got else None


@dataclass
class Verdict:
    """The outcome of checking one client; ``problems`` is empty when it got what it was owed."""

    client: str
    expected: int = 0
    delivered: int = 0
    conflated: int = 0
    missing: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    out_of_order: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    redelivered: int = 0          # trades received again after a failed call was retried (allowed)
    unknown: list[str] = field(default_factory=list)   # trades received that nobody sent
    problems: list[str] = field(default_factory=list)


class Ledger:
    """Acknowledged writes and per-client receipts, with the completeness checks."""

    def __init__(self) -> None:
        self.writes: dict[str, list[Write]] = defaultdict(list)     # by stream
        self.by_seq: dict[tuple[str, str], Write] = {}
        self.clients: dict[str, ClientRecord] = {}
        self.lost_upstream: dict[tuple[str, str], Write] = {}
        self.unknown_trades: dict[str, set[str]] = defaultdict(set)   # by stream: ids of failed calls
        self.trade_sends: dict[tuple[str, str], int] = defaultdict(int)  # calls that carried an id

    # ------------------------------------------------------------ recording

    def record_write(self, channel: str, entity: Any, seq: str, sent_at: float) -> Write:
        """Record a write the service acknowledged with ``seq`` (``entity``: the protobuf sent)."""
        exchange = getattr(entity, "exchange", "")
        fields = {"exchange": exchange, "symbol": getattr(entity, "symbol", ""),
                  "order_id": getattr(entity, "order_id", ""), "bot_id": getattr(entity, "bot_id", "")}
        write = Write(channel, stream_of(channel, exchange), entity_key(channel, fields),
                      getattr(entity, "user_id", "") if channel != "tickers" else "",
                      fields["symbol"], fields["bot_id"], seq, sent_at, time.monotonic())
        self.writes[write.stream].append(write)
        self.by_seq[(write.stream, seq)] = write
        return write

    def record_trades(self, trades: Iterable[Any], sent_at: dict[str, float] | float) -> list[Write]:
        """Trades a ``PublishTrades`` call acknowledged (it returned ``accepted`` = all of them).

        ``sent_at``: when the call was made, or per trade id when each trade was streamed."""
        out = []
        for trade in trades:
            key = entity_key("trades", {"symbol": trade.symbol, "trade_id": trade.trade_id})
            at = sent_at if isinstance(sent_at, float) else sent_at[trade.trade_id]
            write = Write("trades", stream_of("trades", trade.exchange), key, "", trade.symbol, "",
                          "", at, time.monotonic())
            self.writes[write.stream].append(write)
            self.by_seq[(write.stream, write.ident)] = write
            self.trade_sends[(write.stream, key)] += 1
            out.append(write)
        return out

    def record_unknown_trades(self, trades: Iterable[Any]) -> None:
        """Trades streamed on a call that failed: stored or not, the publisher sends them again."""
        for trade in trades:
            stream = stream_of("trades", trade.exchange)
            key = entity_key("trades", {"symbol": trade.symbol, "trade_id": trade.trade_id})
            self.unknown_trades[stream].add(key)
            self.trade_sends[(stream, key)] += 1

    def client(self, name: str, user: str = "", admin: bool = False) -> ClientRecord:
        """The record of logical client ``name`` (created on first use)."""
        if name not in self.clients:
            self.clients[name] = ClientRecord(name, user, admin)
        return self.clients[name]

    def subscribed(self, client: str, channel: str, exchange: str = "",
                   symbols: Iterable[str] | None = None, bot_ids: Iterable[str] | None = None,
                   since: float | None = None, stream: str | None = None) -> Interest:
        """The client's subscription is confirmed: every matching write sent from now is owed.

        A resubscription (after a reconnect, with ``resume_from``) keeps the first ``since``.
        ``stream``: the subscription's own stream when the channel alone does not name it (a book).
        """
        record = self.clients[client]
        stream = stream or stream_of(channel, exchange)
        if stream not in record.interests:
            record.interests[stream] = Interest(
                channel, stream, time.monotonic() if since is None else since,
                frozenset(symbols) if symbols is not None else None,
                frozenset(bot_ids) if bot_ids is not None else None)
        return record.interests[stream]

    def received(self, client: str, channel: str, seq: str, entity: dict[str, Any]) -> None:
        """One update frame's event, as the client got it."""
        exchange = str(entity.get("exchange", "")) if channel in PUBLIC else ""
        stream = stream_of(channel, exchange)
        owner = str(entity.get("user_id", "")) if channel not in PUBLIC else ""
        self.clients[client].received[stream].append(
            Received(seq, entity_key(channel, entity), owner, time.monotonic()))

    def received_on(self, client: str, stream: str, seq: str, key: str) -> None:
        """One update of a stream the client names itself (a book: its stream has the depth)."""
        self.clients[client].received[stream].append(Received(seq, key, "", time.monotonic()))

    def book_problem(self, client: str, stream: str, problem: str) -> None:
        """The client's copy of a book went wrong (a checksum mismatch, an update while stale)."""
        self.clients[client].book_problems.append(f"{stream}: {problem}")

    def status(self, client: str, stream: str, status: str, recovered: bool) -> None:
        """A ``stream_status`` frame (or a subscribe response's ``recovered: false``)."""
        record = self.clients[client]
        record.statuses.append((stream, status, recovered, time.monotonic()))
        record.last_status[stream] = status
        if not recovered and status != "interrupted":
            record.unrecovered.add(stream)

    def closed(self, client: str, code: int, reason: str) -> None:
        self.clients[client].closes.append((code, reason, time.monotonic()))

    # ------------------------------------------------------------ checking

    def owed(self, record: ClientRecord, interest: Interest) -> list[Write]:
        return [w for w in self.writes.get(interest.stream, ())
                if interest.wants(w, record.user, record.admin)
                and (w.stream, w.ident) not in self.lost_upstream]

    def reconcile(self, retained: dict[str, set[str]], since: float = 0.0,
                  only: Iterable[str] | None = None) -> list[Write]:
        """Set apart acknowledged writes Redis no longer holds (lost below the product).

        ``retained`` maps a stream to the seqs (trades: the trade ids) Redis still has. A write
        sent after ``since`` that is missing from it cannot be delivered by any bridge; it is
        not owed to clients and is returned, so the scenario can say why it was lost (or fail).
        ``only``: check just these streams (default: every stream written).
        """
        lost = []
        streams = set(only) if only is not None else None
        for stream, writes in self.writes.items():
            if streams is not None and stream not in streams:
                continue
            held = retained.get(stream, set())
            for write in writes:
                if write.sent_at >= since and write.ident not in held:
                    self.lost_upstream[(stream, write.ident)] = write
                    lost.append(write)
        return lost

    def check(self, name: str, allowed_closes: Iterable[int] = ()) -> Verdict:
        """Check one client; the verdict lists every problem (empty = complete)."""
        record = self.clients[name]
        verdict = Verdict(name)
        for interest in record.interests.values():
            self._check_stream(record, interest, verdict)
        allowed = set(allowed_closes)
        for code, reason, _ in record.closes:
            if code not in allowed:
                verdict.problems.append(f"disconnected: close {code} {reason!r}")
        for stream, status in record.last_status.items():
            if status == "interrupted":
                verdict.problems.append(f"{stream}: still interrupted at the end")
        if record.book_problems:
            verdict.problems.append(f"{len(record.book_problems)} book problems: {record.book_problems[:5]}")
        return verdict

    def _check_stream(self, record: ClientRecord, interest: Interest, verdict: Verdict) -> None:
        got = record.received.get(interest.stream, [])
        seen: set[str] = set()
        last: dict[str, SeqKey] = {}
        for item in got:
            # Conflation replaces a queued ticker in place, so tickers keep seq order per symbol;
            # orders and bots keep it across the whole stream.
            lane = item.key if interest.channel == "tickers" else ""
            if item.seq in seen:
                verdict.duplicates.append(f"{interest.stream} {item.seq}")
            elif seq_key(item.seq) <= last.get(lane, (0, 0)):
                verdict.out_of_order.append(f"{interest.stream} {item.seq}")
            seen.add(item.seq)
            last[lane] = max(last.get(lane, (0, 0)), seq_key(item.seq))
            if interest.channel not in PUBLIC and not record.admin and item.owner != record.user:
                verdict.foreign.append(f"{interest.stream} {item.seq} of {item.owner}")
        if by_trade_id(interest.stream):
            self._check_trades(record, interest, got, verdict)
            return
        owed = self.owed(record, interest)
        verdict.expected += len(owed)
        newest: dict[str, SeqKey] = {}
        for item in got:
            newest[item.key] = max(newest.get(item.key, (0, 0)), seq_key(item.seq))
        unrecovered = interest.stream in record.unrecovered
        for write in owed:
            if write.seq in seen:
                verdict.delivered += 1
            elif interest.channel == "tickers" and newest.get(write.key, (0, 0)) > write.order:
                verdict.conflated += 1
            elif not (interest.channel == "tickers" and unrecovered):
                verdict.missing.append(f"{interest.stream} {write.seq} ({write.key})")
        self._report_stream(interest, verdict)

    def _check_trades(self, record: ClientRecord, interest: Interest, got: list[Received],
                      verdict: Verdict) -> None:
        """Trades by id: every acknowledged one arrived; an id twice only if it was retried, and
        never more often than calls carried it; none that nobody sent. (Seq order and unique
        seqs are checked by the caller.)"""
        counts: dict[str, int] = defaultdict(int)
        for item in got:
            counts[item.key] += 1
        retried = self.unknown_trades.get(interest.stream, set())
        sent = {w.key for w in self.writes.get(interest.stream, ())} | retried
        for key, count in counts.items():
            if key not in sent:
                verdict.unknown.append(f"{interest.stream} {key}")
            elif count > 1 and key in retried and count <= self.trade_sends[(interest.stream, key)]:
                verdict.redelivered += count - 1
            elif count > 1:
                verdict.duplicates.append(f"{interest.stream} {key} x{count}")
        owed = self.owed(record, interest)
        verdict.expected += len(owed)
        for write in owed:
            if counts.get(write.key):
                verdict.delivered += 1
            else:
                verdict.missing.append(f"{interest.stream} {write.key}")
        self._report_stream(interest, verdict)

    @staticmethod
    def _report_stream(interest: Interest, verdict: Verdict) -> None:
        for label, items in (("missing", verdict.missing), ("duplicated", verdict.duplicates),
                             ("out of order", verdict.out_of_order),
                             ("of another user", verdict.foreign),
                             ("never sent", verdict.unknown)):
            mine = [i for i in items if i.startswith(interest.stream + " ")]
            if mine:
                verdict.problems.append(f"{interest.stream}: {len(mine)} {label}: {mine[:5]}")

    def assert_complete(self, name: str, allowed_closes: Iterable[int] = ()) -> Verdict:
        """Raise AssertionError listing every problem of client ``name``; return its verdict."""
        verdict = self.check(name, allowed_closes)
        assert not verdict.problems, f"client {name}: " + "; ".join(verdict.problems)
        return verdict

    def assert_all_complete(self, allowed_closes: dict[str, Iterable[int]] | None = None) -> list[Verdict]:
        """Check every client; one AssertionError naming all that fall short."""
        allowed_closes = allowed_closes or {}
        verdicts = [self.check(name, allowed_closes.get(name, ())) for name in self.clients]
        failures = [f"client {v.client}: " + "; ".join(v.problems) for v in verdicts if v.problems]
        assert not failures, "\n".join(failures)
        return verdicts

    # ------------------------------------------------------------ measuring

    def delivered_fraction(self) -> float:
        """Delivered / owed over every client (1.0 when nothing was owed)."""
        verdicts = [self.check(name) for name in self.clients]
        owed = sum(v.expected for v in verdicts)
        delivered = sum(v.delivered + v.conflated for v in verdicts)
        return delivered / owed if owed else 1.0

    def latencies(self, sent_from: float = 0.0, sent_until: float = math.inf,
                  clients: Iterable[str] | None = None) -> list[float]:
        """Write-sent to client-received seconds, for writes sent in the window (some clients)."""
        out: list[float] = []
        names = set(self.clients if clients is None else clients)
        for record in (r for r in self.clients.values() if r.name in names):
            for stream, items in record.received.items():
                for item in items:
                    write = self.by_seq.get((stream, item.ident(stream)))
                    if write is not None and sent_from <= write.sent_at <= sent_until:
                        out.append(item.at - write.sent_at)
        return out

    def recovery_time(self, repaired_at: float) -> float | None:
        """Seconds from ``repaired_at`` until every client received a write sent after it.

        None when some client that is owed such a write never got one.
        """
        worst = 0.0
        for record in self.clients.values():
            firsts = []
            for stream, items in record.received.items():
                for item in items:
                    write = self.by_seq.get((stream, item.ident(stream)))
                    if write is not None and write.sent_at >= repaired_at:
                        firsts.append(item.at)
                        break
            if not firsts:
                if any(self.owed_after(record, repaired_at)):
                    return None
                continue
            worst = max(worst, min(firsts) - repaired_at)
        return worst

    def owed_after(self, record: ClientRecord, moment: float) -> list[Write]:
        return [w for i in record.interests.values() for w in self.owed(record, i) if w.sent_at >= moment]
