"""The chart over a matrix of values: lint clean, objects valid for two Kubernetes versions, and
the policies every object must follow (non-root, probes, resources, pinned images, labels)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import helm_python
import kubernetes_validate
import pytest

from tests.k8s.chart import (
    BASE, CASES, CHART_DIR, NAMESPACE, RELEASE, Case, Obj, by_kind, env_of, merge, pod_specs, render,
)

pytestmark = pytest.mark.k8s

# Two recent Kubernetes releases whose schemas kubernetes-validate ships.
KUBE_VERSIONS = ["1.33.0", "1.37.0"]
# Kinds from CRDs that kubernetes-validate has no schema for; checked structurally instead.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
REQUIRED_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                   "app.kubernetes.io/managed-by", "app.kubernetes.io/version", "helm.sh/chart")

_rendered: dict[str, list[Obj]] = {}


def rendered(case: Case) -> list[Obj]:
    """Render each case once per session (the Helm engine call is the slow part)."""
    if case.name not in _rendered:
        _rendered[case.name] = render(case.values)
    return _rendered[case.name]


case_params = pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])


@case_params
def test_lint_is_clean(case: Case) -> None:
    report = helm_python.lint(CHART_DIR, case.values, strict=True, namespace=NAMESPACE,
                              kube_version="v1.33.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@case_params
@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_objects_are_valid_kubernetes(case: Case, version: str) -> None:
    for obj in rendered(case):
        if obj["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} invalid for {version}: {path}: {exc.message}")


@case_params
def test_object_counts(case: Case) -> None:
    objects = rendered(case)
    counts: dict[str, int] = {}
    for obj in objects:
        counts[obj["kind"]] = counts.get(obj["kind"], 0) + 1
    for kind, expected in case.expect_kinds.items():
        assert counts.get(kind, 0) == expected, f"{kind}: {counts}"
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), "duplicate objects"
    print(f"{case.name}: {len(objects)} objects {sorted(counts.items())}")


@case_params
def test_every_object_is_labelled_and_namespaced(case: Case) -> None:
    for obj in rendered(case):
        meta = obj["metadata"]
        missing = [k for k in REQUIRED_LABELS if k not in meta.get("labels", {})]
        assert not missing, f"{obj['kind']}/{meta['name']} lacks labels {missing}"
        assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE
        assert meta.get("namespace") == NAMESPACE, f"{obj['kind']}/{meta['name']}"
        assert len(meta["name"]) <= 63


@case_params
def test_pods_run_restricted(case: Case) -> None:
    for name, spec in pod_specs(rendered(case), hooks=True):
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] > 0, name
        assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["automountServiceAccountToken"] is False, name
        # Pod Security Standards "restricted": no host namespaces, only these volume types
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), name
        allowed = {"configMap", "emptyDir", "secret", "persistentVolumeClaim", "projected"}
        for volume in spec.get("volumes", []):
            assert set(volume) - {"name"} <= allowed, (name, volume)
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", (name, c["name"])
            assert "privileged" not in sc and "add" not in sc["capabilities"]


@case_params
def test_containers_have_probes_resources_and_pinned_images(case: Case) -> None:
    for name, spec in pod_specs(rendered(case), hooks=True):
        for c in spec["containers"] + spec.get("initContainers", []):
            where = f"{name}/{c['name']}"
            image = c["image"]
            assert "@sha256:" in image or (":" in image.rsplit("/", 1)[-1]), f"{where}: untagged {image}"
            assert not image.endswith(":latest"), f"{where}: {image}"
            res = c["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]), where
            assert "memory" in res["limits"], where
        if spec.get("restartPolicy") == "Never":
            continue  # a run-to-completion hook
        for c in spec["containers"]:
            assert "livenessProbe" in c and "readinessProbe" in c, f"{name}/{c['name']} lacks probes"


@case_params
def test_services_pdbs_and_hpas_target_real_pods(case: Case) -> None:
    objects = rendered(case)
    pods = {o["metadata"]["name"]: o["spec"]["template"]["metadata"]["labels"]
            for o in objects if o["kind"] in ("Deployment", "StatefulSet")}

    def selects(selector: dict[str, str]) -> list[str]:
        return [n for n, labels in pods.items() if selector.items() <= labels.items()]

    for svc in by_kind(objects, "Service"):
        assert len(selects(svc["spec"]["selector"])) == 1, svc["metadata"]["name"]
    for pdb in by_kind(objects, "PodDisruptionBudget"):
        assert len(selects(pdb["spec"]["selector"]["matchLabels"])) == 1, pdb["metadata"]["name"]
    for hpa in by_kind(objects, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]["name"]
        workload = next(o for o in objects if o["metadata"]["name"] == target and o["kind"] == "Deployment")
        assert "replicas" not in workload["spec"], "an HPA-managed Deployment must not pin replicas"
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    for workload in objects:
        if workload["kind"] in ("Deployment", "StatefulSet"):
            sel = workload["spec"]["selector"]["matchLabels"]
            assert sel.items() <= workload["spec"]["template"]["metadata"]["labels"].items()
            assert "app.kubernetes.io/version" not in sel, "selectors must survive upgrades"


def _flag_envs(module: str) -> str:
    """The real service's --help, which names every env var it reads."""
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                         timeout=60, check=True)
    return out.stdout


@pytest.mark.parametrize("case", [c for c in CASES if c.name in ("everything", "jwt-public-key", "defaults")],
                         ids=lambda c: c.name)
def test_every_env_var_is_a_real_flag(case: Case) -> None:
    helps = {"BRIDGE_": _flag_envs("bridge"), "CACHE_": _flag_envs("cache_service")}
    for name, spec in pod_specs(rendered(case)):
        for c in spec["containers"]:
            for env in env_of(c):
                for prefix, text in helps.items():
                    if env.startswith(prefix):
                        assert env in text, f"{name}/{c['name']}: {env} is not a flag of the service"


def _containers(objects: list[Obj], suffix: str) -> dict[str, Any]:
    workload = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"].endswith(suffix))
    return workload["spec"]["template"]["spec"]["containers"][0]


def test_default_install_is_authenticated_and_drains() -> None:
    objects = rendered(CASES[0])
    bridge = _containers(objects, "-bridge")
    env = env_of(bridge)
    assert env["BRIDGE_AUTH"] == "jwt"
    assert env["BRIDGE_JWT_SECRET"]["secretKeyRef"]["key"] == "jwt-secret"
    assert env["BRIDGE_GRPC_TARGET"] == (
        f"dns:///{RELEASE}-marketbridge-cache-service-headless.{NAMESPACE}.svc.cluster.local:50051")
    assert bridge["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert bridge["readinessProbe"]["httpGet"]["path"] == "/readyz"
    sleep = int(bridge["lifecycle"]["preStop"]["exec"]["command"][1])
    grace = float(env["BRIDGE_SHUTDOWN_GRACE"])
    spec = next(s for n, s in pod_specs(objects) if n.endswith("-bridge"))
    assert spec["terminationGracePeriodSeconds"] > sleep + grace
    secret = next(s for s in by_kind(objects, "Secret") if s["metadata"]["name"].endswith("-jwt"))
    assert secret["type"] == "Opaque" and "jwt-secret" in secret["data"]


def test_cache_service_uses_native_grpc_probes_and_headless_service() -> None:
    objects = rendered(CASES[0])
    cache = _containers(objects, "-cache-service")
    # liveness must not follow Redis (the health service does): a Redis outage restarts nothing
    assert cache["livenessProbe"]["tcpSocket"] == {"port": "grpc"}
    assert cache["startupProbe"]["tcpSocket"] == {"port": "grpc"}
    assert cache["readinessProbe"]["grpc"] == {"port": 50051, "service": "cache.v1.CacheService"}
    from tests.k8s.chart import merge

    objects = render(merge(BASE, {"cacheService": {"probes": {"livenessService": "liveness"}}}))
    cache = _containers(objects, "-cache-service")
    assert cache["livenessProbe"]["grpc"] == {"port": 50051, "service": "liveness"}
    headless = next(s for s in by_kind(objects, "Service") if s["metadata"]["name"].endswith("-headless")
                    and "cache" in s["metadata"]["name"])
    assert headless["spec"]["clusterIP"] == "None"
    assert {p["name"]: p["port"] for p in headless["spec"]["ports"]} == {"grpc": 50051, "metrics": 9101}
    names = [e["name"] for e in cache["env"]]
    assert names.index("REDIS_PASSWORD") < names.index("CACHE_REDIS_URL"), "$(VAR) needs VAR first"
    env = env_of(cache)
    assert env["CACHE_REDIS_URL"] == (
        f"redis://:$(REDIS_PASSWORD)@{RELEASE}-marketbridge-redis.{NAMESPACE}.svc.cluster.local:6379/0")
    assert env["REDIS_PASSWORD"]["secretKeyRef"] == {"name": f"{RELEASE}-marketbridge-redis-auth",
                                                     "key": "redis-password"}


def test_sentinel_mode_builds_the_sentinel_url_and_three_sentinels() -> None:
    objects = rendered(next(c for c in CASES if c.name == "redis-sentinel"))
    url = env_of(_containers(objects, "-cache-service"))["CACHE_REDIS_URL"]
    hosts = [f"{RELEASE}-marketbridge-redis-{i}.{RELEASE}-marketbridge-redis-headless.{NAMESPACE}.svc.cluster.local:26379"
             for i in range(3)]
    assert url == (f"redis+sentinel://:$(REDIS_PASSWORD)@{','.join(hosts)}/mymaster/0"
                   "?sentinel_password=$(REDIS_PASSWORD)")
    sts = by_kind(objects, "StatefulSet")[0]
    assert sts["spec"]["replicas"] == 3
    assert [c["name"] for c in sts["spec"]["template"]["spec"]["containers"]] == ["redis", "sentinel"]
    config = next(o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-redis-config"))
    assert "sentinel monitor mymaster ${primary} 6379 2" in config["data"]["init.sh"]


def test_external_redis_url_comes_from_a_secret() -> None:
    objects = rendered(next(c for c in CASES if c.name == "redis-external"))
    ref = env_of(_containers(objects, "-cache-service"))["CACHE_REDIS_URL"]["secretKeyRef"]
    secret = next(s for s in by_kind(objects, "Secret") if s["metadata"]["name"] == ref["name"])
    assert ref["key"] in secret["data"]
    objects = rendered(next(c for c in CASES if c.name == "redis-external-secret"))
    ref = env_of(_containers(objects, "-cache-service"))["CACHE_REDIS_URL"]["secretKeyRef"]
    assert ref == {"name": "my-redis", "key": "redis-url"}


def test_cluster_mode_builds_the_cluster_url_with_the_password_from_its_secret() -> None:
    objects = rendered(next(c for c in CASES if c.name == "redis-cluster"))
    env = env_of(_containers(objects, "-cache-service"))
    assert env["CACHE_REDIS_URL"] == "redis+cluster://:$(REDIS_PASSWORD)@redis-0.example:6379,10.0.0.12:7000/?tls=1"
    assert env["REDIS_PASSWORD"]["secretKeyRef"] == {"name": "my-redis-auth", "key": "password"}
    assert not [o for o in objects if o["metadata"]["name"].endswith(("-redis", "-redis-headless", "-redis-config"))]


def test_cluster_mode_network_policy_reaches_every_node_port() -> None:
    objects = rendered(next(c for c in CASES if c.name == "networkpolicy-cluster"))
    names = sorted(p["metadata"]["name"].rsplit("-", 1)[-1] for p in by_kind(objects, "NetworkPolicy"))
    assert names == ["bridge", "service"]          # no policy for in-chart Redis pods
    service = next(p["spec"] for p in by_kind(objects, "NetworkPolicy") if p["metadata"]["name"].endswith("-service"))
    assert service["egress"][0] == {"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                                    "ports": [{"port": 7000, "protocol": "TCP"}, {"port": 7001, "protocol": "TCP"}]}


def test_tls_mounts_certificates_and_probes_over_mtls() -> None:
    objects = rendered(next(c for c in CASES if c.name == "tls"))
    cache, bridge = _containers(objects, "-cache-service"), _containers(objects, "-bridge")
    cenv, benv = env_of(cache), env_of(bridge)
    assert cenv["CACHE_TLS_CERT_FILE"] == "/etc/marketbridge/tls/tls.crt"
    assert cenv["CACHE_TLS_KEY_FILE"] == "/etc/marketbridge/tls/tls.key"
    assert cenv["CACHE_TLS_CLIENT_CA_FILE"] == "/etc/marketbridge/tls/ca.crt"
    assert {benv[k] for k in ("BRIDGE_GRPC_TLS_CA_FILE", "BRIDGE_GRPC_TLS_CERT_FILE",
                              "BRIDGE_GRPC_TLS_KEY_FILE")} == {
        "/etc/marketbridge/tls/ca.crt", "/etc/marketbridge/tls/tls.crt", "/etc/marketbridge/tls/tls.key"}
    probe = cache["readinessProbe"]["exec"]["command"]
    assert probe[1] == "/etc/marketbridge/probe/grpc_health_probe.py"
    assert "--service=cache.v1.CacheService" in probe
    assert cache["livenessProbe"] == {**cache["livenessProbe"], "tcpSocket": {"port": "grpc"}}
    secrets = {
        n: {v["secret"]["secretName"] for v in s["volumes"] if "secret" in v}
        for n, s in pod_specs(objects)
    }
    assert secrets[f"{RELEASE}-marketbridge-cache-service"] == {"cache-tls"}
    assert "bridge-tls" in secrets[f"{RELEASE}-marketbridge-bridge"]
    probe_cm = next(o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-grpc-probe"))
    assert "def main" in probe_cm["data"]["grpc_health_probe.py"]


def test_public_key_is_mounted_as_a_file() -> None:
    objects = rendered(next(c for c in CASES if c.name == "jwt-public-key"))
    bridge = _containers(objects, "-bridge")
    env = env_of(bridge)
    assert env["BRIDGE_JWT_PUBLIC_KEY_FILE"] == "/etc/marketbridge/jwt/public-key.pem"
    assert "BRIDGE_JWT_SECRET" not in env
    assert {"name": "jwt", "mountPath": "/etc/marketbridge/jwt", "readOnly": True} in bridge["volumeMounts"]


def test_ingress_keeps_websockets_open() -> None:
    objects = rendered(next(c for c in CASES if c.name == "ingress"))
    ing = by_kind(objects, "Ingress")[0]
    ann = ing["metadata"]["annotations"]
    assert int(ann["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(ann["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": f"{RELEASE}-marketbridge-bridge", "port": {"name": "http"}}
    assert ing["spec"]["ingressClassName"] == "nginx"


def test_servicemonitors_scrape_named_ports() -> None:
    objects = rendered(next(c for c in CASES if c.name == "servicemonitor-dashboard"))
    services = by_kind(objects, "Service")
    for sm in by_kind(objects, "ServiceMonitor"):
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        sel = sm["spec"]["selector"]["matchLabels"]
        matched = [s for s in services if sel.items() <= s["metadata"]["labels"].items()]
        assert len(matched) == 1, sm["metadata"]["name"]
        port_names = {p["name"] for p in matched[0]["spec"]["ports"]}
        for endpoint in sm["spec"]["endpoints"]:
            assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"


def test_network_policies_chain_clients_bridge_cache_redis() -> None:
    objects = rendered(next(c for c in CASES if c.name == "networkpolicy"))
    policies = {p["metadata"]["name"].rsplit("-", 1)[-1]: p["spec"] for p in by_kind(objects, "NetworkPolicy")}
    assert set(policies) == {"bridge", "service", "redis"}
    comp = lambda peer: peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]  # noqa: E731
    for spec in policies.values():
        assert spec["policyTypes"] == ["Ingress", "Egress"]
    # bridge: anyone in on http; out only to the cache service (and DNS)
    assert "from" not in policies["bridge"]["ingress"][0]
    assert [comp(p) for p in policies["bridge"]["egress"][0]["to"]] == ["cache-service"]
    # cache service: gRPC only from the bridge; out only to Redis (and DNS)
    assert [comp(p) for p in policies["service"]["ingress"][0]["from"]] == ["bridge"]
    assert [comp(p) for p in policies["service"]["egress"][0]["to"]] == ["redis"]
    # redis: in only from the cache service and its own pods
    assert sorted(comp(p) for p in policies["redis"]["ingress"][0]["from"]) == ["cache-service", "redis"]
    for spec in policies.values():
        dns = spec["egress"][-1]
        assert "to" not in dns and {p["port"] for p in dns["ports"]} == {53}


def test_with_a_jwks_url_the_bridge_fetches_keys_and_may_reach_the_key_server() -> None:
    policy = lambda values: next(  # noqa: E731
        p["spec"] for p in by_kind(render(values), "NetworkPolicy") if p["metadata"]["name"].endswith("-bridge"))
    jwks = next(c for c in CASES if c.name == "jwt-jwks")
    bridge = _containers(rendered(jwks), "-bridge")
    env = env_of(bridge)
    assert (env["BRIDGE_JWKS_URL"], env["BRIDGE_JWKS_REFRESH_S"]) == (jwks.values["jwt"]["jwksUrl"], "300")
    assert env["BRIDGE_JWKS_CA_FILE"] == "/etc/marketbridge/jwks-ca/ca.crt"
    assert "BRIDGE_JWT_SECRET" not in env and "BRIDGE_JWT_PUBLIC_KEY_FILE" not in env
    assert {"name": "jwks-ca", "mountPath": "/etc/marketbridge/jwks-ca", "readOnly": True} in bridge["volumeMounts"]
    egress = policy(jwks.values)["egress"]
    assert egress[1] == {"ports": [{"port": 443, "protocol": "TCP"}]}      # any address, https
    peers = [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    narrowed = policy(merge(jwks.values, {"networkPolicy": {"jwksTo": peers, "jwksPorts": [8443]}}))
    assert narrowed["egress"][1] == {"ports": [{"port": 8443, "protocol": "TCP"}], "to": peers}
    assert len(policy(merge(BASE, {"networkPolicy": {"enabled": True}}))["egress"]) == 2  # none without


def test_commonlabels_and_digest_reach_every_object() -> None:
    objects = rendered(next(c for c in CASES if c.name == "everything"))
    assert all(o["metadata"]["labels"]["team"] == "trading" for o in objects)
    images = {c["image"] for _, s in pod_specs(objects) for c in s["containers"]}
    assert f"marketbridge/marketbridge@sha256:{'a' * 64}" in images


def test_dashboard_covers_every_spec_metric() -> None:
    import json

    objects = rendered(next(c for c in CASES if c.name == "servicemonitor-dashboard"))
    cm = next(o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard"))
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["marketbridge.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    spec_metrics = [
        "bridge_active_connections", "bridge_connections_total", "bridge_disconnects_total",
        "bridge_messages_received_total", "bridge_messages_sent_total", "bridge_request_duration_seconds",
        "bridge_subscriptions", "bridge_upstream_streams", "bridge_delivery_latency_seconds",
        "bridge_conflated_updates_total", "bridge_grpc_requests_total", "cache_grpc_requests_total",
        "cache_grpc_request_duration_seconds", "cache_redis_up", "cache_redis_reconnects_total",
        "cache_stream_subscribers", "cache_events_published_total",
        # SPEC 9.5 and the operational counters the alerts of docs/deploy.md point at
        "bridge_canary_age_seconds", "bridge_upstream_lag_seconds", "bridge_book_checksum_failures_total",
        "bridge_compression_ratio", "bridge_handshakes_rejected_total", "bridge_jwks_fetch_failures_total",
        "cache_user_metadata_refused_total", "cache_feed_interruptions_total",
    ]
    assert [m for m in spec_metrics if m not in exprs] == []
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "duplicate panel ids"


def test_bridge_values_reach_the_environment() -> None:
    from tests.k8s.chart import merge

    values = merge(BASE, {"bridge": {"config": {"maxConnections": 777, "idleTimeout": 12.5, "rateLimit": 9,
                                                "batchMaxMs": 250, "logLevel": "DEBUG"}},
                          "jwt": {"algorithms": "HS256 HS512"}})
    env = env_of(_containers(render(values), "-bridge"))
    assert (env["BRIDGE_MAX_CONNECTIONS"], env["BRIDGE_IDLE_TIMEOUT"], env["BRIDGE_RATE_LIMIT"],
            env["BRIDGE_BATCH_MAX_MS"], env["BRIDGE_LOG_LEVEL"], env["BRIDGE_JWT_ALGORITHMS"]) == (
        "777", "12.5", "9", "250", "DEBUG", "HS256 HS512")


def test_cache_retention_values_reach_the_environment() -> None:
    from tests.k8s.chart import merge

    env = env_of(_containers(render(BASE), "-cache-service"))
    assert (env["CACHE_TERMINAL_ORDER_RETENTION_S"], env["CACHE_TRADE_RETENTION"],
            env["CACHE_CANDLE_RETENTION"]) == ("86400", "1000", "1000")
    values = merge(BASE, {"cacheService": {"config": {"terminalOrderRetentionS": 0, "tradeRetention": 50,
                                                      "candleRetention": 10}}})
    env = env_of(_containers(render(values), "-cache-service"))
    assert (env["CACHE_TERMINAL_ORDER_RETENTION_S"], env["CACHE_TRADE_RETENTION"],
            env["CACHE_CANDLE_RETENTION"]) == ("0", "50", "10")


def test_one_canary_interval_reaches_both_services() -> None:
    """The cache service writes a canary every --canary-s, and the bridge turns unready after 3
    of them without one: the chart sets both from one value, so they cannot disagree."""
    from tests.k8s.chart import merge

    def intervals(values: dict) -> tuple[str, str]:
        objects = render(values)
        return (env_of(_containers(objects, "-cache-service"))["CACHE_CANARY_S"],
                env_of(_containers(objects, "-bridge"))["BRIDGE_CANARY_S"])

    assert intervals(BASE) == ("5", "5")
    assert intervals(merge(BASE, {"canary": {"intervalSeconds": 2.5}})) == ("2.5", "2.5")


def test_the_default_install_refuses_tokens_without_exp() -> None:
    from tests.k8s.chart import merge

    env = env_of(_containers(render(BASE), "-bridge"))
    assert (env["BRIDGE_JWT_ALLOW_NO_EXP"], env["BRIDGE_TOKEN_WARNING_S"]) == ("false", "30")
    allowed = env_of(_containers(render(merge(BASE, {"jwt": {"allowNoExp": True}})), "-bridge"))
    assert allowed["BRIDGE_JWT_ALLOW_NO_EXP"] == "true"


def test_allowed_origins_come_from_values_or_the_ingress_hosts() -> None:
    from tests.k8s.chart import merge

    def origins(values: dict[str, Any]) -> str:
        return env_of(_containers(render(merge(BASE, values)), "-bridge"))["BRIDGE_ALLOWED_ORIGINS"]

    assert origins({}) == "*"
    assert origins({"ingress": {"enabled": True, "hosts": [
        {"host": "a.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]},
        {"host": "b.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
        "tls": [{"hosts": ["a.example.com"], "secretName": "a-tls"}]}}) == (
        "https://a.example.com,http://b.example.com")
    assert origins({"bridge": {"config": {"allowedOrigins": ["https://app.example.com",
                                                             "http://localhost:8080"]}}}) == (
        "https://app.example.com,http://localhost:8080")


def test_redis_password_is_generated_required_and_shared() -> None:
    import base64

    objects = rendered(CASES[0])
    secret = next(s for s in by_kind(objects, "Secret") if s["metadata"]["name"].endswith("-redis-auth"))
    password = base64.b64decode(secret["data"]["redis-password"]).decode()
    assert len(password) == 32 and password.isalnum()
    redis = by_kind(objects, "StatefulSet")[0]["spec"]["template"]["spec"]["containers"][0]
    assert redis["command"][-2:] == ["--requirepass", "$(REDIS_PASSWORD)"]
    assert env_of(redis)["REDISCLI_AUTH"] == "$(REDIS_PASSWORD)"
    # a given password is used as is; none without auth
    from tests.k8s.chart import merge

    objects = render(merge(BASE, {"redis": {"auth": {"password": "s3cret-Pass.word"}}}))
    secret = next(s for s in by_kind(objects, "Secret") if s["metadata"]["name"].endswith("-redis-auth"))
    assert base64.b64decode(secret["data"]["redis-password"]) == b"s3cret-Pass.word"
    objects = rendered(next(c for c in CASES if c.name == "redis-no-auth"))
    cache = _containers(objects, "-cache-service")
    assert "REDIS_PASSWORD" not in env_of(cache)
    assert env_of(cache)["CACHE_REDIS_URL"].startswith("redis://mb-marketbridge-redis.")


def test_sentinel_auth_from_an_existing_secret_reaches_every_container() -> None:
    objects = rendered(next(c for c in CASES if c.name == "redis-sentinel-auth-secret"))
    spec = by_kind(objects, "StatefulSet")[0]["spec"]["template"]["spec"]
    for c in spec["containers"] + spec["initContainers"] + [_containers(objects, "-cache-service")]:
        assert env_of(c)["REDIS_PASSWORD"]["secretKeyRef"] == {"name": "my-redis-auth", "key": "password"}, c["name"]
    config = next(o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-redis-config"))
    assert "masterauth" in config["data"]["init.sh"] and "sentinel auth-pass %s" in config["data"]["init.sh"]


def test_helm_test_hook_checks_the_bridge() -> None:
    objects = rendered(CASES[0])
    pod = next(o for o in by_kind(objects, "Pod"))
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    assert env_of(container)["BRIDGE_URL"] == f"{RELEASE}-marketbridge-bridge.{NAMESPACE}.svc.cluster.local:8080"
    assert "/readyz" in container["command"][2] and "/ws" in container["command"][2]
