"""Install the chart on a real cluster and do a WebSocket round trip through it.

Runs only when KUBECONFIG points at a cluster whose nodes can pull the image named by
MARKETBRIDGE_E2E_IMAGE (repository:tag, default marketbridge/marketbridge:<appVersion>);
otherwise it is reported as skipped with the reason. The release goes into a namespace of its
own, deleted afterwards.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.infra.tokens import make_token
from tests.k8s.chart import CHART_DIR

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(900)]

SECRET = "e2e-secret-" + "0123456789abcdef" * 2
READY_TIMEOUT_S = 600


def _cluster_or_skip() -> str:
    kubeconfig = os.environ.get("KUBECONFIG", "")
    if not kubeconfig or not os.path.exists(kubeconfig.split(os.pathsep)[0]):
        pytest.skip("no cluster: set KUBECONFIG to a cluster's kubeconfig to run the chart end to end")
    return kubeconfig


@pytest.fixture(scope="module")
def release() -> Iterator[dict[str, Any]]:
    kubeconfig = _cluster_or_skip()
    import helm_python
    from kubernetes import client, config

    config.load_kube_config(config_file=kubeconfig.split(os.pathsep)[0])
    core = client.CoreV1Api()
    namespace = f"mb-e2e-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    image = os.environ.get("MARKETBRIDGE_E2E_IMAGE", "")
    values: dict[str, Any] = {
        "jwt": {"secret": SECRET},
        "bridge": {"autoscaling": {"enabled": False}, "replicaCount": 1},
        "cacheService": {"autoscaling": {"enabled": False}, "replicaCount": 1},
        "redis": {"persistence": {"enabled": False}},
    }
    if image:
        repository, _, tag = image.rpartition(":")
        values["image"] = {"repository": repository, "tag": tag}
    with helm_python.Config(kubeconfig_path=kubeconfig.split(os.pathsep)[0], namespace=namespace) as cfg:
        try:
            cfg.install(str(CHART_DIR), "mb", values, namespace=namespace, wait="watcher",
                        timeout=READY_TIMEOUT_S)
            yield {"namespace": namespace, "core": core, "helm": cfg}
        finally:
            cfg.uninstall("mb", ignore_not_found=True, wait="watcher", timeout=120)
            core.delete_namespace(namespace)


def _bridge_pod(core: Any, namespace: str) -> str:
    pods = core.list_namespaced_pod(
        namespace, label_selector="app.kubernetes.io/component=bridge,app.kubernetes.io/instance=mb")
    ready = [p.metadata.name for p in pods.items
             if any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))]
    assert ready, "no ready bridge pod"
    return ready[0]


def test_websocket_round_trip_through_the_chart(release: dict[str, Any]) -> None:
    from kubernetes.stream import portforward
    from websockets.sync.client import connect

    core, namespace = release["core"], release["namespace"]
    pod = _bridge_pod(core, namespace)
    forward = portforward(core.connect_get_namespaced_pod_portforward, pod, namespace, ports="8080")
    sock = forward.socket(8080)
    sock.settimeout(30)
    token = make_token("alice", secret=SECRET)
    with connect(f"ws://bridge/ws?token={token}", sock=sock, open_timeout=30) as ws:
        welcome = json.loads(ws.recv(timeout=30))
        assert welcome["type"] == "connection" and welcome["status"] == "connected"
        ws.send(json.dumps({"action": "ping", "request_id": 1}))
        assert json.loads(ws.recv(timeout=30))["type"] == "pong"
        # a subscribe reaches the cache service and Redis for its snapshot
        ws.send(json.dumps({"action": "subscribe", "request_id": 2,
                            "params": {"channel": "tickers", "exchange": "binance", "symbols": ["BTC/USDT"]}}))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            frame = json.loads(ws.recv(timeout=30))
            if frame.get("type") == "response" and frame.get("request_id") == 2:
                assert frame["success"] is True, frame
                break
        else:
            pytest.fail("no subscribe response")


def test_helm_test_hook_passes(release: dict[str, Any]) -> None:
    result = release["helm"].test("mb", timeout=300, logs=True)
    assert "bridge ready and speaking WebSocket" in result.get("logs", ""), result
