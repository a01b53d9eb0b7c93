"""Build the image with the local Docker engine and run the system from it, as the chart would:
Redis, the cache service and the bridge as containers (read-only root, non-root 10001, no
capabilities), then a WebSocket round trip from this host. From the same Debian base, a fresh
machine: ``make install-run`` on a copy of the work tree with nothing but Debian's own Python,
whose system-wide pip installs PEP 668 refuses (why the Makefile makes ``.venv``).

No image registry is reachable here, so the base image comes from Debian's packages
(scripts/build_base_image.sh) and pip installs from wheels built on this host and served over
HTTP on 127.0.0.1. A few minutes on 2 cores, mostly waiting on I/O: `make test` runs it in a
pytest of its own alongside the main run (scripts/run_suite.sh sets MARKETBRIDGE_IMAGE_TEST=1
and keeps it out of the main run); `make image-test` runs it alone.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from marketbridge.api.v1 import cache_pb2, cache_pb2_grpc
from tests.factories import TickerFactory
from tests.infra.eventually import eventually_sync
from devstack.ports import free_port
from tests.infra.tokens import make_token

ROOT = Path(__file__).resolve().parents[2]
BASE_TAG = "marketbridge/python:3.11-bookworm"
IMAGE_TAG = "marketbridge/marketbridge:image-test"
SECRET = "image-test-secret-" + "0123456789abcdef" * 2
SECURE: dict[str, Any] = {"read_only": True, "tmpfs": {"/tmp": "size=64m"}, "cap_drop": ["ALL"],
                          "security_opt": ["no-new-privileges"], "user": "10001:10001"}

pytestmark = [
    pytest.mark.k8s,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(os.environ.get("MARKETBRIDGE_IMAGE_TEST") != "1",
                       reason="runs in its own pytest (scripts/run_suite.sh, make image-test): MARKETBRIDGE_IMAGE_TEST=1"),
]


def run(cmd: list[str], timeout: float) -> None:
    """Run a build step; fail with its output's tail."""
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)}:\n{(result.stdout + result.stderr)[-3000:]}"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the wheel folder without a log line per request."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


@pytest.fixture(scope="module")
def wheel_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """This project's dependencies as wheels, served as a find-links page on 127.0.0.1."""
    wheels = tmp_path_factory.mktemp("wheelhouse")
    # async-timeout: redis needs it on Debian's Python 3.11.2 (< 3.11.3), not on newer ones.
    run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheels), ".",
         "setuptools>=77", "wheel", "async-timeout>=4.0.3"], timeout=600)
    for built in wheels.glob("marketbridge-*.whl"):
        built.unlink()
    handler = functools.partial(QuietHandler, directory=str(wheels))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def base_image() -> str:
    """Debian bookworm with its own python3 and python3-venv, nothing else (no pip, no make)."""
    run(["bash", "scripts/build_base_image.sh", BASE_TAG], timeout=900)
    return BASE_TAG


@pytest.fixture(scope="module")
def image(base_image: str, wheel_index: str) -> str:
    run(["docker", "build", "-q", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE_TAG}",
         "--build-arg", "PIP_NO_INDEX=1", "--build-arg", f"PIP_FIND_LINKS={wheel_index}",
         "-t", IMAGE_TAG, "."], timeout=1200)
    return IMAGE_TAG


# In the container, as a person on a fresh Debian machine would: get make from Debian, check
# that the system Python is externally managed, then the README's install step. pip reads its
# index settings from the environment, so the wheels come from this host (PIP_FIND_LINKS).
FRESH_MACHINE = """set -eu
test -f /usr/lib/python3.11/EXTERNALLY-MANAGED
apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq make >/dev/null
cd /src
make install-run
.venv/bin/python -c 'import bridge, cache_service, devstack, scripts.dev_stack'
! .venv/bin/python -m cache_service --port abc 2>err
grep -qx "cache_service: error: --port: expected an integer, got 'abc'" err
echo fresh-machine-ok
"""


def test_make_install_run_works_with_the_system_python_of_a_fresh_debian(
        base_image: str, wheel_index: str, tmp_path: Path) -> None:
    """The Makefile makes .venv with Debian's python3 and installs the services into it."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True, timeout=60).stdout.decode().split("\0")
    source = tmp_path / "src"
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    result = subprocess.run(
        ["docker", "run", "--rm", "--network", "host", "-v", f"{source}:/src",
         "-e", "PIP_NO_INDEX=1", "-e", f"PIP_FIND_LINKS={wheel_index}",
         "-e", "PIP_DISABLE_PIP_VERSION_CHECK=1", base_image, "bash", "-c", FRESH_MACHINE],
        capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "fresh-machine-ok" in output, output[-3000:]


@pytest.fixture(scope="module")
def stack(image: str) -> Iterator[dict[str, Any]]:
    """Redis, cache service and bridge containers on a network of their own."""
    import docker

    client = docker.from_env()
    network = client.networks.create(f"mb-image-{uuid.uuid4().hex[:8]}")
    containers: list[Any] = []
    grpc_port, http_port = free_port(), free_port()

    def start(name: str, img: str, command: list[str], **kwargs: Any) -> Any:
        # the container's name is its host name on the network
        container = client.containers.run(img, command, detach=True, network=network.name,
                                          name=f"{network.name}-{name}", **kwargs)
        containers.append(container)
        return container

    try:
        redis_image = os.environ.get("REDIS_IMAGE", "marketbridge/redis:local")
        start("redis", redis_image, ["redis-server", "--protected-mode", "no"])
        start("cache", image, ["python", "-m", "cache_service"], **SECURE,
              environment={"CACHE_REDIS_URL": f"redis://{network.name}-redis:6379/0"},
              ports={"50051/tcp": ("127.0.0.1", grpc_port)})
        bridge = start("bridge", image, ["python", "-m", "bridge"], **SECURE,
                       environment={"BRIDGE_GRPC_TARGET": f"dns:///{network.name}-cache:50051",
                                    "BRIDGE_JWT_SECRET": SECRET},
                       ports={"8080/tcp": ("127.0.0.1", http_port)})
        wait_ready(f"http://127.0.0.1:{http_port}/readyz", bridge)
        yield {"grpc": f"127.0.0.1:{grpc_port}", "http": f"127.0.0.1:{http_port}", "bridge": bridge,
               "client": client, "network": network.name}
    finally:
        for container in containers:
            container.remove(force=True)
        network.remove()


def wait_ready(url: str, container: Any, timeout: float = 120.0) -> None:
    """Poll the bridge's /readyz until 200 (it is 503 until the cache service is SERVING)."""
    def ready() -> bool:
        container.reload()
        assert container.status != "exited", container.logs().decode()[-2000:]
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return reply.status == 200
        except OSError:
            return False

    eventually_sync(ready, timeout, interval=0.5, what=f"{url} ready")


def test_image_runs_as_non_root_with_both_entry_points(stack: dict[str, Any]) -> None:
    import docker

    inspect = docker.from_env().images.get(IMAGE_TAG).attrs["Config"]
    assert inspect["User"] == "10001:10001"
    assert inspect["Cmd"] == ["python", "-m", "bridge"]
    assert stack["bridge"].exec_run(["id", "-u"]).output.decode().strip() == "10001"


def test_websocket_round_trip_through_the_containers(stack: dict[str, Any]) -> None:
    from websockets.sync.client import connect

    token = make_token("alice", secret=SECRET)
    with connect(f"ws://{stack['http']}/ws?token={token}", open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=30))["status"] == "connected"
        ws.send(json.dumps({"action": "subscribe", "request_id": 1,
                            "params": {"channel": "tickers", "exchange": "binance", "symbols": ["BTC/USDT"]}}))
        reply = next_frame(ws, lambda f: f.get("type") == "response")
        assert reply["success"] is True, reply
        ticker = TickerFactory(symbol="BTC/USDT", price=64321.5)
        with grpc.insecure_channel(stack["grpc"]) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            stub.PublishTicker(cache_pb2.PublishTickerRequest(ticker=ticker), timeout=10)
        update = next_frame(ws, lambda f: f.get("type") == "update")
        assert update["action"] == "ticker_update"
        assert update["result"]["symbol"] == "BTC/USDT" and update["result"]["price"] == 64321.5


def next_frame(ws: Any, wanted: Any, timeout: float = 30.0) -> dict[str, Any]:
    """The next frame that `wanted` accepts, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        frame = json.loads(ws.recv(timeout=left))
        if wanted(frame):
            return frame
    raise TimeoutError("no matching frame")


def test_the_charts_helm_test_hook_passes_against_the_containers(stack: dict[str, Any]) -> None:
    """The chart's `helm test` Pod command, run from the image as the hook would run it."""
    from tests.k8s.chart import BASE, render

    hook = next(o for o in render(BASE) if o["kind"] == "Pod")["spec"]["containers"][0]
    client, network = stack["client"], stack["network"]
    container = client.containers.run(IMAGE_TAG, hook["command"], detach=True, network=network,
                                      environment={"BRIDGE_URL": f"{network}-bridge:8080"}, **SECURE)
    try:
        status = container.wait(timeout=120)
        logs = container.logs().decode()
        assert status["StatusCode"] == 0, logs
        assert "bridge ready and speaking WebSocket" in logs
        assert "ws closed 1008" in logs  # no token: accepted, then closed 1008
    finally:
        container.remove(force=True)
