"""The environment the chart gives each container, resolved as the kubelet resolves it
(Secret references, `$(VAR)` expansion, mounted files), is accepted by the services' own
configuration loaders and means what the values say."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from bridge.config import load_config as load_bridge_config
from cache_service.config import load_config as load_cache_config
from tests.infra.certs import make_pki
from tests.k8s.chart import BASE, CASES, JWKS_URL, PUBLIC_KEY, Case, Obj, by_kind, merge, render

pytestmark = pytest.mark.k8s

EXISTING_SECRETS = {  # what the user's own Secrets would hold
    "my-jwt": {"jwt-secret": "existing-secret-0123456789abcdef0123456789"},
    "my-redis": {"redis-url": "redis://:pw@redis.example:6379/1"},
    "my-redis-auth": {"password": "existingpass"},
    "idp-ca": {"ca.crt": "-----BEGIN CERTIFICATE-----\n(the key server's CA)\n"},
}


def secrets_of(objects: list[Obj]) -> dict[str, dict[str, str]]:
    """name -> decoded data of the rendered Secrets, plus the pre-existing ones."""
    found = {s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
             for s in by_kind(objects, "Secret")}
    return {**EXISTING_SECRETS, **found}


def resolve_env(container: Obj, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The process environment the kubelet builds: secretKeyRef looked up, $(VAR) expanded."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
        else:
            env[item["name"]] = re.sub(r"\$\(([A-Z_][A-Z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)),
                                       item["value"])
    return env


def mount_files(spec: Obj, container: Obj, secrets: dict[str, dict[str, str]], root: Path,
                env: dict[str, str]) -> dict[str, str]:
    """Write the Secret volumes a container mounts under `root` and point the env at them."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    remapped = dict(env)
    for mount in container.get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        data = secrets.get(secret["secretName"], {})
        for item in secret.get("items", [{"key": k, "path": k} for k in data]):
            (target / item["path"]).write_text(data[item["key"]])
        for name, value in env.items():
            if value.startswith(mount["mountPath"] + "/"):
                remapped[name] = str(root / value.lstrip("/"))
    return remapped


def workload(objects: list[Obj], suffix: str) -> tuple[Obj, Obj]:
    deployment = next(o for o in by_kind(objects, "Deployment") if o["metadata"]["name"].endswith(suffix))
    spec = deployment["spec"]["template"]["spec"]
    return spec, spec["containers"][0]


def configs(values: dict[str, Any], tmp_path: Path, extra_secrets: dict[str, dict[str, str]] | None = None
            ) -> tuple[Any, Any, dict[str, dict[str, str]]]:
    objects = render(values)
    secrets = {**secrets_of(objects), **(extra_secrets or {})}
    loaded = []
    for suffix, loader in (("-bridge", load_bridge_config), ("-cache-service", load_cache_config)):
        spec, container = workload(objects, suffix)
        env = mount_files(spec, container, secrets, tmp_path / suffix.strip("-"),
                          resolve_env(container, secrets))
        loaded.append(loader([], environ=env))
    return loaded[0], loaded[1], secrets


@pytest.mark.parametrize("case", [c for c in CASES if not c.values.get("tls", {}).get("enabled")],
                         ids=lambda c: c.name)
def test_services_accept_the_charts_configuration(case: Case, tmp_path: Path) -> None:
    bridge, cache, secrets = configs(case.values, tmp_path)
    assert bridge.grpc_target.startswith("dns:///") and bridge.port == 8080
    assert bridge.auth == "jwt" and (bridge.jwt_secret or bridge.jwt_public_key or bridge.jwks_url)
    assert cache.port == 50051 and cache.metrics_port == 9101
    target = cache.redis_target
    if case.values.get("redis", {}).get("mode") == "sentinel":
        assert target.is_sentinel and len(target.sentinels) == 3 and target.master == "mymaster"
        assert target.password and target.password == target.sentinel_password


def test_defaults_mean_what_the_spec_says(tmp_path: Path) -> None:
    bridge, cache, secrets = configs(BASE, tmp_path)
    assert (bridge.max_connections, bridge.max_connections_per_user, bridge.max_subscriptions,
            bridge.idle_timeout, bridge.rate_limit, bridge.rate_burst, bridge.max_frame_bytes,
            bridge.batch_max_ms, bridge.shutdown_grace) == (10000, 50, 200, 300, 50, 100, 65536, 1000, 20)
    assert bridge.jwt_secret == BASE["jwt"]["secret"] and bridge.algorithms == ("HS256",)
    assert cache.stream_maxlen == 100000
    password = secrets["mb-marketbridge-redis-auth"]["redis-password"]
    assert cache.redis_target.url.startswith(f"redis://:{password}@mb-marketbridge-redis.trading.svc")


def test_public_key_reaches_the_bridge_as_a_file(tmp_path: Path) -> None:
    bridge, _cache, _ = configs({"jwt": {"publicKey": PUBLIC_KEY, "algorithms": "ES256"}}, tmp_path)
    assert bridge.jwt_public_key == PUBLIC_KEY and bridge.jwt_secret is None
    assert bridge.algorithms == ("ES256",)


def test_jwks_url_and_its_ca_reach_the_bridge(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from bridge.jwks_fetch import JwksClient

    server, _client = make_pki(tmp_path / "pki", ["idp.example"])
    values = {"jwt": {"jwksUrl": JWKS_URL, "jwksRefreshSeconds": 120, "jwksCaSecret": "my-idp-ca"}}
    bridge, _cache, secrets = configs(values, tmp_path, {"my-idp-ca": {"ca.crt": server.ca.read_text()}})
    assert (bridge.jwks_url, bridge.jwks_refresh_s) == (JWKS_URL, 120.0)
    assert bridge.jwt_secret is None and bridge.jwt_public_key is None
    assert bridge.algorithms == ("RS256", "ES256") and not bridge.jwt_allow_no_exp
    assert bridge.jwks_ca_file and Path(bridge.jwks_ca_file).read_text() == server.ca.read_text()
    JwksClient(bridge, CollectorRegistry())       # the mounted CA loads (no fetch is made)
    assert "mb-marketbridge-jwt" not in secrets                       # no JWT Secret is made


def test_existing_secrets_are_used(tmp_path: Path) -> None:
    values = {"jwt": {"existingSecret": "my-jwt"},
              "redis": {"mode": "sentinel", "auth": {"existingSecret": "my-redis-auth",
                                                     "existingSecretKey": "password"}}}
    bridge, cache, _ = configs(values, tmp_path)
    assert bridge.jwt_secret == EXISTING_SECRETS["my-jwt"]["jwt-secret"]
    assert cache.redis_target.password == "existingpass"
    values = merge(BASE, {"redis": {"mode": "external", "external": {"existingSecret": "my-redis"}}})
    _bridge, cache, _ = configs(values, tmp_path / "external")
    assert cache.redis_url == EXISTING_SECRETS["my-redis"]["redis-url"]
    values = merge(BASE, {"redis": {"mode": "cluster", "cluster": {
        "nodes": ["n1:6379", "n2:6379"], "username": "cache", "existingSecret": "my-redis-auth",
        "existingSecretKey": "password"}}})
    _bridge, cache, _ = configs(values, tmp_path / "cluster")
    target = cache.redis_target
    assert target.is_cluster and target.nodes == (("n1", 6379), ("n2", 6379))
    assert (target.username, target.password) == ("cache", "existingpass")
    assert cache.min_replica_acks == 1        # writes confirmed by a replica, as with Sentinel


def test_tls_files_reach_both_services(tmp_path: Path) -> None:
    server, client = make_pki(tmp_path / "pki", ["mb-marketbridge-cache-service-headless.trading.svc.cluster.local"])
    read = lambda d: {"tls.crt": d.cert.read_text(), "tls.key": d.key.read_text(), "ca.crt": d.ca.read_text()}  # noqa: E731
    values = merge(BASE, {"tls": {"enabled": True, "cacheService": {"secretName": "cache-tls"},
                                  "bridge": {"secretName": "bridge-tls", "identity": "bridge"}}})
    bridge, cache, _ = configs(values, tmp_path, {"cache-tls": read(server), "bridge-tls": read(client)})
    assert cache.tls_enabled and cache.tls_client_ca_file
    assert cache.user_metadata_from == "mtls" and cache.user_metadata_peers == ("bridge",)  # the client cert's CN
    assert Path(cache.tls_cert_file).read_text() == server.cert.read_text()
    assert Path(bridge.grpc_tls_cert_file).read_text() == client.cert.read_text()
    assert Path(bridge.grpc_tls_ca_file).read_text() == client.ca.read_text()
