"""Node for the JavaScript client's tests: found, or installed from the OS packages, never skipped.

The client needs a WebSocket class: Node 22+ has a global one, Node 20.10+ has it behind
``--experimental-websocket``; an older Node cannot run the live tests (the module itself runs
there with a WebSocket passed in), and the test says so rather than skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CLIENT_DIR = ROOT / "clients" / "js"


def node_binary() -> str:
    """The ``node`` on PATH; installed with apt-get (Debian's ``nodejs``) when missing and root."""
    found = shutil.which("node")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, timeout=300, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "nodejs"], check=False, env=env, timeout=600,
                       capture_output=True)
        found = shutil.which("node")
        if found:
            return found
    raise AssertionError("node is not installed and could not be installed: run the suite through "
                         "scripts/test_env.sh (it installs Debian's nodejs) or apt-get install nodejs")


def node_version(node: str) -> tuple[int, int]:
    text = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout
    major, minor = re.match(r"v(\d+)\.(\d+)", text).groups()  # type: ignore[union-attr]
    return int(major), int(minor)


def websocket_flags(node: str) -> list[str]:
    """What makes ``globalThis.WebSocket`` exist in this Node."""
    version = node_version(node)
    if version >= (22, 0):
        return []
    if version >= (20, 10):
        return ["--experimental-websocket"]
    raise AssertionError(f"node {version[0]}.{version[1]} has no WebSocket: "
                         "the live tests need Node 20.10 or later")


def tap_counts(output: str) -> dict[str, int]:
    """The summary lines of ``node --test``'s TAP output (``# pass 21``)."""
    return {name: int(n) for name, n in re.findall(r"^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$",
                                                    output, re.M)}
