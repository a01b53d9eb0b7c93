"""Bounded per-client outbound queue: what to write next, what to conflate, when to give up.

Ticker updates are state, not history, but docs/protocol.md §6 lets them be conflated only for a client
that is *behind*: one whose backlog holds at least ``conflate_above`` frames (by default
:data:`CONFLATE_FRACTION` of ``--max-backlog``). Below that bound every update is queued, so a
client that keeps up sees a burst of ten updates of one symbol as ten, even when they queue
behind a reply for a moment. Above it the latest per (subscription, symbol) replaces the queued
one (counted as conflated). The newer update goes to the back of the queue and the older entry
is dropped, not overwritten in place: overwriting would put a newer seq ahead of older updates
of other symbols, and a client resuming from the last seq it saw could then skip or repeat
updates. Per subscription, seqs leave the queue in increasing order. An update pushed without a
key (orders, bots, a ``resume_from`` replay, events released after a setup) is never conflated.

Order and bot updates are history and are never dropped: a client whose backlog is full is
closed 1013 ``slow consumer`` and resumes with ``resume_from``. Replies and status frames count
toward the backlog like order updates.

In batch mode (``?batch_ms=N``) updates are grouped into ``batch`` frames written at most N ms
after the first update in them; a reply or status frame flushes what is queued before it, so
frame order is kept. An update that already waited for a batch elsewhere (handed over by a
lane's flush, :mod:`bridge.lanes`) is pushed ``due``: it goes out with the next write instead
of waiting for a second batch timer.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass, field

from bridge.codec import batch_frame
from bridge.pending_book import PendingBook

# A client is "behind" (its tickers may be conflated) once its queue holds this fraction of
# ``--max-backlog``. Half: it is the point where the session already paces a replay
# (``Session.writable``), a reader that keeps up never gets near it (its writer takes the whole
# queue every event-loop turn; a burst of one upstream message is far below 500 frames), and
# the other half stays free for order/bot updates and replies before a 1013, since queued
# tickers count toward the backlog too. Meant to become the ``--conflate-backlog`` flag.
CONFLATE_FRACTION = 0.5


def conflation_bound(max_backlog: int, fraction: float = CONFLATE_FRACTION) -> int:
    """Backlog (frames queued) from which ticker updates conflate; at least 1."""
    return max(1, int(max_backlog * fraction))


class Push(enum.Enum):
    QUEUED = "queued"
    CONFLATED = "conflated"
    OVERFLOW = "overflow"


@dataclass(slots=True, eq=False)
class Entry:
    frame: str
    kind: str               # frame type for bridge_messages_sent_total
    key: Hashable | None    # conflation key (ticker updates only)
    event_ms: int = 0       # event time of an update, for bridge_delivery_latency_seconds
    dropped: bool = False   # replaced by a newer update of the same key (skipped by take)
    book: PendingBook | None = None   # a book update that a newer one merges into


@dataclass(slots=True)
class Outgoing:
    """A frame ready to write, with the event times of the updates in it."""

    frame: str
    kind: str
    event_ms: list[int] = field(default_factory=list)


class Outbound:
    """The queue between fan-out/request handling and one client's socket writer.

    The queue is a list, not a deque: it is only appended to and then taken whole, and an empty
    deque costs a 64-slot block (about 760 bytes) on each of the idle connections that hold
    one, an empty list none."""

    __slots__ = ("max_backlog", "conflate_above", "batch_s", "entries", "keyed", "dropped",
                 "batch_deadline", "has_control")

    def __init__(self, max_backlog: int, batch_ms: int | None = None,
                 conflate_above: int | None = None) -> None:
        self.max_backlog = max_backlog
        self.conflate_above = (conflation_bound(max_backlog) if conflate_above is None
                               else conflate_above)
        self.batch_s = batch_ms / 1000.0 if batch_ms else None
        self.entries: list[Entry] = []
        self.keyed: dict[Hashable, Entry] = {}
        self.dropped = 0   # entries marked dropped but still in ``entries``
        self.batch_deadline: float | None = None
        self.has_control = False

    def __len__(self) -> int:
        return len(self.entries) - self.dropped

    @property
    def behind(self) -> bool:
        """Whether the client is behind: its backlog is over the conflation bound."""
        return len(self) >= self.conflate_above

    def push_update(self, frame: str, event_ms: int, key: Hashable | None, now: float,
                    bounded: bool = True, due: bool = False, book: PendingBook | None = None) -> Push:
        """Queue an update.

        With a ``key`` (a live ticker or book event) it is never refused; when the client is
        :attr:`behind`, the queued update of the same key is dropped and this one goes to the
        back (so per-subscription seq order holds). A ``book`` update is merged with a queued
        book update instead (both carry one): the merge goes to the back, as one update. A book
        snapshot or stale mark (keyed, no ``book``) never merges with an update, nor an update
        with it. Without a key it is never conflated and, when ``bounded``, refused (OVERFLOW)
        once the backlog is full. ``due``: the update already waited for a batch (a lane's
        flush), so the pending batch is due now.
        """
        result = Push.QUEUED
        if key is not None:
            queued = self.keyed.get(key)
            if queued is not None and self.behind and (queued.book is None) == (book is None):
                self._drop(queued)
                result = Push.CONFLATED
                if book is not None and queued.book is not None:
                    book = queued.book.then(book)
                    frame, event_ms = "", queued.event_ms   # framed when taken (PendingBook)
        elif bounded and len(self) >= self.max_backlog:
            return Push.OVERFLOW
        entry = Entry(frame, "update", key, event_ms, book=book)
        self.entries.append(entry)
        if key is not None:
            self.keyed[key] = entry
        if self.batch_s is not None:
            self._schedule(now if due else now + self.batch_s)
        return result

    def _schedule(self, deadline: float) -> None:
        """The pending batch is written at the earliest deadline of the updates in it."""
        if self.batch_deadline is None or deadline < self.batch_deadline:
            self.batch_deadline = deadline

    def _drop(self, entry: Entry) -> None:
        """Mark a replaced entry dropped (O(1)); compact once dropped ones outnumber live ones,
        so a client that only gets conflated tickers never grows the queue without bound."""
        entry.dropped = True
        self.dropped += 1
        if self.dropped > len(self.entries) // 2:
            self.entries = [e for e in self.entries if not e.dropped]
            self.dropped = 0

    def push_control(self, frame: str, kind: str) -> Push:
        """Queue a reply or status frame (never conflated, never dropped)."""
        if len(self) >= self.max_backlog:
            return Push.OVERFLOW
        self.entries.append(Entry(frame, kind, None))
        self.has_control = True
        return Push.QUEUED

    def wait_time(self, now: float) -> float | None:
        """Seconds until :meth:`take` has something; None when the queue is empty."""
        if not len(self):
            return None
        if self.batch_deadline is None or self.has_control:
            return 0.0
        return max(0.0, self.batch_deadline - now)

    def take(self, now: float) -> list[Outgoing]:
        """Everything due now, in order (a pending batch that is not due yet stays queued)."""
        wait = self.wait_time(now)
        if wait is None or wait > 0:
            return []
        entries = [e for e in self.entries if not e.dropped] if self.dropped else self.entries
        self.entries, self.dropped = [], 0
        self.keyed.clear()
        self.batch_deadline = None
        self.has_control = False
        if self.batch_s is None:
            return [Outgoing(_text(e), e.kind, [e.event_ms] if e.kind == "update" else [])
                    for e in entries]
        return _batched(entries)


def _batched(entries: list[Entry]) -> list[Outgoing]:
    """Group consecutive updates into batch frames, keeping other frames where they were."""
    out: list[Outgoing] = []
    updates: list[Entry] = []
    for entry in entries:
        if entry.kind == "update":
            updates.append(entry)
            continue
        if updates:
            out.append(_batch(updates))
            updates = []
        out.append(Outgoing(entry.frame, entry.kind))
    if updates:
        out.append(_batch(updates))
    return out


def _batch(updates: list[Entry]) -> Outgoing:
    return Outgoing(batch_frame([_text(e) for e in updates]), "batch", [e.event_ms for e in updates])


def _text(entry: Entry) -> str:
    """An entry's frame: a merged book update is framed only now, once (PendingBook)."""
    return entry.frame if entry.frame or entry.book is None else entry.book.frame()
