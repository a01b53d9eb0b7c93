"""Terminal orders expire: filled, canceled and rejected orders are dropped from the latest state
``--terminal-order-retention-s`` after their last write (0 keeps them forever).

Without it every order ever written stays in ``orders:user:*`` and ``order_owner``: a user's
``ListOrders`` (and the live page's order list) only ever grows. Which orders are due is kept
in Redis by the write script itself (store.py, ``order_expiry``), so no order can be missed
by a sweeper that was down, and the drop is one script too: an order is gone from every key
or from none. Replicas of the service may all sweep; the script is idempotent. The change
feed is left alone: its stream keeps its own ``MAXLEN`` retention, and a dropped order sends
no event (clients see it gone at their next snapshot).

The sweep runs at a quarter of the retention, between ``MIN_INTERVAL_S`` and
``MAX_INTERVAL_S``, so an order outlives its retention by at most that much. A Redis that does
not answer only delays a sweep: it is tried again at the next tick.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError

from cache_service.errors import Unavailable
from cache_service.periodic import Periodic
from cache_service.store import ORDERS, Store

log = logging.getLogger(__name__)

BATCH = 500  # orders dropped per script call: a long backlog never blocks Redis for long
MIN_INTERVAL_S = 0.05
MAX_INTERVAL_S = 10.0


def sweep_interval(retention_s: float) -> float:
    """How often to sweep: a quarter of the retention, within the bounds above."""
    return min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, retention_s / 4))


class OrderRetention:
    """The sweep of one service process; ``start`` and ``stop`` may be called repeatedly.

    ``failing`` is true from a failed sweep until one succeeds (a warning is logged once).
    """

    def __init__(self, store: Store, retention_s: float) -> None:
        self.store = store
        self.retention_s = retention_s
        self.interval = sweep_interval(retention_s)
        self.periodic = Periodic("order-retention", self._tick, self.interval)
        self.failing = False

    async def sweep(self) -> int:
        """Drop every due order now, a batch per script call; how many went."""
        dropped = 0
        while True:
            count = await self.store.expire(ORDERS, self.retention_s, BATCH)
            dropped += count
            if count < BATCH:
                return dropped

    def start(self) -> OrderRetention:
        """Sweep in the background (nothing to do when the retention is 0: keep forever)."""
        if self.retention_s > 0:
            self.periodic.start()
        return self

    async def stop(self) -> None:
        await self.periodic.stop()

    async def _tick(self) -> None:
        try:
            dropped = await self.sweep()
        except (RedisError, OSError, Unavailable) as exc:
            if not self.failing:  # once per outage: the health monitor already reports it
                log.warning("terminal-order sweep failed (%s): retrying every %.2g s", exc, self.interval)
            self.failing = True
            return
        self.failing = False
        if dropped:
            log.debug("dropped %d terminal orders older than %g s", dropped, self.retention_s)
