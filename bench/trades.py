"""Scenario (g): trades. R trades/s over S symbols to N clients, every trade to every client.

The fan-out machinery of bench/fanout.py with ``channel="trades"``: the publisher sends
``PublishTrades`` messages (one per 2 ms pacer burst, many trades each), numbering each
symbol's trades 1, 2, 3... in ``trade_id`` and stamping ``time`` with its send time; clients
subscribe to the ``trades`` channel of the exchange (``symbols`` = all S, ``snapshot: false``).
Probes decode every frame and check each symbol's trade ids (gaps, duplicates, reordering:
every published trade received exactly once, in order) and record receive time minus the
trade's ``time``; counters count ``"trade_update"`` markers. Trades are never conflated
(docs/protocol.md 10.5), so every hole is a loss, and a client the bridge closes 1013
``slow consumer`` shows up in ``closed_early``.
"""

from __future__ import annotations

from typing import Any

from bench import fanout
from bench.stack import Endpoints


def points(config: Any) -> list[fanout.FanoutSettings]:
    """The trades points of a run (batch mode: ``?batch_ms=``, as the issue asks)."""
    return [fanout.FanoutSettings.of(config, "batch", rate, channel="trades") for rate in config.trade_rates]


def run_point(settings: fanout.FanoutSettings, endpoints: Endpoints) -> dict[str, Any]:
    return fanout.run_point(settings, endpoints)
