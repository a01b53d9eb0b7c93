"""The JavaScript client (clients/js) under Node's own test runner, against the real stack.

``node --test`` runs clients/js/test/unit.test.js (the sans-I/O parts, and the client against a
fake socket) and clients/js/test/live.test.js against Redis (a container of the test's own),
the cache service and a bridge, with a publisher writing all the while; the live tests ask the
control server of tests/clients/js/stack.py for the faults. This file asserts that Node ran them
all and that they passed. Node is installed from the OS packages when missing, never skipped.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from tests.clients.js.node import CLIENT_DIR, ROOT, node_binary, tap_counts, websocket_flags
from tests.clients.js.stack import Stack, control_server, js_stack
from tests.infra.redis_servers import RedisServer
from tests.infra.tokens import make_token

pytestmark = [pytest.mark.timeout(240)]

NODE_TIMEOUT_S = 200.0


async def run_node(args: list[str], env: dict[str, str],
                   timeout: float = NODE_TIMEOUT_S) -> tuple[int, str]:
    """Run node; its exit code and output (stdout and stderr), killed at the timeout."""
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=ROOT, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        output, _ = await proc.communicate()
        return -1, output.decode(errors="replace") + f"\n[killed after {timeout} s]"
    assert proc.returncode is not None
    return proc.returncode, output.decode(errors="replace")


async def node_test(files: list[str], env: dict[str, str] | None = None,
                    pattern: str | None = None, websocket: bool = True) -> dict[str, int]:
    """Run ``node --test`` on ``files``; every test must pass, none be skipped but by ``pattern``.
    ``websocket`` False: no global WebSocket (the unit tests use a fake one, and check the
    error of a client that has none)."""
    node = node_binary()
    flags = websocket_flags(node) if websocket else []
    args = [node, *flags, "--test", "--test-reporter=tap",
            *([f"--test-name-pattern={pattern}"] if pattern else []), *files]
    code, output = await run_node(args, env or {})
    counts = tap_counts(output)
    assert code == 0 and counts.get("fail", 1) == 0, f"node --test failed ({code}):\n{output[-8000:]}"
    # only the tests another pattern selects may be skipped (never a live test for want of a stack)
    unselected = output.count("# SKIP test name does not match pattern")
    assert counts.get("skipped", 0) == unselected and counts.get("cancelled", 0) == 0, output[-8000:]
    return counts


def client_env(stack: Stack, control: str) -> dict[str, str]:
    env = {"MB_WS_URL": stack.ws_url, "MB_CONTROL_URL": control, "MB_TOKEN": make_token("alice")}
    if stack.proxy is not None:
        env["MB_PROXY_WS_URL"] = f"ws://127.0.0.1:{stack.proxy.port}/ws"
    return env


@asynccontextmanager
async def controlled_stack(redis: RedisServer, proxy: bool = False) -> AsyncIterator[tuple[Stack, str]]:
    async with js_stack(redis) as stack, control_server(stack.handle) as control:
        if not proxy:
            yield stack, control
            return
        from tests.infra.tcp_proxy import StallingProxy   # another engineer's; see its module

        async with StallingProxy("127.0.0.1", stack.port) as stalling:
            stack.proxy = stalling
            yield stack, control


async def test_unit_tests_pass() -> None:
    counts = await node_test([str(CLIENT_DIR / "test" / "unit.test.js")], websocket=False)
    assert counts["pass"] >= 25


async def test_the_page_serves_this_client() -> None:
    """The live page imports /marketbridge.js: the one file lives in bridge/static (the bridge
    package ships it), and clients/js/marketbridge.js is a link to it, so they cannot drift."""
    served = ROOT / "bridge" / "static" / "marketbridge.js"
    assert (CLIENT_DIR / "marketbridge.js").resolve() == served.resolve()
    assert not served.is_symlink()


async def test_bridge_redis_and_cache_service_restarts_and_token_refresh(fresh_redis: RedisServer) -> None:
    async with controlled_stack(fresh_redis) as (stack, control):
        counts = await node_test([str(CLIENT_DIR / "test" / "live.test.js")], client_env(stack, control),
                                 pattern="restart|refresh")
        assert counts["pass"] == 4


async def test_a_stalled_network(fresh_redis: RedisServer) -> None:
    async with controlled_stack(fresh_redis, proxy=True) as (stack, control):
        counts = await node_test([str(CLIENT_DIR / "test" / "live.test.js")], client_env(stack, control),
                                 pattern="stalled")
        assert counts["pass"] == 1
