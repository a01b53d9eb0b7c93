"""What the live page says when it has no live data: loading, stale (an outage), refused token.

Real headless Chromium against the real stack of tests/e2e/test_live_page.py (Redis, cache
service, bridge, demo feed). The outage is real too: the test pauses the Redis container (a
hang, as in the report of issue 19), and the page must stop claiming to be live while the
WebSocket itself stays open.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.chromium import Chromium
from tests.e2e.live_page import CONNECTION, browser_page, live_stack, text_of, wait_page, wait_prices_move
from tests.infra.redis_servers import RedisServer
from tests.infra.tokens import make_token

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180), pytest.mark.usefixtures("require_chromium")]

KEYS = ("tickers", "orders", "bots")
MARKET_KEYS = ("book", "trades", "candles")
BADGE = "document.getElementById('live-badge').dataset.state"
PANELS = (
    f"Object.fromEntries({list(KEYS)}"
    ".map(k => [k, document.getElementById(k + '-card').dataset.state]))"
)
BANNER_HIDDEN = "document.getElementById('banner').hidden"


def panels_are(state: str) -> str:
    return f"Object.values({PANELS}).every(s => s === {state!r})"


def opacity(selector: str) -> str:
    return f"+getComputedStyle(document.querySelector({selector!r})).opacity"


async def test_redis_pause_shows_stale_data_until_the_feed_is_back(
    fresh_redis: RedisServer,
) -> None:
    async with live_stack(fresh_redis.url) as stack, browser_page(stack.page_url()) as page:
        await wait_prices_move(page)
        await wait_page(page, f"{BADGE} === 'live' && {panels_are('live')}")
        assert await page.evaluate(text_of("live-badge")) == "live"
        await wait_page(page, f"{opacity('#tickers-card .table-wrap')} === 1", timeout=10)

        await asyncio.to_thread(fresh_redis.pause)
        try:
            # Every channel reads Redis: all three panels go stale (bound 5 s, protocol.md §5).
            await wait_page(page, panels_are("stale"), timeout=30)
            banner = await page.evaluate(text_of("banner"))
            assert banner.startswith("Data interrupted (") and "prices may be stale" in banner
            assert await page.evaluate(BANNER_HIDDEN) is False
            assert await page.evaluate(CONNECTION) == "open"  # the socket is fine: the data is not
            assert await page.evaluate(BADGE) == "stale"
            assert await page.evaluate(text_of("live-badge")) == "stale"
            # Greyed out: the dimming is a 0.2 s CSS transition, so await it rather than read
            # the opacity in the transition's first frame.
            await wait_page(page, " && ".join(f"{opacity(panel)} < 1" for panel in (
                "#tickers-card .table-wrap", "#orders-card > table", "#bots-card > ul")), timeout=10)
        finally:
            await asyncio.to_thread(fresh_redis.unpause)

        # The last `resumed` turns the warning into "Feed back", which then goes away by itself.
        await wait_page(page, f"{text_of('banner')}.startsWith('Feed back')", timeout=60)
        await wait_page(page, f"{BADGE} === 'live' && {panels_are('live')}", timeout=30)
        await wait_page(page, BANNER_HIDDEN, timeout=15)
        await wait_page(page, f"{opacity('#tickers-card .table-wrap')} === 1", timeout=10)
        await wait_prices_move(page)
        assert page.console_errors == []


# Runs before the page's own script: keeps every text the orders and bots panels show, and the
# panels' states at the moment each welcome or subscribe reply arrives (the listener is
# registered before the page's, so it sees the DOM just before the page applies the frame).
RECORDER = """
window.__texts = {orders: [], bots: []};
window.__frames = [];
document.addEventListener('readystatechange', () => {
  if (document.readyState !== 'interactive') return;
  for (const key of Object.keys(window.__texts)) {
    const el = document.getElementById(key + '-empty');
    const keep = () => { const t = window.__texts[key]; if (t[t.length - 1] !== el.textContent) t.push(el.textContent); };
    keep();
    new MutationObserver(keep).observe(el, {childList: true, characterData: true, subtree: true});
  }
});
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener('message', (event) => {
      const frame = JSON.parse(event.data);
      const name = frame.type === 'connection' ? 'welcome'
        : frame.type === 'response' && frame.action === 'subscribe' && frame.success ? frame.result.channel : null;
      if (!name) return;
      const panels = {};
      for (const key of ['tickers', 'orders', 'bots', 'book', 'trades', 'candles']) {
        panels[key] = [document.getElementById(key + '-card').dataset.state, document.getElementById(key + '-empty').textContent];
      }
      window.__frames.push({name, panels, features: frame.features || []});
    });
  }
};
"""


async def test_panels_say_loading_until_their_snapshot_is_in(redis_url: str) -> None:
    """carol has no orders and no bots: "No orders" is what her snapshot says, never before it."""
    async with live_stack(redis_url) as stack, Chromium.launch() as browser:
        page = await browser.open("about:blank")
        try:
            await page.send("Page.addScriptToEvaluateOnNewDocument", source=RECORDER)
            await page.send("Page.navigate", url=stack.page_url(user="carol"))
            # Page.navigate returns before about:blank is replaced: wait on the page's own badge.
            badge = "document.getElementById('live-badge')?.dataset.state"
            await wait_page(page, f"{badge} === 'live'", timeout=60)
            await wait_page(page, f"{text_of('orders-empty')} === 'No orders for this user.'")
            frames = await page.evaluate("window.__frames")
            texts = await page.evaluate("window.__texts")
            shown = await page.evaluate("!document.getElementById('orders-empty').hidden")
            errors = page.console_errors
        finally:
            await page.close()

    welcome = frames[0]
    assert welcome["name"] == "welcome"
    assert welcome["panels"] == {key: ["loading", f"Loading {key}…"] for key in KEYS + MARKET_KEYS}
    replies = {frame["name"]: frame["panels"] for frame in frames[1:]}
    # The market panels the welcome's `features` offer subscribe once the tickers' snapshot
    # has picked a symbol; each of them says loading until its own snapshot too.
    offered = tuple(key for key in MARKET_KEYS if key in welcome["features"])
    assert set(replies) == set(KEYS + offered)
    for key in KEYS + offered:  # just before its own snapshot is applied, each panel says loading
        assert replies[key][key] == ["loading", f"Loading {key}…"], replies
    for key in offered:
        assert replies[key]["tickers"][0] == "live", replies
    assert texts == {
        "orders": ["Loading orders…", "No orders for this user."],
        "bots": ["Loading bots…", "No bots for this user."],
    }
    assert shown is True
    assert errors == []


OTHER_SECRET = "the-secret-of-an-earlier-make-up-run-0123456789"


@pytest.mark.parametrize(
    ("token", "says"),
    [
        (make_token("alice", secret=OTHER_SECRET), "not valid for this server (was it restarted?)"),
        (make_token("alice", exp=-60), "Token expired"),
    ],
    ids=["signed-by-another-server", "expired"],
)
async def test_a_refused_token_says_what_to_do_and_is_forgotten(
    redis_url: str, token: str, says: str
) -> None:
    async with (
        live_stack(redis_url) as stack,
        browser_page(f"{stack.bridge.http}/?token={token}") as page,
    ):
        refused = f"{CONNECTION} === 'closed' && {text_of('banner')}.includes({says!r})"
        await wait_page(page, refused)
        banner = await page.evaluate(text_of("banner"))
        assert "Paste a new token or open the URL `make up` printed." in banner
        assert await page.evaluate("localStorage.getItem('marketbridge.token')") is None
        assert await page.evaluate("document.getElementById('token-panel').hidden") is False
        assert await page.evaluate("document.getElementById('token-input').value") == ""
        assert await page.evaluate(BADGE) == "offline"
        # A reload does not come back with the refused token: it asks for one instead.
        await page.send("Page.reload")
        await wait_page(
            page,
            f"document.readyState === 'complete' && {CONNECTION} === 'closed'"
            f" && {text_of('banner')}.startsWith('Authentication required')",
        )
        assert says not in await page.evaluate(text_of("banner"))
        assert page.console_errors == []


async def test_panel_states_and_token_advice_helpers(redis_url: str) -> None:
    """The pure rules behind the badge and the token message, in the page's own JavaScript."""
    async with live_stack(redis_url) as stack, browser_page(stack.page_url()) as page:
        await wait_page(page, "window.marketbridge !== undefined")
        badges = await page.evaluate(
            "(() => { const p = new window.marketbridge.PanelStates(['a', 'b']); const seen = [];"
            " const note = () => seen.push(p.badge());"
            " note(); p.connected = true; note(); p.set('a', 'live'); note();"
            " p.set('b', 'live'); note();"
            " p.set('b', 'stale'); note(); p.set('b', 'live'); p.disconnected(); note();"
            " p.connected = true; note(); return [seen, p.get('a')]; })()"
        )
        assert badges == [
            ["offline", "loading", "loading", "live", "stale", "offline", "stale"],
            "stale",  # what was live before the socket closed is stale until it resubscribes
        ]
        dropped = await page.evaluate(
            "[[1008, 'Invalid token'], [1008, 'Token expired'], [1008, 'Authentication required'],"
            " [1006, '']].map(([c, r]) => !!window.marketbridge.closeAdvice(c, r).dropToken)"
        )
        assert dropped == [True, True, False, False]
        assert page.console_errors == []
