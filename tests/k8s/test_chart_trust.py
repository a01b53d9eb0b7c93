"""With mTLS between the bridge and the cache service, the chart puts the cache service in
``--user-metadata-from mtls`` with the bridge's certificate identity as the one allowed peer
(docs/cache_service.md, "Trust model"); without mTLS it sets neither. Real Helm rendering."""

from __future__ import annotations

from typing import Any

import pytest

from tests.k8s.chart import BASE, CASES, NAMESPACE, RELEASE, Case, env_of, merge, one, render

pytestmark = pytest.mark.k8s

TRUST_ENV = ("CACHE_USER_METADATA_FROM", "CACHE_USER_METADATA_PEERS")
SHARED_CERT_NAME = f"{RELEASE}-marketbridge-cache-service-headless.{NAMESPACE}.svc.cluster.local"
MTLS = {"enabled": True, "cacheService": {"secretName": "cache-tls"}}
SEVERAL = "a.example,spiffe://trading/bridge"


def cache_env(values: dict[str, Any]) -> dict[str, Any]:
    deployment = one(render(values), "Deployment", "-cache-service")
    return env_of(deployment["spec"]["template"]["spec"]["containers"][0])


@pytest.mark.parametrize(("tls", "peers"), [
    (MTLS, SHARED_CERT_NAME),                                                 # one certificate for both
    (merge(MTLS, {"bridge": {"secretName": "bridge-tls", "identity": "md-bridge"}}), "md-bridge"),
    (merge(MTLS, {"bridge": {"identity": SEVERAL}}), SEVERAL),
], ids=["shared-cert", "bridge-cert", "several-names"])
def test_mtls_on_trusts_only_the_bridges_certificate(tls: dict[str, Any], peers: str) -> None:
    env = cache_env(merge(BASE, {"tls": tls}))
    assert (env["CACHE_USER_METADATA_FROM"], env["CACHE_USER_METADATA_PEERS"]) == ("mtls", peers)
    assert env["CACHE_TLS_CLIENT_CA_FILE"] == "/etc/marketbridge/tls/ca.crt"   # what mtls mode needs


WITHOUT_MTLS = [c for c in CASES if not c.values.get("tls", {}).get("enabled")] + [
    Case("tls-no-client-cert", merge(BASE, {"tls": {**MTLS, "requireClientCert": False}}))]


@pytest.mark.parametrize("case", WITHOUT_MTLS, ids=lambda c: c.name)
def test_without_mtls_the_service_keeps_its_default(case: Case) -> None:
    """No client certificates, nothing to trust them by: ``any`` (the service's default)."""
    assert not set(TRUST_ENV) & set(cache_env(case.values))


def test_every_tls_case_of_the_matrix_sets_the_mode() -> None:
    cases: list[Case] = [c for c in CASES if c.values.get("tls", {}).get("enabled")]
    assert cases
    for case in cases:
        assert cache_env(case.values)["CACHE_USER_METADATA_FROM"] == "mtls", case.name
