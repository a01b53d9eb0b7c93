"""Upstream restarts and shutdown: clients stay connected, are told, and lose nothing."""

from __future__ import annotations

import asyncio

import pytest

from tests.bridge.client import client
from tests.infra.eventually import eventually
from tests.infra.feed import Feed
from tests.infra.bridge_runner import BridgeProcess, running_bridge
from tests.infra.cache_service_runner import running_cache_service
from tests.infra.tokens import make_token

ALICE = make_token("alice")

pytestmark = [pytest.mark.resilience, pytest.mark.cluster_too]  # SPEC §9.4: §7 holds on a cluster


async def test_cache_service_restart_interrupts_and_resumes_without_disconnect(redis_url) -> None:
    """Events written (through another replica) while ours is down are replayed on resume."""
    async with running_cache_service(redis_url) as svc, running_cache_service(redis_url) as other, \
            running_bridge(svc.target) as b:
        feed, other_feed = Feed(svc.target), Feed(other.target)
        try:
            async with client(b.ws_url(ALICE)) as c:
                tick = await c.subscribe(channel="tickers", exchange="binance", snapshot=False)
                orders = await c.subscribe(channel="orders", snapshot=False)
                before = await feed.order(order_id="before", user_id="alice")
                await c.wait_for(lambda f: f.get("seq") == before)

                await svc.stop(grace=0)
                statuses = [await c.wait_for(lambda f: f["type"] == "stream_status", timeout=20)
                            for _ in range(2)]
                assert {s["subscription_id"] for s in statuses} == {tick["subscription_id"],
                                                                    orders["subscription_id"]}
                assert {s["status"] for s in statuses} == {"interrupted"}
                outage = [await other_feed.order(order_id=f"during-{i}", user_id="alice")
                          for i in range(3)]
                await svc.start()

                resumed = [await c.wait_for(lambda f: f["type"] == "stream_status", timeout=30)
                           for _ in range(2)]
                assert {(s["status"], s["recovered"]) for s in resumed} == {("resumed", True)}
                replayed = await c.updates(3, timeout=30, subscription_id=orders["subscription_id"])
                assert [u["seq"] for u in replayed] == outage
                after = await feed.order(order_id="after", user_id="alice")
                (u,) = await c.updates(1, timeout=20)
                assert u["seq"] == after
                assert (await c.request("ping"))["type"] == "pong"   # never disconnected
            assert b.app.metrics.value("bridge_connections_total", {"outcome": "accepted"}) == 1
        finally:
            await feed.close()
            await other_feed.close()


async def test_unary_calls_fail_fast_during_outage(redis_url) -> None:
    async with running_cache_service(redis_url) as svc, \
            running_bridge(svc.target, grpc_deadline=2.0) as b, client(b.ws_url(ALICE)) as c:
        assert (await c.request("list_bots"))["success"]
        await svc.stop(grace=0)
        reply = await c.request("list_bots", timeout=10)
        assert reply["error"]["code"] in ("UNAVAILABLE", "TIMEOUT")
        await svc.start()
        async def answered() -> bool:
            return bool((await c.request("list_bots"))["success"])

        await eventually(answered, 30, interval=0.1, what="list_bots answered again")


async def test_in_process_drain_closes_1001(cache) -> None:
    async with running_bridge(cache.target) as b:
        async with client(b.ws_url(ALICE)) as c:
            await c.subscribe(channel="tickers", exchange="binance", snapshot=False)
            drain = asyncio.create_task(b.app.drain())
            code, reason = await c.closed()
            assert (code, reason) == (1001, "server shutting down")
            await drain
            assert b.app.not_ready_reason() == "draining"
        assert b.app.metrics.value("bridge_upstream_streams") == 0


def test_sigterm_drains_with_1001_and_exits(cache_process) -> None:
    proc = BridgeProcess(cache_process.target, ["--shutdown-grace", "5", "--log-level", "warning"])
    proc.start()
    try:
        async def scenario() -> tuple[int | None, str]:
            async with client(proc.ws_url(ALICE)) as c:
                await c.subscribe(channel="tickers", exchange="binance", snapshot=False)
                proc.terminate()
                return await c.closed()

        assert asyncio.run(scenario()) == (1001, "server shutting down")
        assert proc.wait(timeout=30) == 0
    finally:
        proc.stop()


def test_bad_config_fails_with_one_line() -> None:
    proc = BridgeProcess("127.0.0.1:1", ["--max-connections", "lots"])
    with pytest.raises(RuntimeError) as info:
        proc.start()
    lines = [line for line in str(info.value).split("bridge exited early: ", 1)[1].splitlines() if line]
    assert lines == ["bridge: error: --max-connections: expected an integer, got 'lots'"]


async def test_catch_up_survives_a_cache_restart_midway(redis_url) -> None:
    """A replay that breaks halfway is re-opened from the last event delivered: nothing lost,
    nothing twice, and the client is not told anything was lost."""
    import socket

    from websockets.asyncio.client import connect

    from tests.bridge.client import Client

    # 150 writes of 64 KiB each into an fsync-always Redis: on a loaded machine one can take
    # longer than the default 3 s Redis timeout, which is not what this test is about.
    async with running_cache_service(redis_url, redis_timeout=10.0) as svc, \
            running_bridge(svc.target, max_backlog=20) as b:
        feed = Feed(svc.target)
        try:
            start = await feed.bot(bot_id="bot-start", user_id="alice")
            big = "x" * 65536
            written = [await feed.bot(bot_id=f"bot-{i % 4}", user_id="alice", message=big)
                       for i in range(150)]
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", b.port))
            sock.setblocking(False)
            async with connect(b.ws_url(ALICE), sock=sock, compression=None, max_queue=1, max_size=None) as ws:
                c = Client(ws)
                assert (await c.recv())["type"] == "connection"
                await c.send({"action": "subscribe", "request_id": 1,
                              "params": {"channel": "bots", "resume_from": start}})
                (session,) = b.app.sessions
                await eventually(lambda: len(session.outbound) > 5, timeout=30)   # replay stalled
                await svc.stop(grace=0)
                await svc.start()
                seqs: list[str] = []
                async with asyncio.timeout(60):
                    while len(seqs) < len(written):
                        frame = await c.recv(timeout=60)
                        if frame["type"] == "update":
                            seqs.append(frame["seq"])
                        elif frame["type"] == "response":
                            assert frame["result"]["recovered"] is True
                        else:
                            assert frame["type"] != "stream_status", frame
                assert seqs == written
        finally:
            await feed.close()
