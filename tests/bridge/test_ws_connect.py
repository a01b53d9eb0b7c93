"""Connecting: welcome, authentication close codes, HTTP routes, malformed frames."""

from __future__ import annotations

import asyncio
import json
import logging
import selectors
import socket
import time
from pathlib import Path

from websockets.asyncio.client import connect

from bridge.upstream import HEALTH_FAILURES
from devstack.ports import free_port
from tests.bridge.client import client
from tests.infra.eventually import eventually
from tests.infra.bridge_runner import http_get, running_bridge
from tests.infra.cache_service_runner import running_cache_service
from tests.infra.tokens import make_token


def _somaxconn() -> int:
    """The kernel's cap on a listen backlog."""
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except OSError:  # pragma: no cover - not Linux
        return 128


async def test_a_connect_storm_waits_in_the_listen_queue_instead_of_being_dropped(bridge) -> None:
    """While the event loop is too busy to accept, the kernel completes the handshakes of a
    storm of connects up to the listen backlog. With asyncio's default (100) it dropped the
    SYNs beyond that, and those clients waited 1 s or more for their retransmission."""
    storm = min(400, _somaxconn() - 1)
    sockets: list[socket.socket] = []
    selector = selectors.DefaultSelector()
    try:
        # Nothing below awaits: the bridge (in this event loop) accepts none of these meanwhile.
        for _ in range(storm):
            sock = socket.socket()
            sock.setblocking(False)
            sock.connect_ex(("127.0.0.1", bridge.port))
            sockets.append(sock)
            selector.register(sock, selectors.EVENT_WRITE)
        connected, deadline = 0, time.monotonic() + 0.8  # well under the 1 s SYN retransmission
        while connected < storm and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.05):
                selector.unregister(key.fileobj)
                assert key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                connected += 1
        assert connected == storm
    finally:
        selector.close()
        for sock in sockets:
            sock.close()


async def test_a_client_that_fails_the_handshake_is_one_line_not_an_error(bridge, caplog) -> None:
    """A TCP health check (connect, close) and a non-HTTP request are the client's doing: one
    line at DEBUG / INFO, no traceback; a real client still connects afterwards."""
    caplog.set_level(logging.DEBUG, logger="bridge.ws")
    for payload in (b"", b"GARBAGE\r\n\r\n"):
        reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
        writer.write(payload)
        await writer.drain()
        if payload:
            await reader.read()  # the server answers 400 and closes
        writer.close()
        await writer.wait_closed()
    def failed_handshakes() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "opening handshake" in r.getMessage()]

    await eventually(lambda: len(failed_handshakes()) == 2)
    failed = failed_handshakes()
    assert [r.levelname for r in failed] == ["DEBUG", "INFO"]
    assert all(r.exc_info is None and r.name == "bridge.ws" for r in failed)
    assert "EOFError" in failed[0].getMessage() or "connection closed" in failed[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    async with client(bridge.ws_url(make_token("alice"))) as c:
        assert c.welcome is not None and c.welcome["type"] == "connection"


async def test_welcome_has_session_protocol_and_limits(bridge) -> None:
    async with client(bridge.ws_url(make_token("alice"))) as a, \
            client(bridge.ws_url(make_token("alice"))) as b:
        w = a.welcome
        assert w["type"] == "connection" and w["status"] == "connected" and w["protocol"] == 1
        assert w["session_id"] != b.welcome["session_id"]
        assert w["limits"]["max_subscriptions"] == 200 and w["limits"]["rate_limit"] == 50


async def test_label_path_and_bearer_header(bridge) -> None:
    headers = {"Authorization": f"Bearer {make_token('alice')}"}
    async with client(bridge.ws_url(path="/ws/trading-desk-1"), additional_headers=headers) as c:
        assert (await c.request("ping"))["type"] == "pong"


async def _close_of(url: str, **kwargs) -> tuple[int | None, str]:
    async with client(url, welcome=False, **kwargs) as c:
        return await c.closed()


async def test_auth_failures_close_1008_with_exact_reasons(bridge) -> None:
    cases = [
        (bridge.ws_url(), "Authentication required"),
        (bridge.ws_url("not-a-jwt"), "Invalid token"),
        (bridge.ws_url(make_token("alice", secret="another-secret-0123456789abcdefgh")), "Invalid token"),
        (bridge.ws_url(make_token("alice", exp=-5)), "Token expired"),
    ]
    for url, reason in cases:
        assert await _close_of(url) == (1008, reason)
    expired = {"Authorization": f"Bearer {make_token('alice', exp=-5)}"}
    assert await _close_of(bridge.ws_url(), additional_headers=expired) == (1008, "Token expired")
    metrics = bridge.app.metrics
    await eventually(lambda: metrics.value("bridge_disconnects_total", {"code": "1008"}) == 5)
    assert metrics.value("bridge_connections_total", {"outcome": "auth_failed"}) == 5
    assert metrics.value("bridge_active_connections") == 0


async def test_bad_batch_ms_is_refused(bridge) -> None:
    code, reason = await _close_of(bridge.ws_url(make_token("alice"), batch_ms=5000))
    assert code == 1008 and "batch_ms" in reason


async def test_invalid_frames_get_errors_and_connection_stays(bridge) -> None:
    async with client(bridge.ws_url(make_token("alice"))) as c:
        for bad in ("{nope", "[1,2,3]", "42", b"\x01\x02"):
            await c.send(bad)
            frame = await c.recv()
            assert frame["type"] == "error" and frame["success"] is False
            assert frame["error"]["code"] == "INVALID_MESSAGE"
            assert frame["error"]["message"].startswith("Invalid message format: ")
        unknown = await c.request("fly_to_moon")
        assert unknown["success"] is False and unknown["error"]["code"] == "UNKNOWN_ACTION"
        assert unknown["action"] == "fly_to_moon"
        bad_params = await c.request("get_ticker", {"exchange": "binance"})
        assert bad_params["error"] == {"code": "INVALID_PARAMS", "message": "'symbol' is required"}
        extra = await c.request("ping", {"x": 1})
        assert extra["error"]["code"] == "INVALID_PARAMS"
        pong = await c.request("ping", request_id=99)
        assert pong["type"] == "pong" and pong["request_id"] == 99 and pong["server_time"] > 0
    m = bridge.app.metrics
    assert m.value("bridge_messages_received_total", {"action": "invalid"}) == 4
    assert m.value("bridge_messages_received_total", {"action": "unknown"}) == 1
    assert m.value("bridge_messages_received_total", {"action": "ping"}) == 2


async def test_http_routes(bridge) -> None:
    base = bridge.http
    assert (await asyncio.to_thread(http_get, base + "/healthz"))[0] == 200
    await eventually(lambda: asyncio.to_thread(lambda: http_get(base + "/readyz")[0] == 200), 10,
                     what="/readyz 200")
    status, body, headers = await asyncio.to_thread(http_get, base + "/metrics")
    assert status == 200 and "bridge_active_connections" in body
    assert "process_resident_memory_bytes" in body and "python_info" in body
    assert headers["Content-Type"].startswith("text/plain")
    status, body, headers = await asyncio.to_thread(http_get, base + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and "<" in body
    assert (await asyncio.to_thread(http_get, base + "/nope"))[0] == 404
    assert (await asyncio.to_thread(http_get, base + "/../../etc/passwd"))[0] == 404


async def test_readyz_503_without_upstream() -> None:

    async with running_bridge(f"127.0.0.1:{free_port()}") as b:
        status, body, _ = await asyncio.to_thread(http_get, b.http + "/readyz")
        assert status == 503 and "upstream" in body
        async with client(b.ws_url(make_token("alice"))) as c:
            reply = await c.request("get_ticker", {"exchange": "binance", "symbol": "BTC/USDT"})
            assert reply["error"]["code"] == "UNAVAILABLE"
            reply = await c.request("subscribe", {"channel": "tickers", "exchange": "binance"})
            assert reply["error"]["code"] == "UNAVAILABLE"
        assert b.app.metrics.value("bridge_subscriptions") == 0
        assert b.app.metrics.value("bridge_upstream_streams") == 0


async def test_readyz_needs_consecutive_failures_and_recovers_on_serving(redis_url) -> None:
    """One failed health check does not fail readiness; several in a row do; the first SERVING
    after a restart of the cache service makes the bridge ready again."""
    async with running_cache_service(redis_url) as svc, running_bridge(svc.target) as b:
        upstream = b.app.upstream
        await eventually(lambda: upstream.serving, timeout=20)
        assert (await asyncio.to_thread(http_get, b.http + "/readyz"))[0] == 200
        await svc.stop(grace=0)
        seen: list[tuple[int, bool]] = []

        def sample() -> bool:
            seen.append((upstream.health.failed, b.app.not_ready_reason() is None))
            return not upstream.serving

        # Checks come about a second apart; this samples every 20 ms, so it sees each state.
        await eventually(sample, timeout=30)
        # Ready all along while fewer than HEALTH_FAILURES checks in a row had failed.
        assert all(ready for failed, ready in seen if failed < HEALTH_FAILURES), seen
        assert seen[-1] == (HEALTH_FAILURES, False), seen
        status, body, _ = await asyncio.to_thread(http_get, b.http + "/readyz")
        assert status == 503 and "upstream" in body
        await svc.start()
        await eventually(lambda: upstream.serving, timeout=30)
        assert upstream.health.failed == 0
        assert (await asyncio.to_thread(http_get, b.http + "/readyz"))[0] == 200


async def test_auth_none_mode(cache) -> None:
    async with running_bridge(cache.target, auth="none") as b, client(b.ws_url()) as c:
        assert (await c.request("ping"))["type"] == "pong"


async def test_raw_welcome_is_first_frame(bridge) -> None:
    async with connect(bridge.ws_url(make_token("alice"))) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["type"] == "connection"


async def test_http_answers_log_as_access_lines_and_a_refused_login_with_its_reason(
        bridge, caplog) -> None:
    """A page load or probe is a DEBUG access line, not "connection rejected (200 OK)" at INFO;
    a refused login is an INFO line with its reason, and the token is never logged."""
    caplog.set_level(logging.DEBUG, logger="bridge")
    assert (await asyncio.to_thread(http_get, bridge.http + "/healthz"))[0] == 200
    assert (await asyncio.to_thread(http_get, bridge.http + "/nothing-here"))[0] == 404
    bad = make_token("mallory", secret="not-the-bridge-secret-0123456789abcdef")
    async with client(bridge.ws_url(bad), welcome=False) as c:
        assert (await c.closed()) == (1008, "Invalid token")
    await eventually(lambda: any("connection refused" in r.getMessage() for r in caplog.records))
    lines = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert ("bridge.http", "DEBUG", "GET /healthz 200 OK") in lines
    assert ("bridge.http", "DEBUG", "GET /nothing-here 404 Not Found") in lines
    assert not [m for _, _, m in lines if "connection rejected (200" in m]
    assert [m for _, _, m in lines if "connection rejected (404" in m]   # failures still show
    assert ("bridge", "INFO", "connection refused (auth_failed): 1008 Invalid token") in lines
    assert not [m for _, _, m in lines if bad in m]
    assert "< GET /ws?token=[redacted] HTTP/1.1" in [m for _, _, m in lines]
    async with connect(bridge.url, additional_headers={"Authorization": f"Bearer {bad}"}) as ws:
        await ws.wait_closed()
    assert not [r for r in caplog.records if bad in r.getMessage()]
    assert "< Authorization: [redacted]" in [r.getMessage() for r in caplog.records]


async def test_an_unreachable_upstream_is_named_at_start(caplog) -> None:
    target = f"127.0.0.1:{free_port()}"
    with caplog.at_level(logging.WARNING, logger="bridge"):
        async with running_bridge(target):
            await eventually(lambda: [r for r in caplog.records if "does not answer" in r.getMessage()])
    [line] = [r.getMessage() for r in caplog.records if "does not answer" in r.getMessage()]
    assert line == (f"the cache service at {target} does not answer (UNAVAILABLE): not ready until"
                    " it does (/readyz 503)")
