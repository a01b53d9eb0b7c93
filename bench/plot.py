"""The PNGs: fan-out latency percentiles and delivered throughput against the offered rate,
per mode, and the bridge's memory against idle connections; and (``render_market``) the depth
and trades scenarios: latency percentiles, published against offered rate, server CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

STYLES = {
    "plain": ("tab:blue", "o"),
    "batch": ("tab:green", "s"),
    "baseline": ("tab:red", "^"),
    "baseline_batch": ("tab:orange", "v"),
}


def _rate_axes(ax: Any, ylabel: str, title: str) -> None:
    """A log-log panel against the published rate (latency, throughput, cost)."""
    ax.set(xscale="log", yscale="log", xlabel="published ticks/s", ylabel=ylabel, title=title)


def _label(mode: str, points: list[dict[str, Any]]) -> str:
    if mode == "batch" and points:
        return f"bridge batch_ms={points[0]['batch_ms']}"
    if mode == "baseline_batch" and points:
        return f"pub/sub baseline batch_ms={points[0]['batch_ms']}"
    return {"plain": "bridge plain", "baseline": "websockets pub/sub baseline"}.get(mode, mode)


def render(document: dict[str, Any], path: Path) -> None:
    """Draw whatever the document holds (missing scenarios leave their panel empty)."""
    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    (lat_ax, thr_ax), (cost_ax, cap_ax) = axes
    modes: dict[str, list[dict[str, Any]]] = {}
    for point in document.get("fanout", []):
        modes.setdefault(point["mode"], []).append(point)
    for mode, points in modes.items():
        points.sort(key=lambda p: p["offered_rate"])
        color, marker = STYLES.get(mode, ("black", "x"))
        rates = [p["offered_rate"] for p in points]
        for pct, dash in (("p50_ms", ":"), ("p95_ms", "--"), ("p99_ms", "-")):
            values = [p["latency"][pct] for p in points]
            lat_ax.plot(
                rates,
                values,
                linestyle=dash,
                marker=marker,
                color=color,
                label=f"{_label(mode, points)} {pct[:-3]}",
            )
        costs = [(p["offered_rate"], p.get("server_us_per_update")) for p in points]
        costs = [(r, c) for r, c in costs if c is not None]
        if costs:
            cost_ax.plot(
                *zip(*costs, strict=True), marker=marker, color=color, label=_label(mode, points)
            )
        thr_ax.plot(
            rates,
            [p["delivered_per_s"] for p in points],
            marker=marker,
            color=color,
            label=_label(mode, points),
        )
    if modes:
        any_points = next(iter(modes.values()))
        clients = any_points[0]["connected"] or any_points[0]["clients"]
        all_rates = sorted({p["offered_rate"] for ps in modes.values() for p in ps})
        thr_ax.plot(
            all_rates,
            [r * clients for r in all_rates],
            color="grey",
            linestyle=":",
            label=f"ideal (rate x {clients} clients)",
        )
    _rate_axes(lat_ax, "publish-to-receive latency (ms)", "Fan-out latency")
    lat_ax.axhline(50, color="black", linewidth=0.8, linestyle="-.", label="target p99 50 ms")
    _rate_axes(thr_ax, "updates delivered/s (all clients)", "Fan-out throughput")
    capacity = document.get("capacity") or {}
    steps = [s for s in capacity.get("steps", []) if s.get("bridge_rss_mib") is not None]
    if steps:
        cap_ax.plot(
            [s["open"] for s in steps],
            [s["bridge_rss_mib"] for s in steps],
            marker="o",
            color="tab:purple",
            label="bridge RSS",
        )
        cap_ax.axhline(1024, color="black", linewidth=0.8, linestyle="-.", label="target 1 GiB")
    cap_ax.set(
        xlabel="idle connections", ylabel="bridge RSS (MiB)", title="Idle connection capacity"
    )
    _rate_axes(cost_ax, "server CPU per delivered update (us)",
               "Fan-out cost (bridge or baseline process)")
    for ax in (lat_ax, thr_ax, cost_ax, cap_ax):
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(
        f"marketbridge benchmarks ({document['started_at']}, "
        f"{document['machine']['cpus']} shared cores, loadavg at start "
        f"{document['machine']['loadavg_at_start'][0]})",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_market(document: dict[str, Any], path: Path) -> None:
    """Depth and trades points: latency, what was published of what was offered, and the
    servers' CPU (per process, % of one core), each against the offered rate."""
    fig, (lat_ax, pub_ax, cpu_ax) = plt.subplots(1, 3, figsize=(16, 5))
    series = {
        "depth": sorted(document.get("depth") or [], key=lambda p: p["offered_rate"]),
        "trades": sorted(document.get("trades") or [], key=lambda p: p["offered_rate"]),
    }
    colors = {"depth": "tab:green", "trades": "tab:blue"}
    for name, points in series.items():
        if not points:
            continue
        rates = [p["offered_rate"] for p in points]
        color = colors[name]
        what = (f"depth: {points[0]['books']} books, depth {points[0]['depth']}"
                if name == "depth" else "trades")
        for pct, dash in (("p50_ms", ":"), ("p95_ms", "--"), ("p99_ms", "-")):
            timed = [(p["offered_rate"], p["latency"][pct]) for p in points]
            timed = [(r, v) for r, v in timed if v]  # a point nobody received has no latency
            if timed:
                lat_ax.plot(*zip(*timed, strict=True), linestyle=dash, marker="o", color=color,
                            label=f"{what} {pct[:-3]}")
        pub_ax.plot(rates, [max(p["publisher"]["achieved_rate"], 1e-3) for p in points],
                    marker="o", color=color, label=f"{what}: published/s")
        for proc, dash in (("bridge", "-"), ("cache_service", "--"), ("redis", ":")):
            values = [(p["offered_rate"], p["processes"].get(proc, {}).get("cpu_pct_of_one_core"))
                      for p in points]
            values = [(r, v) for r, v in values if v is not None]
            if values:
                cpu_ax.plot(*zip(*values, strict=True), linestyle=dash, marker="o", color=color,
                            label=f"{what}: {proc}")
    all_rates = sorted({p["offered_rate"] for ps in series.values() for p in ps})
    if all_rates:
        pub_ax.plot(all_rates, all_rates, color="grey", linestyle=":", label="offered")
    lat_ax.axhline(50, color="black", linewidth=0.8, linestyle="-.", label="depth target p99 50 ms")
    lat_ax.set(xscale="log", yscale="log", xlabel="offered updates/s (deltas or trades)",
               ylabel="publish-to-receive latency (ms)", title="Latency (probe clients)")
    pub_ax.set(xscale="log", yscale="log", xlabel="offered updates/s",
               ylabel="published updates/s", title="Published (held back by the cache service)")
    cpu_ax.set(xscale="log", xlabel="offered updates/s", ylabel="% of one core",
               title="Server CPU over the point")
    for ax in (lat_ax, pub_ax, cpu_ax):
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(
        f"marketbridge depth and trades ({document['started_at']}, "
        f"{document['machine']['cpus']} shared cores, loadavg at start "
        f"{document['machine']['loadavg_at_start'][0]})",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
