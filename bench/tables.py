"""Markdown tables of a results file, for docs/benchmarks.md.

python -m bench.tables docs/benchmarks/results.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _ms(value: float | None) -> str:
    return "–" if value is None else (f"{value:.0f}" if value >= 100 else f"{value:.1f}")


def _cpu(point: dict[str, Any], name: str) -> str:
    usage = point.get("processes", {}).get(name)
    return "–" if not usage else f"{usage['cpu_pct_of_one_core']:.0f}%"


def fanout_table(points: list[dict[str, Any]]) -> str:
    head = (
        "| mode | offered ticks/s | published/s | delivered updates/s | expected/s | conflated | lost "
        "| dup/reorder | p50 ms | p95 ms | p99 ms | max ms | bridge CPU | cache CPU | redis CPU "
        "| baseline CPU | server CPU us/update | server RSS MiB | clients CPU s |"
    )
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    order = {"plain": 0, "batch": 1, "baseline": 2, "baseline_batch": 3}
    for p in sorted(points, key=lambda p: (order.get(p["mode"], 9), p["offered_rate"])):
        lat = p["latency"]
        pub = p["publisher"]
        mode = f"{p['mode']} {p['batch_ms']} ms" if p["batch_ms"] else p["mode"]
        expected = pub["achieved_rate"] * p["connected"]
        server = "baseline" if p["mode"].startswith("baseline") else "bridge"
        rss = p.get("processes", {}).get(server, {}).get("rss_peak_mib", "–")
        rows.append(
            f"| {mode} | {p['offered_rate']:.0f} | {pub['achieved_rate']:.0f} | {p['delivered_per_s']:.0f} "
            f"| {expected:.0f} | {p['conflated'] if p['conflated'] is not None else '–'} | {p['lost']} "
            f"| {p['duplicates']}/{p['reordered']} | {_ms(lat['p50_ms'])} | {_ms(lat['p95_ms'])} "
            f"| {_ms(lat['p99_ms'])} | {_ms(lat['max_ms'])} | {_cpu(p, 'bridge')} | {_cpu(p, 'cache_service')} "
            f"| {_cpu(p, 'redis')} | {_cpu(p, 'baseline')} | {p.get('server_us_per_update', '–')} | {rss} "
            f"| {p['load_generator_cpu_s']['clients']} |"
        )
    return "\n".join(rows)


def capacity_table(capacity: dict[str, Any]) -> str:
    rows = [
        "| idle connections | bridge RSS MiB | RSS per connection KiB | time to open the step s | failures |",
        "|---|---|---|---|---|",
        f"| 0 | {capacity['baseline_rss_mib']} | – | – | – |",
    ]
    for s in capacity["steps"]:
        rows.append(
            f"| {s['open']} | {s['bridge_rss_mib']} | {s['rss_per_connection_kib']} "
            f"| {s['connect_seconds']} | {sum(s['failures'].values())} |"
        )
    return "\n".join(rows)


def churn_table(churn: dict[str, Any]) -> str:
    lat = churn["connect_latency"]
    return (
        "| connects/s | connects | concurrency | connect p50 ms | p99 ms | errors | bridge CPU |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {churn['connects_per_s']:.0f} | {churn['connects']} | {churn['concurrency']} | {_ms(lat['p50_ms'])} "
        f"| {_ms(lat['p99_ms'])} | {sum(churn['errors'].values())} | {_cpu(churn, 'bridge')} |"
    )


def unary_table(unary: dict[str, Any]) -> str:
    lat = unary["latency"]
    return (
        "| requests/s | connections x depth | p50 ms | p99 ms | max ms | outcomes | bridge CPU | cache CPU |\n"
        "|---|---|---|---|---|---|---|---|\n"
        f"| {unary['requests_per_s']:.0f} | {unary['connections']} x {unary['depth']} | {_ms(lat['p50_ms'])} "
        f"| {_ms(lat['p99_ms'])} | {_ms(lat['max_ms'])} | {unary['outcomes']} | {_cpu(unary, 'bridge')} "
        f"| {_cpu(unary, 'cache_service')} |"
    )


def grpc_table(result: dict[str, Any]) -> str:
    rows = [
        "| tickers per gRPC message | server CPU us/ticker | client CPU us/ticker | tickers/s |",
        "|---|---|---|---|",
    ]
    for r in result["rows"]:
        rows.append(
            f"| {r['tickers_per_message']} | {r['server_us_per_ticker']} "
            f"| {r['client_us_per_ticker']} | {r['tickers_per_s']} |"
        )
    return "\n".join(rows)


def profile_tables(profile: dict[str, Any], title: str, top: int = 12) -> str:
    """Self-time and inclusive-time leaders of each profiled process of one scenario."""
    parts = []
    for name, prof in profile.items():
        if "self" not in prof:
            continue
        rows = [
            f"{name}, {title} ({prof['samples']} samples)",
            "",
            "| self % | function | | inclusive % | function |",
            "|---|---|---|---|---|",
        ]
        inclusive = [r for r in prof["inclusive"] if "runpy" not in r["function"]]
        inclusive = [r for r in inclusive if not r["function"].startswith(("main ", "<module>"))]
        for own, incl in zip(prof["self"][:top], inclusive[:top], strict=False):
            rows.append(
                f"| {own['pct']} | `{own['function']}` | | {incl['pct']} | `{incl['function']}` |"
            )
        parts.append("\n".join(rows))
    return "\n\n".join(parts)


def depth_table(points: list[dict[str, Any]]) -> str:
    head = (
        "| books x depth | offered deltas/s | published/s | clients (probes) | feed updates/client "
        "| delivered updates/s | lost | merged | checksums verified | checksum failures "
        "| skipped | final = GetBook | p50 ms | p95 ms | p99 ms | max ms | bridge CPU | cache CPU "
        "| redis CPU | publisher CPU s | clients CPU s |"
    )
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for p in sorted(points, key=lambda p: p["offered_rate"]):
        lat, pub, probe = p["latency"], p["publisher"], p["probe"]
        equal = f"{p['probes'] * p['books'] - p['final_mismatches']}/{p['probes'] * p['books']}"
        rows.append(
            f"| {p['books']} x {p['depth']} | {p['offered_rate']:.0f} | {pub['achieved_rate']:.0f} "
            f"| {p['connected']} ({p['probes']}) | {p['feed_updates_per_client']} "
            f"| {p['delivered_per_s']:.0f} | {p['lost']} | {p['merged']} "
            f"| {probe.get('verified', 0)} | {p['checksum_failures']} | {probe.get('skipped', 0)} "
            f"| {equal} | {_ms(lat['p50_ms'])} | {_ms(lat['p95_ms'])} | {_ms(lat['p99_ms'])} "
            f"| {_ms(lat['max_ms'])} | {_cpu(p, 'bridge')} | {_cpu(p, 'cache_service')} "
            f"| {_cpu(p, 'redis')} | {pub['cpu_s']} | {p['load_generator_cpu_s']['clients']} |"
        )
    return "\n".join(rows)


def trades_table(points: list[dict[str, Any]]) -> str:
    head = (
        "| offered trades/s | published/s | clients | delivered updates/s | expected | received "
        "| lost | dup/reorder | closed early | p50 ms | p95 ms | p99 ms | max ms | bridge CPU "
        "| cache CPU | redis CPU | publisher CPU s | clients CPU s |"
    )
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for p in sorted(points, key=lambda p: p["offered_rate"]):
        lat, pub = p["latency"], p["publisher"]
        rows.append(
            f"| {p['offered_rate']:.0f} | {pub['achieved_rate']:.0f} | {p['connected']} "
            f"| {p['delivered_per_s']:.0f} | {p['expected_updates']} | {p['received_updates']} "
            f"| {p['lost']} | {p['duplicates']}/{p['reordered']} | {p['closed_early'] or 0} "
            f"| {_ms(lat['p50_ms'])} | {_ms(lat['p95_ms'])} | {_ms(lat['p99_ms'])} "
            f"| {_ms(lat['max_ms'])} | {_cpu(p, 'bridge')} | {_cpu(p, 'cache_service')} "
            f"| {_cpu(p, 'redis')} | {pub['cpu_s']} | {p['load_generator_cpu_s']['clients']} |"
        )
    return "\n".join(rows)


def render(document: dict[str, Any]) -> str:
    parts = [f"Run {document['started_at']}, machine {document['machine']}"]
    if document.get("fanout"):
        parts.append(fanout_table(document["fanout"]))
    if document.get("capacity"):
        parts.append(capacity_table(document["capacity"]))
    if document.get("churn"):
        parts.append(churn_table(document["churn"]))
    if document.get("unary"):
        parts.append(unary_table(document["unary"]))
    for point in document.get("fanout", []):
        if point.get("profile"):
            title = f"fanout {point['mode']} {point['offered_rate']:.0f}/s"
            parts.append(profile_tables(point["profile"], title))
    for name in ("churn", "unary"):
        if (document.get(name) or {}).get("profile"):
            parts.append(profile_tables(document[name]["profile"], name))
    if document.get("grpc_batching"):
        parts.append(grpc_table(document["grpc_batching"]))
    if document.get("depth"):
        parts.append(depth_table(document["depth"]))
    if document.get("trades"):
        parts.append(trades_table(document["trades"]))
    for name in ("depth", "trades"):
        for point in document.get(name) or []:
            if point.get("profile"):
                parts.append(profile_tables(point["profile"], f"{name} {point['offered_rate']:.0f}/s"))
    if document.get("errors"):
        parts.append("Errors: " + "; ".join(document["errors"]))
    return "\n\n".join(parts)


def main() -> None:
    for arg in sys.argv[1:]:
        print(render(json.loads(Path(arg).read_text())))


if __name__ == "__main__":
    main()
