"""Fixtures of the resilience scenarios and the report of their measured outcomes.

Each scenario calls ``report(name, measures)``; the figures are printed at the end of the run
(and written as JSON to ``$RESILIENCE_RESULTS`` when set) so docs/reliability.md can quote them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.infra.sentinel import SentinelTopology, start_sentinel_topology
from tests.resilience.stack import environment_note

RESULTS: dict[str, dict[str, Any]] = {}


@pytest.fixture
def report() -> Callable[[str, dict[str, Any]], None]:
    def record(name: str, measures: dict[str, Any]) -> None:
        RESULTS[name] = measures

    return record


@pytest.fixture
def sentinel_topology() -> Iterator[SentinelTopology]:
    """Primary, replica and three sentinels of the test's own (Docker network or processes)."""
    topology = start_sentinel_topology()
    yield topology
    topology.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section(f"resilience measures ({environment_note()})")
    for name, measures in RESULTS.items():
        terminalreporter.write_line(f"{name}: {json.dumps(measures, sort_keys=True)}")
    path = os.environ.get("RESILIENCE_RESULTS")
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"environment": environment_note(), "scenarios": RESULTS}, handle, indent=2)
