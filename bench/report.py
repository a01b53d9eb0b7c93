"""The run's record: a JSON document with the machine, the settings and every figure, and a
short table on stdout for the person watching."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.config import BenchConfig


def machine() -> dict[str, Any]:
    """What the numbers were measured on (they mean little without it)."""
    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = (0.0, 0.0, 0.0)
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg_at_start": [round(v, 2) for v in load],
    }


def commit() -> str | None:
    """The commit the servers ran from (results change as the code does)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def new_document(config: BenchConfig) -> dict[str, Any]:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()}
    return {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "commit": commit(),
        "settings": settings,
        "fanout": [],
        "capacity": None,
        "churn": None,
        "unary": None,
        "grpc_batching": None,
        "depth": [],
        "trades": [],
        "errors": [],
    }


def write(document: dict[str, Any], path: Path) -> None:
    """Write the JSON atomically, so an interrupted run leaves the previous file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)


def fanout_line(point: dict[str, Any]) -> str:
    lat = point["latency"]
    cpu = point["processes"]
    servers = " ".join(f"{k}={v['cpu_pct_of_one_core']:.0f}%" for k, v in cpu.items())
    return (
        f"{'trades' if point.get('channel') == 'trades' else 'fanout'} {point['mode']:<8} rate={point['offered_rate']:>7.0f}/s "
        f"sent={point['publisher']['achieved_rate']:>7.0f}/s delivered={point['delivered_per_s']:>9.0f}/s "
        f"lost={point['lost']} conflated={point['conflated']} dup={point['duplicates']} "
        f"p50={lat['p50_ms']}ms p99={lat['p99_ms']}ms max={lat['max_ms']}ms cpu[{servers}]"
    )


def depth_line(point: dict[str, Any]) -> str:
    lat = point["latency"]
    cpu = point["processes"]
    servers = " ".join(f"{k}={v['cpu_pct_of_one_core']:.0f}%" for k, v in cpu.items())
    return (
        f"depth {point['books']} books rate={point['offered_rate']:>7.0f}/s "
        f"sent={point['publisher']['achieved_rate']:>7.0f}/s "
        f"delivered={point['delivered_per_s']:>9.0f}/s to {point['connected']} clients "
        f"lost={point['lost']} merged={point['merged']} "
        f"checksum_failures={point['checksum_failures']} final_mismatches={point['final_mismatches']} "
        f"skipped={point['probe'].get('skipped')} "
        f"p50={lat['p50_ms']}ms p99={lat['p99_ms']}ms max={lat['max_ms']}ms cpu[{servers}]"
    )


def capacity_lines(result: dict[str, Any]) -> list[str]:
    lines = [
        f"capacity open={row['open']:>6} bridge_rss={row['bridge_rss_mib']}MiB "
        f"per_conn={row['rss_per_connection_kib']}KiB connect={row['connect_seconds']}s "
        f"failures={sum(row['failures'].values())}" + _kernel_part(row.get("kernel"))
        for row in result["steps"]
    ]
    if result.get("not_attempted"):
        skipped = result["not_attempted"]
        lines.append(f"capacity not attempted: {skipped['steps']} ({skipped['why']})")
    if "open_seconds" in result:
        lines.append(f"capacity opened all in {result['open_seconds']}s from "
                     f"{', '.join(result.get('client_sources') or ['the default address'])}")
    return lines


def _kernel_part(kernel: dict[str, Any] | None) -> str:
    """The machine's socket memory growth (both ends of loopback connections)."""
    if not kernel:
        return ""
    return (f" kernel: tcp_inuse+{kernel['tcp_inuse']} tcp_mem+{kernel['tcp_mem_kib']}KiB "
            f"slab+{kernel['slab_mib']}MiB")


def churn_line(result: dict[str, Any]) -> str:
    lat = result["connect_latency"]
    return (
        f"churn {result['connects_per_s']}/s connects ({result['connects']} in {result['duration_s']}s) "
        f"p50={lat['p50_ms']}ms p99={lat['p99_ms']}ms errors={sum(result['errors'].values())}"
    )


def grpc_lines(result: dict[str, Any]) -> list[str]:
    return [
        f"grpc {row['tickers_per_message']:>3} tickers/message: server "
        f"{row['server_us_per_ticker']} us/ticker, client {row['client_us_per_ticker']} us/ticker, "
        f"{row['tickers_per_s']} tickers/s"
        for row in result["rows"]
    ]


def unary_line(result: dict[str, Any]) -> str:
    lat = result["latency"]
    return (
        f"unary get_ticker {result['requests_per_s']}/s p50={lat['p50_ms']}ms "
        f"p99={lat['p99_ms']}ms outcomes={result['outcomes']}"
    )
