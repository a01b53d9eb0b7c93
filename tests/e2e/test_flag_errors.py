"""One mistake, one wording: every program run as a person runs it reports a bad number the same
way (marketbridge.settings.convert): one line ``PROG: error: FLAG: expected ..., got 'abc'``
naming the flag (or the variable), no traceback, exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (program as run, its name in the message, a number flag, what it expects)
PROGRAMS = [
    (["scripts.dev_stack"], "dev_stack", "--port", "an integer"),
    (["scripts.demo_feed"], "demo_feed", "--rate", "a number"),
    (["cache_service"], "cache_service", "--port", "an integer"),
    (["bridge", "--auth", "none"], "bridge", "--port", "an integer"),
    (["bench"], "bench", "--clients", "an integer"),
]


def run(module: list[str], *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DEV_", "BRIDGE_", "CACHE_", "FEED_"))}
    return subprocess.run([sys.executable, "-m", *module, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**clean, **(env or {})}, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize(("module", "prog", "flag", "expected"), PROGRAMS, ids=[p[1] for p in PROGRAMS])
def test_a_bad_number_flag_is_the_same_one_line_everywhere(module: list[str], prog: str, flag: str,
                                                           expected: str) -> None:
    result = run(module, flag, "abc")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [f"{prog}: error: {flag}: expected {expected}, got 'abc'"]


@pytest.mark.parametrize(("module", "prog", "variable"), [
    (["scripts.dev_stack"], "dev_stack", "DEV_PORT"),
    (["scripts.demo_feed"], "demo_feed", "FEED_RATE"),
    (["cache_service"], "cache_service", "CACHE_PORT"),
    (["bridge", "--auth", "none"], "bridge", "BRIDGE_PORT"),
], ids=["dev_stack", "demo_feed", "cache_service", "bridge"])
def test_a_bad_number_from_the_environment_names_the_variable(module: list[str], prog: str,
                                                              variable: str) -> None:
    result = run(module, env={variable: "1.5x"})
    assert result.returncode == 2
    kind = "a number" if variable == "FEED_RATE" else "an integer"
    assert result.stderr.splitlines() == [f"{prog}: error: {variable}: expected {kind}, got '1.5x'"]


@pytest.mark.parametrize(("module", "prog"), [(p[0], p[1]) for p in PROGRAMS], ids=[p[1] for p in PROGRAMS])
def test_an_unknown_flag_is_one_line_too(module: list[str], prog: str) -> None:
    result = run(module, "--no-such-flag")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"{prog}: error: unrecognized arguments: --no-such-flag"]
