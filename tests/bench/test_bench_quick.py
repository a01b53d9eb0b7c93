"""The load harness end to end in its smallest configuration (``python -m bench --quick``).

Proves the harness works against the real stack (redis-server, cache_service, bridge, the
pub/sub baseline, as subprocesses): every scenario produces results, the JSON and the PNG are
written, and the bridge delivers every tick in order. No timing assertions: speed is what the
harness reports, not what the test checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    return proc, out


@pytest.mark.timeout(200)
def test_quick_run_writes_results_and_plot(
    quick_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    proc, out = quick_run
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    document = json.loads((out / "quick.json").read_text())
    assert document["errors"] == []
    # It measures no targets and says so, rather than printing "not measured" verdicts.
    assert "the quick run measures no targets" in proc.stdout
    assert "target " not in proc.stdout
    assert (out / "quick.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    modes = {(p["mode"], p["offered_rate"]) for p in document["fanout"]}
    expected = {
        (m, r) for m in ("plain", "batch", "baseline", "baseline_batch") for r in (200.0, 400.0)
    }
    assert modes == expected


@pytest.mark.timeout(200)
def test_quick_run_fanout_is_complete_and_ordered(
    quick_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _proc, out = quick_run
    document = json.loads((out / "quick.json").read_text())
    for point in document["fanout"]:
        assert point["connected"] == point["clients"]
        assert point["publisher"]["error"] is None
        assert point["received_updates"] > 0
        assert point["latency"]["samples"] > 0
        assert point["duplicates"] == 0 and point["reordered"] == 0, point
        assert point["lost"] == 0, point
        assert point["closed_early"] == {}


@pytest.mark.timeout(200)
def test_quick_run_capacity_churn_unary_grpc(
    quick_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _proc, out = quick_run
    document = json.loads((out / "quick.json").read_text())
    steps = document["capacity"]["steps"]
    assert [s["open"] for s in steps] == [s["target"] for s in steps]
    assert all(s["bridge_rss_mib"] > 0 for s in steps)
    assert document["churn"]["connects"] > 0 and document["churn"]["errors"] == {}
    assert document["unary"]["requests"] > 0
    assert set(document["unary"]["outcomes"]) == {"ok"}
    packings = [row["tickers_per_message"] for row in document["grpc_batching"]["rows"]]
    assert packings == [1, 10, 100]


@pytest.mark.timeout(200)
def test_quick_run_depth_books_are_checked_and_end_equal(
    quick_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _proc, out = quick_run
    document = json.loads((out / "quick.json").read_text())
    assert (out / "quick-market.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    [point] = document["depth"]
    assert point["connected"] == point["clients"] and point["probes"] > 0
    assert point["publisher"]["error"] is None
    assert point["publisher"]["accepted"] == point["publisher"]["sent"] > 0
    probe = point["probe"]
    # every update a probe was sent was applied and its checksum verified
    assert probe["verified"] == probe["received"] == probe["expected"] > 0, probe
    assert probe["failures"] == probe["skipped"] == probe["unexpected"] == 0, probe
    assert probe["reordered"] == probe["unchecked"] == 0, probe
    assert point["final_mismatches"] == 0 and point["checksum_failures"] == 0
    assert point["bridge_checksum_failures"] == 0
    assert point["lost"] == 0 and point["received_updates"] == point["expected_updates"]
    assert point["latency"]["samples"] == probe["received"]


@pytest.mark.timeout(200)
def test_quick_run_trades_arrive_once_each(
    quick_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _proc, out = quick_run
    document = json.loads((out / "quick.json").read_text())
    [point] = document["trades"]
    assert point["channel"] == "trades" and point["connected"] == point["clients"]
    assert point["publisher"]["error"] is None
    assert point["received_updates"] == point["expected_updates"] > 0
    assert point["lost"] == point["duplicates"] == point["reordered"] == 0, point
    assert point["conflated"] == 0 and point["closed_early"] == {}
    assert point["latency"]["samples"] > 0
