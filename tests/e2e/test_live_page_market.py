"""The live page's market panels (issue 14): order book depth, candle chart, trades tape.

Real headless Chromium against the real stack: Redis (fixture), a cache service and a bridge
(real sockets), fed over gRPC by the test itself (``tests.infra.feed.Feed``, factories of
tests/factories/market.py), so every string the page shows is one the test published. The
checks read the DOM a person looks at, plus a few data attributes the page keeps for tools:
``#book`` ``data-best-bid``/``data-best-ask``, ``#book-check`` ``data-state``/``data-verified``/
``data-mismatches``, ``#chart`` ``data-candles``, ``#trades tr`` ``data-trade-id``.

Set ``LIVE_PAGE_MARKET_SCREENSHOT=docs/live-page-market.png`` to keep the screenshot of the
demo-feed test (the docs' picture).
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.e2e.chromium import Chromium, Page
from marketbridge.api.v1 import cache_pb2 as pb
from tests.e2e.live_page import browser_page, live_stack, wait_page
from tests.factories import TickerFactory, TradeFactory, book_delta, book_snapshot, ladder
from tests.infra.bridge_runner import RunningBridge, running_bridge
from tests.infra.cache_service_runner import running_cache_service
from tests.infra.eventually import eventually
from tests.infra.feed import Feed
from tests.infra.tokens import make_token

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180), pytest.mark.usefixtures("require_chromium")]

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT")
BOOK = "document.getElementById('book')"
CHECK = "document.getElementById('book-check')"
CHART = "document.getElementById('chart')"
TRADE_IDS = "[...document.querySelectorAll('#trades tbody tr')].map(tr => tr.dataset.tradeId)"
TRADE_PRICES = "[...document.querySelectorAll('#trades tbody td.price')].map(td => td.textContent)"
BID_PRICES = "[...document.querySelectorAll('#book-bids tbody td.price')].map(td => td.textContent)"
ASK_PRICES = "[...document.querySelectorAll('#book-asks tbody td.price')].map(td => td.textContent)"
CARD_STATE = "document.getElementById({!r}).dataset.state"


@dataclass
class MarketStack:
    bridge: RunningBridge
    feed: Feed

    def page_url(self, **query: str) -> str:
        qs = "&".join(f"{k}={v}" for k, v in {"token": make_token("alice"), **query}.items())
        return f"{self.bridge.http}/?{qs}"


@asynccontextmanager
async def market_stack(redis_url: str) -> AsyncIterator[MarketStack]:
    """A cache service and a bridge with tickers for ``SYMBOLS`` on binance; no demo feed."""
    async with running_cache_service(redis_url) as cache, running_bridge(cache.target) as bridge:
        feed = Feed(cache.target)
        try:
            await feed.tickers([TickerFactory(exchange="binance", symbol=s, price=100.0 + i)
                                for i, s in enumerate(SYMBOLS)])
            yield MarketStack(bridge, feed)
        finally:
            await feed.close()


@asynccontextmanager
async def tall_page(url: str) -> AsyncIterator[Page]:
    """A page tall enough for the tickers and the market row in one screenshot."""
    async with Chromium.launch(width=1600, height=1240) as browser:
        page = await browser.open(url, width=1600, height=1240)
        try:
            yield page
        finally:
            await page.close()


def minute_trades(start: int, minutes: int, per_minute: int = 3, symbol: str = "BTC/USDT") -> list:
    """Trades in each of ``minutes`` consecutive 1m intervals from ``start`` (unix s, aligned)."""
    return [TradeFactory(symbol=symbol, trade_id=f"c{m:02d}{k}", price=f"{50000 + m * 3 + k}.5",
                         amount="0.10000000", time=start + m * 60 + k * 5)
            for m in range(minutes) for k in range(per_minute)]


async def test_book_chart_and_tape_follow_what_was_published(redis_url: str, tmp_path: Path) -> None:
    now = time.time()
    start = int(now // 60) * 60 - 5 * 60   # six 1m intervals: five closed and the current one
    async with market_stack(redis_url) as stack:
        await stack.feed.book(book_snapshot(symbol="BTC/USDT", sequence=1, levels=30))
        await stack.feed.trades(*minute_trades(start, 6))
        async with tall_page(stack.page_url()) as page:
            # BTC/USDT is selected by default; every panel loads its snapshot.
            await wait_page(page, f"{BOOK}.dataset.bestBid === '49999.5' && {BOOK}.dataset.bestAsk === '50000.5'")
            assert await page.evaluate(f"{CHECK}.dataset.state") == "ok"
            assert await page.evaluate(f"{CHECK}.textContent") == "checksum ok"
            assert await page.evaluate(
                "document.querySelector('#tickers tr[aria-selected=true]').dataset.symbol") == "BTC/USDT"
            # Depth 25 of the 30 published levels, best first, strings as published.
            bids = await page.evaluate(BID_PRICES)
            asks = await page.evaluate(ASK_PRICES)
            assert bids == [p for p, _ in ladder("49999.5", "0.5", 25)]
            assert asks == [p for p, _ in ladder("50000.5", "0.5", 25, descending=False)]
            assert await page.evaluate("document.getElementById('book-spread').dataset.spread") == "1"
            widths = await page.evaluate(
                "[...document.querySelectorAll('#book-bids tbody tr')]"
                ".map(tr => parseFloat(tr.style.getPropertyValue('--depth')))")
            assert widths == sorted(widths) and widths[-1] == 100  # bars of the running total

            await wait_page(page, f"{CHART}.dataset.candles === '6'")
            assert await page.evaluate(f"{CHART}.querySelectorAll('g.candle').length") == 6
            assert await page.evaluate(f"{CHART}.dataset.interval") == "1m"

            snapshot_ids = [t.trade_id for t in minute_trades(start, 6)]
            await wait_page(page, f"{TRADE_IDS}.length === {len(snapshot_ids)}")
            assert await page.evaluate(TRADE_IDS) == snapshot_ids[::-1]  # newest first

            # Deltas: a new best bid, the best ask removed ("0.000" is zero), a level changed,
            # a level added beyond the depth; each verified against its checksum.
            await stack.feed.book(
                book_delta(sequence=2, bids=[("49999.75", "0.40000000")]),
                book_delta(sequence=3, asks=[("50000.5", "0.000")]),
                book_delta(sequence=4, bids=[("49999.5", "2.25")], asks=[("50001.0", "3.0")]),
                book_delta(sequence=5, asks=[("50000.75", "0.5")], bids=[("49990.0", "9")]),
                book_delta(sequence=6, bids=[("49999.75", "0")]),
                book_delta(sequence=7, bids=[("49999.6", "1.10")]),
            )
            await wait_page(page, f"{BOOK}.dataset.bestBid === '49999.6' && {BOOK}.dataset.bestAsk === '50000.75'")
            await wait_page(page, f"+{CHECK}.dataset.verified >= 6")
            assert await page.evaluate(f"{CHECK}.dataset.state") == "ok"
            assert await page.evaluate(f"{CHECK}.dataset.mismatches") == "0"
            assert (await page.evaluate(BID_PRICES))[:3] == ["49999.6", "49999.5", "49999.0"]
            assert (await page.evaluate(ASK_PRICES))[:2] == ["50000.75", "50001.0"]
            qty = "document.querySelector('#book-bids tr[data-price=\"49999.5\"] td.qty').textContent"
            assert await page.evaluate(qty) == "2.25"
            assert await page.evaluate("document.getElementById('book-spread').dataset.spread") == "1.15"

            # Live trades go on top of the tape, newest first, side-coloured.
            # After every snapshot trade (the current minute's may lie ahead of the clock: a
            # close is the latest trade by time, so an earlier live trade would not be it).
            at = max(time.time(), max(t.time for t in minute_trades(start, 6)) + 1)
            live = [TradeFactory(symbol="BTC/USDT", trade_id=f"live{i}", price=f"5010{i}.25",
                                 amount="0.00500000", side="buy" if i % 2 else "sell", time=at + i * 0.5)
                    for i in range(4)]
            # Live trades past the sixth minute (the clock moved on) open candles of their own.
            candles = 6 + len({int(t.time // 60) * 60 for t in live} - {start + 5 * 60})
            for trade in live:
                await stack.feed.trades(trade)
            await wait_page(page, f"{TRADE_IDS}[0] === 'live3'")
            assert (await page.evaluate(TRADE_IDS))[:4] == ["live3", "live2", "live1", "live0"]
            assert (await page.evaluate(TRADE_PRICES))[:4] == ["50103.25", "50102.25", "50101.25", "50100.25"]
            assert await page.evaluate(
                "[...document.querySelectorAll('#trades tbody tr')].slice(0, 2)"
                ".map(tr => tr.querySelector('td.price').classList.contains('up'))") == [True, False]
            # ...and into the chart's current candle (its close is the last trade's price).
            await wait_page(page, "document.getElementById('candle-last').textContent === 'C 50103.25'")
            assert await page.evaluate(f"{CHART}.dataset.candles") == str(candles)
            assert await page.evaluate("document.getElementById('live-badge').dataset.state") == "live"

            assert page.console_errors == []


async def test_symbol_and_interval_selection_resubscribe(redis_url: str) -> None:
    start = int(time.time() // 60) * 60 - 2 * 60
    async with market_stack(redis_url) as stack:
        await stack.feed.book(
            book_snapshot(symbol="BTC/USDT", sequence=1, levels=12),
            book_snapshot(symbol="ETH/USDT", sequence=1, bids=ladder("2999.9", "0.1", 12),
                          asks=ladder("3000.10", "0.1", 12, descending=False)),
        )
        await stack.feed.trades(*minute_trades(start, 3, symbol="ETH/USDT"))
        async with browser_page(stack.page_url()) as page:
            await wait_page(page, f"{BOOK}.dataset.bestBid === '49999.5'")
            await page.evaluate("document.querySelector('#tickers tr[data-symbol=\"ETH/USDT\"]').click()")
            await wait_page(page, f"{BOOK}.dataset.bestBid === '2999.9' && {BOOK}.dataset.bestAsk === '3000.10'")
            assert await page.evaluate(f"{CHECK}.dataset.state") == "ok"
            await wait_page(page, f"{CHART}.dataset.candles === '3' && {TRADE_IDS}.length === 9")
            assert all(tid.startswith("c") for tid in await page.evaluate(TRADE_IDS))
            assert await page.evaluate("localStorage.getItem('marketbridge.symbol')") == "ETH/USDT"
            labels = await page.evaluate("[...document.querySelectorAll('[data-symbol-label]')].map(e => e.textContent)")
            assert labels == ["ETH/USDT · binance"] * 3
            # The three 1m candles are one 5m candle (or two, across a 5m boundary).
            await page.evaluate("document.querySelector('#intervals [data-interval=\"5m\"]').click()")
            await wait_page(page, f"{CHART}.dataset.interval === '5m' && {CARD_STATE.format('candles-card')} === 'live'")
            five = (start // 300 != (start + 120) // 300) + 1
            await wait_page(page, f"{CHART}.dataset.candles === '{five}'")
            assert await page.evaluate("localStorage.getItem('marketbridge.interval')") == "5m"
            # A symbol with no book, trades or candles says so instead of loading forever.
            await page.evaluate("document.querySelector('#tickers tr[data-symbol=\"SOL/USDT\"]').click()")
            await wait_page(page, f"{CARD_STATE.format('trades-card')} !== 'loading'"
                                  f" && {CARD_STATE.format('book-card')} !== 'loading'")
            assert await page.evaluate(TRADE_IDS) == []
            assert await page.evaluate("document.getElementById('trades-empty').textContent") == \
                "No trades for SOL/USDT on binance yet."
            assert page.console_errors == []


# Runs before the page's script: a WebSocket whose `onmessage` sees frames rewritten by
# `window.__rewrite` (the page reads only `event.data`).
REWRITER = """
window.__rewrite = (frame) => frame;
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  set onmessage(handler) {
    super.onmessage = (event) => handler({data: JSON.stringify(window.__rewrite(JSON.parse(event.data)))});
  }
};
"""

CORRUPT_ONE_BOOK_UPDATE = """
window.__corrupted = 0;
window.__rewrite = (frame) => {
  const updates = frame.type === 'batch' ? frame.updates : frame.type === 'update' ? [frame] : [];
  for (const u of updates) {
    if (u.action === 'book_update' && !u.result.snapshot && window.__corrupted === 0) {
      window.__corrupted = 1;
      u.result.checksum = (u.result.checksum + 1) >>> 0;
    }
  }
  return frame;
};
"""


@asynccontextmanager
async def rewriting_page(url: str, script: str = "") -> AsyncIterator[Page]:
    async with Chromium.launch() as browser:
        page = await browser.open("about:blank")
        try:
            await page.send("Page.addScriptToEvaluateOnNewDocument", source=REWRITER + script)
            await page.send("Page.navigate", url=url)
            await wait_page(page, "document.getElementById('live-badge')?.dataset.state === 'live'")
            yield page
        finally:
            await page.close()


async def test_a_checksum_mismatch_resubscribes_and_is_counted(redis_url: str) -> None:
    async with market_stack(redis_url) as stack:
        await stack.feed.book(book_snapshot(symbol="BTC/USDT", sequence=1, levels=30))
        async with rewriting_page(stack.page_url(), CORRUPT_ONE_BOOK_UPDATE) as page:
            await wait_page(page, f"{CHECK}.dataset.state === 'ok'")
            subscribes = "window.marketbridge.client.subs.get('book').id"
            first_id = await page.evaluate(subscribes)
            await stack.feed.book(book_delta(sequence=2, bids=[("49999.75", "1")]))
            # The corrupted update is refused: one mismatch, a fresh snapshot, ok again.
            await wait_page(page, f"{CHECK}.dataset.mismatches === '1' && {CHECK}.dataset.state === 'recovered'")
            assert await page.evaluate("window.__corrupted") == 1
            assert await page.evaluate(subscribes) != first_id
            assert await page.evaluate(f"{BOOK}.dataset.bestBid") == "49999.75"  # from the new snapshot
            assert await page.evaluate(f"{CHECK}.textContent") == "checksum ok · 1 mismatch"
            await stack.feed.book(book_delta(sequence=3, bids=[("49999.8", "1")]))
            await wait_page(page, f"{BOOK}.dataset.bestBid === '49999.8' && +{CHECK}.dataset.verified >= 1")
            assert await page.evaluate(f"{CHECK}.dataset.mismatches") == "1"
            assert page.console_errors == []


async def test_without_features_the_market_panels_stay_hidden(redis_url: str) -> None:
    """A bridge whose welcome has no ``features`` (protocol.md §10): tickers only, as before."""
    drop_features = "window.__rewrite = (f) => { if (f.type === 'connection') delete f.features; return f; };"
    async with market_stack(redis_url) as stack:
        await stack.feed.book(book_snapshot(symbol="BTC/USDT", sequence=1))
        async with rewriting_page(stack.page_url(), drop_features) as page:
            await wait_page(page, "document.querySelectorAll('#tickers tbody tr').length === 3")
            assert await page.evaluate("document.getElementById('market').hidden") is True
            assert await page.evaluate("[...window.marketbridge.client.subs.keys()].sort()") == [
                "bots", "orders", "tickers"]
            assert page.console_errors == []


async def test_market_helpers_match_the_protocol_reference(redis_url: str) -> None:
    """CRC32, the worked checksum example of docs/protocol.md §10, decimals and the book rules."""
    async with market_stack(redis_url) as stack, browser_page(stack.page_url()) as page:
        await wait_page(page, "window.marketbridge !== undefined")
        m = "window.marketbridge.market"
        assert await page.evaluate(f"{m}.crc32('123456789')") == 0xCBF43926
        example = ("{bids: [['50000.1', '0.25000000'], ['49999.9', '2']],"
                   " asks: [['50000.5', '0.00100000'], ['50001.0', '1.5']]}")
        assert await page.evaluate(f"(() => {{ const b = {example}; return {m}.checksumString(b.bids, b.asks); }})()") \
            == "50000510000050001015500001250000004999992"
        assert await page.evaluate(f"(() => {{ const b = {example}; return {m}.bookChecksum(b.bids, b.asks); }})()") \
            == 3211480509
        assert await page.evaluate(
            f"(() => {{ const c = new {m}.BookCopy(2); const ok = c.load(Object.assign({example}, {{checksum: 3211480509}}));"
            " const set = c.apply({bids: [['50000.10', '0.5']], asks: [['50000.5', '0.000'], ['50002', '1'], ['50003', '1']]});"
            " return [ok, set, c.bids, c.asks, c.spread()]; })()"
        ) == [True, True, [["50000.10", "0.5"], ["49999.9", "2"]], [["50001.0", "1.5"], ["50002", "1"]], "0.9"]
        assert await page.evaluate(f"[['50000.10', '50000.1'], ['9.99', '10'], ['0.5', '0.05']].map(([a, b]) => {m}.compareDecimal(a, b))") \
            == [0, -1, 1]
        assert await page.evaluate(f"['0', '0.000', '.0', '0.001'].map({m}.isZero)") == [True, True, True, False]
        assert await page.evaluate(f"{m}.subtractDecimal('50000.5', '49999.75')") == "0.75"
        assert await page.evaluate(
            f"(() => {{ const s = new {m}.CandleSeries(3); s.load([{{open_time: 60}}, {{open_time: 120}}]);"
            " s.put({open_time: 120, close: '2'}); s.put({open_time: 180}); s.put({open_time: 240});"
            " return s.candles.map(c => [c.open_time, c.close || null]); })()"
        ) == [[120, "2"], [180, None], [240, None]]
        assert page.console_errors == []


def backfill(mid: float, minutes: int, seed: int = 14) -> list[pb.Trade]:
    """``minutes`` of BTC/USDT trades, a random walk that ends near ``mid`` (for the chart)."""
    rng = random.Random(seed)
    now = int(time.time() // 60) * 60
    prices = [mid]
    for _ in range(minutes * 4):
        prices.append(prices[-1] * (1 + rng.gauss(0, 0.0012)))
    prices.reverse()
    return [TradeFactory(symbol="BTC/USDT", trade_id=f"hist{i:04d}", price=f"{p:.2f}",
                         amount=f"{rng.uniform(0.001, 0.4):.8f}", side=rng.choice(["buy", "sell"]),
                         time=now - minutes * 60 + i * 15 + rng.uniform(0, 14))
            for i, p in enumerate(prices[:-1])]


async def test_market_panels_on_the_demo_feed(redis_url: str, tmp_path: Path) -> None:
    """The demo feed's books (hundreds of deltas a second) and trades: every checksum holds."""
    async with live_stack(redis_url) as stack:
        feed = Feed(stack.cache.target)
        try:
            request = pb.GetBookRequest(exchange="binance", symbol="BTC/USDT", depth=10)

            async def book() -> pb.Book | None:
                try:
                    found = await feed.stub.GetBook(request, timeout=5)
                except grpc.aio.AioRpcError as error:
                    if error.code() == grpc.StatusCode.NOT_FOUND:  # not published yet
                        return None
                    raise
                return found if found.bids and found.asks else None

            first = await eventually(book, 30, what="the demo feed's BTC/USDT book")
            mid = (float(first.bids[0].price) + float(first.asks[0].price)) / 2
            await feed.trades(*backfill(mid, 90))
        finally:
            await feed.close()
        async with tall_page(stack.page_url()) as page:
            await wait_page(page, f"{CHECK}.dataset.state === 'ok' && +{CHECK}.dataset.verified >= 100")
            assert await page.evaluate(f"{CHECK}.dataset.mismatches") == "0"
            depth = "[document.querySelectorAll('#book-bids tbody tr').length, document.querySelectorAll('#book-asks tbody tr').length]"
            assert await page.evaluate(depth) == [25, 25]
            await wait_page(page, f"+{CHART}.dataset.candles === 80")  # CANDLE_LIMIT of the 90 minutes
            # Live trades push the backfill down the tape.
            await wait_page(page, f"{TRADE_IDS}.length >= 16 && {TRADE_IDS}.slice(0, 16).every(id => !id.startsWith('hist'))", timeout=90)
            assert await page.evaluate("document.getElementById('live-badge').dataset.state") == "live"
            assert await page.evaluate(f"{CHECK}.dataset.mismatches") == "0"
            shot = await page.screenshot(tmp_path / "live-page-market.png")
            assert shot.stat().st_size > 20_000
            keep = os.environ.get("LIVE_PAGE_MARKET_SCREENSHOT")
            if keep:
                shutil.copyfile(shot, keep)
            assert page.console_errors == []
