"""The vLLM rendering core: the semantics of every object (not snapshots), validation, determinism."""

from __future__ import annotations

import copy
import http.server
import json
import math
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import k8s_schemas
import pytest
import yaml

from ansible_collections.llmops.gpu_inference.plugins.module_utils import _vllm_monitoring as monitoring
from ansible_collections.llmops.gpu_inference.plugins.module_utils._vllm_manifests import (
    GIB,
    READINESS_SCRIPT,
    VllmRenderError,
    render,
)
from ansible_collections.llmops.gpu_inference.plugins.module_utils._vllm_preflight import parse_quantity

SELECTOR_KEYS = ("app.kubernetes.io/name", "app.kubernetes.io/instance")
CONFIG: dict[str, Any] = {
    "namespace": "llm",
    "gateway": {"parent_refs": [{"name": "inference", "namespace": "gateway"}]},
    "ingress": {"host": "llm.example.com", "tls_secret": "llm-tls"},
    "api_key_secret": {"name": "vllm-api-key", "key": "api-key"},
    "monitoring": {"labels": {"release": "kube-prometheus-stack"}},
    "labels": {"team": "ml"},
}
# One of each: dense TP 1, TP 4, a MIG slice, KEDA (the default), HPA, gateway-routed, ingress.
MODELS: list[dict[str, Any]] = [
    {"name": "qwen7b", "served_model_names": ["Qwen/Qwen2.5-7B-Instruct", "qwen7b"], "weights_bytes": 15 * GIB, "max_model_len": 32768},
    {"name": "llama70b", "tensor_parallel_size": 4, "autoscaling": {"type": "keda", "min_replicas": 2, "max_replicas": 6}, "kv_cache_dtype": "fp8"},
    {"name": "mig-small", "gpu_resource": "nvidia.com/mig-3g.40gb", "autoscaling": {"type": "hpa", "min_replicas": 1, "max_replicas": 3}},
    {"name": "dense-hpa", "autoscaling": {"type": "hpa"}, "gpu_product_labels": ["NVIDIA-H100-80GB-HBM3"]},
    {"name": "legacy", "routing": {"gateway": False, "ingress": True}, "autoscaling": {"type": "none"}, "replicas": 2},
]


def rendered(models: list[dict[str, Any]] | None = None, config: dict[str, Any] | None = None) -> dict[str, Any]:
    return render(copy.deepcopy(MODELS if models is None else models), copy.deepcopy(CONFIG if config is None else config))


def one(entry: dict[str, Any], config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The rendered model of a single entry."""
    return rendered([entry], config)["models"][0]


def kind(model: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [obj for obj in model["objects"] if obj["kind"] == name]
    assert len(matches) == 1, f"{name}: {[o['kind'] for o in model['objects']]}"
    return matches[0]


def kinds(model: dict[str, Any]) -> list[str]:
    return [obj["kind"] for obj in model["objects"]]


def container(model: dict[str, Any]) -> dict[str, Any]:
    return kind(model, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def problems_of(models: list[dict[str, Any]], config: dict[str, Any] | None = None) -> list[str]:
    with pytest.raises(VllmRenderError) as info:
        rendered(models, config)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


# =============================================================================================
# Schema validity and determinism
# =============================================================================================


def test_every_object_of_a_multi_model_render_validates():
    result = rendered()
    objects = [obj for model in result["models"] for obj in model["objects"]] + result["shared"]
    k8s_schemas.validate_all(objects)
    rendered_kinds = {obj["kind"] for obj in objects}
    assert rendered_kinds >= {"Service", "Deployment", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor", "ScaledObject"}
    assert rendered_kinds >= {"HorizontalPodAutoscaler", "HTTPRoute", "Ingress", "Namespace", "PrometheusRule", "ConfigMap"}


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "scale-zero", "autoscaling": {"min_replicas": 0, "activation": {"query": 'sum(rate(envoy_requests_total{route="x"}[2m]))'}}},
        {"name": "old-vllm", "vllm_version": "0.15.1", "prestop_sleep_seconds": 0, "security": {"run_as_user": None}},
        {"name": "hostpath", "pipeline_parallel_size": 2, "tensor_parallel_size": 2, "affinity_extra": {"nodeAffinity": {}}},
    ],
    ids=["keda-activation", "old-version-no-prestop", "tp-pp"],
)
def test_variants_validate(entry):
    config = {**CONFIG, "model_storage": {"type": "host_path", "path": "/srv/models"}, "image_pull_secrets": ["regcred"]}
    k8s_schemas.validate_all(one(entry, config)["objects"])


def test_render_is_deterministic_and_yaml_native():
    first = yaml.safe_dump(rendered(), sort_keys=False)
    second = yaml.safe_dump(rendered(), sort_keys=False)
    assert first == second
    assert "&id" not in first  # no shared nodes: the YAML has no anchors
    assert yaml.safe_load(first) == rendered()


def test_render_does_not_change_its_input():
    models, config = copy.deepcopy(MODELS), copy.deepcopy(CONFIG)
    render(models, config)
    assert (models, config) == (MODELS, CONFIG)


def test_models_come_back_in_input_order_with_objects_in_apply_order():
    result = rendered()
    assert [m["name"] for m in result["models"]] == [m["name"] for m in MODELS]
    order = [
        "Service",
        "Deployment",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
        "ScaledObject",
        "HorizontalPodAutoscaler",
        "HTTPRoute",
        "Ingress",
    ]
    for model in result["models"]:
        assert kinds(model) == sorted(kinds(model), key=order.index)
        assert model["summary"]["kinds"] == kinds(model)
        assert all(obj["metadata"]["name"] == model["name"] and obj["metadata"]["namespace"] == "llm" for obj in model["objects"])


# =============================================================================================
# Settings resolution
# =============================================================================================


def test_entry_beats_defaults_beats_builtin_and_null_falls_through():
    config = {**CONFIG, "defaults": {"memory": "24Gi", "max_model_len": 8192, "shm_size": None}}
    model = one({"name": "m", "memory": None, "max_model_len": 4096, "cpu": None}, config)
    assert model["settings"]["memory"] == "24Gi"  # entry null -> defaults
    assert model["settings"]["max_model_len"] == 4096  # entry wins
    assert model["settings"]["shm_size"] == "1Gi"  # defaults null -> built-in
    assert model["settings"]["cpu"] == "4"
    assert flag(container(model)["args"], "--max-model-len") == "4096"


def test_autoscaling_merges_key_by_key_unless_the_type_changes():
    config = {**CONFIG, "defaults": {"autoscaling": {"max_replicas": 8, "queue_threshold": 10}}}
    keda = one({"name": "m", "autoscaling": {"min_replicas": 2}}, config)
    assert keda["summary"]["autoscaling"] == "keda 2-8"
    assert kind(keda, "ScaledObject")["spec"]["triggers"][0]["metadata"]["threshold"] == "10"
    hpa = one({"name": "m", "autoscaling": {"type": "hpa"}}, config)  # the defaults' KEDA keys do not leak
    assert hpa["summary"]["autoscaling"] == "hpa 1-8"


def test_defaults_lists_are_replaced_not_merged():
    config = {**CONFIG, "defaults": {"extra_args": ["--enable-prefix-caching"]}}
    model = one({"name": "m", "extra_args": ["--seed", "1"]}, config)
    assert container(model)["args"][-2:] == ["--seed", "1"]
    assert "--enable-prefix-caching" not in container(model)["args"]


def test_image_defaults_to_repository_and_version():
    config = {**CONFIG, "image_repository": "registry.example.internal:5000/vllm/vllm-openai", "vllm_version": "0.27.1"}
    model = one({"name": "m"}, config)
    assert container(model)["image"] == "registry.example.internal:5000/vllm/vllm-openai:v0.27.1"
    assert kind(model, "Deployment")["metadata"]["labels"]["app.kubernetes.io/version"] == "0.27.1"


# =============================================================================================
# GPUs, memory, drain, probes
# =============================================================================================


@pytest.mark.parametrize(("tp", "pp"), [(1, 1), (4, 1), (2, 2), (1, 2)])
def test_gpu_limit_is_tp_times_pp_in_requests_limits_and_args(tp, pp):
    model = one({"name": "m", "tensor_parallel_size": tp, "pipeline_parallel_size": pp})
    resources = container(model)["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == tp * pp
    assert resources["limits"]["nvidia.com/gpu"] == tp * pp
    assert model["summary"]["gpu_limit"] == tp * pp
    args = container(model)["args"]
    assert flag(args, "--tensor-parallel-size") == str(tp)
    assert flag(args, "--pipeline-parallel-size") == (str(pp) if pp > 1 else None)


def test_mig_slice_gets_one_mig_device():
    model = one({"name": "m", "gpu_resource": "nvidia.com/mig-3g.40gb"})
    resources = container(model)["resources"]
    assert resources["limits"] == {"memory": "17Gi", "nvidia.com/mig-3g.40gb": 1}
    assert "nvidia.com/gpu" not in resources["requests"]


@pytest.mark.parametrize(("key", "value"), [("tensor_parallel_size", 2), ("pipeline_parallel_size", 2)])
def test_parallelism_on_mig_is_an_error(key, value):
    found = problems_of([{"name": "m", "gpu_resource": "nvidia.com/mig-1g.10gb", key: value}])
    assert any("vllm_models[0] m: tensor_parallel_size: TP x PP = 2 on MIG resource nvidia.com/mig-1g.10gb" in line for line in found)


def test_args_are_explicit_and_command_is_vllm():
    model = one({"name": "m", "model_dir": "Qwen2.5-7B", "served_model_names": ["a", "b"], "max_num_seqs": 64, "dtype": "bfloat16"})
    c = container(model)
    assert c["command"] == ["vllm"]
    assert c["args"][:2] == ["serve", "/models/Qwen2.5-7B/current"]
    assert c["args"][c["args"].index("--served-model-name") + 1 : c["args"].index("--served-model-name") + 3] == ["a", "b"]
    assert (flag(c["args"], "--port"), flag(c["args"], "--max-num-seqs"), flag(c["args"], "--dtype")) == ("8000", "64", "bfloat16")
    assert c["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]


@pytest.mark.parametrize(
    ("entry", "memory", "shm"),
    [
        ({}, "17Gi", "1Gi"),  # 16Gi + 1Gi for one GPU
        ({"tensor_parallel_size": 2}, "18Gi", "2Gi"),
        ({"memory": "24Gi", "shm_size": "8Gi"}, "32Gi", "8Gi"),
        ({"memory": "1536Mi", "shm_size": "512Mi"}, "2Gi", "512Mi"),
    ],
)
def test_memory_limit_is_memory_plus_shm_and_shm_is_a_sized_memory_emptydir(entry, memory, shm):
    model = one({"name": "m", **entry})
    c = container(model)
    assert c["resources"]["requests"]["memory"] == c["resources"]["limits"]["memory"] == memory
    settings = model["settings"]
    assert parse_quantity(memory, "m") == parse_quantity(settings["memory"], "m") + parse_quantity(shm, "s")
    volumes = {v["name"]: v for v in kind(model, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": shm}
    assert {"name": "shm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    assert "cpu" not in c["resources"]["limits"]


def test_explicit_memory_limit_overrides_request_and_limit():
    c = container(one({"name": "m", "memory_limit": "40Gi", "shm_size": "4Gi"}))
    assert c["resources"]["requests"]["memory"] == c["resources"]["limits"]["memory"] == "40Gi"


def test_memory_limit_too_small_for_shm_is_an_error():
    found = problems_of([{"name": "m", "memory_limit": "10Gi", "shm_size": "8Gi"}])
    assert found == [
        "vllm_models[0] m: memory_limit: 10Gi leaves vLLM less than 4Gi beside the 8Gi memory-backed /dev/shm, which counts against the limit; "
        "raise it or use memory"
    ]


@pytest.mark.parametrize(
    ("version", "prestop", "shutdown", "drains"),
    [("0.29.0", 15, 60, True), ("0.18.0", 5, 300, True), ("0.17.1", 15, 60, False), ("0.12.0", 20, 60, False)],
)
def test_grace_period_covers_prestop_and_drain(version, prestop, shutdown, drains):
    model = one({"name": "m", "vllm_version": version, "prestop_sleep_seconds": prestop, "shutdown_timeout_seconds": shutdown})
    pod = kind(model, "Deployment")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    grace = pod["terminationGracePeriodSeconds"]
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(prestop)]
    if drains:
        assert flag(c["args"], "--shutdown-timeout") == str(shutdown)
        assert grace >= prestop + shutdown + 15
    else:
        assert "--shutdown-timeout" not in c["args"]  # vLLM < 0.18 exits with "unrecognized arguments"
        assert grace == prestop + 30
    assert model["summary"]["termination_grace_period_seconds"] == grace


@pytest.mark.parametrize(("version", "present"), [("0.16.0", True), ("0.29.0", True), ("0.15.1", False)])
def test_access_log_flag_only_from_0_16(version, present):
    args = container(one({"name": "m", "vllm_version": version}))["args"]
    assert (flag(args, "--disable-access-log-for-endpoints") == "/health,/metrics") is present


@pytest.mark.parametrize(
    ("entry", "cold", "budget"),
    [
        ({}, 600, 1200),  # weights unknown
        ({"weights_bytes": 15 * GIB}, 450, 900),  # 300 + 10 s per GiB
        ({"weights_bytes": 15 * GIB + 1}, 460, 920),  # rounded up
        ({"cold_start_seconds": 100, "startup_budget_seconds": 95}, 100, 95),
    ],
)
def test_startup_probe_is_sized_to_the_load_time(entry, cold, budget):
    model = one({"name": "m", "autoscaling": {"type": "none"}, **entry})
    assert model["settings"]["cold_start_seconds"] == cold
    probe = container(model)["startupProbe"]
    assert probe["httpGet"] == {"path": "/health", "port": "http"}
    assert probe["periodSeconds"] * probe["failureThreshold"] >= budget
    assert probe["failureThreshold"] == math.ceil(budget / 10)
    assert kind(model, "Deployment")["spec"]["progressDeadlineSeconds"] >= budget


def test_liveness_and_readiness_probes():
    c = container(one({"name": "m", "served_model_names": ["first", "second"]}))
    assert c["livenessProbe"] == {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 15, "timeoutSeconds": 5, "failureThreshold": 4}
    readiness = c["readinessProbe"]
    assert (readiness["periodSeconds"], readiness["timeoutSeconds"], readiness["failureThreshold"]) == (10, 5, 3)
    assert readiness["exec"]["command"] == ["python3", "-c", READINESS_SCRIPT, "http://127.0.0.1:8000", "first"]


# --- the readiness script, run against a local HTTP server ---------------------------------------


class FakeVllm(http.server.BaseHTTPRequestHandler):
    health: ClassVar[int] = 200
    models: ClassVar[list[str]] = []
    api_key: ClassVar[str | None] = None

    def do_GET(self) -> None:
        if self.api_key and self.headers.get("Authorization") != f"Bearer {self.api_key}":
            self._send(401, {"error": "unauthorized"})
        elif self.path == "/health":
            self._send(self.health, {})
        elif self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": name, "object": "model"} for name in self.models]})
        else:
            self._send(404, {})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_vllm() -> Iterator[tuple[str, type[FakeVllm]]]:
    handler = type("Handler", (FakeVllm,), {"health": 200, "models": [], "api_key": None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def run_readiness(base_url: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = container(one({"name": "m", "served_model_names": ["Qwen/Qwen2.5-7B-Instruct", "qwen"]}))["readinessProbe"]["exec"]["command"]
    assert command[0] == "python3"
    argv = [sys.executable, *command[1:3], base_url, *command[4:]]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin", **(env or {})}, check=False)


@pytest.mark.parametrize(
    ("health", "models", "ready"),
    [
        (200, ["Qwen/Qwen2.5-7B-Instruct", "qwen"], True),
        (200, ["qwen"], False),  # only the second served name: not the one the metrics and probes use
        (200, [], False),
        (503, ["Qwen/Qwen2.5-7B-Instruct"], False),  # EngineCore dead
    ],
)
def test_readiness_script_is_ready_only_when_healthy_and_the_model_is_listed(fake_vllm, health, models, ready):
    url, handler = fake_vllm
    handler.health, handler.models = health, models
    result = run_readiness(url)
    assert (result.returncode == 0) is ready, result.stderr


def test_readiness_script_sends_the_api_key(fake_vllm):
    url, handler = fake_vllm
    handler.models, handler.api_key = ["Qwen/Qwen2.5-7B-Instruct"], "s3cret"
    assert run_readiness(url).returncode == 1
    assert run_readiness(url, {"VLLM_API_KEY": "wrong"}).returncode == 1
    assert run_readiness(url, {"VLLM_API_KEY": "s3cret"}).returncode == 0


def test_readiness_script_fails_when_nothing_listens():
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeVllm) as server:
        port = server.server_address[1]
    result = run_readiness(f"http://127.0.0.1:{port}")
    assert result.returncode == 1
    assert "not ready" in result.stderr


# =============================================================================================
# Pod, labels, security
# =============================================================================================


def test_labels_common_on_every_object_and_selectors_without_version():
    result = rendered()
    for model in result["models"]:
        for obj in model["objects"]:
            labels = obj["metadata"]["labels"]
            assert labels["app.kubernetes.io/instance"] == model["name"]
            assert labels["app.kubernetes.io/version"] == "0.29.0"
            assert labels["app.kubernetes.io/managed-by"] == "llmops.gpu_inference"
            assert labels["team"] == "ml"
        deployment = kind(model, "Deployment")
        assert deployment["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": model["name"]}


def test_pod_security_env_and_volumes():
    model = one({"name": "m", "env": {"VLLM_LOGGING_LEVEL": "DEBUG"}})
    pod = kind(model, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == {
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    c = pod["containers"][0]
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == env["VLLM_NO_USAGE_STATS"] == "1"
    assert env["HOME"] == env["XDG_CACHE_HOME"] == "/cache"
    assert env["VLLM_API_KEY"] == {"secretKeyRef": {"name": "vllm-api-key", "key": "api-key"}}
    assert env["VLLM_LOGGING_LEVEL"] == "DEBUG"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "llm-models", "readOnly": True}
    assert volumes["cache"]["emptyDir"] == {"sizeLimit": "10Gi"}
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in c["volumeMounts"]
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["enableServiceLinks"] is False


def test_image_default_user_drops_run_as_non_root():
    pod = kind(one({"name": "m", "security": {"run_as_user": None}}), "Deployment")["spec"]["template"]["spec"]
    assert "runAsUser" not in pod["securityContext"]
    assert "runAsNonRoot" not in pod["securityContext"]


def test_no_api_key_secret_means_no_api_key_env():
    config = {**CONFIG, "api_key_secret": None}
    assert "VLLM_API_KEY" not in {e["name"] for e in container(one({"name": "m"}, config))["env"]}


def test_host_path_storage_is_a_read_only_directory():
    config = {**CONFIG, "model_storage": {"type": "host_path", "path": "/srv/models"}}
    pod = kind(one({"name": "m"}, config), "Deployment")["spec"]["template"]["spec"]
    assert pod["volumes"][0] == {"name": "models", "hostPath": {"path": "/srv/models", "type": "Directory"}}


def test_gpu_product_labels_become_required_node_affinity_and_spread_is_preferred():
    model = one({"name": "m", "gpu_product_labels": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H200"]})
    pod = kind(model, "Deployment")["spec"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H200"]}]}]
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert anti["weight"] == 100
    assert anti["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert pod["topologySpreadConstraints"][0]["whenUnsatisfiable"] == "ScheduleAnyway"
    assert "nodeAffinity" not in kind(one({"name": "m"}), "Deployment")["spec"]["template"]["spec"]["affinity"]


def test_affinity_extra_terms_are_anded_with_the_gpu_product():
    extra = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]
            }
        }
    }
    pod = kind(one({"name": "m", "gpu_product_labels": ["H100"], "affinity_extra": extra}), "Deployment")["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert [e["key"] for e in term["matchExpressions"]] == ["nvidia.com/gpu.product", "zone"]


# =============================================================================================
# Replicas, PDB, autoscaling
# =============================================================================================


@pytest.mark.parametrize(
    ("entry", "pdb"),
    [
        ({"autoscaling": {"type": "none"}, "replicas": 1}, False),
        ({"autoscaling": {"type": "none"}, "replicas": 2}, True),
        ({"autoscaling": {"type": "keda", "min_replicas": 1, "max_replicas": 4}}, False),
        ({"autoscaling": {"type": "keda", "min_replicas": 2, "max_replicas": 4}, "replicas": 1}, True),
        ({"autoscaling": {"type": "hpa", "min_replicas": 3}}, True),
        ({"autoscaling": {"type": "none"}, "replicas": 3, "pdb": False}, False),
    ],
)
def test_pdb_only_when_the_lowest_replica_count_is_at_least_two(entry, pdb):
    model = one({"name": "m", **entry})
    assert ("PodDisruptionBudget" in kinds(model)) is pdb
    assert model["summary"]["pdb"] is pdb
    if pdb:
        spec = kind(model, "PodDisruptionBudget")["spec"]
        assert spec["maxUnavailable"] == 1
        assert "minAvailable" not in spec
        assert spec["selector"] == kind(model, "Deployment")["spec"]["selector"]


@pytest.mark.parametrize(("scaler", "has_replicas"), [("keda", False), ("hpa", False), ("none", True)])
def test_autoscaled_deployments_omit_replicas(scaler, has_replicas):
    model = one({"name": "m", "replicas": 3, "autoscaling": {"type": scaler}})
    spec = kind(model, "Deployment")["spec"]
    assert ("replicas" in spec) is has_replicas
    if has_replicas:
        assert spec["replicas"] == 3


def test_keda_scaled_object():
    model = rendered()["models"][0]  # qwen7b: KEDA by default, two served names, 15 GiB of weights
    so = kind(model, "ScaledObject")["spec"]
    assert "HorizontalPodAutoscaler" not in kinds(model)
    assert so["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "qwen7b"}
    assert (so["minReplicaCount"], so["maxReplicaCount"], so["pollingInterval"]) == (1, 4, 15)
    queries = monitoring.keda_queries("llm", "Qwen/Qwen2.5-7B-Instruct")
    triggers = {t["name"]: t for t in so["triggers"]}
    assert set(triggers) == {"queue", "kv"}
    for name, trigger in triggers.items():
        assert trigger["type"] == "prometheus"
        assert trigger["metricType"] == "AverageValue"
        assert "metricName" not in trigger["metadata"]
        assert trigger["metadata"]["ignoreNullValues"] == "false"
        assert trigger["metadata"]["query"] == queries[name]
        assert trigger["metadata"]["query"].startswith("sum(")
        assert 'namespace="llm"' in trigger["metadata"]["query"]
        assert 'model_name="Qwen/Qwen2.5-7B-Instruct"' in trigger["metadata"]["query"]
        assert trigger["metadata"]["serverAddress"] == "http://prometheus-operated.monitoring.svc:9090"
    assert (triggers["queue"]["metadata"]["threshold"], triggers["kv"]["metadata"]["threshold"]) == ("5", "0.8")
    cold = model["settings"]["cold_start_seconds"]
    behavior = so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] >= cold
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= max(300, cold)
    assert so["cooldownPeriod"] >= cold
    assert so["fallback"] == {"failureThreshold": 3, "replicas": 1}


def test_keda_scale_from_zero_needs_an_activation_signal():
    found = problems_of([{"name": "m", "autoscaling": {"min_replicas": 0}}])
    assert len(found) == 1
    assert found[0].startswith("vllm_models[0] m: autoscaling.activation: min_replicas 0 needs an activation signal")
    query = 'sum(rate(envoy_cluster_upstream_rq_total{envoy_cluster_name="llm/m"}[2m]))'
    so = kind(one({"name": "m", "autoscaling": {"min_replicas": 0, "activation": {"query": query, "threshold": "0"}}}), "ScaledObject")["spec"]
    activation = so["triggers"][2]
    assert activation["name"] == "activation"
    assert activation["metadata"]["query"] == query
    assert activation["metadata"]["activationThreshold"] == "0"
    assert so["minReplicaCount"] == 0
    assert so["fallback"]["replicas"] == 1


@pytest.mark.parametrize("key", ["scale_up_stabilization_seconds", "scale_down_stabilization_seconds", "cooldown_period"])
def test_keda_windows_shorter_than_the_cold_start_are_errors(key):
    found = problems_of([{"name": "m", "cold_start_seconds": 900, "autoscaling": {key: 600}}])
    assert found == [
        f"vllm_models[0] m: autoscaling.{key}: 600 s is shorter than the cold start (900 s, cold_start_seconds): a replica still loading "
        "would be counted or removed as idle; use at least the cold start"
    ]


@pytest.mark.parametrize(("gpu_resource", "metric", "target"), [("nvidia.com/gpu", "gpu_util", "70"), ("nvidia.com/mig-3g.40gb", "gpu_engine_active", "0.7")])
def test_hpa_uses_the_dcgm_metric_of_the_resource(gpu_resource, metric, target):
    result = rendered([{"name": "m", "gpu_resource": gpu_resource, "autoscaling": {"type": "hpa"}}])
    model = result["models"][0]
    assert "ScaledObject" not in kinds(model)
    hpa = kind(model, "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 8)
    assert hpa["scaleTargetRef"]["name"] == "m"
    assert hpa["metrics"] == [{"type": "Pods", "pods": {"metric": {"name": metric}, "target": {"type": "AverageValue", "averageValue": target}}}]
    assert hpa["behavior"]["scaleUp"] == {"stabilizationWindowSeconds": 30, "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}
    assert hpa["behavior"]["scaleDown"] == {"stabilizationWindowSeconds": 300, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 180}]}
    assert result["prometheus_adapter_rules"] == monitoring.prometheus_adapter_rules([metric])


def test_adapter_rules_cover_every_hpa_metric_and_are_empty_without_hpa():
    assert rendered()["prometheus_adapter_rules"] == monitoring.prometheus_adapter_rules(["gpu_engine_active", "gpu_util"])
    assert rendered([{"name": "m"}])["prometheus_adapter_rules"] == []


def test_never_both_scalers_and_none_without_autoscaling():
    for model in rendered()["models"]:
        scalers = {"ScaledObject", "HorizontalPodAutoscaler"} & set(kinds(model))
        expected = {"keda": {"ScaledObject"}, "hpa": {"HorizontalPodAutoscaler"}, "none": set()}[model["settings"]["autoscaling"]["type"]]
        assert scalers == expected


def test_hpa_target_above_one_on_mig_is_an_error():
    found = problems_of([{"name": "m", "gpu_resource": "nvidia.com/mig-1g.10gb", "autoscaling": {"type": "hpa", "target": 70}}])
    assert found == ["vllm_models[0] m: autoscaling.target: 70: on MIG the HPA uses DCGM_FI_PROF_GR_ENGINE_ACTIVE, a 0-1 fraction (0.7 = 70%)"]


# =============================================================================================
# Service, NetworkPolicy, monitoring, routes
# =============================================================================================


def pod_labels(model: dict[str, Any]) -> dict[str, str]:
    return kind(model, "Deployment")["spec"]["template"]["metadata"]["labels"]


def test_service_selects_the_pods_on_the_named_port():
    for model in rendered()["models"]:
        spec = kind(model, "Service")["spec"]
        assert spec["selector"].items() <= pod_labels(model).items()
        assert spec["selector"] == kind(model, "Deployment")["spec"]["selector"]["matchLabels"]
        assert spec["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
        assert spec["type"] == "ClusterIP"


def test_network_policy_admits_only_the_gateway_and_prometheus_to_port_8000():
    result = rendered()
    for model in result["models"]:
        spec = kind(model, "NetworkPolicy")["spec"]
        assert spec["podSelector"]["matchLabels"].items() <= pod_labels(model).items()
        assert spec["podSelector"]["matchLabels"] == kind(model, "Deployment")["spec"]["selector"]["matchLabels"]
        assert spec["policyTypes"] == ["Ingress"]
        for rule in spec["ingress"]:
            assert rule["ports"] == [{"port": 8000, "protocol": "TCP"}]
            assert all("ipBlock" not in peer for peer in rule["from"])
        clients, scraper = spec["ingress"]
        expected = ["ingress-nginx"] if model["name"] == "legacy" else ["gateway"]
        assert clients["from"] == [{"namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": expected}]}}]
        (peer,) = scraper["from"]  # one peer: namespace AND pod labels
        assert peer["namespaceSelector"]["matchExpressions"][0]["values"] == ["monitoring"]
        assert peer["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}


def test_network_policy_without_routing_admits_only_prometheus_and_explicit_namespaces():
    config = {**CONFIG, "gateway": {"parent_refs": []}}
    spec = kind(one({"name": "m"}, config), "NetworkPolicy")["spec"]
    assert len(spec["ingress"]) == 1
    assert "podSelector" in spec["ingress"][0]["from"][0]
    config = {**CONFIG, "gateway": {"parent_refs": [{"name": "gw"}], "namespaces": ["edge", "apps"]}}
    clients = kind(one({"name": "m"}, config), "NetworkPolicy")["spec"]["ingress"][0]
    assert clients["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == ["apps", "edge"]


def test_network_policy_can_be_switched_off():
    assert "NetworkPolicy" not in kinds(one({"name": "m"}, {**CONFIG, "network_policy": False}))


def test_service_monitor_selects_the_service():
    for model in rendered()["models"]:
        monitor = kind(model, "ServiceMonitor")
        service = kind(model, "Service")
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        assert monitor["spec"]["endpoints"] == [{"port": service["spec"]["ports"][0]["name"], "path": "/metrics", "interval": "15s"}]
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_http_route_matches_the_header_per_served_name():
    model = rendered()["models"][0]
    route = kind(model, "HTTPRoute")["spec"]
    assert route["parentRefs"] == [{"name": "inference", "namespace": "gateway"}]
    (rule,) = route["rules"]
    assert [m["headers"] for m in rule["matches"]] == [
        [{"type": "Exact", "name": "x-model-id", "value": "Qwen/Qwen2.5-7B-Instruct"}],
        [{"type": "Exact", "name": "x-model-id", "value": "qwen7b"}],
    ]
    assert all(m["path"] == {"type": "PathPrefix", "value": "/v1"} for m in rule["matches"])
    assert rule["backendRefs"] == [{"name": "qwen7b", "port": 8000}]
    assert rule["timeouts"] == {"request": "600s", "backendRequest": "600s"}
    assert model["summary"]["route"] == "x-model-id: Qwen/Qwen2.5-7B-Instruct, qwen7b"


def test_ingress_serves_name_dot_host_with_streaming_annotations():
    model = rendered()["models"][4]
    assert "HTTPRoute" not in kinds(model)
    ingress = kind(model, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["rules"][0]["host"] == "legacy.llm.example.com"
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"] == {"service": {"name": "legacy", "port": {"number": 8000}}}
    assert ingress["spec"]["tls"] == [{"hosts": ["legacy.llm.example.com"], "secretName": "llm-tls"}]
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "300"


def test_shared_objects():
    shared = rendered()["shared"]
    assert [obj["kind"] for obj in shared] == ["Namespace", "PrometheusRule", "ConfigMap"]
    assert shared[0]["metadata"]["name"] == "llm"
    assert shared[1] == monitoring.prometheus_rule("llm", CONFIG)
    assert shared[2] == monitoring.dashboard_configmap("llm", CONFIG)
    off = {**CONFIG, "manage_namespace": False, "monitoring": {"prometheus_rule": False, "dashboard": False, "service_monitor": False}}
    result = rendered([{"name": "m"}], off)
    assert result["shared"] == []
    assert "ServiceMonitor" not in kinds(result["models"][0])


def test_summary():
    summary = rendered()["models"][1]["summary"]
    assert summary == {
        "name": "llama70b",
        "served_model_names": ["llama70b"],
        "image": "vllm/vllm-openai:v0.29.0",
        "gpu_resource": "nvidia.com/gpu",
        "gpu_limit": 4,
        "replicas": 2,
        "autoscaling": "keda 2-6",
        "pdb": True,
        "shm_size": "2Gi",
        "memory_request": "18Gi",
        "memory_limit": "18Gi",
        "startup_budget_seconds": 1200,
        "termination_grace_period_seconds": 90,
        "route": "x-model-id: llama70b",
        "kinds": ["Service", "Deployment", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor", "ScaledObject", "HTTPRoute"],
    }


# =============================================================================================
# Validation: every problem, each naming the model and the key
# =============================================================================================


def test_errors_list_every_problem():
    models = [
        {"name": "Bad_Name", "replica": 2},
        {"name": "a", "tensor_parallel_size": 2, "gpu_resource": "nvidia.com/mig-1g.10gb", "image": "vllm/vllm-openai:latest"},
        {"name": "b", "served_model_names": ["shared"], "extra_args": ["--max-model-len=4096"], "autoscaling": {"min_replicas": 0}},
        {"name": "c", "served_model_names": ["shared"], "memory_limit": "4Gi", "autoscaling": {"scale_up_stabilization_seconds": 10}},
        {"name": "a"},
    ]
    found = problems_of(models, {**CONFIG, "namespace": "LLM", "bogus": 1})
    expected = [
        "vllm_bogus: (variable): not a render setting",
        "vllm_namespace: (value): must be a DNS-1123 label, got 'LLM'",
        "vllm_models[0] Bad_Name: replica: unknown key (allowed: affinity_extra, annotations, autoscaling,",
        "vllm_models[0] Bad_Name: name: must be a DNS-1123 label",
        "vllm_models[1] a: image: vllm/vllm-openai:latest is not pinned",
        "vllm_models[1] a: tensor_parallel_size: TP x PP = 2 on MIG resource",
        "vllm_models[2] b: extra_args: --max-model-len is one of the flags the role generates: set max_model_len instead",
        "vllm_models[2] b: autoscaling.activation: min_replicas 0 needs",
        "vllm_models[3] c: memory_limit: 4Gi leaves vLLM less than 4Gi",
        "vllm_models[3] c: autoscaling.scale_up_stabilization_seconds: 10 s is shorter than the cold start",
        "vllm_models[3] c: served_model_names: shared is also served by b",
        "vllm_models[4] a: name: a is also the name of vllm_models[1]",
    ]
    for fragment in expected:
        assert any(line.startswith(fragment) for line in found), (fragment, found)
    assert len(found) == len(expected), found


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"name": "9lives"}, "name: must be at most 63 characters and start with a letter"),
        ({"name": "x" * 64}, "name: must be at most 63 characters"),
        ({"name": "m", "served_model_names": ["a", "a"]}, "served_model_names: lists a name twice"),
        ({"name": "m", "served_model_names": []}, "served_model_names: must list at least one name"),
        ({"name": "m", "image": "vllm/vllm-openai"}, "image: vllm/vllm-openai is not pinned"),
        ({"name": "m", "image": "registry:5000/vllm/vllm-openai"}, "image: registry:5000/vllm/vllm-openai is not pinned"),
        ({"name": "m", "image": "vllm/vllm-openai@sha256:abc"}, "image: vllm/vllm-openai@sha256:abc: a digest must be"),
        ({"name": "m", "vllm_version": "latest"}, "vllm_version: must be a release number"),
        ({"name": "m", "gpu_resource": "amd.com/gpu"}, "gpu_resource: must be nvidia.com/gpu"),
        ({"name": "m", "gpu_memory_utilization": 1.5}, "gpu_memory_utilization: must be a fraction"),
        ({"name": "m", "dtype": "fp16"}, "dtype: must be one of"),
        ({"name": "m", "env": {"OMP_NUM_THREADS": 8}}, "env.OMP_NUM_THREADS: must be a string (quote it)"),
        ({"name": "m", "env": {"VLLM_API_KEY": "x"}}, "env.VLLM_API_KEY: never put the API key in the pod spec"),
        ({"name": "m", "labels": {"app.kubernetes.io/instance": "x"}}, "labels.app.kubernetes.io/instance: is set by the role"),
        ({"name": "m", "labels": {"tier": "a b"}}, "labels.tier: label value 'a b'"),
        ({"name": "m", "autoscaling": {"type": "knative"}}, "autoscaling.type: must be keda, hpa or none"),
        (
            {"name": "m", "autoscaling": {"type": "hpa", "queue_threshold": 5}},
            "autoscaling.queue_threshold: unknown key (allowed: max_replicas, min_replicas, target, type)",
        ),
        ({"name": "m", "autoscaling": {"min_replicas": 5, "max_replicas": 2}}, "autoscaling.min_replicas: 5 is above max_replicas 2"),
        ({"name": "m", "autoscaling": {"type": "hpa", "min_replicas": 0}}, "autoscaling.min_replicas: must be an integer >= 1"),
        ({"name": "m", "routing": {"ingress": True}}, "routing.ingress: is true but vllm_ingress.host is empty"),
        ({"name": "m", "routing": {"gateway": "yes"}}, "routing.gateway: must be true or false"),
        ({"name": "m", "pdb": True}, "pdb: must be auto"),
        ({"name": "m", "memory": "lots"}, "memory: memory 'lots' is not a Kubernetes memory quantity"),
        ({"name": "m", "security": {"run_as_user": 1000, "privileged": True}}, "security.privileged: unknown key"),
        ({"name": "m", "model_dir": "../etc"}, "model_dir: must be a relative directory"),
    ],
)
def test_entry_problems_name_the_model_and_the_key(entry, fragment):
    config = {**CONFIG, "ingress": {}}
    found = problems_of([entry], config)
    assert any(line.startswith(f"vllm_models[0] {entry['name']}: {fragment}") for line in found), found


@pytest.mark.parametrize(
    "args", [["--max-model-len=4096"], ["--tensor-parallel-size", "2"], ["-tp=2"], ["--served-model-name x"], ["--shutdown-timeout", "5"], ["--port", "9000"]]
)
def test_generated_flags_in_extra_args_are_errors(args):
    found = problems_of([{"name": "m", "extra_args": args}])
    assert len(found) == 1
    assert found[0].startswith("vllm_models[0] m: extra_args: -")
    assert "is one of the flags the role generates" in found[0]


def test_other_extra_args_are_appended_verbatim():
    args = container(one({"name": "m", "extra_args": ["--enable-prefix-caching", "--safetensors-load-strategy", "eager"]}))["args"]
    assert args[-3:] == ["--enable-prefix-caching", "--safetensors-load-strategy", "eager"]


def test_unknown_entry_key_names_the_key_and_the_allowed_keys():
    (line,) = problems_of([{"name": "m", "tensor_paralel_size": 2}])
    assert line.startswith("vllm_models[0] m: tensor_paralel_size: unknown key (allowed: affinity_extra, annotations, autoscaling, ")
    assert "tensor_parallel_size" in line


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"gateway": {"parent_refs": [{"nmae": "gw"}]}}, "vllm_gateway: parent_refs[0].nmae: unknown key"),
        (
            {"gateway": {"request_timeout": "60s", "backend_request_timeout": "120s"}},
            "vllm_gateway: backend_request_timeout: 120s is longer than request_timeout",
        ),
        ({"gateway": {"header": "x model"}}, "vllm_gateway: header: must be an HTTP header name"),
        ({"model_storage": {"type": "nfs"}}, "vllm_model_storage: type: must be pvc or host_path"),
        ({"image_repository": "vllm/vllm-openai:v0.29.0"}, "vllm_image_repository: (value): must not carry a tag or digest"),
        ({"monitoring": {"scrape_intervall": "15s"}}, "vllm_monitoring: scrape_intervall: unknown key"),
        ({"alerts": {"kv_cache_usage": 90}}, "vllm_alerts.kv_cache_usage: vllm:kv_cache_usage_perc is a 0-1 fraction"),
        ({"defaults": {"name": "x"}}, "vllm_defaults: name: unknown key"),
        ({"monitoring": {"dashboard_namespace": "Grafana"}}, "vllm_monitoring: dashboard_namespace: must be a namespace name"),
        ({"prometheus": {"server_address": "prometheus:9090"}}, "vllm_prometheus: server_address: must be an http(s) URL"),
    ],
)
def test_config_problems_name_the_role_variable(config, fragment):
    found = problems_of([{"name": "m"}], {**CONFIG, **config})
    assert any(line.startswith(fragment) for line in found), found


def test_empty_or_wrong_models_are_errors():
    assert problems_of([]) == ["vllm_models: (value): is empty: list at least one model, for example [{name: qwen2-5-7b-instruct}]"]
    assert problems_of(["qwen"])[0] == "vllm_models[0]: (entry): must be a mapping with at least a name, got str"
