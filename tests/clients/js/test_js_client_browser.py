"""The JavaScript client in a real headless Chromium, against the real stack, through the faults.

The page is a document of the bridge's origin (``/healthz``); it imports the client as the live
page does (``/marketbridge.js``, served by the bridge) and the fault scenarios from the test's
control server (clients/js/test/scenario.js, the same code the Node live tests run). Each
scenario asks the control server for its fault and ends with the client's view equal to the
service's; what the client went through comes back to this test to check.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.clients.js.test_js_client import client_env, controlled_stack
from tests.e2e.chromium import Chromium, Page, chromium_path
from tests.infra.redis_servers import RedisServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

SCENARIO_TIMEOUT_S = 120.0


@pytest.fixture(autouse=True)
def _chromium() -> None:
    if chromium_path() is None:
        pytest.fail("chromium is not installed: run the suite through scripts/test_env.sh "
                    "(it installs Debian's chromium) or apt-get install chromium")


async def run_scenario(page: Page, env: dict[str, str], fault: str, url: str) -> dict[str, Any]:
    """Run one scenario in the page; its summary, or the page's error as the failure."""
    options = {"url": url, "controlUrl": env["MB_CONTROL_URL"], "token": env["MB_TOKEN"], "fault": fault}
    expression = (
        "(async () => { const MB = await import('/marketbridge.js');"
        f" const S = await import({json.dumps(env['MB_CONTROL_URL'] + '/scenario.js')});"
        f" return await S.scenario(MB, {json.dumps(options)}); }})()"
    )
    result = await page.send("Runtime.evaluate", timeout=SCENARIO_TIMEOUT_S, expression=expression,
                             returnByValue=True, awaitPromise=True)
    if "exceptionDetails" in result:
        details = result["exceptionDetails"]
        why = details.get('exception', {}).get('description') or details.get('text')
        raise AssertionError(f"{fault}: {why}")
    summary: dict[str, Any] = result["result"]["value"]
    return summary


async def test_in_chromium_bridge_redis_and_cache_service_restarts(fresh_redis: RedisServer) -> None:
    async with controlled_stack(fresh_redis) as (stack, control), Chromium.launch() as browser:
        env = client_env(stack, control)
        assert stack.bridge is not None
        page = await browser.open(f"{stack.bridge.http}/healthz")
        try:
            seen = await run_scenario(page, env, "bridge", env["MB_WS_URL"])
            assert seen["closes"][0]["code"] == 1001 and seen["resumedRecovered"] == 4, seen
            for fault in ("redis", "cache"):
                seen = await run_scenario(page, env, fault, env["MB_WS_URL"])
                assert "interrupted" in seen["statuses"] and seen["closes"] == [], seen
            assert page.console_errors == []
        finally:
            await page.close()


async def test_in_chromium_a_stalled_network(fresh_redis: RedisServer) -> None:
    async with controlled_stack(fresh_redis, proxy=True) as (stack, control), Chromium.launch() as browser:
        env = client_env(stack, control)
        assert stack.bridge is not None
        page = await browser.open(f"{stack.bridge.http}/healthz")
        try:
            seen = await run_scenario(page, env, "stall", env["MB_PROXY_WS_URL"])
            assert seen["closes"][0]["code"] == 1006 and "heartbeat" in seen["closes"][0]["reason"], seen
            assert seen["detectedMs"] >= 2000 and seen["resumedRecovered"] >= 1, seen
            assert page.console_errors == []
        finally:
            await page.close()
