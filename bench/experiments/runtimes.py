"""Does uvloop or orjson help the bridge? The same fan-out point under each runtime, interleaved.

    python -m bench.experiments.runtimes [--rate 2000] [--rounds 2] [--out docs/benchmarks]

Runs ``python -m bench fanout --modes batch`` once per runtime per round (asyncio + orjson as
shipped, ``--bridge-loop uvloop``, ``--bridge-no-orjson``), alternating so that a busy spell on
the shared machine hits every runtime alike, and compares the bridge's CPU per delivered update
(the figure least disturbed by other load) and the delivered rate. Writes ``runtimes.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.config import DEFAULT_OUT

RUNTIMES = {
    "asyncio+orjson": [],
    "uvloop+orjson": ["--bridge-loop", "uvloop"],
    "asyncio+json": ["--bridge-no-orjson"],
}


def one_point(flags: list[str], rate: float, work: Path, name: str) -> dict[str, Any]:
    """Run one batch fan-out point in its own local stack; return the point's results."""
    argv = [
        sys.executable,
        "-m",
        "bench",
        "fanout",
        "--modes",
        "batch",
        "--rates",
        str(rate),
        "--out",
        str(work),
        "--name",
        name,
        *flags,
    ]
    subprocess.run(argv, check=False, timeout=600, capture_output=True)
    document = json.loads((work / f"{name}.json").read_text())
    return {"point": document["fanout"][0], "loadavg": document["machine"]["loadavg_at_start"][0]}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.experiments.runtimes", description=__doc__)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in RUNTIMES}
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(args.rounds):
            for name, flags in RUNTIMES.items():
                result = one_point(flags, args.rate, Path(tmp), f"{name}-{round_no}")
                point = result["point"]
                runs[name].append(
                    {
                        "server_us_per_update": point["server_us_per_update"],
                        "delivered_per_s": point["delivered_per_s"],
                        "p50_ms": point["latency"]["p50_ms"],
                        "p99_ms": point["latency"]["p99_ms"],
                        "loadavg_at_start": result["loadavg"],
                    }
                )
                print(name, runs[name][-1], flush=True)
    summary = {
        name: {
            "median_us_per_update": statistics.median(r["server_us_per_update"] for r in rs),
            "median_delivered_per_s": statistics.median(r["delivered_per_s"] for r in rs),
            "runs": rs,
        }
        for name, rs in runs.items()
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runtimes.json").write_text(
        json.dumps({"rate": args.rate, "mode": "batch", "runtimes": summary}, indent=1) + "\n"
    )
    for name, s in summary.items():
        print(
            f"{name:<16} {s['median_us_per_update']} us/update, {s['median_delivered_per_s']:.0f} updates/s"
        )


if __name__ == "__main__":
    main()
