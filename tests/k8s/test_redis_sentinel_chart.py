"""The chart's Sentinel mode for real: its rendered redis.conf and init.sh run in three Redis
containers named and addressed as the StatefulSet's pods would be (hostname
`<release>-marketbridge-redis-N`, DNS `<pod>.<headless>.<ns>.svc.cluster.local`), with the
generated password. They must form one primary with two replicas under three agreeing Sentinels,
survive the primary's loss by failover, and the old primary must rejoin as a replica when it
restarts (init.sh asks the Sentinels who the primary is).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.infra.eventually import eventually_sync
from tests.k8s.chart import BASE, NAMESPACE, RELEASE, by_kind, merge, render

pytestmark = [
    pytest.mark.k8s,
    pytest.mark.timeout(600),
    pytest.mark.skipif(os.environ.get("REDIS_BACKEND") == "process",
                       reason="needs a Docker engine (containers stand in for the StatefulSet's pods)"),
]

PASSWORD = "sentinel-test-pass-0123456789"
MASTER = "mymaster"
NAME = f"{RELEASE}-marketbridge-redis"
HEADLESS = f"{NAME}-headless.{NAMESPACE}.svc.cluster.local"
POD_TAG = "marketbridge/redis-pod:test"
TOOLS = ("hostname", "timeout", "head", "cp", "cat", "sleep", "mkdir")


def fqdn(i: int) -> str:
    return f"{NAME}-{i}.{HEADLESS}"


def pod_image(tmp: Path) -> str:
    """The test Redis image plus the few tools redis:alpine's busybox gives init.sh."""
    base = os.environ.get("REDIS_IMAGE", "marketbridge/redis:local")
    probe = subprocess.run(["docker", "run", "--rm", base, "sh", "-c", "command -v head timeout hostname cp"],
                           capture_output=True, timeout=60)
    if probe.returncode == 0:
        return base
    root = tmp / "ctx" / "root"
    for tool in TOOLS:
        binary = Path(shutil.which(tool) or f"/bin/{tool}").resolve()
        libs = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30).stdout
        for path in [str(binary), *[w for w in libs.split() if w.startswith("/")]]:
            dest = root / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(path).resolve(), dest)
        if not str(binary).startswith("/bin/"):
            (root / "bin").mkdir(parents=True, exist_ok=True)
            if not (root / "bin" / tool).exists():
                (root / "bin" / tool).symlink_to(binary)
    (tmp / "ctx" / "Dockerfile").write_text(f"FROM {base}\nCOPY root/ /\n")
    subprocess.run(["docker", "build", "-q", "-t", POD_TAG, str(tmp / "ctx")], check=True,
                   capture_output=True, timeout=300)
    return POD_TAG


@pytest.fixture
def pods(tmp_path: Path) -> Iterator[dict[str, Any]]:
    import docker

    objects = render(merge(BASE, {"redis": {"mode": "sentinel", "auth": {"password": PASSWORD},
                                            "sentinel": {"downAfterMilliseconds": 2000}}}))
    config = next(o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"] == f"{NAME}-config")
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    for key, text in config["data"].items():
        (config_dir / key).write_text(text)
    config_dir.chmod(0o755)
    image = pod_image(tmp_path)
    client = docker.from_env()
    network = client.networks.create(f"mb-sentinel-{uuid.uuid4().hex[:8]}")
    containers: list[Any] = []
    # What the StatefulSet's three containers do, in one container per pod.
    command = ["sh", "-c", "mkdir -p /conf && sh /config/init.sh && "
               "redis-server /conf/redis.conf --daemonize yes && exec redis-sentinel /conf/sentinel.conf"]

    def start(i: int) -> Any:
        endpoint = client.api.create_endpoint_config(aliases=[fqdn(i)])
        container = client.containers.create(
            image, command, hostname=f"{NAME}-{i}", name=f"{network.name}-{i}",
            environment={"REDIS_PASSWORD": PASSWORD, "REDISCLI_AUTH": PASSWORD},
            volumes={str(config_dir): {"bind": "/config", "mode": "ro"}},
            network=network.name, networking_config={network.name: endpoint})
        container.start()
        containers.append(container)
        return container

    try:
        for i in range(3):  # OrderedReady: each pod after the previous one answers
            start(i)
            wait_for(lambda i=i: cli(containers[i], 6379, "ping") == "PONG", f"redis-{i} up")
            wait_for(lambda i=i: cli(containers[i], 26379, "ping") == "PONG", f"sentinel-{i} up")
        yield {"containers": containers}
    finally:
        for container in containers:
            container.remove(force=True)
        network.remove()


def cli(container: Any, port: int, *args: str, auth: bool = True) -> str:
    """redis-cli inside a pod (as the probes run it)."""
    env = {"REDISCLI_AUTH": PASSWORD} if auth else {"REDISCLI_AUTH": ""}
    result = container.exec_run(["redis-cli", "-p", str(port), *args], environment=env)
    return result.output.decode().strip()


def wait_for(check: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    """A pod that is restarting refuses exec: any error means "not yet"."""
    eventually_sync(check, timeout, interval=0.5, what=what, ignore=(Exception,))


def primary_by(container: Any) -> str:
    return cli(container, 26379, "sentinel", "get-master-addr-by-name", MASTER).splitlines()[0]


def replication(container: Any) -> dict[str, str]:
    lines = cli(container, 6379, "info", "replication").splitlines()
    return dict(line.split(":", 1) for line in lines if ":" in line)


def test_three_pods_form_one_primary_two_replicas_under_three_sentinels(pods: dict[str, Any]) -> None:
    c = pods["containers"]
    wait_for(lambda: all(primary_by(x) == fqdn(0) for x in c), "sentinels agree on pod 0")
    wait_for(lambda: replication(c[0]).get("connected_slaves") == "2", "two replicas attached")
    wait_for(lambda: cli(c[0], 26379, "sentinel", "ckquorum", MASTER).startswith("OK 3 usable"),
             "three sentinels see each other")
    assert replication(c[1])["role"] == "slave" and replication(c[1])["master_host"] == fqdn(0)
    assert "NOAUTH" in cli(c[0], 6379, "set", "k", "v", auth=False)
    assert "NOAUTH" in cli(c[1], 26379, "sentinel", "masters", auth=False)


def test_failover_and_the_old_primary_rejoins_as_a_replica(pods: dict[str, Any]) -> None:
    c = pods["containers"]
    wait_for(lambda: replication(c[0]).get("connected_slaves") == "2", "two replicas attached")
    wait_for(lambda: cli(c[0], 26379, "sentinel", "ckquorum", MASTER).startswith("OK 3 usable"),
             "three sentinels see each other")
    assert cli(c[0], 6379, "set", "before", "failover") == "OK"
    wait_for(lambda: cli(c[0], 6379, "wait", "2", "1000") == "2", "write replicated")
    # A hung primary (its name still resolves, as a Kubernetes pod's does until it is deleted;
    # Docker's DNS is slow to answer for names that are gone and Sentinel blocks on lookups).
    c[0].pause()
    wait_for(lambda: primary_by(c[1]) in (fqdn(1), fqdn(2)) and primary_by(c[1]) == primary_by(c[2]),
             "sentinels elect a new primary", timeout=120)
    new = primary_by(c[1])
    promoted = c[1] if new == fqdn(1) else c[2]
    wait_for(lambda: replication(promoted)["role"] == "master", "promoted")
    assert cli(promoted, 6379, "get", "before") == "failover"
    c[0].unpause()
    c[0].restart(timeout=1)  # the pod restarts: init.sh runs again and must follow the new primary
    wait_for(lambda: replication(c[0]).get("role") == "slave"
             and replication(c[0]).get("master_host") == new, "old primary rejoins as replica", timeout=120)
    wait_for(lambda: cli(c[0], 6379, "get", "before") == "failover", "old primary resynced")
