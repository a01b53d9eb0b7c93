"""Read counters from a Prometheus ``/metrics`` page (the bridge's own view of a run).

Used for what a client cannot see: how many ticker updates the bridge conflated for slow
readers (so conflation is reported apart from loss), and, for a deployed bridge, the
process's CPU and memory from prometheus-client's default process collector.
"""

from __future__ import annotations

import math
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str, timeout: float = 5.0) -> dict[str, float]:
    """Every sample on the page, summed over labels, keyed by sample name ({} if unreachable)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode()
    except OSError:
        return {}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if name.endswith("_bucket") and "le" in sample.labels:
                name = f"{name}|{sample.labels['le']}"
            totals[name] = totals.get(name, 0.0) + float(sample.value)
    return totals


def histogram_quantiles(
    before: dict[str, float],
    after: dict[str, float],
    name: str,
    quantiles: tuple[float, ...] = (0.5, 0.99),
) -> dict[str, float | None]:
    """Quantiles (ms, bucket upper bounds) of what a histogram observed between two scrapes.

    Bucket resolution is the server's choice, so these are coarse; they tell how much of the
    latency a client sees was spent inside the server.
    """
    prefix = f"{name}_bucket|"
    bounds = sorted(
        (
            (float(k[len(prefix) :]), after[k] - before.get(k, 0.0))
            for k in after
            if k.startswith(prefix)
        ),
        key=lambda kv: kv[0],
    )
    out: dict[str, float | None] = {}
    total = bounds[-1][1] if bounds else 0.0
    for q in quantiles:
        label = f"p{q * 100:g}_ms"
        if total <= 0:
            out[label] = None
            continue
        rank = q * total
        bound = next((le for le, cumulative in bounds if cumulative >= rank), None)
        if bound is not None and math.isinf(bound):  # beyond the last bucket: say so, in JSON
            finite = [le for le, _ in bounds if not math.isinf(le)]
            out[label] = None
            out[f"{label}_above"] = round(finite[-1] * 1000.0, 1) if finite else None
        else:
            out[label] = None if bound is None else round(bound * 1000.0, 1)
    return out


def delta(before: dict[str, float], after: dict[str, float], name: str) -> float | None:
    """How much a counter grew between two scrapes (None if the page does not have it)."""
    if name not in after:
        return None
    return after[name] - before.get(name, 0.0)
