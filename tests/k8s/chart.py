"""Render the chart with the real Helm engine (helm-python-sdk embeds Helm's Go SDK).

`render()` does what `helm template` does: coalesce values, validate them against
values.schema.json, render every template, and split the output into Kubernetes objects.
`CASES` is the values matrix the chart tests run over.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

CHART_DIR = Path(__file__).resolve().parents[2] / "helm" / "marketbridge"
RELEASE = "mb"
NAMESPACE = "trading"
HS_SECRET = "k8s-test-secret-0123456789abcdef0123456789"


def _public_key_pem() -> str:
    """A real EC P-256 public key (RS256/ES256 path of the chart)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


PUBLIC_KEY = _public_key_pem()
Obj = dict[str, Any]


@dataclass(frozen=True)
class Case:
    """One entry of the values matrix: a name, the values, and what it must produce."""

    name: str
    values: dict[str, Any]
    expect_kinds: dict[str, int] = field(default_factory=dict)


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `extra` over a copy of `base` (how Helm layers -f files)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


BASE: dict[str, Any] = {"jwt": {"secret": HS_SECRET}}
JWKS_URL = "https://idp.example/realms/trading/protocol/openid-connect/certs"

CASES: list[Case] = [
    Case("defaults", BASE, {"Deployment": 2, "StatefulSet": 1, "HorizontalPodAutoscaler": 2, "Pod": 1,
                            "PodDisruptionBudget": 2, "Secret": 2}),
    Case("redis-external", merge(BASE, {"redis": {"mode": "external",
                                                  "external": {"url": "rediss://:pw@redis.example:6380/2"}}}),
         {"StatefulSet": 0, "Secret": 2}),
    Case("redis-external-secret", merge(BASE, {"redis": {"mode": "external",
                                                         "external": {"existingSecret": "my-redis"}}}),
         {"StatefulSet": 0, "Secret": 1}),
    Case("redis-cluster", merge(BASE, {"redis": {"mode": "cluster", "cluster": {
        "nodes": ["redis-0.example:6379", "10.0.0.12:7000"], "tls": True, "existingSecret": "my-redis-auth",
        "existingSecretKey": "password"}}}), {"StatefulSet": 0, "Secret": 1, "ConfigMap": 0}),
    Case("redis-standalone-ephemeral", merge(BASE, {"redis": {"mode": "standalone",
                                                              "persistence": {"enabled": False}}}),
         {"StatefulSet": 1}),
    Case("redis-sentinel", merge(BASE, {"redis": {"mode": "sentinel"}}),
         {"StatefulSet": 1, "PodDisruptionBudget": 3, "Secret": 2}),
    Case("redis-no-auth", merge(BASE, {"redis": {"auth": {"enabled": False}}}), {"Secret": 1}),
    Case("redis-sentinel-auth-secret", merge(BASE, {"redis": {"mode": "sentinel", "auth": {
        "existingSecret": "my-redis-auth", "existingSecretKey": "password"}}}), {"Secret": 1}),
    Case("ingress", merge(BASE, {"ingress": {"enabled": True, "className": "nginx",
                                             "tls": [{"hosts": ["marketbridge.example.com"],
                                                      "secretName": "mb-tls"}]}}),
         {"Ingress": 1}),
    Case("loadbalancer", merge(BASE, {"bridge": {"service": {
        "type": "LoadBalancer", "externalTrafficPolicy": "Local",
        "loadBalancerSourceRanges": ["10.0.0.0/8"]}}}), {"Service": 4}),
    Case("servicemonitor-dashboard", merge(BASE, {"metrics": {"serviceMonitor": {"enabled": True}},
                                                  "grafana": {"dashboard": {"enabled": True}}}),
         {"ServiceMonitor": 2, "ConfigMap": 2}),
    Case("networkpolicy", merge(BASE, {"networkPolicy": {"enabled": True}}), {"NetworkPolicy": 3}),
    Case("networkpolicy-sentinel", merge(BASE, {"networkPolicy": {"enabled": True},
                                                "redis": {"mode": "sentinel"}}), {"NetworkPolicy": 3}),
    Case("networkpolicy-external", merge(BASE, {"networkPolicy": {"enabled": True},
                                                "redis": {"mode": "external",
                                                          "external": {"url": "redis://r:6379/0"}}}),
         {"NetworkPolicy": 2}),
    Case("networkpolicy-cluster", merge(BASE, {"networkPolicy": {"enabled": True, "clusterRedisPorts": [7000, 7001],
                                                                 "clusterRedisTo": [{"ipBlock": {"cidr": "10.0.0.0/24"}}]},
                                               "redis": {"mode": "cluster", "cluster": {"nodes": ["10.0.0.12:7000"]}}}),
         {"NetworkPolicy": 2}),
    Case("tls", merge(BASE, {"tls": {"enabled": True, "cacheService": {"secretName": "cache-tls"},
                                     "bridge": {"secretName": "bridge-tls", "identity": "bridge"}}}),
         {"ConfigMap": 2}),
    Case("jwt-public-key", {"jwt": {"publicKey": PUBLIC_KEY}}, {"Secret": 2}),
    Case("jwt-existing-secret", {"jwt": {"existingSecret": "my-jwt"}}, {"Secret": 1}),
    Case("jwt-jwks", {"jwt": {"jwksUrl": JWKS_URL, "jwksCaSecret": "idp-ca"},
                      "networkPolicy": {"enabled": True}}, {"Secret": 1, "NetworkPolicy": 3}),
    Case("no-autoscaling", merge(BASE, {"bridge": {"autoscaling": {"enabled": False}, "replicaCount": 3},
                                        "cacheService": {"autoscaling": {"enabled": False},
                                                         "pdb": {"maxUnavailable": None,
                                                                 "minAvailable": 1}}}),
         {"HorizontalPodAutoscaler": 0}),
    Case("everything", merge(BASE, {
        "redis": {"mode": "sentinel"}, "ingress": {"enabled": True},
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        "grafana": {"dashboard": {"enabled": True}},
        "networkPolicy": {"enabled": True}, "tls": {"enabled": True, "cacheService": {"secretName": "c"}},
        "image": {"digest": "sha256:" + "a" * 64}, "commonLabels": {"team": "trading"}})),
]


def load_chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART_DIR)


def render_files(values: dict[str, Any], *, name: str = RELEASE,
                 namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text, after schema validation (as `helm template` does)."""
    with load_chart() as chart:
        chart.validate_schema(values)
        return chart.render(values, name=name, namespace=namespace, is_install=True)


def render(values: dict[str, Any], **kwargs: Any) -> list[Obj]:
    """The Kubernetes objects the chart renders for `values` (NOTES.txt excluded)."""
    objects: list[Obj] = []
    for path, text in sorted(render_files(values, **kwargs).items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def notes(values: dict[str, Any]) -> str:
    """The rendered NOTES.txt."""
    files = render_files(values)
    return next(text for path, text in files.items() if path.endswith("NOTES.txt"))


def by_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[Obj], kind: str, name_suffix: str) -> Obj:
    """The single object of `kind` whose name ends with `name_suffix`."""
    found = [o for o in by_kind(objects, kind) if o["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def pod_specs(objects: list[Obj], *, hooks: bool = False) -> list[tuple[str, Obj]]:
    """(workload name, pod spec) of every Deployment and StatefulSet, and with `hooks` also of
    the bare Pods (`helm test` hooks)."""
    specs = [(o["metadata"]["name"], o["spec"]["template"]["spec"]) for o in objects
             if o["kind"] in ("Deployment", "StatefulSet")]
    if hooks:
        specs += [(o["metadata"]["name"], o["spec"]) for o in objects if o["kind"] == "Pod"]
    return specs


def env_of(container: Obj) -> dict[str, Any]:
    """name -> value (or valueFrom) of a container's environment."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
