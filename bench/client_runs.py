"""The command line both client benchmarks share (bench/js_client.py, bench/python_client.py):
the same knobs, repeated runs, the JSON printed and optionally written."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt

Run = Callable[[int, float, int, int], Awaitable[dict[str, Any]]]


def run_main(description: str, run: Run, batch_ms: int) -> None:
    """Parse ``--rate --duration --batch-ms --symbols --runs --out``, run ``run`` that many
    times (each its own event loop) and print the result (a list when more than one)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rate", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--batch-ms", type=int, default=batch_ms)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results = [asyncio.run(run(args.rate, args.duration, args.batch_ms, args.symbols))
               for _ in range(args.runs)]
    text = json.dumps(results if args.runs > 1 else results[0], indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def bench_token(secret: str, lifetime_s: float = 3600.0) -> str:
    """An HS256 token for the benchmark's one client (user ``bench``), valid for the run."""
    return jwt.encode({"sub": "bench", "exp": int(time.time() + lifetime_s)}, secret, algorithm="HS256")
