"""The rendered PrometheusRule, KEDA queries and dashboard queries, run by Prometheus' own promtool.

- every alert of ``prometheus_rule`` fires on the synthetic series of tests/unit/promtool/alert_cases.yml where it
  should (exact labels and annotations) and stays quiet where it should not (``promtool test rules``);
- the rules file passes ``promtool check rules`` (syntax, templates, duplicate-rule lint);
- each KEDA query of ``keda_queries`` returns exactly ONE sample, the sum of its model's replicas in its namespace,
  over series of two replicas of two models plus the same model name in another namespace and a served name that
  needs escaping (``promql_expr_test`` compares the whole result set);
- every dashboard expression parses, and the GPU panels join DCGM's ``exported_pod`` to the vLLM pod's ``model_name``.

promtool comes from Debian's ``prometheus`` package; the tests skip, saying so, only when it is not installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.llmops.gpu_inference.plugins.module_utils._vllm_monitoring import (
    dashboard_configmap,
    dashboard_exprs,
    keda_queries,
    prometheus_rule,
)

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not found: install Debian's prometheus package (apt-get install prometheus)")

CASES_FILE = Path(__file__).parent / "promtool" / "alert_cases.yml"
CASES: list[dict[str, Any]] = yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))["cases"]
NAMESPACE = "llm"


def series(metric: str, labels: dict[str, str]) -> str:
    """promtool's series notation; label values as Go-quoted strings."""
    return metric + "{" + ",".join(f"{name}={json.dumps(value)}" for name, value in labels.items()) + "}"


def promtool(tmp_path: Path, *args: str) -> str:
    result = subprocess.run([PROMTOOL, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def run_unit_tests(tmp_path: Path, groups: list[dict[str, Any]], tests: list[dict[str, Any]]) -> str:
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    (tmp_path / "test.yml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False), encoding="utf-8"
    )
    return promtool(tmp_path, "test", "rules", "test.yml")


def render_labels(template: str, labels: dict[str, str]) -> str:
    """What Prometheus' template engine makes of a description that uses only ``{{ $labels.NAME }}``."""
    assert re.sub(r"\{\{ \$labels\.\w+ \}\}", "", template).count("{{") == 0, f"description uses more than $labels: {template}"
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)


def test_rules_file_passes_promtool_check(tmp_path):
    rule = prometheus_rule(NAMESPACE, {"alerts": {"extra_labels": {"team": "ml"}}})
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}), encoding="utf-8")
    output = promtool(tmp_path, "check", "rules", "--lint=all", "--lint-fatal", "rules.yml")
    assert "SUCCESS: 8 rules found" in output


def test_every_alert_has_a_firing_and_a_quiet_case():
    names = {rule["alert"] for group in prometheus_rule(NAMESPACE, {})["spec"]["groups"] for rule in group["rules"]}
    firing = {case["alert"] for case in CASES if case["expect"]}
    quiet = {case["alert"] for case in CASES if not case["expect"]}
    assert names == firing == quiet


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_alert(tmp_path, case):
    rule = prometheus_rule(NAMESPACE, {"alerts": case.get("alerts") or {}})
    groups = rule["spec"]["groups"]
    (alert,) = [r for group in groups for r in group["rules"] if r["alert"] == case["alert"]]
    expected = []
    for exp in case["expect"]:
        labels = {name: str(value) for name, value in exp["labels"].items()}
        annotations = {"summary": exp["summary"], "description": render_labels(alert["annotations"]["description"], labels)}
        expected.append({"exp_labels": labels, "exp_annotations": annotations})
    test = {
        "interval": "1m",
        "input_series": [{"series": series(s["metric"], s["labels"]), "values": s["values"]} for s in case["series"]],
        "alert_rule_test": [{"eval_time": case["eval_time"], "alertname": case["alert"], "exp_alerts": expected}],
    }
    run_unit_tests(tmp_path, groups, [test])


# ---------------------------------------------------------------------------------------------------------------------
# KEDA queries: exactly one sample per model
# ---------------------------------------------------------------------------------------------------------------------

ODD_NAME = 'team/qwen "v2" \\ test'  # a served model name with a slash, quotes and a backslash

# (namespace, pod, model_name, engine) -> (waiting, kv usage)
REPLICAS = {
    ("llm", "qwen-a", "qwen", "0"): (3, 0.5),
    ("llm", "qwen-b", "qwen", "0"): (4, 0.25),
    ("llm", "llama-a", "llama", "0"): (10, 0.75),
    ("llm", "llama-b", "llama", "0"): (20, 0.125),
    ("llm", "llama-b", "llama", "1"): (1, 0.0625),  # a second (data-parallel) engine in the same pod
    ("other", "qwen-a", "qwen", "0"): (100, 0.875),
    ("other", "qwen-b", "qwen", "0"): (200, 0.9375),
    ("llm", "odd-a", ODD_NAME, "0"): (6, 0.5),
    ("llm", "odd-b", "team/qwen", "0"): (50, 0.5),  # a prefix of the odd name: must not match it
}


def test_keda_queries_return_one_sample_per_model(tmp_path):
    input_series = []
    for (namespace, pod, model, engine), (waiting, kv) in REPLICAS.items():
        labels = {"namespace": namespace, "pod": pod, "model_name": model, "engine": engine, "container": "vllm", "job": pod.split("-", maxsplit=1)[0]}
        input_series.append({"series": series("vllm:num_requests_waiting", labels), "values": f"{waiting}x5"})
        input_series.append({"series": series("vllm:kv_cache_usage_perc", labels), "values": f"{kv}x5"})
    expr_tests = []
    for namespace, model in sorted({(ns, model) for ns, _pod, model, _engine in REPLICAS}):
        mine = [values for key, values in REPLICAS.items() if key[0] == namespace and key[2] == model]
        queries = keda_queries(namespace, model)
        for kind, column in (("queue", 0), ("kv", 1)):
            expr_tests.append({"expr": queries[kind], "eval_time": "3m", "exp_samples": [{"labels": "{}", "value": sum(v[column] for v in mine)}]})
    assert len(expr_tests) == 10
    test = {"interval": "1m", "input_series": input_series, "promql_expr_test": expr_tests}
    run_unit_tests(tmp_path, [], [test])


def test_keda_query_of_a_model_without_series_is_empty(tmp_path):
    """No series -> no sample (KEDA's ignoreNullValues "false" turns that into an error, not a silent 0)."""
    labels = {"namespace": "llm", "pod": "qwen-a", "model_name": "qwen", "engine": "0"}
    test = {
        "interval": "1m",
        "input_series": [{"series": series("vllm:num_requests_waiting", labels), "values": "3x5"}],
        "promql_expr_test": [{"expr": keda_queries("llm", "Qwen")["queue"], "eval_time": "3m", "exp_samples": []}],
    }
    run_unit_tests(tmp_path, [], [test])


# ---------------------------------------------------------------------------------------------------------------------
# Dashboard expressions
# ---------------------------------------------------------------------------------------------------------------------


def grafana(expr: str, model: str = ".+") -> str:
    """The expression as Grafana sends it: variables replaced (model_name "All" = its allValue ".+")."""
    return expr.replace("$__rate_interval", "5m").replace("$namespace", NAMESPACE).replace("$model_name", model)


def shipped_dashboard() -> dict[str, Any]:
    return json.loads(dashboard_configmap(NAMESPACE, {})["data"]["vllm.json"])


def test_dashboard_expressions_parse(tmp_path):
    exprs = [target["expr"] for panel in shipped_dashboard()["panels"] for target in panel["targets"]]
    assert exprs == dashboard_exprs()
    assert len(exprs) >= 12
    rules = [{"record": f"dashboard:expr_{n}:test", "expr": grafana(expr)} for n, expr in enumerate(exprs)]
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    assert f"SUCCESS: {len(rules)} rules found" in promtool(tmp_path, "check", "rules", "rules.yml")


DCGM = {"namespace": "gpu-operator", "pod": "nvidia-dcgm-exporter-x1", "job": "nvidia-dcgm-exporter", "hostname": "gpu-node-a"}
GPUS = [
    # (gpu, exported_namespace, exported_pod, util %, engine active, FB used MiB)
    ("0", "llm", "qwen-a", 80, 0.75, 70000),
    ("1", "llm", "qwen-a", 60, 0.5, 69000),  # TP=2: the pod's second GPU
    ("2", "llm", "llama-a", 30, 0.25, 20000),
    ("3", "other", "qwen-a", 99, 1, 1000),  # same pod name in another namespace
    ("4", None, None, 0, 0, 0),  # idle GPU: no exported_* labels
]


@pytest.mark.parametrize(
    ("title", "metric", "column", "scale"),
    [
        ("GPU utilisation (whole GPUs)", "DCGM_FI_DEV_GPU_UTIL", 3, 1),
        ("GPU engine active (MIG and whole GPUs)", "DCGM_FI_PROF_GR_ENGINE_ACTIVE", 4, 1),
        ("GPU framebuffer used", "DCGM_FI_DEV_FB_USED", 5, 1048576),
    ],
)
@pytest.mark.parametrize("model", [".+", "qwen"])
def test_gpu_panels_join_dcgm_to_models(tmp_path, title, metric, column, scale, model):
    (panel,) = [panel for panel in shipped_dashboard()["panels"] if panel["title"] == title]
    ((target,),) = [panel["targets"]]
    expr = target["expr"]
    input_series = []
    for pod, name in (("qwen-a", "qwen"), ("llama-a", "llama")):
        labels = {"namespace": "llm", "pod": pod, "model_name": name, "engine": "0", "container": "vllm"}
        input_series.append({"series": series("vllm:num_requests_running", labels), "values": "2x5"})
    input_series.append(
        {"series": series("vllm:num_requests_running", {"namespace": "other", "pod": "qwen-a", "model_name": "mistral", "engine": "0"}), "values": "1x5"}
    )
    expected = []
    for gpu in GPUS:
        labels = {**DCGM, "gpu": gpu[0], "UUID": f"GPU-{gpu[0]}"}
        if gpu[1]:
            labels |= {"exported_namespace": gpu[1], "exported_pod": gpu[2], "exported_container": "vllm"}
        input_series.append({"series": series(metric, labels), "values": f"{gpu[column]}x5"})
        owner = {"qwen-a": "qwen", "llama-a": "llama"}.get(gpu[2]) if gpu[1] == "llm" else None
        if owner and re.fullmatch(model, owner):
            expected.append({"labels": series("", {**labels, "model_name": owner}), "value": gpu[column] * scale})
    assert len(expected) == (3 if model == ".+" else 2)
    test = {"interval": "1m", "input_series": input_series, "promql_expr_test": [{"expr": grafana(expr, model), "eval_time": "3m", "exp_samples": expected}]}
    run_unit_tests(tmp_path, [], [test])
