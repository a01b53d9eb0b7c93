"""Bad values fail to render with one clear line naming the key; NOTES tell how to connect."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from tests.k8s.chart import BASE, HS_SECRET, JWKS_URL, PUBLIC_KEY, merge, notes, render, render_files

pytestmark = pytest.mark.k8s

# (values, a phrase the error must contain)
SCHEMA_REJECTS: list[tuple[dict[str, Any], str]] = [
    (merge(BASE, {"redis": {"mode": "shards"}}), "/redis/mode"),
    (merge(BASE, {"redis": {"mode": "cluster", "cluster": {"nodes": ["redis://h:6379"]}}}), "/redis/cluster/nodes/0"),
    (merge(BASE, {"bridge": {"auth": "basic"}}), "/bridge/auth"),
    (merge(BASE, {"bridge": {"config": {"batchMaxMs": 5000}}}), "/bridge/config/batchMaxMs"),
    (merge(BASE, {"bridge": {"config": {"maxConnections": 0}}}), "/bridge/config/maxConnections"),
    (merge(BASE, {"bridge": {"config": {"idleTimeout": "forever"}}}), "/bridge/config/idleTimeout"),
    (merge(BASE, {"bridge": {"service": {"type": "ExternalName"}}}), "/bridge/service/type"),
    (merge(BASE, {"bridge": {"resources": {"requests": None}}}), "/bridge/resources"),
    (merge(BASE, {"cacheService": {"port": 70000}}), "/cacheService/port"),
    (merge(BASE, {"redis": {"sentinel": {"replicas": 2}}}), "/redis/sentinel/replicas"),
    (merge(BASE, {"redis": {"mode": "external", "external": {"url": "http://redis:6379"}}}),
     "/redis/external/url"),
    (merge(BASE, {"image": {"digest": "sha256:nothex"}}), "/image/digest"),
    (merge(BASE, {"jwt": {"algorithms": "none"}}), "/jwt/algorithms"),
    (merge(BASE, {"jwt": {"algorithms": "PS512"}}), "/jwt/algorithms"),
    (merge(BASE, {"podSecurityContext": {"runAsNonRoot": False}}), "/podSecurityContext/runAsNonRoot"),
    (merge(BASE, {"securityContext": {"readOnlyRootFilesystem": False}}),
     "/securityContext/readOnlyRootFilesystem"),
    (merge(BASE, {"ingress": {"hosts": [{"host": "x", "paths": [{"path": "ws", "pathType": "Prefix"}]}]}}),
     "/ingress/hosts/0/paths/0/path"),
    (merge(BASE, {"metrics": {"serviceMonitor": {"interval": "often"}}}), "/metrics/serviceMonitor/interval"),
    (merge(BASE, {"brdige": {"replicaCount": 3}}), "'brdige' not allowed"),
    (merge(BASE, {"redis": {"auth": {"password": "p@ss/word"}}}), "/redis/auth/password"),
    (merge(BASE, {"tls": {"bridge": {"identity": "bridge, other"}}}), "/tls/bridge/identity"),
    ({"jwt": {"jwksUrl": "ftp://idp.example/jwks"}}, "/jwt/jwksUrl"),
    ({"jwt": {"jwksUrl": JWKS_URL, "jwksRefreshSeconds": 0}}, "/jwt/jwksRefreshSeconds"),
    ({"jwt": {"jwksUrl": JWKS_URL}, "networkPolicy": {"jwksPorts": [0]}}, "/networkPolicy/jwksPorts/0"),
    (merge(BASE, {"canary": {"intervalSeconds": 0}}), "/canary/intervalSeconds"),
]

# Cross-field rules the chart checks itself, with the message it gives.
TEMPLATE_REJECTS: list[tuple[dict[str, Any], str]] = [
    ({}, "a JWT key is required: set jwt.secret"),
    ({"jwt": {"secret": "too-short"}}, "jwt.secret must be at least 32 characters"),
    ({"jwt": {"secret": HS_SECRET, "publicKey": PUBLIC_KEY}}, "set only one of jwt.secret, jwt.publicKey"),
    ({"jwt": {"publicKey": "not a pem"}}, "jwt.publicKey must be a PEM public key"),
    (merge(BASE, {"image": {"tag": "latest"}}), 'image.tag must not be "latest"'),
    (merge(BASE, {"redis": {"image": {"tag": "latest"}}}), 'redis.image.tag must not be "latest"'),
    (merge(BASE, {"bridge": {"terminationGracePeriodSeconds": 20}}),
     "bridge.terminationGracePeriodSeconds (20) must exceed bridge.preStopSleepSeconds + "
     "bridge.config.shutdownGrace (25)"),
    (merge(BASE, {"cacheService": {"terminationGracePeriodSeconds": 10}}),
     "cacheService.terminationGracePeriodSeconds must exceed"),
    (merge(BASE, {"redis": {"mode": "external"}}), "redis.mode=external needs redis.external.url"),
    (merge(BASE, {"redis": {"mode": "cluster"}}), "redis.mode=cluster needs redis.cluster.nodes"),
    (merge(BASE, {"tls": {"enabled": True}}), "tls.enabled needs tls.cacheService.secretName"),
    (merge(BASE, {"tls": {"enabled": True, "cacheService": {"secretName": "c"}, "bridge": {"secretName": "b"}}}),
     "tls.bridge.secretName needs tls.bridge.identity"),
    (merge(BASE, {"bridge": {"pdb": {"minAvailable": 1}}}),
     "set only one of bridge.pdb.minAvailable and bridge.pdb.maxUnavailable"),
    (merge(BASE, {"bridge": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}),
     "bridge.autoscaling.minReplicas must not exceed maxReplicas"),
    (merge(BASE, {"redis": {"mode": "sentinel", "sentinel": {"quorum": 4}}}),
     "redis.sentinel.quorum must not exceed redis.sentinel.replicas"),
    (merge(BASE, {"jwt": {"algorithms": "HS256 RS256"}}), "jwt.algorithms RS256 need a public key"),
    ({"jwt": {"publicKey": PUBLIC_KEY, "algorithms": "ES256 HS512"}}, "jwt.algorithms HS512 need a shared secret"),
    ({"jwt": {"secret": HS_SECRET, "jwksUrl": JWKS_URL}},
     "set only one of jwt.secret, jwt.publicKey, jwt.existingSecret, jwt.jwksUrl (got jwt.secret, jwt.jwksUrl)"),
    ({"jwt": {"jwksUrl": JWKS_URL, "algorithms": "RS256 HS256 PS256"}},
     "jwt.algorithms HS256 PS256 cannot be used with jwt.jwksUrl"),
    ({"jwt": {"jwksUrl": "http://idp.example/jwks", "jwksCaSecret": "ca"}},
     "jwt.jwksCaSecret needs an https:// jwt.jwksUrl"),
]


@pytest.mark.parametrize(("values", "phrase"), SCHEMA_REJECTS, ids=[p for _, p in SCHEMA_REJECTS])
def test_schema_rejects_bad_values(values: dict[str, Any], phrase: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as info:
        render(values)
    assert phrase in str(info.value)


@pytest.mark.parametrize(("values", "phrase"), TEMPLATE_REJECTS, ids=[p[:40] for _, p in TEMPLATE_REJECTS])
def test_chart_rejects_inconsistent_values(values: dict[str, Any], phrase: str) -> None:
    with pytest.raises(helm_python.HelmRenderError) as info:
        render(values)
    message = str(info.value)
    assert phrase in message
    assert message.count("\n") <= 1, "one clear line"


def test_lint_reports_schema_errors() -> None:
    from tests.k8s.chart import CHART_DIR

    report = helm_python.lint(CHART_DIR, merge(BASE, {"redis": {"mode": "shards"}}), strict=True)
    assert any("/redis/mode" in e for e in report["errors"])


def test_no_default_secret_and_auth_is_never_off_by_default() -> None:
    from tests.k8s.chart import load_chart

    with load_chart() as chart:
        defaults = chart.values
    assert defaults["bridge"]["auth"] == "jwt"
    assert defaults["jwt"]["secret"] == "" and defaults["jwt"]["publicKey"] == ""
    assert defaults["jwt"]["existingSecret"] == ""


def test_auth_none_renders_without_a_key_and_warns() -> None:
    values = {"bridge": {"auth": "none"}}
    objects = render(values)
    assert not [o for o in objects if o["kind"] == "Secret" and o["metadata"]["name"].endswith("-jwt")]
    assert "WARNING: bridge.auth is \"none\"" in notes(values)


def test_notes_tell_how_to_connect_and_get_a_token() -> None:
    text = notes(BASE)
    assert "kubectl -n trading port-forward svc/mb-marketbridge-bridge 8080:8080" in text
    assert "ws://127.0.0.1:8080/ws" in text
    assert "get secret mb-marketbridge-jwt" in text and "jwt.encode" in text
    text = notes(merge(BASE, {"ingress": {"enabled": True, "tls": [{"hosts": ["md.example"]}],
                                          "hosts": [{"host": "md.example",
                                                     "paths": [{"path": "/", "pathType": "Prefix"}]}]}}))
    assert "wss://md.example/ws" in text and 'websocat "wss://md.example/ws?token=$TOKEN"' in text
    text = notes({"jwt": {"publicKey": PUBLIC_KEY}, "bridge": {"service": {"type": "LoadBalancer"}}})
    assert "RS256" in text and "loadBalancer.ingress" in text
    text = notes({"jwt": {"jwksUrl": JWKS_URL}})
    assert f"keys published at\n   {JWKS_URL}" in text and "get secret mb-marketbridge-jwt" not in text


def test_release_name_containing_the_chart_name_is_not_repeated() -> None:
    files = render_files(BASE, name="marketbridge-prod")
    text = "".join(files.values())
    assert "name: marketbridge-prod-bridge" in text
    assert "marketbridge-prod-marketbridge" not in text
