"""The capacity scenario's client addresses and kernel readings (bench/capacity.py, bench/sockstat.py)."""

from __future__ import annotations

from collections import Counter

from bench.capacity import PORTS_PER_SOURCE, client_sources
from bench.sockstat import KernelSockets, _fields, _meminfo
from bench.targets import capacity_50k_target


def test_a_loopback_bridge_gets_one_client_address_per_20000_connections() -> None:
    sources = client_sources("ws://127.0.0.1:8080/ws", 50_000)
    counts = Counter(sources)
    assert sorted(counts) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert max(counts.values()) <= PORTS_PER_SOURCE
    assert sources[:4] == ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.2"]   # in turn
    assert set(client_sources("ws://localhost:8080/ws", 10)) == {"127.0.0.2"}


def test_any_other_bridge_leaves_the_address_to_the_kernel() -> None:
    assert set(client_sources("ws://10.1.2.3:8080/ws", 30_000)) == {None}
    assert set(client_sources("wss://bridge.example.com/ws", 5)) == {None}


def test_sockstat_and_meminfo_lines_are_read() -> None:
    assert _fields("sockets: used 9\nTCP: inuse 3 orphan 0 tw 1 alloc 5 mem 7\n", "TCP:") == {
        "inuse": 3, "orphan": 0, "tw": 1, "alloc": 5, "mem": 7}
    assert _meminfo("MemTotal: 100 kB\nSlab:  2048 kB\n", "Slab:") == 2048.0
    now = KernelSockets.read()   # this machine's: Linux
    assert now is not None and now.tcp_inuse >= 0 and now.slab_kib > 0
    before = KernelSockets(now.tcp_inuse - 2, now.tcp_mem_kib, now.slab_kib - 1024)
    assert now.growth(before) == {"tcp_inuse": 2, "tcp_mem_kib": 0.0, "slab_mib": 1.0}


def _step(target: int, per_conn: float, failures: int = 0) -> dict[str, object]:
    return {"target": target, "open": target - failures, "bridge_rss_mib": 1.0,
            "rss_per_connection_kib": per_conn, "failures": {"x": failures} if failures else {}}


def test_the_50000_target_needs_all_of_them_at_10_kib_or_less() -> None:
    assert capacity_50k_target({"steps": [_step(50_000, 9.9)]})["met"] is True
    assert capacity_50k_target({"steps": [_step(50_000, 10.4)]})["met"] is False
    assert capacity_50k_target({"steps": [_step(50_000, 9.0, failures=1)]})["met"] is False
    skipped = {"steps": [_step(19_500, 9.1)],
               "not_attempted": {"steps": [50_000], "why": "open-files limit"}}
    verdict = capacity_50k_target(skipped)
    assert verdict["met"] is None and verdict["why"] == "open-files limit" and verdict["open"] == 19_500
