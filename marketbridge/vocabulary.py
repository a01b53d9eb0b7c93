"""The values the API's string-typed fields may take (cache.proto names them in comments).

The cache service rejects an order or bot whose side, type or status is not one of these; the
bridge checks a client's ``status`` filter against the same list before asking upstream. One
definition keeps the two from accepting different words.
"""

from __future__ import annotations

ORDER_SIDES: tuple[str, ...] = ("buy", "sell")
ORDER_TYPES: tuple[str, ...] = ("limit", "market", "stop", "stop_limit")
ORDER_STATUSES: tuple[str, ...] = ("new", "open", "partially_filled", "filled", "canceled", "rejected")
# An order in one of these is finished: the cache service keeps it for a retention, then drops it.
TERMINAL_ORDER_STATUSES: frozenset[str] = frozenset({"filled", "canceled", "rejected"})
BOT_STATUSES: tuple[str, ...] = ("running", "paused", "stopped", "error")
