# Copyright: (c) 2026, llmops.gpu_inference contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Monitoring objects of the vLLM rendering core: KEDA queries, PrometheusRule, Grafana dashboard, adapter rules.

Private to this collection: no AnsibleModule import, no I/O; the vLLM rendering core
(:mod:`._vllm_manifests`) calls these functions (contract: .build/specs/vllm.md). Facts from
../shared/reference/vllm-on-kubernetes.md (cited as "ref §N"):

- Only current vLLM metric names (ref §2.1): ``vllm:kv_cache_usage_perc`` (a 0-1 fraction; the old
  ``vllm:gpu_cache_usage_perc`` was removed in 0.12) and ``vllm:inter_token_latency_seconds`` (the old
  ``vllm:time_per_output_token_seconds`` was removed in 0.13). :data:`REMOVED_METRICS` lists the names
  that must never appear. Every vLLM series carries ``model_name`` (the first served name) and ``engine``;
  the ServiceMonitor adds ``namespace``, ``pod``, ``service``, ``container`` and ``job``.
- KEDA (ref §3.1, §3.3 items 5 and 8): a query must return exactly ONE sample, so both are ``sum(...)``
  scoped by ``namespace`` and ``model_name``; ``metricType: AverageValue`` divides that sum by the current
  replicas, so the threshold is compared with the per-replica mean.
- DCGM (ref §3.2, §3.3 items 1 and 2): the GPU Operator's DCGM ServiceMonitor has ``honorLabels: false``, so
  the pod using a GPU is in ``exported_namespace`` / ``exported_pod`` (``namespace`` / ``pod`` name the
  exporter). MIG instances report no ``DCGM_FI_DEV_GPU_UTIL``: use ``DCGM_FI_PROF_GR_ENGINE_ACTIVE``.
  dcgm-exporter renamed its ``Hostname`` label to ``hostname`` (ref §5); GPU alerts copy ``Hostname`` into
  ``hostname`` with ``label_replace`` and group by ``UUID``, ``gpu`` and ``hostname``, so they carry the same
  labels before and after an exporter upgrade.

Alerts (thresholds and durations from ``config["alerts"]``, :data:`ALERT_DEFAULTS`):

=========================  ==============================================================================
VLLMKVCacheNearlyFull      per pod, ``vllm:kv_cache_usage_perc > kv_cache_usage`` for ``kv_cache_for``
VLLMRequestsQueued         per model, ``sum(vllm:num_requests_waiting) > requests_waiting`` for ``requests_waiting_for``
VLLMPreemptions            per pod, ``rate(vllm:num_preemptions_total[5m]) > 0`` for ``preemptions_for``
VLLMTimeToFirstTokenHigh   per model, TTFT p95 over 5m ``> ttft_p95_seconds`` for ``ttft_for``
VLLMTargetDown             a vLLM target (``container="vllm"``) that was up in the last hour is down for ``target_down_for``
VLLMMetricsAbsent          a vLLM target is up but exports no ``vllm:kv_cache_usage_perc`` / ``vllm:num_requests_waiting``
                           (renamed metrics; KEDA's queries would fail) for ``target_down_for``
GPUTemperatureHigh         ``DCGM_FI_DEV_GPU_TEMP > gpu_temperature_c`` for ``gpu_temperature_for``
GPUXidError                ``DCGM_FI_DEV_XID_ERRORS > 0`` (the last XID code), critical, at once
=========================  ==============================================================================

``VLLMTargetDown`` only counts targets that were up at some point in the last hour: vLLM starts its HTTP
server (and /metrics) only after the model is loaded (ref §2.2), so every new pod is "down" for its whole
cold start (600 s by default, longer than ``target_down_for``); a pod that never comes up is the
startupProbe's business (it restarts it; kube-state-metrics' crash-loop alerts report it).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, Mapping

# vLLM's container name in the Deployment; the ServiceMonitor's targets carry it as the ``container`` label.
VLLM_CONTAINER = "vllm"

RULE_NAME = "vllm"
DASHBOARD_FILE = "vllm.json"

COMMON_LABELS = {
    "app.kubernetes.io/name": "vllm",
    "app.kubernetes.io/part-of": "llmops-gpu-inference",
    "app.kubernetes.io/managed-by": "llmops.gpu_inference",
    "app.kubernetes.io/component": "monitoring",
}

ALERT_DEFAULTS: dict[str, Any] = {
    "kv_cache_usage": 0.9,
    "kv_cache_for": "3m",
    "requests_waiting": 20,
    "requests_waiting_for": "2m",
    "gpu_temperature_c": 85,
    "gpu_temperature_for": "5m",
    "ttft_p95_seconds": 5,
    "ttft_for": "10m",
    "preemptions_for": "10m",
    "target_down_for": "5m",
    "severity": "warning",
    "critical_severity": "critical",
    "extra_labels": {},
}

MONITORING_DEFAULTS: dict[str, Any] = {
    "service_monitor": True,
    "prometheus_rule": True,
    "dashboard": True,
    "labels": {},
    "scrape_interval": "15s",
    "dashboard_labels": {"grafana_dashboard": "1"},
    "dashboard_namespace": None,
}

# Metric names vLLM removed (ref §2.1): none of them may appear in anything rendered here.
REMOVED_METRICS = (
    "vllm:gpu_cache_usage_perc",
    "vllm:cpu_cache_usage_perc",
    "vllm:gpu_prefix_cache_queries",
    "vllm:gpu_prefix_cache_hits",
    "vllm:gpu_prefix_cache_hit_rate",
    "vllm:cpu_prefix_cache_hit_rate",
    "vllm:time_per_output_token_seconds",
    "vllm:num_requests_swapped",
    "vllm:avg_prompt_throughput_toks_per_s",
    "vllm:avg_generation_throughput_toks_per_s",
)

# prometheus-adapter rules.custom entries (ref §3.2): metric name -> DCGM series.
ADAPTER_METRICS = {
    "gpu_util": "DCGM_FI_DEV_GPU_UTIL",  # whole GPUs, percent 0-100
    "gpu_engine_active": "DCGM_FI_PROF_GR_ENGINE_ACTIVE",  # MIG instances too, fraction 0-1
}

# Prometheus duration (the PrometheusRule CRD's pattern for ``for``), at least one unit.
_DURATION = re.compile(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$")
PROMETHEUS_DURATION = _DURATION  # public name for the rendering core
_PROM_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

_THRESHOLD_KEYS = ("kv_cache_usage", "requests_waiting", "gpu_temperature_c", "ttft_p95_seconds")
_DURATION_KEYS = ("kv_cache_for", "requests_waiting_for", "gpu_temperature_for", "ttft_for", "preemptions_for", "target_down_for")


class VllmMonitoringError(ValueError):
    """The monitoring settings are unusable; the message lists every problem, one per line."""


# =============================================================================================
# PromQL helpers
# =============================================================================================


def promql_string(value: str) -> str:
    """A PromQL double-quoted string literal of ``value`` (Go escapes: backslash, quote, control characters)."""
    if not isinstance(value, str):
        raise VllmMonitoringError(f"PromQL label value must be a string, got {type(value).__name__}: {value!r}")
    # JSON's escapes (\\ \" \n \t \uXXXX ...) are a subset of the escapes PromQL's lexer accepts.
    return json.dumps(value, ensure_ascii=False)


def _selector(metric: str, **matchers: str) -> str:
    """``metric{name="value",...}`` with the matchers in the given order, values escaped."""
    inner = ",".join(f"{name}={promql_string(value)}" for name, value in matchers.items())
    return f"{metric}{{{inner}}}"


def _number(value: float) -> str:
    """A threshold as a PromQL number literal (ints stay ints: 20, 0.9, 1e-05)."""
    return str(value) if isinstance(value, int) else repr(float(value))


def keda_queries(namespace: str, model_name: str) -> dict[str, str]:
    """KEDA prometheus-trigger queries for one model: ``{"queue": ..., "kv": ...}``.

    Each returns exactly one sample (``sum`` without ``by``) over this model's replicas in this namespace;
    with ``metricType: AverageValue`` KEDA divides it by the replica count (ref §3.1, §3.3 item 8).
    """
    problems = [
        f"{key}: must be a non-empty string, got {value!r}"
        for key, value in (("namespace", namespace), ("model_name", model_name))
        if not isinstance(value, str) or not value
    ]
    if problems:
        raise VllmMonitoringError("\n".join(problems))
    return {
        "queue": f"sum({_selector('vllm:num_requests_waiting', namespace=namespace, model_name=model_name)})",
        "kv": f"sum({_selector('vllm:kv_cache_usage_perc', namespace=namespace, model_name=model_name)})",
    }


# =============================================================================================
# Settings
# =============================================================================================


def _str_map(value: Any, key: str, problems: list[str], prometheus_names: bool = False) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(f"{key}: must be a mapping of label names to strings, got {type(value).__name__}")
        return {}
    for name, val in value.items():
        if not isinstance(name, str) or not name:
            problems.append(f"{key}: label name {name!r} must be a non-empty string")
        elif prometheus_names and not _PROM_LABEL_NAME.match(name):
            problems.append(f"{key}.{name}: not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")
        if not isinstance(val, str):
            problems.append(f"{key}.{name}: value must be a string, got {type(val).__name__} {val!r}")
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def alert_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config["alerts"]`` over :data:`ALERT_DEFAULTS` (null values fall through), validated."""
    given = config.get("alerts") or {}
    problems: list[str] = []
    if not isinstance(given, Mapping):
        raise VllmMonitoringError(f"alerts: must be a mapping, got {type(given).__name__}")
    unknown = sorted(set(given) - set(ALERT_DEFAULTS))
    problems.extend(f"alerts.{key}: unknown key (known: {', '.join(sorted(ALERT_DEFAULTS))})" for key in unknown)
    alerts: dict[str, Any] = {key: (given.get(key) if given.get(key) is not None else default) for key, default in ALERT_DEFAULTS.items()}
    for key in _THRESHOLD_KEYS:
        value = alerts[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            problems.append(f"alerts.{key}: must be a positive number, got {value!r}")
        elif key == "kv_cache_usage" and value >= 1:
            problems.append(f"alerts.kv_cache_usage: vllm:kv_cache_usage_perc is a 0-1 fraction, the threshold must be below 1 (0.9 = 90%), got {value!r}")
    for key in _DURATION_KEYS:
        value = alerts[key]
        if not isinstance(value, str) or not value or not _DURATION.match(value):
            problems.append(f"alerts.{key}: must be a Prometheus duration such as '5m' or '1h30m', got {value!r}")
    for key in ("severity", "critical_severity"):
        if not isinstance(alerts[key], str) or not alerts[key]:
            problems.append(f"alerts.{key}: must be a non-empty string, got {alerts[key]!r}")
    alerts["extra_labels"] = _str_map(alerts["extra_labels"], "alerts.extra_labels", problems, prometheus_names=True)
    if "severity" in alerts["extra_labels"]:
        problems.append("alerts.extra_labels.severity: set alerts.severity / alerts.critical_severity instead")
    if problems:
        raise VllmMonitoringError("\n".join(problems))
    return alerts


def monitoring_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config["monitoring"]`` over :data:`MONITORING_DEFAULTS` (null values fall through)."""
    given = config.get("monitoring") or {}
    if not isinstance(given, Mapping):
        raise VllmMonitoringError(f"monitoring: must be a mapping, got {type(given).__name__}")
    settings = dict(MONITORING_DEFAULTS)
    settings.update({key: value for key, value in given.items() if value is not None})
    return settings


def _object_labels(config: Mapping[str, Any], *extra_keys: str) -> dict[str, str]:
    problems: list[str] = []
    labels = dict(COMMON_LABELS)
    labels.update(_str_map(config.get("labels"), "labels", problems))
    monitoring = monitoring_settings(config)
    for key in extra_keys:
        labels.update(_str_map(monitoring.get(key), f"monitoring.{key}", problems))
    if problems:
        raise VllmMonitoringError("\n".join(problems))
    return labels


def _check_namespace(namespace: Any, key: str = "namespace") -> None:
    if not isinstance(namespace, str) or not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", namespace) or len(namespace) > 63:
        raise VllmMonitoringError(f"{key}: must be a DNS-1123 label (lower case letters, digits, '-'; at most 63), got {namespace!r}")


# =============================================================================================
# PrometheusRule
# =============================================================================================


def _alert(name: str, *, expr: str, duration: str, severity: str, extra: Mapping[str, str], summary: str, description: str) -> dict[str, Any]:
    labels = dict(extra)
    labels["severity"] = severity
    return {
        "alert": name,
        "expr": expr,
        "for": duration,
        "labels": labels,
        "annotations": {"summary": summary, "description": description},
    }


def vllm_alert_rules(namespace: str, alerts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The vLLM alerts of one namespace (``alerts`` as :func:`alert_settings` returns it)."""
    ns = promql_string(namespace)
    sel = f"namespace={ns}"
    target = f"up{{{sel},container={promql_string(VLLM_CONTAINER)}}}"
    warn, extra = alerts["severity"], alerts["extra_labels"]
    kv, queue, ttft = _number(alerts["kv_cache_usage"]), _number(alerts["requests_waiting"]), _number(alerts["ttft_p95_seconds"])
    return [
        _alert(
            "VLLMKVCacheNearlyFull",
            expr=f"max by (namespace, model_name, pod) (vllm:kv_cache_usage_perc{{{sel}}}) > {kv}",
            duration=alerts["kv_cache_for"],
            severity=warn,
            extra=extra,
            summary="vLLM KV cache of {{ $labels.namespace }}/{{ $labels.pod }} ({{ $labels.model_name }}) is {{ $value | humanizePercentage }} full",
            description="The KV cache of pod {{ $labels.pod }} serving {{ $labels.model_name }} in namespace {{ $labels.namespace }} has been above "
            f"{float(alerts['kv_cache_usage']) * 100:g}% for {alerts['kv_cache_for']}. New requests wait and running ones get preempted "
            "(recomputed). Check the queue and preemption panels of the vLLM dashboard; add replicas (autoscaling max_replicas, "
            "kv_threshold) or lower max_num_seqs / max_model_len, or give vLLM more GPU memory (gpu_memory_utilization, kv_cache_dtype fp8).",
        ),
        _alert(
            "VLLMRequestsQueued",
            expr=f"sum by (namespace, model_name) (vllm:num_requests_waiting{{{sel}}}) > {queue}",
            duration=alerts["requests_waiting_for"],
            severity=warn,
            extra=extra,
            summary="{{ $value }} requests are waiting for {{ $labels.namespace }}/{{ $labels.model_name }}",
            description="More than "
            f"{alerts['requests_waiting']} requests have been queued for model {{{{ $labels.model_name }}}} in namespace "
            f"{{{{ $labels.namespace }}}} (all replicas together) for {alerts['requests_waiting_for']}. Check whether the autoscaler "
            "is at max_replicas or waiting for a replica that is still loading (kubectl get scaledobject,hpa,pods); raise max_replicas "
            "or add GPU nodes; if the KV cache is full too, the replicas are memory bound rather than compute bound.",
        ),
        _alert(
            "VLLMPreemptions",
            expr=f"sum by (namespace, model_name, pod) (rate(vllm:num_preemptions_total{{{sel}}}[5m])) > 0",
            duration=alerts["preemptions_for"],
            severity=warn,
            extra=extra,
            summary="vLLM pod {{ $labels.namespace }}/{{ $labels.pod }} ({{ $labels.model_name }}) keeps preempting requests",
            description="Pod {{ $labels.pod }} serving {{ $labels.model_name }} in namespace {{ $labels.namespace }} has preempted requests "
            f"continuously for {alerts['preemptions_for']}: its KV cache cannot hold the running batch, so requests are evicted "
            "and recomputed (latency and wasted GPU time). Lower max_num_seqs or max_model_len, use kv_cache_dtype fp8, raise "
            "gpu_memory_utilization, or scale out.",
        ),
        _alert(
            "VLLMTimeToFirstTokenHigh",
            expr=f"histogram_quantile(0.95, sum by (le, namespace, model_name) (rate(vllm:time_to_first_token_seconds_bucket{{{sel}}}[5m]))) > {ttft}",
            duration=alerts["ttft_for"],
            severity=warn,
            extra=extra,
            summary="TTFT p95 of {{ $labels.namespace }}/{{ $labels.model_name }} is {{ $value | humanizeDuration }}",
            description="The 95th percentile time to first token of model {{ $labels.model_name }} in namespace {{ $labels.namespace }} has "
            f"been above {alerts['ttft_p95_seconds']}s for {alerts['ttft_for']}. Usually the queue (VLLMRequestsQueued) or long "
            "prompts (prefill) cause it: check the waiting requests and prompt throughput panels; scale out, or limit "
            "max_model_len / max_num_batched_tokens.",
        ),
        _alert(
            "VLLMTargetDown",
            expr=f"{target} == 0 and max_over_time({target}[1h]) == 1",
            duration=alerts["target_down_for"],
            severity=warn,
            extra=extra,
            summary="vLLM target {{ $labels.namespace }}/{{ $labels.pod }} is down",
            description="Prometheus has not been able to scrape /metrics of vLLM pod {{ $labels.pod }} in namespace {{ $labels.namespace }} "
            f"for {alerts['target_down_for']}, although it was up within the last hour: the container crashed or restarted "
            "(OOMKilled, GPU error; it reloads the model now) or its API server hangs. Check kubectl -n {{ $labels.namespace }} "
            "describe pod {{ $labels.pod }} and the previous container log (kubectl logs --previous); look for GPUXidError.",
        ),
        _alert(
            "VLLMMetricsAbsent",
            expr=f"({target} == 1) unless on (namespace, pod) (vllm:kv_cache_usage_perc{{{sel}}} and on (namespace, pod) vllm:num_requests_waiting{{{sel}}})",
            duration=alerts["target_down_for"],
            severity=warn,
            extra=extra,
            summary="vLLM pod {{ $labels.namespace }}/{{ $labels.pod }} exports no vllm:kv_cache_usage_perc / vllm:num_requests_waiting",
            description="Pod {{ $labels.pod }} in namespace {{ $labels.namespace }} is scraped but has not exported vllm:kv_cache_usage_perc "
            f"and vllm:num_requests_waiting for {alerts['target_down_for']}. The KEDA triggers and these alerts depend on them: "
            "KEDA falls back to its fallback replicas and the alerts are blind. Most likely the vLLM version renamed a metric "
            "(compare curl http://<pod>:8000/metrics with the collection's metric names) or the target is not a vLLM server.",
        ),
    ]


def _gpu(metric: str) -> str:
    """``max by (UUID, gpu, hostname)`` of a DCGM gauge, with dcgm-exporter's old ``Hostname`` copied into ``hostname``."""
    return f'max by (UUID, gpu, hostname) (label_replace({metric}, "hostname", "$1", "Hostname", "(.+)"))'


def gpu_alert_rules(alerts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """GPU alerts from dcgm-exporter series (node-wide: a GPU is not a namespace's)."""
    extra = alerts["extra_labels"]
    temp = _number(alerts["gpu_temperature_c"])
    return [
        _alert(
            "GPUTemperatureHigh",
            expr=f"{_gpu('DCGM_FI_DEV_GPU_TEMP')} > {temp}",
            duration=alerts["gpu_temperature_for"],
            severity=alerts["severity"],
            extra=extra,
            summary="GPU {{ $labels.gpu }} on {{ $labels.hostname }} is at {{ $value }} °C",
            description="GPU {{ $labels.gpu }} (UUID {{ $labels.UUID }}) on node {{ $labels.hostname }} has been above "
            f"{alerts['gpu_temperature_c']} °C for {alerts['gpu_temperature_for']}; it will throttle its clocks (slower tokens) and "
            "may shut down. Check the node's cooling and fans (nvidia-smi -q -d TEMPERATURE,PERFORMANCE shows the slowdown "
            "thresholds and active throttle reasons); drain the node if it keeps rising.",
        ),
        _alert(
            "GPUXidError",
            expr=f"{_gpu('DCGM_FI_DEV_XID_ERRORS')} > 0",
            duration="0s",
            severity=alerts["critical_severity"],
            extra=extra,
            summary="GPU {{ $labels.gpu }} on {{ $labels.hostname }} reported XID {{ $value }}",
            description="GPU {{ $labels.gpu }} (UUID {{ $labels.UUID }}) on node {{ $labels.hostname }} reported an XID error "
            "(DCGM_FI_DEV_XID_ERRORS holds the last XID code; the summary shows it). Look it up in NVIDIA's XID catalog: 13, 31 and 43 are usually "
            "application faults (check the vLLM pod on that GPU); 48, 63, 64, 74, 79, 92, 94, 95 and others point at the GPU, "
            "memory or NVLink: cordon and drain the node, check dmesg and nvidia-smi -q, and reset or replace the GPU.",
        ),
    ]


def prometheus_rule(namespace: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``monitoring.coreos.com/v1`` PrometheusRule ``vllm`` of ``namespace``.

    Labels: :data:`COMMON_LABELS` + ``config["labels"]`` + ``config["monitoring"]["labels"]`` (so Prometheus'
    ruleSelector picks it). Group ``vllm`` (scoped to ``namespace``) and group ``gpu`` (dcgm-exporter).
    """
    _check_namespace(namespace)
    alerts = alert_settings(config)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": RULE_NAME, "namespace": namespace, "labels": _object_labels(config, "labels")},
        "spec": {
            "groups": [
                {"name": "vllm", "rules": vllm_alert_rules(namespace, alerts)},
                {"name": "gpu", "rules": gpu_alert_rules(alerts)},
            ]
        },
    }


# =============================================================================================
# Grafana dashboard
# =============================================================================================

# Template variables as the dashboard queries use them; vLLM series in the chosen namespace and models.
_VLLM = 'namespace="$namespace",model_name=~"$model_name"'
# DCGM series of the GPUs the chosen models' pods use: exported_pod joined to vLLM's pod (ref §3.3 item 1).
_PODS_OF_MODELS = (
    'label_replace(max by (pod, model_name) (vllm:num_requests_running{namespace="$namespace",model_name=~"$model_name"}) * 0 + 1, '
    '"exported_pod", "$1", "pod", "(.+)")'
)


def _dcgm_by_model(metric: str, scale: str = "") -> str:
    return f'{metric}{{exported_namespace="$namespace"}}{scale} * on (exported_pod) group_left (model_name) {_PODS_OF_MODELS}'


def _quantiles(histogram: str) -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by (le, model_name) (rate({histogram}_bucket{{{_VLLM}}}[$__rate_interval])))",
            f"p{int(q * 100)} {{{{model_name}}}}",
        )
        for q in (0.5, 0.95)
    ]


# (title, unit, [(expr, legend)]), two panels per row.
DASHBOARD_PANELS: tuple[tuple[str, str, list[tuple[str, str]]], ...] = (
    (
        "Requests running and waiting",
        "short",
        [
            (f"sum by (model_name) (vllm:num_requests_running{{{_VLLM}}})", "running {{model_name}}"),
            (f"sum by (model_name) (vllm:num_requests_waiting{{{_VLLM}}})", "waiting {{model_name}}"),
        ],
    ),
    (
        "Token throughput",
        "tps",
        [
            (f"sum by (model_name) (rate(vllm:prompt_tokens_total{{{_VLLM}}}[$__rate_interval]))", "prompt {{model_name}}"),
            (f"sum by (model_name) (rate(vllm:generation_tokens_total{{{_VLLM}}}[$__rate_interval]))", "generation {{model_name}}"),
        ],
    ),
    ("KV cache usage", "percentunit", [(f"max by (model_name, pod) (vllm:kv_cache_usage_perc{{{_VLLM}}})", "{{model_name}} {{pod}}")]),
    ("Preemptions", "ops", [(f"sum by (model_name) (rate(vllm:num_preemptions_total{{{_VLLM}}}[$__rate_interval]))", "{{model_name}}")]),
    ("Time to first token", "s", _quantiles("vllm:time_to_first_token_seconds")),
    ("Inter-token latency", "s", _quantiles("vllm:inter_token_latency_seconds")),
    ("GPU utilisation (whole GPUs)", "percent", [(_dcgm_by_model("DCGM_FI_DEV_GPU_UTIL"), "{{model_name}} {{exported_pod}} GPU {{gpu}}")]),
    (
        "GPU engine active (MIG and whole GPUs)",
        "percentunit",
        [(_dcgm_by_model("DCGM_FI_PROF_GR_ENGINE_ACTIVE"), "{{model_name}} {{exported_pod}} GPU {{gpu}} {{GPU_I_PROFILE}}")],
    ),
    ("GPU framebuffer used", "bytes", [(_dcgm_by_model("DCGM_FI_DEV_FB_USED", " * 1048576"), "{{model_name}} {{exported_pod}} GPU {{gpu}}")]),
)


def dashboard_exprs() -> list[str]:
    """Every PromQL expression of the dashboard's panels, with the template variables still in."""
    return [expr for _title, _unit, targets in DASHBOARD_PANELS for expr, _legend in targets]


def dashboard_uid(namespace: str) -> str:
    """Grafana uid (at most 40 characters) of the dashboard of ``namespace``."""
    uid = f"llmops-vllm-{namespace}"
    return uid if len(uid) <= 40 else "llmops-vllm-" + hashlib.sha256(namespace.encode()).hexdigest()[:28]


def dashboard(namespace: str) -> dict[str, Any]:
    """The Grafana dashboard model (schemaVersion 39) for the vLLM models of ``namespace``."""
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    panels = []
    for index, (title, unit, targets) in enumerate(DASHBOARD_PANELS):
        panels.append(
            {
                "id": index + 1,
                "type": "timeseries",
                "title": title,
                "datasource": datasource,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}, "tooltip": {"mode": "multi", "sort": "desc"}},
                "targets": [
                    {"refId": chr(ord("A") + n), "datasource": datasource, "expr": expr, "legendFormat": legend, "range": True}
                    for n, (expr, legend) in enumerate(targets)
                ],
            }
        )
    variables = [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "regex": "",
        },
        {
            "name": "namespace",
            "label": "Namespace",
            "type": "query",
            "datasource": datasource,
            "query": {"query": "label_values(vllm:num_requests_running, namespace)", "refId": "namespace"},
            "definition": "label_values(vllm:num_requests_running, namespace)",
            "current": {"selected": True, "text": namespace, "value": namespace},
            "refresh": 2,
            "sort": 1,
            "hide": 0,
        },
        {
            "name": "model_name",
            "label": "Model",
            "type": "query",
            "datasource": datasource,
            "query": {"query": 'label_values(vllm:num_requests_running{namespace="$namespace"}, model_name)', "refId": "model_name"},
            "definition": 'label_values(vllm:num_requests_running{namespace="$namespace"}, model_name)',
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "includeAll": True,
            "allValue": ".+",
            "multi": True,
            "refresh": 2,
            "sort": 1,
            "hide": 0,
        },
    ]
    return {
        "uid": dashboard_uid(namespace),
        "title": f"vLLM ({namespace})",
        "tags": ["vllm", "llmops-gpu-inference"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "timezone": "browser",
        "templating": {"list": variables},
        "annotations": {"list": []},
        "panels": panels,
    }


def dashboard_configmap(namespace: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """ConfigMap ``vllm-dashboard-<namespace>`` with the dashboard JSON (sorted keys, indent 2) for Grafana's sidecar.

    It lives in ``monitoring.dashboard_namespace`` (default: ``namespace``) and carries
    ``monitoring.dashboard_labels`` (default ``grafana_dashboard: "1"``, the kube-prometheus-stack sidecar's label).
    """
    _check_namespace(namespace)
    monitoring = monitoring_settings(config)
    target = monitoring["dashboard_namespace"] or namespace
    _check_namespace(target, "monitoring.dashboard_namespace")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"vllm-dashboard-{namespace}",
            "namespace": target,
            "labels": _object_labels(config, "dashboard_labels"),
        },
        "data": {DASHBOARD_FILE: json.dumps(dashboard(namespace), sort_keys=True, indent=2, ensure_ascii=False) + "\n"},
    }


# =============================================================================================
# prometheus-adapter
# =============================================================================================


def prometheus_adapter_rules(metrics: list[str]) -> list[dict[str, Any]]:
    """prometheus-adapter ``rules.custom`` entries for the pods metrics in ``metrics`` (sorted, each once).

    Keyed on ``exported_namespace`` / ``exported_pod`` because the GPU Operator's DCGM ServiceMonitor has
    ``honorLabels: false`` (ref §3.2, §3.3 item 1).
    """
    unknown = sorted({m for m in metrics if m not in ADAPTER_METRICS}, key=str)
    if unknown:
        raise VllmMonitoringError("\n".join(f"prometheus_adapter_rules: unknown metric {m!r} (known: {', '.join(sorted(ADAPTER_METRICS))})" for m in unknown))
    rules = []
    for name in sorted(set(metrics)):
        series = ADAPTER_METRICS[name]
        rules.append(
            {
                "seriesQuery": f'{series}{{exported_namespace!="",exported_pod!=""}}',
                "resources": {"overrides": {"exported_namespace": {"resource": "namespace"}, "exported_pod": {"resource": "pod"}}},
                "name": {"matches": f"^{series}$", "as": name},
                "metricsQuery": f"avg by (<<.GroupBy>>) ({series}{{<<.LabelMatchers>>}})",
            }
        )
    return rules
