"""The live page in a real headless Chromium against the real stack.

Redis (fixture) -> cache service -> bridge (both in this event loop, real sockets) <- demo feed
(``scripts.demo_feed.Feed``, real gRPC). The browser loads ``GET /`` from the bridge and talks
WebSocket protocol v1 to it; the checks read the DOM a person would look at.

Set ``LIVE_PAGE_SCREENSHOT=docs/live-page.png`` to keep the screenshot of the first test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.live_page import (
    CONNECTION,
    SYMBOLS_PER_EXCHANGE,
    browser_page,
    live_stack,
    text_of,
    wait_page,
    wait_prices_move,
)
from tests.infra.bridge_runner import running_bridge
from tests.infra.cache_service_runner import running_cache_service
from devstack.ports import free_port
from tests.infra.tokens import make_token

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180), pytest.mark.usefixtures("require_chromium")]


async def test_page_shows_live_tickers_orders_and_bots(redis_url: str, tmp_path: Path) -> None:
    async with live_stack(redis_url) as stack, browser_page(stack.page_url()) as page:
        before = await wait_prices_move(page)
        assert len(before) == SYMBOLS_PER_EXCHANGE
        assert all(symbol.endswith("/USDT") for symbol in before)
        assert all(price not in ("", "–") for price in before.values())
        assert await page.evaluate(CONNECTION) == "open"
        assert len(await page.evaluate(text_of("session"))) > 4
        assert await page.evaluate(text_of("user")) == "alice"
        await page.wait_for(f"+{text_of('rate')} > 0")
        await page.wait_for(f"{text_of('latency')}.endsWith('ms')")
        # The token was moved out of the address bar into localStorage.
        assert "token=" not in await page.evaluate("location.href")
        # alice's own orders and bots, never bob's.
        await page.wait_for("document.querySelectorAll('#orders tbody tr').length > 0")
        await page.wait_for("document.querySelectorAll('#bots li').length > 0")
        order_ids = await page.evaluate(
            "[...document.querySelectorAll('#orders .oid')].map(td => td.firstChild.textContent)"
        )
        assert order_ids and all(oid.startswith("alice-") for oid in order_ids)
        bot_text = await page.evaluate(text_of("bots"))
        assert "bob" not in bot_text
        # For the picture only (not synchronisation): the latest ticks' flashes fade in.
        await asyncio.sleep(1.0)
        shot = await page.screenshot(tmp_path / "live-page.png")
        assert shot.stat().st_size > 20_000
        assert page.console_errors == []
        keep = os.environ.get("LIVE_PAGE_SCREENSHOT")
        if keep:
            shutil.copyfile(shot, keep)


async def test_exchange_selector_switches_the_table(redis_url: str) -> None:
    async with live_stack(redis_url) as stack, browser_page(stack.page_url()) as page:
        binance = await wait_prices_move(page)
        await page.wait_for("document.querySelector('#exchanges [data-exchange=kraken]') !== null")
        await page.evaluate("document.querySelector('#exchanges [data-exchange=kraken]').click()")
        await page.wait_for(
            "document.querySelector('#exchanges [aria-selected=true]').dataset.exchange === 'kraken'"
        )
        kraken = await wait_prices_move(page)
        assert set(kraken) == set(binance)
        assert kraken != binance  # each exchange quotes its own prices
        assert await page.evaluate("localStorage.getItem('marketbridge.exchange')") == "kraken"
        assert page.console_errors == []


async def test_batched_updates(redis_url: str) -> None:
    async with live_stack(redis_url) as stack, browser_page(stack.page_url(batch_ms=200)) as page:
        await wait_prices_move(page)
        assert await page.evaluate("document.getElementById('batch-stat').hidden") is False
        assert await page.evaluate(text_of("batch")) == "200 ms"
        await page.wait_for(f"+{text_of('rate')} > 0")
        assert page.console_errors == []


async def test_cache_service_restart_shows_interrupted_then_resumed(redis_url: str) -> None:
    async with live_stack(redis_url) as stack, browser_page(stack.page_url()) as page:
        await wait_prices_move(page)
        await stack.cache.stop()
        await page.wait_for("document.body.dataset.stream === 'interrupted'", timeout=30)
        assert "interrupted" in await page.evaluate(text_of("banner"))
        assert await page.evaluate(CONNECTION) == "open"  # the WebSocket itself stays up
        await stack.cache.start()
        await page.wait_for("document.body.dataset.stream === 'resumed'", timeout=60)
        await wait_prices_move(page)
        assert page.console_errors == []


async def test_reconnects_to_a_restarted_bridge_and_resumes(redis_url: str) -> None:
    port = free_port()
    async with live_stack(redis_url, port=port) as stack, browser_page(stack.page_url()) as page:
        await wait_prices_move(page)
        first_session = await page.evaluate(text_of("session"))
        await stack.bridge.app.drain()  # close 1001 "server shutting down"
        await page.wait_for(f"{CONNECTION} !== 'open'", timeout=30)
        async with running_bridge(stack.cache.target, port=port):
            await page.wait_for(f"{CONNECTION} === 'open'", timeout=60)
            assert await page.evaluate(text_of("session")) != first_session
            # Subscriptions that had seen an update came back with resume_from (tickers always
            # have); the banner says how each went.
            await wait_page(page, f"{text_of('banner')}.includes('tickers')")
            assert (await page.evaluate(text_of("banner"))).startswith("Reconnected: ")
            await wait_prices_move(page)
            assert page.console_errors == []


async def test_invalid_token_asks_for_a_new_one(redis_url: str) -> None:
    async with live_stack(redis_url) as stack:
        url = f"{stack.bridge.http}/?token=not-a-jwt"
        async with browser_page(url) as page:
            await page.wait_for(f"{CONNECTION} === 'closed'", timeout=30)
            assert await page.evaluate("document.getElementById('token-panel').hidden") is False
            assert "Invalid token" in await page.evaluate(text_of("banner"))
            # Pasting a good token connects without reloading the page.
            token = make_token("bob")
            await page.evaluate(f"document.getElementById('token-input').value = {token!r}")
            await page.evaluate("document.getElementById('token-panel').requestSubmit()")
            await wait_prices_move(page)
            assert await page.evaluate(text_of("user")) == "bob"
            assert await page.evaluate("localStorage.getItem('marketbridge.token')") == token


async def test_page_protocol_helpers(redis_url: str) -> None:
    """The page's pure helpers: frame expansion, close-code advice, backoff, rate, formatting."""
    async with (
        running_cache_service(redis_url) as cache,
        running_bridge(cache.target) as bridge,
        browser_page(f"{bridge.http}/?token={make_token('alice')}") as page,
    ):
        await page.wait_for("window.marketbridge !== undefined")
        mb = "window.marketbridge"
        assert (
            await page.evaluate(
                f"{mb}.updatesOf({{type: 'batch', updates: [{{}}, {{}}, {{}}]}}).length"
            )
            == 3
        )
        assert await page.evaluate(f"{mb}.updatesOf({{type: 'update', seq: '1-0'}}).length") == 1
        assert await page.evaluate(f"{mb}.updatesOf({{type: 'pong'}}).length") == 0
        advice = await page.evaluate(
            f"[[1008, 'Invalid token'], [1008, 'Token expired'], [1008, 'Authentication required'],"
            f" [1008, 'rate limit exceeded'], [1001, 'server shutting down'], [1013, 'slow consumer'],"
            f" [1006, '']].map(([c, r]) => {mb}.closeAdvice(c, r).retry)"
        )
        assert advice == [False, False, False, True, True, True, True]
        delays = await page.evaluate(
            f"(() => {{ const b = new {mb}.Backoff(500, 15000);"
            " return Array.from({length: 10}, () => b.next()); })()"
        )
        assert delays[0] <= 625 and max(delays) <= 15000 * 1.25 and delays[-1] >= 15000 * 0.75
        assert await page.evaluate(
            f"(() => {{ const m = new {mb}.RateMeter(1000);"
            " m.add(30, 0); m.add(20, 500); return [m.perSecond(900), m.perSecond(1400)]; })()"
        ) == [50, 20]
        assert await page.evaluate(f"[67000.126, 3500.5, 0.15, 15.01234].map({mb}.fmtPrice)") == [
            "67,000.13",
            "3,500.50",
            "0.150000",
            "15.0123",
        ]
        assert await page.evaluate(f"[1.234, -0.5, 0].map({mb}.fmtChange)") == [
            "+1.23%",
            "-0.50%",
            "0.00%",
        ]
        assert await page.evaluate(f"{mb}.jwtClaims({make_token('bob')!r}).sub") == "bob"
        assert await page.evaluate(f"{mb}.jwtClaims('garbage')") is None
        assert page.console_errors == []


async def test_page_without_a_token_on_a_no_auth_bridge(redis_url: str) -> None:
    """``--auth none`` (local development): the page connects with no token at all."""
    async with (
        live_stack(redis_url, auth="none") as stack,
        browser_page(stack.page_url(user=None)) as page,
    ):
        await wait_prices_move(page)
        assert await page.evaluate(text_of("user")) == "anonymous"
        assert await page.evaluate("document.getElementById('token-panel').hidden") is True
        assert page.console_errors == []
