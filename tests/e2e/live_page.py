"""The live page's test stack and the page conditions its tests wait on.

A cache service and a bridge in the test's event loop (real sockets) fed by the demo feed
(``scripts.demo_feed.Feed``, real gRPC), and a page in a real headless Chromium; shared by
every live page test module.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from scripts.demo_feed import Feed, FeedConfig
from tests.e2e.chromium import Chromium, Page, chromium_path
from tests.infra.bridge_runner import RunningBridge, running_bridge
from tests.infra.cache_service_runner import InProcessCacheService, running_cache_service
from devstack.ports import free_port
from tests.infra.tokens import make_token


ROW_COUNT = "document.querySelectorAll('#tickers tbody tr').length"
PRICES = (
    "Object.fromEntries([...document.querySelectorAll('#tickers tbody tr')]"
    ".map(r => [r.dataset.symbol, r.querySelector('td.price').textContent]))"
)
CONNECTION = "document.getElementById('conn').dataset.state"
SYMBOLS_PER_EXCHANGE = 10


def text_of(element_id: str) -> str:
    return f"document.getElementById({element_id!r}).textContent"


@dataclass
class LiveStack:
    cache: InProcessCacheService
    bridge: RunningBridge
    feed: Feed

    def page_url(self, user: str | None = "alice", **query: Any) -> str:
        params = {**({"token": make_token(user)} if user else {}), **query}
        qs = "&".join(f"{k}={v}" for k, v in params.items())
        return f"{self.bridge.http}/" + (f"?{qs}" if qs else "")


@asynccontextmanager
async def live_stack(redis_url: str, **bridge_overrides: Any) -> AsyncIterator[LiveStack]:
    """Cache service, bridge and demo feed; the feed is stopped before the services."""
    async with (
        running_cache_service(redis_url) as cache,
        running_bridge(cache.target, **bridge_overrides) as bridge,
    ):
        stop = asyncio.Event()
        feed = Feed(
            FeedConfig(
                target=cache.target,
                rate=40,
                seed=7,
                trade_interval=0.3,
                window=5,
                backoff_max=1.0,
            ),
            stop,
        )
        task = asyncio.create_task(feed.run())
        try:
            yield LiveStack(cache, bridge, feed)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=15)


@asynccontextmanager
async def browser_page(url: str) -> AsyncIterator[Page]:
    async with Chromium.launch() as browser:
        page = await browser.open(url)
        try:
            yield page
        finally:
            await page.close()


DIAGNOSTICS = (
    "({state: document.getElementById('conn-text').textContent,"
    " banner: document.getElementById('banner').textContent,"
    " stream: document.body.dataset.stream, rate: document.getElementById('rate').textContent,"
    " rows: document.querySelectorAll('#tickers tbody tr').length})"
)


async def wait_prices_move(page: Page, timeout: float = 60.0) -> dict[str, str]:
    """Wait for a full table, then for at least one price to change; return the first prices.

    The timeout is generous (the machine is shared); a failure says what the page showed.
    """
    changed = (
        f"(() => {{ const now = {PRICES}; const before = window.__before;"
        " return Object.keys(now).some(s => before[s] !== undefined && now[s] !== before[s]); })()"
    )
    # Rows can appear a paint before their first price does: wait for the prices too.
    filled = (f"{ROW_COUNT} >= {SYMBOLS_PER_EXCHANGE} &&"
              f" Object.values({PRICES}).every(p => p !== '' && p !== '–')")
    await wait_page(page, filled, timeout)
    before: dict[str, str] = await page.evaluate(f"window.__before = {PRICES}")
    await wait_page(page, changed, timeout)
    return before


async def wait_page(page: Page, expression: str, timeout: float = 60.0) -> None:
    """``page.wait_for``, failing with what the page showed (state, banner, stream, rate)."""
    try:
        await page.wait_for(expression, timeout=timeout)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}; the page showed {await page.evaluate(DIAGNOSTICS)}") from None
