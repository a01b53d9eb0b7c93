"""Read counters from a Prometheus ``/metrics`` page (the bridge's own view of a run).

Used for what a client cannot see: how many ticker updates the bridge conflated for slow
readers (so conflation is reported apart from loss), and, for a deployed bridge, the
process's CPU and memory from prometheus-client's default process collector.
"""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str, timeout: float = 5.0) -> dict[str, float]:
    """Every sample on the page, summed over labels, keyed by sample name ({} if unreachable)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            text = response.read().decode()
    except OSError:
        return {}
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    return totals


def delta(before: dict[str, float], after: dict[str, float], name: str) -> float | None:
    """How much a counter grew between two scrapes (None if the page does not have it)."""
    if name not in after:
        return None
    return after[name] - before.get(name, 0.0)
