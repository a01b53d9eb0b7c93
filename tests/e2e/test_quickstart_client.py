"""The quickstart's Python client (docs/examples/quickstart_client.py), run as a reader would.

It runs as its own process against the real stack of the live-page tests (Redis, cache service,
bridge, demo feed), so the program the quickstart quotes is known to work, not just to parse.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.infra.eventually import eventually
from tests.e2e.live_page import live_stack
from tests.infra.tokens import make_token

pytestmark = pytest.mark.timeout(120)

CLIENT = Path(__file__).resolve().parents[2] / "docs" / "examples" / "quickstart_client.py"
QUICKSTART = CLIENT.parents[1] / "quickstart.md"


async def run_client(url: str, timeout: float = 60.0) -> list[str]:
    """The client's stdout lines; fail with its stderr if it exits non-zero."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CLIENT), url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")
    return out.decode().splitlines()


def replies(lines: list[str]) -> dict[str, object]:
    """``action -> result`` for the reply lines (``<action> <json>``)."""
    pairs = (line.split(" ", 1) for line in lines)
    return {action: json.loads(rest) for action, rest in pairs
            if action in ("subscribe", "get_ticker", "list_orders")}


async def test_quickstart_client_gets_its_replies_and_updates(redis_url: str) -> None:
    async with live_stack(redis_url) as stack:
        # The feed's first call publishes every instrument; BTC/USDT exists after it.
        await eventually(lambda: stack.feed.published > 0, timeout=30)
        lines = await run_client(stack.bridge.ws_url(make_token("alice")))

    assert lines[0].startswith("welcome ") and len(lines[0].split()[1]) == 32
    got = replies(lines)
    assert set(got) == {"subscribe", "get_ticker", "list_orders"}, lines
    subscription = got["subscribe"]
    assert isinstance(subscription, dict) and subscription["channel"] == "tickers"
    assert {t["symbol"] for t in subscription["snapshot"]} >= {"BTC/USDT"}
    ticker = got["get_ticker"]
    assert isinstance(ticker, dict) and ticker["symbol"] == "BTC/USDT" and ticker["price"] > 0
    orders = got["list_orders"]
    assert isinstance(orders, list) and len(orders) <= 3
    assert all(order["user_id"] == "alice" for order in orders)
    updates = [line.split() for line in lines if line.startswith("update ")]
    assert len(updates) >= 3 and all(float(price) > 0 for _, _, price in updates)


def test_quickstart_quotes_the_client_file() -> None:
    """The page shows the program the test runs, not a copy that can drift from it."""
    assert CLIENT.read_text().strip() in QUICKSTART.read_text()
