"""_vllm_monitoring: KEDA queries, PrometheusRule, dashboard ConfigMap and prometheus-adapter rules as data.

What promtool proves (the alerts fire and stay quiet, the queries return one sample, the dashboard parses) is in
tests/unit/test_promtool_rules.py; here: the exact query strings the ScaledObject gets, the objects' shape, labels and
CRD schema (k8s_schemas), the settings validation, determinism, and that no removed vLLM metric name is used.
"""

from __future__ import annotations

import json
import re

import k8s_schemas
import pytest
import yaml

from ansible_collections.llmops.gpu_inference.plugins.module_utils import _vllm_monitoring as mon
from ansible_collections.llmops.gpu_inference.plugins.module_utils._vllm_monitoring import (
    VllmMonitoringError,
    dashboard_configmap,
    keda_queries,
    prometheus_adapter_rules,
    prometheus_rule,
)

# vLLM metric names that were removed (../shared/reference/vllm-on-kubernetes.md §2.1), written out here rather
# than taken from the module, so that the test does not trust the code it checks.
REMOVED = (
    "vllm:gpu_cache_usage_perc",
    "vllm:cpu_cache_usage_perc",
    "vllm:gpu_prefix_cache_queries",
    "vllm:gpu_prefix_cache_hits",
    "vllm:time_per_output_token_seconds",
    "vllm:num_requests_swapped",
    "vllm:avg_prompt_throughput_toks_per_s",
    "vllm:avg_generation_throughput_toks_per_s",
)
COMMON = {
    "app.kubernetes.io/name": "vllm",
    "app.kubernetes.io/part-of": "llmops-gpu-inference",
    "app.kubernetes.io/managed-by": "llmops.gpu_inference",
    "app.kubernetes.io/component": "monitoring",
}
ALERTS = {
    "VLLMKVCacheNearlyFull",
    "VLLMRequestsQueued",
    "VLLMPreemptions",
    "VLLMTimeToFirstTokenHigh",
    "VLLMTargetDown",
    "VLLMMetricsAbsent",
    "GPUTemperatureHigh",
    "GPUXidError",
}


def rules_by_name(rule):
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


# --------------------------------------------------------------------------------------------------- KEDA queries


def test_keda_queries_are_single_sample_sums():
    assert keda_queries("llm", "qwen") == {
        "queue": 'sum(vllm:num_requests_waiting{namespace="llm",model_name="qwen"})',
        "kv": 'sum(vllm:kv_cache_usage_perc{namespace="llm",model_name="qwen"})',
    }


def test_keda_queries_escape_label_values():
    queries = keda_queries("llm", 'a"b\\c\nd')
    assert queries["queue"] == 'sum(vllm:num_requests_waiting{namespace="llm",model_name="a\\"b\\\\c\\nd"})'


@pytest.mark.parametrize(("namespace", "model"), [("", "qwen"), ("llm", ""), ("llm", None), (3, "qwen")])
def test_keda_queries_reject_empty_or_non_string(namespace, model):
    with pytest.raises(VllmMonitoringError, match="must be a non-empty string"):
        keda_queries(namespace, model)


# --------------------------------------------------------------------------------------------------- PrometheusRule


def test_prometheus_rule_object_and_labels():
    config = {"labels": {"team": "ml", "app.kubernetes.io/part-of": "platform"}, "monitoring": {"labels": {"release": "kps"}}}
    rule = prometheus_rule("llm", config)
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["name"] == "vllm"
    assert rule["metadata"]["namespace"] == "llm"
    assert rule["metadata"]["labels"] == {**COMMON, "team": "ml", "app.kubernetes.io/part-of": "platform", "release": "kps"}
    assert [group["name"] for group in rule["spec"]["groups"]] == ["vllm", "gpu"]
    assert set(rules_by_name(rule)) == ALERTS
    k8s_schemas.validate(rule)


def test_prometheus_rule_with_defaults_validates_against_the_crd():
    k8s_schemas.validate(prometheus_rule("llm", {}))


def test_alerts_have_severity_summary_and_description():
    rule = prometheus_rule("llm", {"alerts": {"extra_labels": {"team": "ml"}, "severity": "page", "critical_severity": "wake-up"}})
    for name, alert in rules_by_name(rule).items():
        assert alert["labels"] == {"team": "ml", "severity": "wake-up" if name == "GPUXidError" else "page"}, name
        assert set(alert["annotations"]) == {"summary", "description"}, name
        assert "{{ $labels." in alert["annotations"]["summary"], name
        assert len(alert["annotations"]["description"]) > 150, name  # says what happened and what to do


def test_vllm_alerts_are_scoped_to_the_namespace_and_gpu_alerts_are_not():
    rules = rules_by_name(prometheus_rule("team-a", {}))
    for name in ALERTS:
        expr = rules[name]["expr"]
        selectors = re.findall(r"(?:vllm:\w+|up)\{([^}]*)\}", expr)
        if name.startswith("GPU"):
            assert selectors == [], name
            assert "label_replace(DCGM_FI_DEV_" in expr and '"hostname", "$1", "Hostname"' in expr, name
            assert expr.startswith("max by (UUID, gpu, hostname) "), name
        else:
            assert selectors and all('namespace="team-a"' in s for s in selectors), (name, selectors)
    assert 'container="vllm"' in rules["VLLMTargetDown"]["expr"]


def test_thresholds_and_durations_come_from_the_config():
    alerts = {
        "kv_cache_usage": 0.8,
        "kv_cache_for": "1m",
        "requests_waiting": 50,
        "requests_waiting_for": "30s",
        "gpu_temperature_c": 90,
        "gpu_temperature_for": "10m",
        "ttft_p95_seconds": 2.5,
        "ttft_for": "15m",
        "preemptions_for": "20m",
        "target_down_for": "1h",
    }
    rules = rules_by_name(prometheus_rule("llm", {"alerts": alerts}))
    assert rules["VLLMKVCacheNearlyFull"]["expr"].endswith(") > 0.8") and rules["VLLMKVCacheNearlyFull"]["for"] == "1m"
    assert rules["VLLMRequestsQueued"]["expr"].endswith(") > 50") and rules["VLLMRequestsQueued"]["for"] == "30s"
    assert rules["GPUTemperatureHigh"]["expr"].endswith(") > 90") and rules["GPUTemperatureHigh"]["for"] == "10m"
    assert rules["VLLMTimeToFirstTokenHigh"]["expr"].endswith(") > 2.5") and rules["VLLMTimeToFirstTokenHigh"]["for"] == "15m"
    assert rules["VLLMPreemptions"]["for"] == "20m"
    assert rules["VLLMTargetDown"]["for"] == rules["VLLMMetricsAbsent"]["for"] == "1h"
    assert "above 80% for 1m" in rules["VLLMKVCacheNearlyFull"]["annotations"]["description"]


def test_defaults_are_the_documented_ones():
    rules = rules_by_name(prometheus_rule("llm", {"alerts": {"kv_cache_usage": None}}))  # null falls through
    assert rules["VLLMKVCacheNearlyFull"]["expr"] == 'max by (namespace, model_name, pod) (vllm:kv_cache_usage_perc{namespace="llm"}) > 0.9'
    assert rules["VLLMKVCacheNearlyFull"]["for"] == "3m"
    assert rules["VLLMRequestsQueued"]["expr"] == 'sum by (namespace, model_name) (vllm:num_requests_waiting{namespace="llm"}) > 20'
    assert rules["VLLMRequestsQueued"]["for"] == "2m"
    assert rules["GPUTemperatureHigh"]["for"] == "5m"
    assert rules["VLLMTimeToFirstTokenHigh"]["expr"].endswith("[5m]))) > 5") and rules["VLLMTimeToFirstTokenHigh"]["for"] == "10m"
    assert rules["VLLMPreemptions"]["for"] == "10m"
    assert rules["VLLMTargetDown"]["for"] == "5m"
    assert rules["GPUXidError"]["for"] == "0s"


def test_every_settings_problem_is_reported_at_once():
    alerts = {
        "kv_cache_usage": 90,  # percent instead of fraction
        "requests_waiting": True,
        "ttft_p95_seconds": -1,
        "gpu_temperature_c": "85",
        "kv_cache_for": "3 minutes",
        "target_down_for": 300,
        "severity": "",
        "extra_labels": {"team-name": "ml", "tier": 1, "severity": "x"},
        "kv_cache_usage_perc": 0.9,
    }
    with pytest.raises(VllmMonitoringError) as error:
        prometheus_rule("llm", {"alerts": alerts})
    lines = str(error.value).splitlines()
    expected = [
        "alerts.kv_cache_usage_perc: unknown key",
        "alerts.kv_cache_usage: vllm:kv_cache_usage_perc is a 0-1 fraction",
        "alerts.requests_waiting: must be a positive number, got True",
        "alerts.gpu_temperature_c: must be a positive number, got '85'",
        "alerts.ttft_p95_seconds: must be a positive number, got -1",
        "alerts.kv_cache_for: must be a Prometheus duration",
        "alerts.target_down_for: must be a Prometheus duration",
        "alerts.severity: must be a non-empty string",
        "alerts.extra_labels.team-name: not a Prometheus label name",
        "alerts.extra_labels.tier: value must be a string",
        "alerts.extra_labels.severity: set alerts.severity",
    ]
    assert len(lines) == len(expected), lines
    for prefix in expected:
        assert any(line.startswith(prefix) for line in lines), (prefix, lines)


@pytest.mark.parametrize(
    ("namespace", "config", "message"),
    [
        ("LLM", {}, "namespace: must be a DNS-1123 label"),
        ("llm", {"labels": {"team": 1}}, "labels.team: value must be a string"),
        ("llm", {"monitoring": {"labels": ["release"]}}, "monitoring.labels: must be a mapping"),
        ("llm", {"alerts": ["x"]}, "alerts: must be a mapping"),
    ],
)
def test_bad_input_is_rejected(namespace, config, message):
    with pytest.raises(VllmMonitoringError, match=re.escape(message)):
        prometheus_rule(namespace, config)


# --------------------------------------------------------------------------------------------------- dashboard


def test_dashboard_configmap():
    configmap = dashboard_configmap("llm", {"labels": {"team": "ml"}})
    assert configmap["apiVersion"] == "v1" and configmap["kind"] == "ConfigMap"
    assert configmap["metadata"]["name"] == "vllm-dashboard-llm"
    assert configmap["metadata"]["namespace"] == "llm"
    assert configmap["metadata"]["labels"] == {**COMMON, "team": "ml", "grafana_dashboard": "1"}
    assert list(configmap["data"]) == ["vllm.json"]
    k8s_schemas.validate(configmap)


def test_dashboard_namespace_and_labels_from_monitoring():
    config = {"monitoring": {"dashboard_namespace": "grafana", "dashboard_labels": {"grafana_dashboard": "vllm", "folder": "llm"}}}
    configmap = dashboard_configmap("llm", config)
    assert configmap["metadata"]["namespace"] == "grafana"
    assert configmap["metadata"]["labels"] == {**COMMON, "grafana_dashboard": "vllm", "folder": "llm"}
    with pytest.raises(VllmMonitoringError, match=re.escape("monitoring.dashboard_namespace")):
        dashboard_configmap("llm", {"monitoring": {"dashboard_namespace": "Grafana_NS"}})


def test_dashboard_json_is_deterministic_and_canonical():
    text = dashboard_configmap("llm", {})["data"]["vllm.json"]
    assert text == dashboard_configmap("llm", {})["data"]["vllm.json"]
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_dashboard_variables_and_panels():
    board = json.loads(dashboard_configmap("llm", {})["data"]["vllm.json"])
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["current"]["value"] == "llm"
    assert variables["model_name"]["multi"] and variables["model_name"]["includeAll"]
    assert '{namespace="$namespace"}' in variables["model_name"]["definition"]
    exprs = [t["expr"] for panel in board["panels"] for t in panel["targets"]]
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])
    text = "\n".join(exprs)
    for metric in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:kv_cache_usage_perc",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:num_preemptions_total",
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    ):
        assert metric in text, metric
    for expr in exprs:
        assert "vllm:" not in expr or 'namespace="$namespace",model_name=~"$model_name"' in expr, expr
        assert "DCGM_FI" not in expr or 'exported_namespace="$namespace"' in expr, expr
    positions = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in board["panels"]]
    assert len(set(positions)) == len(positions)
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])


def test_dashboard_uid_fits_grafana_and_differs_per_namespace():
    long_ns = "n" * 63
    uids = {json.loads(dashboard_configmap(ns, {})["data"]["vllm.json"])["uid"] for ns in ("llm", "llm2", long_ns, long_ns[:-1] + "m")}
    assert len(uids) == 4
    assert all(len(uid) <= 40 for uid in uids)


# --------------------------------------------------------------------------------------------------- adapter rules


def test_prometheus_adapter_rules():
    assert prometheus_adapter_rules([]) == []
    assert prometheus_adapter_rules(["gpu_util"]) == [
        {
            "seriesQuery": 'DCGM_FI_DEV_GPU_UTIL{exported_namespace!="",exported_pod!=""}',
            "resources": {"overrides": {"exported_namespace": {"resource": "namespace"}, "exported_pod": {"resource": "pod"}}},
            "name": {"matches": "^DCGM_FI_DEV_GPU_UTIL$", "as": "gpu_util"},
            "metricsQuery": "avg by (<<.GroupBy>>) (DCGM_FI_DEV_GPU_UTIL{<<.LabelMatchers>>})",
        }
    ]
    both = prometheus_adapter_rules(["gpu_util", "gpu_engine_active", "gpu_util"])
    assert [r["name"]["as"] for r in both] == ["gpu_engine_active", "gpu_util"]
    assert both[0]["seriesQuery"].startswith("DCGM_FI_PROF_GR_ENGINE_ACTIVE{")


def test_prometheus_adapter_rules_reject_unknown_metrics():
    with pytest.raises(VllmMonitoringError) as error:
        prometheus_adapter_rules(["gpu_util", "gpu_temp", "DCGM_FI_DEV_GPU_UTIL"])
    assert str(error.value).count("\n") == 1 and "'gpu_temp'" in str(error.value) and "'DCGM_FI_DEV_GPU_UTIL'" in str(error.value)


# --------------------------------------------------------------------------------------------------- everything


def everything(namespace="llm", config=None):
    config = config or {}
    return {
        "rule": prometheus_rule(namespace, config),
        "dashboard": dashboard_configmap(namespace, config),
        "queries": keda_queries(namespace, "qwen"),
        "adapter": prometheus_adapter_rules(list(mon.ADAPTER_METRICS)),
    }


def test_no_removed_metric_name_anywhere():
    text = json.dumps(everything())
    for name in REMOVED:
        assert name not in text, name
    assert set(REMOVED) <= set(mon.REMOVED_METRICS)
    assert "vllm:kv_cache_usage_perc" in text and "vllm:inter_token_latency_seconds" in text


def test_output_is_deterministic_and_round_trips_through_yaml():
    config = {"labels": {"b": "2", "a": "1"}, "alerts": {"extra_labels": {"z": "1", "y": "2"}}}
    first = yaml.safe_dump(everything("llm", config))
    assert first == yaml.safe_dump(everything("llm", json.loads(json.dumps(config))))
    assert yaml.safe_load(first) == everything("llm", config)
