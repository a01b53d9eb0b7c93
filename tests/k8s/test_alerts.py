"""The chart's PrometheusRule (templates/prometheusrule.yaml) under Prometheus's own rule engine.

The rules are rendered with the real Helm engine, their `spec.groups` written out as a plain
rules file, and `promtool check rules` and `promtool test rules` run over synthetic series:
for every alert a case that fires and cases that must not (healthy pods, pods of another
release, conditions too short for the alert's `for:`). promtool comes from Debian's
`prometheus` package (scripts/test_env.sh installs it); without it these tests fail, never skip,
so a green run always means the alerts were evaluated.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.chart import BASE, NAMESPACE, Obj, by_kind, merge, render, render_files

pytestmark = pytest.mark.k8s

ALERT_LABELS = {"team": "trading"}
VALUES = merge(BASE, {"metrics": {"prometheusRule": {"enabled": True, "alertLabels": ALERT_LABELS}}})
BRIDGE_JOB = "mb-marketbridge-bridge"
CACHE_JOB = "mb-marketbridge-cache-service-headless"
BRIDGE_A = "mb-marketbridge-bridge-7d9f8c6b5-abcde"
BRIDGE_B = "mb-marketbridge-bridge-7d9f8c6b5-fghij"
CACHE_0 = "mb-marketbridge-cache-service-5c4b3a2f1-klmno"
CACHE_1 = "mb-marketbridge-cache-service-5c4b3a2f1-pqrst"
ALERTS = ("MarketbridgeBridgeNotReady", "MarketbridgeCanaryStale", "MarketbridgeDeliveryLatencyHigh",
          "MarketbridgeSlowConsumerClosesHigh", "MarketbridgeRedisDown", "MarketbridgeReplicaAcksFailing",
          "MarketbridgeBookChecksumFailures")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's `prometheus` package (scripts/test_env.sh does)")
    return path


def prometheus_rule(values: dict[str, Any] = VALUES) -> Obj:
    (rule,) = by_kind(render(values), "PrometheusRule")
    return rule


def rules_by_alert(rule: Obj) -> dict[str, Obj]:
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def series(metric: str, job: str, pod: str, values: str, **labels: str) -> dict[str, str]:
    """One input series as a ServiceMonitor scrape labels it (job, namespace, pod, instance)."""
    all_labels = {"job": job, "namespace": NAMESPACE, "pod": pod, "instance": f"{pod}:9000", **labels}
    body = ", ".join(f'{k}="{v}"' for k, v in all_labels.items())
    return {"series": f"{metric}{{{body}}}", "values": values}


def bridge(metric: str, pod: str, values: str, **labels: str) -> dict[str, str]:
    return series(metric, BRIDGE_JOB, pod, values, **labels)


def cache(metric: str, pod: str, values: str, **labels: str) -> dict[str, str]:
    return series(metric, CACHE_JOB, pod, values, **labels)


def expand(template: str, labels: dict[str, str], value: str) -> str:
    """A rule's annotation as Prometheus renders it: the templates only use `$labels.NAME` and
    `$value | FUNC` (checked), with `value` the expected formatted value."""
    out = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)
    out = re.sub(r"\{\{ \$value \| \w+ \}\}", value, out)
    assert "{{" not in out, f"annotation template the test cannot expand: {template!r}"
    return out


class Cases:
    """Builds promtool's test file: per alert, its input series and expectations."""

    def __init__(self, rules: dict[str, Obj]) -> None:
        self.rules = rules
        self.tests: list[dict[str, Any]] = []

    def add(self, name: str, input_series: list[dict[str, str]],
            checks: list[tuple[str, str, list[tuple[dict[str, str], str]]]]) -> None:
        """`checks`: (eval time, alert, [(series labels, formatted $value)] expected firing)."""
        tests = []
        for eval_time, alert, firing in checks:
            rule = self.rules[alert]
            exp = []
            for labels, value in firing:
                full = {**labels, **rule["labels"]}
                exp.append({"exp_labels": full,
                            "exp_annotations": {k: expand(v, full, value)
                                                for k, v in rule["annotations"].items()}})
            tests.append({"eval_time": eval_time, "alertname": alert, "exp_alerts": exp})
        self.tests.append({"name": name, "interval": "1m", "input_series": input_series,
                           "alert_rule_test": tests})


def pod(name: str) -> dict[str, str]:
    return {"namespace": NAMESPACE, "pod": name}


def build_cases(rules: dict[str, Obj]) -> Cases:
    c = Cases(rules)
    other_release = "other-marketbridge-bridge"
    c.add("bridge not ready: unscrapable, or unready per kube-state-metrics", [
        bridge("up", BRIDGE_A, "0x10"),
        bridge("up", BRIDGE_B, "1x10"),
        series("up", other_release, "other-marketbridge-bridge-1-2", "0x10"),
        # kube-state-metrics: BRIDGE_B's /readyz fails although /metrics answers
        series("kube_pod_status_ready", "kube-state-metrics", BRIDGE_B, "0x10", condition="true"),
        series("kube_pod_status_ready", "kube-state-metrics", BRIDGE_B, "1x10", condition="false"),
        series("kube_pod_status_ready", "kube-state-metrics", CACHE_0, "0x10", condition="true"),
    ], [
        ("3m", "MarketbridgeBridgeNotReady", []),                    # still pending (for: 5m)
        ("7m", "MarketbridgeBridgeNotReady", [(pod(BRIDGE_A), "0"), (pod(BRIDGE_B), "0")]),
    ])
    c.add("bridge not ready by its own gauge (no kube-state-metrics)", [
        bridge("bridge_ready", BRIDGE_A, "0x10"),   # scraped fine, but /readyz says 503
        bridge("bridge_ready", BRIDGE_B, "1x10"),
        bridge("up", BRIDGE_A, "1x10"),
        bridge("up", BRIDGE_B, "1x10"),
    ], [
        ("3m", "MarketbridgeBridgeNotReady", []),
        ("7m", "MarketbridgeBridgeNotReady", [(pod(BRIDGE_A), "0")]),
    ])
    c.add("canary stale on one bridge", [
        bridge("bridge_canary_age_seconds", BRIDGE_A, "0+60x10"),   # stuck: ages a minute a minute
        bridge("bridge_canary_age_seconds", BRIDGE_B, "2x10"),      # fresh
        series("bridge_canary_age_seconds", other_release, "other-marketbridge-bridge-1-2", "0+60x10"),
    ], [
        ("1m", "MarketbridgeCanaryStale", []),                       # over 15 s, but not for 1m yet
        ("5m", "MarketbridgeCanaryStale", [(pod(BRIDGE_A), "5m 0s")]),
    ])
    # A histogram: BRIDGE_A has 99% of its deliveries between 0.25 and 0.5 s, BRIDGE_B under 10 ms.
    buckets = {BRIDGE_A: {"0.01": 0, "0.1": 10, "0.25": 10, "0.5": 1000, "+Inf": 1000},
               BRIDGE_B: {"0.01": 1000, "0.1": 1000, "0.25": 1000, "0.5": 1000, "+Inf": 1000}}
    c.add("delivery p99 high on one bridge", [
        bridge("bridge_delivery_latency_seconds_bucket", name, f"0+{per_minute}x30", le=le)
        for name, per_le in buckets.items() for le, per_minute in per_le.items()
    ], [
        ("5m", "MarketbridgeDeliveryLatencyHigh", []),               # for: 10m not reached
        ("20m", "MarketbridgeDeliveryLatencyHigh", [(pod(BRIDGE_A), "497.5ms")]),
    ])
    c.add("slow-consumer closes spiking on one bridge", [
        bridge("bridge_disconnects_total", BRIDGE_A, "0+20x30", code="1013"),   # 20 a minute
        bridge("bridge_disconnects_total", BRIDGE_B, "0+5x30", code="1013"),    # 5 a minute
        bridge("bridge_disconnects_total", BRIDGE_B, "0+500x30", code="1000"),  # normal closes
    ], [
        ("5m", "MarketbridgeSlowConsumerClosesHigh", []),
        ("20m", "MarketbridgeSlowConsumerClosesHigh", [(pod(BRIDGE_A), "20")]),
    ])
    c.add("redis down for one cache service", [
        cache("cache_redis_up", CACHE_0, "1 1 0x10"),
        cache("cache_redis_up", CACHE_1, "1x12"),
    ], [
        ("2m", "MarketbridgeRedisDown", []),                         # just went down (for: 1m)
        ("5m", "MarketbridgeRedisDown", [(pod(CACHE_0), "0")]),
    ])
    c.add("replica acknowledgements failing", [
        # one reader interrupted for want of confirmations every minute, on and on
        cache("cache_feed_interruptions_total", CACHE_0, "0+1x30", cause="unconfirmed"),
        cache("cache_replica_acks_missing_total", CACHE_0, "0x30"),
        # a single one (a replica restarting) and other causes do not page
        cache("cache_feed_interruptions_total", CACHE_1, "0 1x30", cause="unconfirmed"),
        cache("cache_feed_interruptions_total", CACHE_1, "0+5x30", cause="connection"),
        cache("cache_replica_acks_missing_total", CACHE_1, "0 1x30"),
    ], [
        ("5m", "MarketbridgeReplicaAcksFailing", []),
        ("20m", "MarketbridgeReplicaAcksFailing", [(pod(CACHE_0), "5")]),
    ])
    c.add("writes not confirmed by replicas", [
        cache("cache_replica_acks_missing_total", CACHE_0, "0+3x30"),   # 3 refused writes a minute
        cache("cache_feed_interruptions_total", CACHE_0, "0x30", cause="unconfirmed"),
    ], [
        ("5m", "MarketbridgeReplicaAcksFailing", []),
        ("20m", "MarketbridgeReplicaAcksFailing", [(pod(CACHE_0), "15")]),
    ])
    c.add("a book checksum failure", [
        bridge("bridge_book_checksum_failures_total", BRIDGE_A, "0 0 0 1x40"),
        bridge("bridge_book_checksum_failures_total", BRIDGE_B, "0x40"),
    ], [
        ("3m", "MarketbridgeBookChecksumFailures", []),              # pending (for: 1m)
        ("5m", "MarketbridgeBookChecksumFailures", [(pod(BRIDGE_A), "1")]),
        ("30m", "MarketbridgeBookChecksumFailures", []),             # resolves once out of window
    ])
    return c


def test_prometheus_rule_is_off_by_default() -> None:
    assert by_kind(render(BASE), "PrometheusRule") == []
    assert not any(path.endswith("prometheusrule.yaml") and text.strip()
                   for path, text in render_files(BASE).items())


def test_every_alert_has_for_severity_and_annotations() -> None:
    rule = prometheus_rule()
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    alerts = rules_by_alert(rule)
    assert tuple(alerts) == ALERTS
    for name, alert in alerts.items():
        assert re.fullmatch(r"[0-9]+[smh]", alert["for"]), name
        assert alert["labels"] == {"severity": alert["labels"]["severity"], **ALERT_LABELS}, name
        assert set(alert["annotations"]) == {"summary", "description", "runbook_url"}, name
        assert alert["annotations"]["runbook_url"] == "docs/deploy.md#alerts"


def test_thresholds_and_labels_come_from_values() -> None:
    rule = prometheus_rule(merge(VALUES, {"metrics": {"prometheusRule": {
        "labels": {"release": "kube-prometheus-stack"},
        "runbookUrl": "https://runbooks.example/marketbridge",
        "rules": {"deliveryLatency": {"p99Seconds": 0.5, "for": "3m", "severity": "page"},
                  "canaryStale": {"ageSeconds": 30},
                  "slowConsumerCloses": {"perMinute": 100, "window": "2m"}}}}}))
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = rules_by_alert(rule)
    latency = alerts["MarketbridgeDeliveryLatencyHigh"]
    assert latency["expr"].endswith("> 0.5") and latency["for"] == "3m"
    assert latency["labels"]["severity"] == "page"
    assert alerts["MarketbridgeCanaryStale"]["expr"].endswith("> 30")
    assert alerts["MarketbridgeSlowConsumerClosesHigh"]["expr"].endswith("[2m])) * 60 > 100")
    assert {a["annotations"]["runbook_url"] for a in alerts.values()} == {"https://runbooks.example/marketbridge"}


@pytest.mark.parametrize(("rules", "phrase"), [
    ({"deliveryLatency": {"for": "soon"}}, "deliveryLatency/for"),
    ({"canaryStale": {"ageSeconds": 0}}, "canaryStale/ageSeconds"),
    ({"redisDown": {"threshold": 1}}, "threshold"),
    ({"unknownAlert": {"for": "1m"}}, "unknownAlert"),
])
def test_schema_rejects_bad_alert_values(rules: dict[str, Any], phrase: str) -> None:
    with pytest.raises(Exception, match=phrase):
        render(merge(VALUES, {"metrics": {"prometheusRule": {"rules": rules}}}))


def test_promtool_checks_and_tests_every_alert(tmp_path: Path) -> None:
    tool = promtool()
    rule = prometheus_rule()
    rules_file = tmp_path / "marketbridge-rules.yaml"
    rules_file.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    check = subprocess.run([tool, "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in check.stdout

    cases = build_cases(rules_by_alert(rule))
    tested = {t["alertname"] for case in cases.tests for t in case["alert_rule_test"]}
    assert tested == set(ALERTS), "every alert needs a promtool case"
    test_file = tmp_path / "marketbridge-rules.test.yaml"
    test_file.write_text(yaml.safe_dump({"rule_files": [rules_file.name], "evaluation_interval": "1m",
                                         "tests": cases.tests}, sort_keys=False))
    run = subprocess.run([tool, "test", "rules", str(test_file)], capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout
