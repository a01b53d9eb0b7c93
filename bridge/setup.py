"""A subscription's set-up, sans I/O: hold live events, let a catch-up make up for them, release.

A subscription joins its shared topic *before* its snapshot or catch-up is fetched, so no event
written meanwhile is lost; but none may reach the client before its ``subscribe`` response. So
while the subscription is set up, the topic's events for it are held here. At the end
(:meth:`Setup.release`) the held events the catch-up did not already deliver go out, in order,
and the subscription is live.

Holding is bounded by ``--max-backlog``. A subscription without a catch-up cannot make up for
a discarded event: its client must be closed 1013 (:meth:`Setup.hold` says False). A resuming
one can: its catch-up stream reads the same Redis stream as the topic, so the held events are
dropped and the catch-up keeps going past its live point until it has delivered the newest
dropped one itself (:meth:`Setup.caught_up`). No loss, no duplicates, and no 1013 loop for a
client resuming under heavy traffic.

The asyncio side (attach, snapshot, replay, respond, release) is :mod:`bridge.subscribe`; the
lanes and topics only ask whether a subscription is still being set up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.events import Event

SeqKey = tuple[int, int]


@dataclass(slots=True)
class Setup:
    """What a subscription holds while being set up."""

    catching_up: bool = False        # a ``resume_from`` catch-up stream will replay what it missed
    held: list[Event] = field(default_factory=list)
    dropped_key: SeqKey = (0, 0)     # newest held event discarded (the catch-up owes it)

    def hold(self, event: Event, limit: int) -> bool:
        """Hold an event; False when ``limit`` is reached and nothing can make up for a
        discarded event (no catch-up stream), i.e. the client must be closed."""
        if len(self.held) < limit:
            self.held.append(event)
            return True
        if not self.catching_up:
            return False
        self.held.clear()
        self.dropped_key = event.key
        return True

    def caught_up(self, last_key: SeqKey) -> bool:
        """Whether every discarded event has been delivered (``last_key``: the newest one)."""
        return last_key >= self.dropped_key

    def release(self, last_key: SeqKey) -> list[Event]:
        """The held events still due: those after ``last_key`` (the catch-up sent the rest)."""
        held, self.held = self.held, []
        return [event for event in held if event.key > last_key]
