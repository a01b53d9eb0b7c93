"""The channel table: every channel the bridge serves, by name and by its ``stream_*`` alias.

A new channel is a module of this package building a :class:`~bridge.channels.base.Channel`
and a row here; the order of the rows is the order error messages list the channels in.
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge.channels import book, bots, candles, orders, tickers, trades
from bridge.channels.base import Channel

CHANNELS: Mapping[str, Channel] = {
    channel.name: channel for channel in (tickers.CHANNEL, orders.CHANNEL, bots.CHANNEL,
                                          book.CHANNEL, trades.CHANNEL, candles.CHANNEL)
}
ALIASES: Mapping[str, Channel] = {channel.alias: channel for channel in CHANNELS.values()}

__all__ = ["ALIASES", "CHANNELS", "Channel"]
