"""``make up``: ``python -m scripts.dev_stack`` starts everything, serves the page, stops clean."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.sync.client import ClientConnection, connect

from marketbridge.settings import ConfigError
from scripts.dev_stack import Output, Stack, StackConfig, StackError, dev_token, parse_config
from tests.infra.bridge_runner import http_get
from devstack.ports import free_port
from tests.infra.eventually import eventually_sync

ROOT = Path(__file__).resolve().parents[2]
STARTED = re.compile(r"started (\w+) \(pid (\d+)\)")

pytestmark = pytest.mark.timeout(240)


class StackProcess:
    """The supervisor as a child process; its output is collected by a reader thread."""

    def __init__(self, *args: str) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DEV_", "BRIDGE_", "CACHE_", "FEED_"))
        }
        env["NO_COLOR"] = "1"
        # Not the checkout's .dev-secret: a test leaves no file behind in the work tree.
        env["DEV_SECRET_FILE"] = str(Path(tempfile.mkdtemp(prefix="dev-stack-test-")) / "secret")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scripts.dev_stack", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_line(self, pattern: str, timeout: float) -> str:
        """The first output line containing ``pattern``; fail with the output if none comes."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((line for line in self.lines if pattern in line), None)
                if found is not None:
                    return found
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"no line with {pattern!r}; output:\n" + "\n".join(self.lines[-60:])
                    )
                self._changed.wait(timeout=0.5)

    def child_pids(self) -> dict[str, int]:
        return {m.group(1): int(m.group(2)) for line in self.lines if (m := STARTED.search(line))}

    def stop(self, sig: signal.Signals, timeout: float = 90.0) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def stack_ports() -> dict[str, int]:
    return {"port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}


def run_stack(ports: dict[str, int], *extra: str) -> StackProcess:
    return StackProcess(
        "--port",
        str(ports["port"]),
        "--grpc-port",
        str(ports["grpc_port"]),
        "--metrics-port",
        str(ports["metrics_port"]),
        "--rate",
        "20",
        *extra,
    )


@pytest.fixture
def stack_process() -> Iterator[list[StackProcess]]:
    """Kill whatever a failing test left running."""
    started: list[StackProcess] = []
    yield started
    for stack in started:
        stack.kill()
        for pid in stack.child_pids().values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def wait_status(url: str, status: int, timeout: float = 30.0) -> None:
    eventually_sync(lambda: http_get(url)[0] == status, timeout, interval=0.2,
                    what=f"GET {url} answering {status}")


def reply_to(ws: ClientConnection, request_id: int, timeout: float = 10.0) -> dict[str, Any]:
    """The response to ``request_id``, skipping the updates that arrive in between."""
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if frame.get("type") == "response" and frame.get("request_id") == request_id:
            return frame


def assert_gone(pids: dict[str, int]) -> None:
    for name, pid in pids.items():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        status = Path(f"/proc/{pid}/status").read_text() if Path(f"/proc/{pid}").exists() else ""
        assert "zombie" in status, f"{name} (pid {pid}) is still running after the stack stopped"


def test_make_up_serves_the_page_and_stops_on_sigint(
    stack_ports: dict[str, int], stack_process: list[StackProcess]
) -> None:
    stack = run_stack(stack_ports)
    stack_process.append(stack)
    url = stack.wait_line("live page", timeout=150).split()[-1]
    base = f"http://127.0.0.1:{stack_ports['port']}"
    assert url.startswith(f"{base}/?token=")
    assert "wscat -c" in stack.wait_line("wscat", timeout=5)

    status, body, headers = http_get(f"{base}/")
    assert (
        status == 200 and "marketbridge" in body and headers["Content-Type"].startswith("text/html")
    )
    for asset in ("app.js", "style.css"):
        assert http_get(f"{base}/{asset}")[0] == 200
    # Ready, and staying ready (one slow health probe on a loaded machine may flip it briefly).
    wait_status(f"{base}/readyz", 200)

    token = parse_qs(urlsplit(url).query)["token"][0]
    with connect(f"ws://127.0.0.1:{stack_ports['port']}/ws?token={token}", open_timeout=10) as ws:
        welcome = json.loads(ws.recv(timeout=10))
        assert welcome["type"] == "connection"
        ws.send(
            json.dumps(
                {
                    "action": "subscribe",
                    "request_id": 1,
                    "params": {"channel": "tickers", "exchange": "binance"},
                }
            )
        )
        reply = reply_to(ws, 1)
        assert reply["success"] is True and len(reply["result"]["snapshot"]) == 10
        ws.send(json.dumps({"action": "list_orders", "request_id": 2}))
        orders = reply_to(ws, 2)
        assert orders["success"] and all(o["user_id"] == "alice" for o in orders["result"])

    pids = stack.child_pids()
    assert set(pids) == {"redis", "cache", "bridge", "feed"}
    assert stack.stop(signal.SIGINT) == 0
    output = "\n".join(stack.lines)
    assert "all stopped" in output and "Traceback" not in output
    # Reverse order: the feed first, Redis last.
    stops = [line.split("stopped ")[1].split()[0] for line in stack.lines if "| stopped " in line]
    assert stops == ["feed", "bridge", "cache", "redis"]
    assert_gone(pids)


def test_external_redis_and_sigterm(
    redis_url: str, stack_ports: dict[str, int], stack_process: list[StackProcess]
) -> None:
    stack = run_stack(stack_ports, "--redis-url", redis_url, "--no-feed")
    stack_process.append(stack)
    stack.wait_line("live page", timeout=150)
    pids = stack.child_pids()
    assert set(pids) == {"cache", "bridge"}
    assert stack.stop(signal.SIGTERM) == 0
    assert_gone(pids)


def test_busy_port_fails_at_start_with_one_line(stack_process: list[StackProcess]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        stack = StackProcess(
            "--port", str(port), "--grpc-port", str(free_port()), "--metrics-port", str(free_port())
        )
        stack_process.append(stack)
        assert stack.proc.wait(timeout=60) == 2
    stack.wait_line("dev_stack:", timeout=5)
    assert stack.lines == [
        f"dev_stack: error: port {port} is in use: choose another with --port or DEV_PORT"
    ]


def test_an_unreachable_redis_is_named_at_once(stack_process: list[StackProcess]) -> None:
    """A --redis-url that does not answer fails before anything starts, naming the URL (its
    password masked) and why, instead of a silent minute and "cache was not ready"."""
    port = free_port()  # nothing listens there
    stack = StackProcess("--redis-url", f"redis://:hunter2@127.0.0.1:{port}/0", "--port", str(free_port()),
                         "--grpc-port", str(free_port()), "--metrics-port", str(free_port()),
                         "--ready-timeout", "60")
    stack_process.append(stack)
    assert stack.proc.wait(timeout=15) == 2  # well inside the 60 s the cache would have had
    stack.wait_line("dev_stack:", timeout=5)
    assert len(stack.lines) == 1, stack.lines  # nothing was started
    assert stack.lines[0].startswith(
        f"dev_stack: error: Redis at redis://:***@127.0.0.1:{port}/0 not answering (Connection refused")
    assert "hunter2" not in stack.lines[0]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--port", "http"], "--port: expected an integer, got 'http'"),
        (["--port", "70000"], "--port must be a TCP port"),
        (["--redis-url", "localhost:6379"], "--redis-url must start with"),
        (["--redis-url", "redis://h:port/0"], "--redis-url: bad port"),
        (["--rate", "0"], "must be > 0"),
    ],
)
def test_bad_flags_are_one_clear_line(argv: list[str], message: str) -> None:
    with pytest.raises((StackError, ConfigError), match=message):
        parse_config(argv, {})


def test_environment_sets_flags_and_flags_win() -> None:
    config = parse_config(
        ["--grpc-port", "6000"],
        {
            "DEV_PORT": "9000",
            "DEV_GRPC_PORT": "5000",
            "DEV_NO_FEED": "1",
            "DEV_JWT_SECRET": "s3cret",
        },
    )
    assert (config.port, config.grpc_port, config.feed, config.jwt_secret) == (
        9000,
        6000,
        False,
        "s3cret",
    )
    assert parse_config([], {}).jwt_secret == ""  # from .dev-secret (tests/devstack/test_secret.py)
    assert StackConfig(host="0.0.0.0").public_host == "127.0.0.1"


def test_the_bridge_secret_travels_in_its_environment_not_its_command_line() -> None:
    """A random secret may start with "-" (argparse then reads it as an option), and a
    command line is visible to every user of the machine (ps)."""
    secret = "-leading-dash-secret-0123456789abcdef"
    plan = Stack(StackConfig(jwt_secret=secret, redis_url="redis://127.0.0.1:1/0"), Output(),
                 "/tmp").plan()
    bridge = next(child for child in plan if child.name == "bridge")
    assert all(secret not in arg for child in plan for arg in child.argv)
    assert bridge.secret_env == {"BRIDGE_JWT_SECRET": secret}


def test_dev_token_is_a_24h_hs256_token_for_the_user() -> None:
    import jwt

    secret = "a-development-secret-of-32-bytes!"
    claims = jwt.decode(
        dev_token(secret, "alice", now=1_000_000),
        secret,
        algorithms=["HS256"],
        options={"verify_exp": False},
    )
    assert claims == {"sub": "alice", "iat": 1_000_000, "exp": 1_000_000 + 24 * 3600}


def test_a_child_dying_stops_the_stack(
    stack_ports: dict[str, int], stack_process: list[StackProcess]
) -> None:
    stack = run_stack(stack_ports)
    stack_process.append(stack)
    stack.wait_line("live page", timeout=150)
    pids = stack.child_pids()
    os.kill(pids["bridge"], signal.SIGKILL)
    assert stack.proc.wait(timeout=90) == 1
    assert "bridge killed by SIGKILL: stopping the stack" in "\n".join(stack.lines)
    assert_gone(pids)
