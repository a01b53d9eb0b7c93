"""``python -m marketbridge_client tail ...``: print a subscription's live updates.

An example of the client, and a probe: it survives bridge restarts like any client would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from marketbridge_client.client import Client, Stream
from marketbridge_client.core import Update
from marketbridge_client.errors import ClientError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m marketbridge_client")
    commands = parser.add_subparsers(dest="command", required=True)
    tail = commands.add_parser("tail", help="print a subscription's updates as JSON lines")
    tail.add_argument("--url", default="ws://127.0.0.1:8080/ws")
    tail.add_argument("--token", default=os.environ.get("MARKETBRIDGE_TOKEN"),
                      help="JWT (default: $MARKETBRIDGE_TOKEN)")
    tail.add_argument("--channel", required=True,
                      choices=["tickers", "orders", "bots", "book", "trades", "candles"])
    tail.add_argument("--exchange")
    tail.add_argument("--symbol", help="book, candles: the symbol; tickers, orders, trades: a filter")
    tail.add_argument("--depth", type=int, help="book depth (10, 25, 100, 500)")
    tail.add_argument("--interval", help="candles interval (1m, 5m, ...)")
    tail.add_argument("--batch-ms", type=int)
    tail.add_argument("--heartbeat-s", type=int, default=10)
    tail.add_argument("--count", type=int, default=0, help="stop after this many updates (0: never)")
    return parser.parse_args(argv)


def subscribe_params(args: argparse.Namespace) -> dict[str, Any]:
    """The CLI's flags as the channel's params (a single symbol becomes a filter list)."""
    params: dict[str, Any] = {"exchange": args.exchange}
    if args.channel in ("book", "candles"):
        params.update(symbol=args.symbol, depth=args.depth, interval=args.interval)
    elif args.symbol:
        params["symbols"] = [args.symbol]
    if args.channel in ("orders", "bots"):
        params.pop("exchange")
    return {k: v for k, v in params.items() if v is not None}


def line(update: Update, stream: Stream) -> str:
    """One printable line: the book's top for books, the record otherwise."""
    if stream.book is not None and update.kind in ("snapshot", "update"):
        bid, ask = stream.book.best_bid(), stream.book.best_ask()
        return json.dumps({"kind": update.kind, "seq": update.seq, "best_bid": bid, "best_ask": ask,
                           "checksum": stream.book.checksum()})
    return json.dumps({"kind": update.kind, "action": update.action, "seq": update.seq,
                       "data": update.data})


async def tail(args: argparse.Namespace) -> int:
    async with Client(args.url, args.token, batch_ms=args.batch_ms, heartbeat_s=args.heartbeat_s) as client:
        seen = 0
        async with client.subscribe(args.channel, **subscribe_params(args)) as stream:
            async for update in stream:
                print(line(update, stream), flush=True)
                seen += update.kind == "update"
                if args.count and seen >= args.count:
                    return 0
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(tail(args))
    except ClientError as error:
        print(f"marketbridge_client: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
