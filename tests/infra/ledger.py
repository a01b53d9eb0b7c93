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

Sequence ids are Redis Stream ids, compared as ``(ms, n)`` pairs. Order streams and bot streams
are global, ticker streams are per exchange (``tickers:<exchange>``).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

SeqKey = tuple[int, int]


def seq_key(seq: str) -> SeqKey:
    """``"<ms>-<n>"`` as a comparable pair (string order is wrong: "9-0" > "10-0")."""
    ms, _, n = seq.partition("-")
    return int(ms), int(n or 0)


def stream_of(channel: str, exchange: str = "") -> str:
    """The seq namespace of a channel: ``orders``, ``bots`` or ``tickers:<exchange>``."""
    return f"tickers:{exchange}" if channel == "tickers" else channel


def entity_key(channel: str, entity: dict[str, Any]) -> str:
    """What identifies the entity an update is about (symbol, order_id, bot_id)."""
    if channel == "tickers":
        return f"{entity['exchange']}:{entity['symbol']}"
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


@dataclass(frozen=True)
class Received:
    seq: str
    key: str
    owner: str
    at: float


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
        if self.channel != "tickers" and not admin and write.owner != user:
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
    problems: list[str] = field(default_factory=list)


class Ledger:
    """Acknowledged writes and per-client receipts, with the completeness checks."""

    def __init__(self) -> None:
        self.writes: dict[str, list[Write]] = defaultdict(list)     # by stream
        self.by_seq: dict[tuple[str, str], Write] = {}
        self.clients: dict[str, ClientRecord] = {}
        self.lost_upstream: dict[tuple[str, str], Write] = {}

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

    def client(self, name: str, user: str = "", admin: bool = False) -> ClientRecord:
        """The record of logical client ``name`` (created on first use)."""
        if name not in self.clients:
            self.clients[name] = ClientRecord(name, user, admin)
        return self.clients[name]

    def subscribed(self, client: str, channel: str, exchange: str = "",
                   symbols: Iterable[str] | None = None, bot_ids: Iterable[str] | None = None,
                   since: float | None = None) -> Interest:
        """The client's subscription is confirmed: every matching write sent from now is owed.

        A resubscription (after a reconnect, with ``resume_from``) keeps the first ``since``.
        """
        record = self.clients[client]
        stream = stream_of(channel, exchange)
        if stream not in record.interests:
            record.interests[stream] = Interest(
                channel, stream, time.monotonic() if since is None else since,
                frozenset(symbols) if symbols is not None else None,
                frozenset(bot_ids) if bot_ids is not None else None)
        return record.interests[stream]

    def received(self, client: str, channel: str, seq: str, entity: dict[str, Any]) -> None:
        """One update frame's event, as the client got it."""
        exchange = str(entity.get("exchange", "")) if channel == "tickers" else ""
        stream = stream_of(channel, exchange)
        owner = str(entity.get("user_id", "")) if channel != "tickers" else ""
        self.clients[client].received[stream].append(
            Received(seq, entity_key(channel, entity), owner, time.monotonic()))

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
                and (w.stream, w.seq) not in self.lost_upstream]

    def reconcile(self, retained: dict[str, set[str]], since: float = 0.0) -> list[Write]:
        """Set apart acknowledged writes Redis no longer holds (lost below the product).

        ``retained`` maps a stream to the seqs Redis still has. A write sent after ``since``
        that is missing from it cannot be delivered by any bridge; it is not owed to clients
        and is returned, so the scenario can say why it was lost (or fail).
        """
        lost = []
        for stream, writes in self.writes.items():
            held = retained.get(stream, set())
            for write in writes:
                if write.sent_at >= since and write.seq not in held:
                    self.lost_upstream[(stream, write.seq)] = write
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
            if interest.channel != "tickers" and not record.admin and item.owner != record.user:
                verdict.foreign.append(f"{interest.stream} {item.seq} of {item.owner}")
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
        for label, items in (("missing", verdict.missing), ("duplicated", verdict.duplicates),
                             ("out of order", verdict.out_of_order),
                             ("of another user", verdict.foreign)):
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
                    write = self.by_seq.get((stream, item.seq))
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
                    write = self.by_seq.get((stream, item.seq))
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
