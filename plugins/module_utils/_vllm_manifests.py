# Copyright: (c) 2026, llmops.gpu_inference contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render the Kubernetes objects that serve vLLM models (contract: .build/specs/vllm.md).

Private to this collection: no AnsibleModule import, no I/O. :func:`render` takes the ``vllm_models`` list
and the role's variables without the ``vllm_`` prefix and returns every object, in apply order, or raises
:class:`VllmRenderError` listing every problem of every entry (one per line, each naming the model and the key)
before anything is built. The same input always gives the same output (no timestamps, no set order).

Settings of a model: built-in default < ``config["defaults"]`` < the entry; a null value falls through to the
layer below; mappings merge key by key (an ``autoscaling`` of another ``type`` replaces the defaults' one), lists
are replaced. Facts from ../shared/reference/vllm-on-kubernetes.md (cited as "ref §N"):

- GPUs (ref §2.4): the GPU limit is always TP x PP; a MIG slice is one CUDA device, so TP x PP must be 1 on it.
- Memory (ref §5): a memory-backed /dev/shm counts against the container's memory limit, so request = limit =
  ``memory`` (vLLM's own RSS) + ``shm_size``.
- Drain (ref §2.3, §5): vLLM >= 0.18 drains in-flight requests for ``--shutdown-timeout`` seconds after SIGTERM;
  the pod gets a preStop sleep (endpoints and gateways stop routing first) and a grace period of
  preStop + shutdown timeout + 15 s. Older versions abort on SIGTERM: grace = preStop + 30 s.
- Probes (ref §2.2): the HTTP server starts only after the model is loaded, so a startupProbe sized to the
  load time; readiness = ``/health`` 200 and the first served name listed by ``/v1/models``.
- Autoscaling (ref §3.1, §3.3): KEDA on ``sum()`` queries (one sample) scoped by namespace and ``model_name``,
  ``AverageValue``, ``ignoreNullValues: "false"``, no ``metricName``; windows at least the cold start; scale from
  zero only with an activation signal that exists without a vLLM pod. HPA (opt-in) on DCGM GPU utilisation via
  prometheus-adapter (MIG: ``DCGM_FI_PROF_GR_ENGINE_ACTIVE``).
- Security (ref §2.2): ``--api-key`` guards only /v1, so a NetworkPolicy admits the gateway (or ingress)
  namespaces and the Prometheus pods to port 8000 and nothing else.
"""

from __future__ import annotations

import copy
import math
import re
from typing import Any, Callable, Dict, Mapping, Sequence

from ansible_collections.llmops.gpu_inference.plugins.module_utils._vllm_monitoring import (
    _DURATION as PROMETHEUS_DURATION,
)
from ansible_collections.llmops.gpu_inference.plugins.module_utils._vllm_monitoring import (
    MONITORING_DEFAULTS,
    VLLM_CONTAINER,
    VllmMonitoringError,
    alert_settings,
    dashboard_configmap,
    keda_queries,
    monitoring_settings,
    prometheus_adapter_rules,
    prometheus_rule,
)
from ansible_collections.llmops.gpu_inference.plugins.module_utils._vllm_preflight import (
    DTYPE_CHOICES,
    GIB,
    KV_CACHE_DTYPE_CHOICES,
    MIG_RESOURCE,
    PreflightInputError,
    cli_flags,
    parse_quantity,
    parse_version,
)

Settings = Dict[str, Any]
K8sObject = Dict[str, Any]

# =============================================================================================
# Constants. Change them here, with their source, and nowhere else.
# =============================================================================================

PORT = 8000
PORT_NAME = "http"
MODEL_VOLUME, SHM_VOLUME, CACHE_VOLUME = "models", "shm", "cache"
CACHE_PATH = "/cache"  # HOME and XDG_CACHE_HOME: torch/triton compile caches on a writable emptyDir
CACHE_SIZE = "10Gi"
SHUTDOWN_TIMEOUT_SINCE = (0, 18, 0)  # --shutdown-timeout (vllm PRs #34730, #36666; ref §2.3)
ACCESS_LOG_FLAG_SINCE = (0, 16, 0)  # --disable-access-log-for-endpoints (vllm#30011; ref §2.3)
GRACE_BUFFER_SECONDS = 15  # after preStop + --shutdown-timeout: process exit, log flush
GRACE_WITHOUT_DRAIN_SECONDS = 30  # vLLM < 0.18 aborts on SIGTERM; time to exit after the preStop sleep
PROBE_PERIOD_SECONDS = 10
PROBE_TIMEOUT_SECONDS = 5
MIN_MEMORY_ABOVE_SHM = 4 * GIB  # an explicit memory_limit must leave vLLM at least this beside /dev/shm
PROGRESS_DEADLINE_MARGIN_SECONDS = 60  # the rollout may take one pod's startup budget without "no progress"
KEDA_COOLDOWN_MIN = 300  # llm-d's 300 s windows (ref §3.3 item 7)
ACTIVATION_TARGET = "1000000"  # the activation trigger wakes a model from zero; queue/kv drive scale-out
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
HOSTNAME_TOPOLOGY = "kubernetes.io/hostname"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

COMMON_LABELS = {
    "app.kubernetes.io/name": "vllm",
    "app.kubernetes.io/component": "inference-server",
    "app.kubernetes.io/part-of": "llmops-gpu-inference",
    "app.kubernetes.io/managed-by": "llmops.gpu_inference",
}
INSTANCE_LABEL = "app.kubernetes.io/instance"
VERSION_LABEL = "app.kubernetes.io/version"
SELECTOR_KEYS = ("app.kubernetes.io/name", INSTANCE_LABEL)

# The seed guide's streaming-friendly ingress-nginx annotations (ref §5).
INGRESS_ANNOTATIONS = {
    "nginx.ingress.kubernetes.io/proxy-read-timeout": "300",
    "nginx.ingress.kubernetes.io/proxy-send-timeout": "300",
    "nginx.ingress.kubernetes.io/proxy-buffering": "off",
    "nginx.ingress.kubernetes.io/proxy-request-buffering": "off",
}
ENV_ALWAYS = (
    ("HF_HUB_OFFLINE", "1"),
    ("TRANSFORMERS_OFFLINE", "1"),
    ("VLLM_NO_USAGE_STATS", "1"),
    ("HOME", CACHE_PATH),
    ("XDG_CACHE_HOME", CACHE_PATH),
)

# Flags the role generates -> the entry key that sets them (None: fixed by the role). Given again in
# extra_args they would contradict the generated value (argparse keeps the last one, the preflight and
# the summary the first).
GENERATED_FLAGS: dict[str, str | None] = {
    "--model": "model_dir",
    "--host": None,
    "--port": None,
    "--served-model-name": "served_model_names",
    "--tensor-parallel-size": "tensor_parallel_size",
    "-tp": "tensor_parallel_size",
    "--pipeline-parallel-size": "pipeline_parallel_size",
    "-pp": "pipeline_parallel_size",
    "--gpu-memory-utilization": "gpu_memory_utilization",
    "--max-model-len": "max_model_len",
    "--max-num-seqs": "max_num_seqs",
    "--dtype": "dtype",
    "--quantization": "quantization",
    "-q": "quantization",
    "--kv-cache-dtype": "kv_cache_dtype",
    "--shutdown-timeout": "shutdown_timeout_seconds",
    "--disable-access-log-for-endpoints": None,
    "--api-key": "api_key_secret (vllm_api_key)",
}

# Readiness (ref §2.2; llm-d PR #330): /health answers 200 AND /v1/models lists the served name. Run as
# ``python3 -c SCRIPT <base url> <served name>``; stdlib only, proxies ignored (an HTTP_PROXY in the pod
# must not catch 127.0.0.1), the API key sent when the pod has one.
READINESS_SCRIPT = """\
import json, os, sys, urllib.request
base, name = sys.argv[1], sys.argv[2]
headers = {"Authorization": "Bearer " + os.environ["VLLM_API_KEY"]} if os.environ.get("VLLM_API_KEY") else {}
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
def get(path):
    with opener.open(urllib.request.Request(base + path, headers=headers), timeout=4) as response:
        return response.status, response.read()
try:
    status = get("/health")[0]
    if status != 200:
        sys.exit("/health answered %d" % status)
    status, body = get("/v1/models")
    served = [model.get("id") for model in json.loads(body).get("data", [])]
except Exception as exc:
    sys.exit("not ready: %s" % exc)
if status != 200 or name not in served:
    sys.exit("/v1/models does not list %r (lists %r)" % (name, served))
"""

# --- Built-in defaults ----------------------------------------------------------------------
CONFIG_DEFAULTS: dict[str, Any] = {
    "namespace": "llm",
    "manage_namespace": True,
    "defaults": {},
    "image_repository": "vllm/vllm-openai",
    "vllm_version": "0.29.0",
    "image_pull_policy": "IfNotPresent",
    "image_pull_secrets": [],
    "model_storage": {"type": "pvc", "claim_name": "llm-models"},
    "model_mount_path": "/models",
    "api_key_secret": None,
    "gateway": {
        "parent_refs": [],
        "hostnames": [],
        "header": "x-model-id",
        "request_timeout": "600s",
        "backend_request_timeout": "600s",
        "namespaces": [],
    },
    "ingress": {"class_name": "nginx", "host": None, "tls_secret": None, "annotations": {}, "namespaces": ["ingress-nginx"]},
    "prometheus": {
        "server_address": "http://prometheus-operated.monitoring.svc:9090",
        "namespaces": ["monitoring"],
        "pod_labels": {"app.kubernetes.io/name": "prometheus"},
    },
    "monitoring": dict(MONITORING_DEFAULTS),
    "alerts": {},  # checked and defaulted by _vllm_monitoring.alert_settings
    "labels": {},
    "network_policy": True,
}
CONFIG_SUBKEYS = {
    "gateway": CONFIG_DEFAULTS["gateway"],
    "ingress": CONFIG_DEFAULTS["ingress"],
    "prometheus": CONFIG_DEFAULTS["prometheus"],
    "model_storage": {"type": None, "claim_name": None, "path": None},
    "api_key_secret": {"name": None, "key": None},
}

# Entry keys; None = derived from other settings when unset (see _resolve_model).
ENTRY_DEFAULTS: dict[str, Any] = {
    "name": None,
    "model_dir": None,
    "served_model_names": None,
    "image": None,
    "vllm_version": None,
    "replicas": 1,
    "tensor_parallel_size": 1,
    "pipeline_parallel_size": 1,
    "gpu_resource": "nvidia.com/gpu",
    "gpu_product_labels": [],
    "max_model_len": None,
    "max_num_seqs": None,
    "gpu_memory_utilization": 0.9,
    "dtype": None,
    "quantization": None,
    "kv_cache_dtype": None,
    "extra_args": [],
    "env": {},
    "weights_bytes": None,
    "shm_size": None,
    "memory": "16Gi",
    "memory_limit": None,
    "cpu": None,
    "cold_start_seconds": None,
    "startup_budget_seconds": None,
    "shutdown_timeout_seconds": 60,
    "prestop_sleep_seconds": 15,
    "security": {"run_as_user": 1000, "run_as_group": 1000, "fs_group": 1000},
    "node_selector": {},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity_extra": {},
    "pdb": "auto",
    "autoscaling": {"type": "keda"},
    "routing": {},
    "annotations": {},
    "pod_annotations": {},
    "labels": {},
}
AUTOSCALING_KEYS = {
    "keda": (
        "type",
        "min_replicas",
        "max_replicas",
        "queue_threshold",
        "kv_threshold",
        "polling_interval",
        "cooldown_period",
        "scale_up_stabilization_seconds",
        "scale_down_stabilization_seconds",
        "activation",
    ),
    "hpa": ("type", "min_replicas", "max_replicas", "target"),
    "none": ("type",),
}
ROUTING_KEYS = ("gateway", "ingress", "path_prefix")
SECURITY_KEYS = ("run_as_user", "run_as_group", "fs_group")
ACTIVATION_KEYS = ("query", "threshold", "target")
HPA_METRIC = {False: ("gpu_util", "70"), True: ("gpu_engine_active", "0.7")}  # (metric, default target) by MIG

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
GATEWAY_DURATION = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
CPU_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?|[0-9]+m)$")
NUMBER = re.compile(r"^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$")
HOSTNAME = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
IMAGE_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
MAX_MODEL_LEN = re.compile(r"^[0-9]+[kKmMgG]?$")


class VllmRenderError(ValueError):
    """The models or the configuration cannot be rendered; the message lists every problem, one per line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# =============================================================================================
# Checking values: each check appends "<where>: <key>: <problem>" and returns a usable fallback
# =============================================================================================


class Problems:
    """Every problem found, each naming where (a model or a role variable) and the key."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, where: str, key: str, message: str) -> None:
        self.lines.append(f"{where}: {key}: {message}")

    def integer(self, where: str, key: str, value: Any, minimum: int, fallback: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.add(where, key, f"must be an integer >= {minimum}, got {value!r}")
            return fallback
        return value

    def string(self, where: str, key: str, value: Any, pattern: re.Pattern[str] | None = None, rule: str = "") -> str:
        if not isinstance(value, str) or not value or (pattern is not None and not pattern.match(value)):
            self.add(where, key, f"must be {rule or 'a non-empty string'}, got {value!r}")
            return ""
        return value

    def mapping(self, where: str, key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            self.add(where, key, f"must be a mapping, got {type(value).__name__} {value!r}")
            return {}
        return dict(value)

    def str_list(self, where: str, key: str, value: Any, pattern: re.Pattern[str] | None = None, rule: str = "") -> list[str]:
        if not isinstance(value, (list, tuple)):
            self.add(where, key, f"must be a list, got {type(value).__name__} {value!r}")
            return []
        return [self.string(where, f"{key}[{i}]", item, pattern, rule) for i, item in enumerate(value)]

    def str_map(self, where: str, key: str, value: Any, key_check: Callable[[str], str | None] | None = None) -> dict[str, str]:
        out = {}
        for name, item in self.mapping(where, key, value).items():
            problem = key_check(name) if key_check is not None and isinstance(name, str) else None
            if not isinstance(name, str) or problem:
                self.add(where, f"{key}.{name}", problem or "keys must be strings")
            elif not isinstance(item, str):
                self.add(where, f"{key}.{name}", f"must be a string (quote it), got {type(item).__name__} {item!r}")
            else:
                out[name] = item
        return out

    def unknown_keys(self, where: str, key: str, given: Mapping[str, Any], allowed: Sequence[str]) -> None:
        for name in sorted(set(given) - set(allowed), key=str):
            self.add(where, f"{key}.{name}" if key else str(name), f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def quantity(self, where: str, key: str, value: Any) -> int:
        if not isinstance(value, str):
            self.add(where, key, f"must be a Kubernetes quantity string such as 16Gi, got {type(value).__name__} {value!r}")
            return 0
        try:
            return parse_quantity(value, key)
        except PreflightInputError as exc:
            self.add(where, key, str(exc))
            return 0

    def threshold(self, where: str, key: str, value: Any, minimum_exclusive: bool = True) -> str:
        """A KEDA/HPA threshold: a number (or numeric string), rendered as a string; > 0 (>= 0 for activation)."""
        text = _number_str(value)
        if text is None or (minimum_exclusive and float(text) <= 0):
            self.add(where, key, f"must be a {'positive' if minimum_exclusive else 'non-negative'} number such as 5 or '0.8', got {value!r}")
            return "1"
        return text


def _number_str(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value >= 0:
        return repr(value)
    if isinstance(value, str) and NUMBER.match(value.strip()):
        return value.strip()
    return None


def label_problem(key: str) -> str | None:
    """Why ``key`` is not a Kubernetes label/annotation key (None when it is)."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        return "the key's prefix must be a DNS-1123 subdomain"
    if len(name) > 63 or not QUALIFIED_NAME.match(name):
        return "the key's name must be 1-63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric"
    return None


def _labels(problems: Problems, where: str, key: str, value: Any) -> dict[str, str]:
    labels = problems.str_map(where, key, value, label_problem)
    for name, item in labels.items():
        if len(item) > 63 or not LABEL_VALUE.match(item):
            problems.add(where, f"{key}.{name}", f"label value {item!r} must be empty or 1-63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric")
        if name in SELECTOR_KEYS or name == VERSION_LABEL:
            problems.add(where, f"{key}.{name}", "is set by the role (pod selector / version label)")
    return labels


def merge(base: Any, override: Any) -> Any:
    """``override`` over ``base``: null falls through, mappings merge key by key, anything else replaces."""
    if override is None:
        return copy.deepcopy(base)
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        out = {key: copy.deepcopy(value) for key, value in base.items()}
        for key, value in override.items():
            out[key] = merge(base.get(key), value)
        return out
    return copy.deepcopy(override)


def format_bytes(value: int) -> str:
    """Bytes as the largest exact binary quantity: 19327352832 -> "18Gi", 1536 MiB -> "1536Mi"."""
    for suffix, size in (("Ti", 1024**4), ("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if value and value % size == 0:
            return f"{value // size}{suffix}"
    return str(value)


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(int(number) * units[unit] for number, unit in re.findall(r"([0-9]+)(ms|h|m|s)", duration))


# =============================================================================================
# Settings: the configuration, then each model
# =============================================================================================


def resolve_config(config: Mapping[str, Any], problems: Problems) -> Settings:
    """The role variables over :data:`CONFIG_DEFAULTS`, checked (problems name the role variable)."""
    if not isinstance(config, Mapping):
        problems.add("config", "(root)", f"must be a mapping of the role variables without the vllm_ prefix, got {type(config).__name__}")
        config = {}
    for name in sorted(set(config) - set(CONFIG_DEFAULTS), key=str):
        problems.add(f"vllm_{name}", "(variable)", f"not a render setting (known: {', '.join(f'vllm_{k}' for k in CONFIG_DEFAULTS)})")
    cfg: Settings = {key: merge(default, config.get(key)) for key, default in CONFIG_DEFAULTS.items()}
    for key, allowed in CONFIG_SUBKEYS.items():
        if isinstance(config.get(key), Mapping):
            problems.unknown_keys(f"vllm_{key}", "", config[key], list(allowed))
    if isinstance(config.get("monitoring"), Mapping):
        problems.unknown_keys("vllm_monitoring", "", config["monitoring"], list(MONITORING_DEFAULTS))
    try:
        alert_settings(config)
        cfg["monitoring"] = monitoring_settings(config)
    except VllmMonitoringError as exc:
        problems.lines.extend(f"vllm_{line}" for line in str(exc).splitlines())
    _check_monitoring(cfg["monitoring"], problems)

    cfg["namespace"] = problems.string("vllm_namespace", "(value)", cfg["namespace"], DNS1123_LABEL, "a DNS-1123 label")
    for key in ("manage_namespace", "network_policy"):
        if not isinstance(cfg[key], bool):
            problems.add(f"vllm_{key}", "(value)", f"must be true or false, got {cfg[key]!r}")
    problems.string("vllm_image_repository", "(value)", cfg["image_repository"])
    if ":" in cfg["image_repository"].rpartition("/")[2] or "@" in str(cfg["image_repository"]):
        problems.add("vllm_image_repository", "(value)", "must not carry a tag or digest: the tag is v<vllm_version>, or set a model's image")
    problems.string(
        "vllm_image_pull_policy", "(value)", cfg["image_pull_policy"], re.compile(r"^(Always|IfNotPresent|Never)$"), "Always, IfNotPresent or Never"
    )
    problems.str_list("vllm_image_pull_secrets", "(value)", cfg["image_pull_secrets"], DNS1123_SUBDOMAIN, "a Secret name")
    problems.string("vllm_model_mount_path", "(value)", cfg["model_mount_path"], re.compile(r"^/[^\0]*[^/]$"), "an absolute path such as /models")
    if cfg["model_mount_path"] in ("/dev/shm", CACHE_PATH):
        problems.add("vllm_model_mount_path", "(value)", f"{cfg['model_mount_path']} is used by the pod itself")
    cfg["labels"] = _labels(problems, "vllm_labels", "(value)", cfg["labels"])
    _check_storage(cfg["model_storage"], problems)
    _check_api_key_secret(cfg["api_key_secret"], problems)
    _check_gateway(cfg["gateway"], problems)
    _check_ingress(cfg["ingress"], problems)
    _check_prometheus(cfg["prometheus"], problems)
    if not isinstance(cfg["defaults"], Mapping):
        problems.add("vllm_defaults", "(value)", f"must be a mapping of model settings, got {type(cfg['defaults']).__name__}")
        cfg["defaults"] = {}
    problems.unknown_keys("vllm_defaults", "", cfg["defaults"], [k for k in ENTRY_DEFAULTS if k not in ("name", "served_model_names", "model_dir")])
    return cfg


def _check_monitoring(monitoring: Mapping[str, Any], problems: Problems) -> None:
    where = "vllm_monitoring"
    for key in ("service_monitor", "prometheus_rule", "dashboard"):
        if not isinstance(monitoring.get(key), bool):
            problems.add(where, key, f"must be true or false, got {monitoring.get(key)!r}")
    problems.string(where, "scrape_interval", monitoring.get("scrape_interval"), PROMETHEUS_DURATION, "a Prometheus duration such as 15s")
    _labels_loose(problems, where, "labels", monitoring.get("labels"))
    _labels_loose(problems, where, "dashboard_labels", monitoring.get("dashboard_labels"))
    if monitoring.get("dashboard_namespace") is not None:
        problems.string(where, "dashboard_namespace", monitoring["dashboard_namespace"], DNS1123_LABEL, "a namespace name (or null: vllm_namespace)")


def _check_storage(storage: Any, problems: Problems) -> None:
    where = "vllm_model_storage"
    storage = problems.mapping(where, "(value)", storage)
    if storage.get("type") == "pvc":
        problems.string(where, "claim_name", storage.get("claim_name"), DNS1123_SUBDOMAIN, "a PersistentVolumeClaim name")
    elif storage.get("type") == "host_path":
        problems.string(where, "path", storage.get("path"), re.compile(r"^/"), "an absolute path on the node")
    else:
        problems.add(where, "type", f"must be pvc or host_path, got {storage.get('type')!r}")


def _check_api_key_secret(secret: Any, problems: Problems) -> None:
    if secret is None:
        return
    where = "vllm_api_key_secret"
    secret = problems.mapping(where, "(value)", secret)
    problems.string(where, "name", secret.get("name"), DNS1123_SUBDOMAIN, "a Secret name")
    problems.string(where, "key", secret.get("key"), re.compile(r"^[-._a-zA-Z0-9]+$"), "a key of the Secret")


def _check_gateway(gateway: Any, problems: Problems) -> None:
    where = "vllm_gateway"
    gateway = problems.mapping(where, "(value)", gateway)
    refs = gateway.get("parent_refs")
    if not isinstance(refs, list):
        problems.add(where, "parent_refs", f"must be a list of Gateway API ParentReferences, got {refs!r}")
    else:
        for i, item in enumerate(refs):
            ref = problems.mapping(where, f"parent_refs[{i}]", item)
            problems.unknown_keys(where, f"parent_refs[{i}]", ref, ("group", "kind", "namespace", "name", "sectionName", "port"))
            problems.string(where, f"parent_refs[{i}].name", ref.get("name"), DNS1123_SUBDOMAIN, "a Gateway name")
            if ref.get("namespace") is not None:
                problems.string(where, f"parent_refs[{i}].namespace", ref.get("namespace"), DNS1123_LABEL, "a namespace name")
    problems.str_list(where, "hostnames", gateway.get("hostnames"), HOSTNAME, "a host name such as llm.example.com")
    problems.string(where, "header", gateway.get("header"), HEADER_NAME, "an HTTP header name such as x-model-id")
    durations = [
        problems.string(where, key, gateway.get(key), GATEWAY_DURATION, "a Gateway API duration such as 600s or 10m")
        for key in ("request_timeout", "backend_request_timeout")
    ]
    if all(durations) and _seconds(durations[0]) and _seconds(durations[1]) > _seconds(durations[0]):
        problems.add(where, "backend_request_timeout", f"{durations[1]} is longer than request_timeout {durations[0]} (the HTTPRoute CRD rejects it)")
    problems.str_list(where, "namespaces", gateway.get("namespaces"), DNS1123_LABEL, "a namespace name")


def _check_ingress(ingress: Any, problems: Problems) -> None:
    where = "vllm_ingress"
    ingress = problems.mapping(where, "(value)", ingress)
    problems.string(where, "class_name", ingress.get("class_name"), DNS1123_SUBDOMAIN, "an IngressClass name")
    for key, pattern, rule in (("host", HOSTNAME, "a DNS name"), ("tls_secret", DNS1123_SUBDOMAIN, "a Secret name")):
        if ingress.get(key) is not None:
            problems.string(where, key, ingress.get(key), pattern, rule)
    problems.str_map(where, "annotations", ingress.get("annotations"), label_problem)
    problems.str_list(where, "namespaces", ingress.get("namespaces"), DNS1123_LABEL, "a namespace name")


def _check_prometheus(prometheus: Any, problems: Problems) -> None:
    where = "vllm_prometheus"
    prometheus = problems.mapping(where, "(value)", prometheus)
    problems.string(where, "server_address", prometheus.get("server_address"), re.compile(r"^https?://[^\s]+$"), "an http(s) URL")
    problems.str_list(where, "namespaces", prometheus.get("namespaces"), DNS1123_LABEL, "a namespace name")
    problems.str_map(where, "pod_labels", prometheus.get("pod_labels"), label_problem)


def _layered(entry: Mapping[str, Any], cfg: Settings) -> Settings:
    """built-in < config.defaults < entry (null falls through).

    Two exceptions an operator expects: an ``autoscaling`` of another ``type`` replaces the one below (its keys
    belong to the other scaler), and inside ``security`` a null is kept (``run_as_user: null`` = the image's user).
    """
    defaults, values = cfg["defaults"], {}
    for key, builtin in ENTRY_DEFAULTS.items():
        layers = [builtin, defaults.get(key), entry.get(key)]
        if key == "security":
            merged: Any = {}
            for layer in (layer for layer in layers if layer is not None):
                merged = {**merged, **layer} if isinstance(layer, Mapping) and isinstance(merged, Mapping) else layer
            values[key] = merged
            continue
        below, given = merge(builtin, layers[1]), layers[2]
        if key == "autoscaling" and isinstance(given, Mapping) and isinstance(below, Mapping) and given.get("type", below.get("type")) != below.get("type"):
            below = {}
        values[key] = merge(below, given)
    return values


def _model_where(index: int, entry: Any) -> str:
    name = entry.get("name") if isinstance(entry, Mapping) else None
    return f"vllm_models[{index}] {name}" if isinstance(name, str) and name else f"vllm_models[{index}]"


def resolve_model(index: int, entry: Any, cfg: Settings, problems: Problems) -> Settings:
    """One entry's settings, every derived value filled in; problems name the model and the key."""
    where = _model_where(index, entry)
    if not isinstance(entry, Mapping):
        problems.add(where, "(entry)", f"must be a mapping with at least a name, got {type(entry).__name__}")
        entry = {}
    problems.unknown_keys(where, "", entry, list(ENTRY_DEFAULTS))
    v = _layered(entry, cfg)
    s: Settings = {}
    name = problems.string(where, "name", v["name"], DNS1123_LABEL, "a DNS-1123 label (lower case letters, digits, '-')")
    if name and (len(name) > 63 or not name[0].isalpha()):
        problems.add(where, "name", "must be at most 63 characters and start with a letter (it names the Service: DNS-1035 label)")
    s["name"] = name or f"model-{index}"
    s["model_dir"] = problems.string(
        where, "model_dir", v["model_dir"] or s["name"], re.compile(r"^(?!/)(?!.*(^|/)\.\.?(/|$))[^\0]+$"), "a relative directory under the model store"
    )
    s["served_model_names"] = problems.str_list(
        where,
        "served_model_names",
        [s["name"]] if v["served_model_names"] is None else v["served_model_names"],
        re.compile(r"^\S{1,4096}$"),
        "a name without spaces",
    )
    if not s["served_model_names"]:
        problems.add(where, "served_model_names", "must list at least one name")
        s["served_model_names"] = [s["name"]]
    if len(set(s["served_model_names"])) != len(s["served_model_names"]):
        problems.add(where, "served_model_names", f"lists a name twice: {s['served_model_names']}")

    _resolve_image(s, v, cfg, where, problems)
    _resolve_gpu(s, v, where, problems)
    _resolve_engine(s, v, where, problems)
    _resolve_memory(s, v, where, problems)
    _resolve_timing(s, v, where, problems)
    _resolve_pod(s, v, where, problems)
    s["autoscaling"] = _resolve_autoscaling(s, v["autoscaling"], where, problems)
    s["routing"] = _resolve_routing(s, v["routing"], cfg, where, problems)
    autoscaled = s["autoscaling"]["type"] != "none"
    s["lowest_replicas"] = s["autoscaling"]["min_replicas"] if autoscaled else s["replicas"]
    if v["pdb"] not in ("auto", False):
        problems.add(where, "pdb", f"must be auto (a PodDisruptionBudget when at least 2 replicas always run) or false, got {v['pdb']!r}")
    s["pdb"] = v["pdb"] == "auto" and s["lowest_replicas"] >= 2
    return s


def _resolve_image(s: Settings, v: Settings, cfg: Settings, where: str, problems: Problems) -> None:
    version = v["vllm_version"] if v["vllm_version"] is not None else cfg["vllm_version"]
    s["vllm_version"] = problems.string(
        where, "vllm_version", version, re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+([-.][0-9A-Za-z]+)*$"), "a release number such as 0.29.0"
    )
    s["version_tuple"] = parse_version(s["vllm_version"]) if s["vllm_version"] else (0, 0, 0)
    image = v["image"] if v["image"] is not None else f"{cfg['image_repository']}:v{s['vllm_version']}"
    s["image"] = problems.string(where, "image", image)
    tag = s["image"].rpartition("/")[2].partition(":")[2] if "@" not in s["image"] else None
    if s["image"] and "@" in s["image"] and not IMAGE_DIGEST.search(s["image"]):
        problems.add(where, "image", f"{s['image']}: a digest must be @sha256:<64 hex digits>")
    elif s["image"] and tag is not None and tag in ("", "latest"):
        problems.add(where, "image", f"{s['image']} is not pinned: give a version tag (vllm/vllm-openai:v0.29.0) or a digest, never latest")


def _resolve_gpu(s: Settings, v: Settings, where: str, problems: Problems) -> None:
    s["tensor_parallel_size"] = problems.integer(where, "tensor_parallel_size", v["tensor_parallel_size"], 1, 1)
    s["pipeline_parallel_size"] = problems.integer(where, "pipeline_parallel_size", v["pipeline_parallel_size"], 1, 1)
    s["gpu_limit"] = s["tensor_parallel_size"] * s["pipeline_parallel_size"]
    resource = problems.string(where, "gpu_resource", v["gpu_resource"])
    s["gpu_resource"] = resource or "nvidia.com/gpu"
    s["mig"] = bool(MIG_RESOURCE.match(resource))
    if resource and not s["mig"] and resource not in ("nvidia.com/gpu", "nvidia.com/gpu.shared"):
        problems.add(where, "gpu_resource", f"must be nvidia.com/gpu, nvidia.com/gpu.shared or a MIG resource such as nvidia.com/mig-3g.40gb, got {resource!r}")
    if s["mig"] and s["gpu_limit"] != 1:
        problems.add(
            where,
            "tensor_parallel_size",
            f"TP x PP = {s['gpu_limit']} on MIG resource {resource}: a process sees one MIG device, so TP and PP across MIG slices are impossible; use 1 and 1",
        )
    s["gpu_product_labels"] = sorted(
        set(problems.str_list(where, "gpu_product_labels", v["gpu_product_labels"], re.compile(r"^.{1,63}$"), "a node label value"))
    )


def _resolve_engine(s: Settings, v: Settings, where: str, problems: Problems) -> None:
    gmu = v["gpu_memory_utilization"]
    if isinstance(gmu, bool) or not isinstance(gmu, (int, float)) or not 0 < gmu <= 1:
        problems.add(where, "gpu_memory_utilization", f"must be a fraction in (0, 1], got {gmu!r}")
    s["gpu_memory_utilization"] = gmu
    mml = v["max_model_len"]
    valid_int = isinstance(mml, int) and not isinstance(mml, bool) and mml > 0
    if mml is not None and not valid_int and not (isinstance(mml, str) and MAX_MODEL_LEN.match(mml)):
        problems.add(where, "max_model_len", f"must be a positive integer (or vLLM's 32k form), got {mml!r}")
    s["max_model_len"] = mml
    s["max_num_seqs"] = None if v["max_num_seqs"] is None else problems.integer(where, "max_num_seqs", v["max_num_seqs"], 1, 1)
    for key, choices in (("dtype", DTYPE_CHOICES), ("kv_cache_dtype", KV_CACHE_DTYPE_CHOICES)):
        if v[key] is not None and v[key] not in choices:
            problems.add(where, key, f"must be one of {', '.join(choices)}, got {v[key]!r}")
        s[key] = v[key]
    s["quantization"] = (
        None
        if v["quantization"] is None
        else problems.string(where, "quantization", v["quantization"], re.compile(r"^[a-z0-9_-]+$"), "a vLLM quantization method")
    )
    s["extra_args"] = problems.str_list(where, "extra_args", v["extra_args"])
    short = [token.split("=", 1)[0] for arg in s["extra_args"] for token in arg.split() if re.match(r"^-[a-z]", token)]
    for flag in sorted(set(cli_flags(s["extra_args"]) + short)):
        if flag in GENERATED_FLAGS:
            setting = GENERATED_FLAGS[flag]
            problems.add(where, "extra_args", f"{flag} is one of the flags the role generates" + (f": set {setting} instead" if setting else ", drop it"))
    s["env"] = problems.str_map(where, "env", v["env"], lambda k: None if ENV_NAME.match(k) else "not an environment variable name")
    if "VLLM_API_KEY" in s["env"]:
        problems.add(where, "env.VLLM_API_KEY", "never put the API key in the pod spec: set vllm_api_key (the role keeps it in a Secret)")


def _resolve_memory(s: Settings, v: Settings, where: str, problems: Problems) -> None:
    shm = v["shm_size"] if v["shm_size"] is not None else ("1Gi" if s["gpu_limit"] == 1 else "2Gi")
    shm_bytes = problems.quantity(where, "shm_size", shm)
    memory_bytes = problems.quantity(where, "memory", v["memory"])
    s["shm_size"], s["memory"] = shm, v["memory"]
    if v["memory_limit"] is None:
        limit = format_bytes(memory_bytes + shm_bytes)
    else:
        limit = v["memory_limit"]
        limit_bytes = problems.quantity(where, "memory_limit", limit)
        if limit_bytes and limit_bytes < shm_bytes + MIN_MEMORY_ABOVE_SHM:
            problems.add(
                where,
                "memory_limit",
                f"{limit} leaves vLLM less than 4Gi beside the {shm} memory-backed /dev/shm, which counts against the limit; raise it or use memory",
            )
    s["memory_request"] = s["memory_limit"] = limit
    cpu = v["cpu"] if v["cpu"] is not None else ("4" if s["gpu_limit"] == 1 else str(2 + 2 * s["gpu_limit"]))
    s["cpu"] = problems.string(
        where, "cpu", str(cpu) if isinstance(cpu, int) and not isinstance(cpu, bool) else cpu, CPU_QUANTITY, "a CPU quantity such as 4 or 3500m"
    )


def _resolve_timing(s: Settings, v: Settings, where: str, problems: Problems) -> None:
    weights = v["weights_bytes"]
    if weights is not None:
        weights = problems.integer(where, "weights_bytes", weights, 0, 0)
    s["weights_bytes"] = weights
    default_cold = 600 if weights is None else 300 + 10 * math.ceil(weights / GIB)
    s["cold_start_seconds"] = problems.integer(
        where, "cold_start_seconds", v["cold_start_seconds"] if v["cold_start_seconds"] is not None else default_cold, 1, default_cold
    )
    budget = v["startup_budget_seconds"] if v["startup_budget_seconds"] is not None else 2 * s["cold_start_seconds"]
    s["startup_budget_seconds"] = problems.integer(where, "startup_budget_seconds", budget, PROBE_PERIOD_SECONDS, 2 * s["cold_start_seconds"])
    s["shutdown_timeout_seconds"] = problems.integer(where, "shutdown_timeout_seconds", v["shutdown_timeout_seconds"], 0, 60)
    s["prestop_sleep_seconds"] = problems.integer(where, "prestop_sleep_seconds", v["prestop_sleep_seconds"], 0, 15)
    s["drains"] = s["version_tuple"] >= SHUTDOWN_TIMEOUT_SINCE
    if s["drains"]:
        s["termination_grace_period_seconds"] = s["prestop_sleep_seconds"] + s["shutdown_timeout_seconds"] + GRACE_BUFFER_SECONDS
    else:
        s["termination_grace_period_seconds"] = s["prestop_sleep_seconds"] + GRACE_WITHOUT_DRAIN_SECONDS


def _resolve_pod(s: Settings, v: Settings, where: str, problems: Problems) -> None:
    s["replicas"] = problems.integer(where, "replicas", v["replicas"], 0, 1)
    security = problems.mapping(where, "security", v["security"])
    problems.unknown_keys(where, "security", security, SECURITY_KEYS)
    s["security"] = {
        key: None if security.get(key) is None else problems.integer(where, f"security.{key}", security.get(key), 0, 1000) for key in SECURITY_KEYS
    }
    s["node_selector"] = _labels_loose(problems, where, "node_selector", v["node_selector"])
    s["tolerations"] = v["tolerations"]
    if not isinstance(v["tolerations"], list) or not all(isinstance(t, Mapping) for t in v["tolerations"]):
        problems.add(where, "tolerations", f"must be a list of Kubernetes tolerations, got {v['tolerations']!r}")
        s["tolerations"] = []
    s["affinity_extra"] = problems.mapping(where, "affinity_extra", v["affinity_extra"])
    problems.unknown_keys(where, "affinity_extra", s["affinity_extra"], ("nodeAffinity", "podAffinity", "podAntiAffinity"))
    s["labels"] = _labels(problems, where, "labels", v["labels"])
    s["annotations"] = problems.str_map(where, "annotations", v["annotations"], label_problem)
    s["pod_annotations"] = problems.str_map(where, "pod_annotations", v["pod_annotations"], label_problem)


def _labels_loose(problems: Problems, where: str, key: str, value: Any) -> dict[str, str]:
    """A label map that may name any label (node selectors), syntax checked."""
    labels = problems.str_map(where, key, value, label_problem)
    for name, item in labels.items():
        if len(item) > 63 or not LABEL_VALUE.match(item):
            problems.add(where, f"{key}.{name}", f"label value {item!r} is not a valid label value")
    return labels


def _resolve_autoscaling(s: Settings, value: Any, where: str, problems: Problems) -> Settings:
    given = problems.mapping(where, "autoscaling", value)
    kind = given.get("type", "keda")
    if kind not in AUTOSCALING_KEYS:
        problems.add(where, "autoscaling.type", f"must be keda, hpa or none, got {kind!r}")
        return {"type": "none"}
    problems.unknown_keys(where, "autoscaling", given, AUTOSCALING_KEYS[kind])
    if kind == "none":
        return {"type": "none"}
    cold = s["cold_start_seconds"]
    out: Settings = {"type": kind}
    out["min_replicas"] = problems.integer(where, "autoscaling.min_replicas", given.get("min_replicas", 1), 0 if kind == "keda" else 1, 1)
    out["max_replicas"] = problems.integer(where, "autoscaling.max_replicas", given.get("max_replicas", 4 if kind == "keda" else 8), 1, 1)
    if out["min_replicas"] > out["max_replicas"]:
        problems.add(where, "autoscaling.min_replicas", f"{out['min_replicas']} is above max_replicas {out['max_replicas']}")
    if kind == "hpa":
        metric, target = HPA_METRIC[s["mig"]]
        out["metric"] = metric
        out["target"] = problems.threshold(where, "autoscaling.target", given.get("target", target))
        if s["mig"] and float(out["target"]) > 1:
            problems.add(where, "autoscaling.target", f"{out['target']}: on MIG the HPA uses DCGM_FI_PROF_GR_ENGINE_ACTIVE, a 0-1 fraction (0.7 = 70%)")
        return out
    out["queue_threshold"] = problems.threshold(where, "autoscaling.queue_threshold", given.get("queue_threshold", "5"))
    out["kv_threshold"] = problems.threshold(where, "autoscaling.kv_threshold", given.get("kv_threshold", "0.8"))
    out["polling_interval"] = problems.integer(where, "autoscaling.polling_interval", given.get("polling_interval", 15), 1, 15)
    for key, default in (
        ("cooldown_period", max(KEDA_COOLDOWN_MIN, cold)),
        ("scale_up_stabilization_seconds", cold),
        ("scale_down_stabilization_seconds", max(KEDA_COOLDOWN_MIN, cold)),
    ):
        out[key] = problems.integer(where, f"autoscaling.{key}", given.get(key, default), 0, default)
        if out[key] < cold:
            problems.add(
                where,
                f"autoscaling.{key}",
                f"{out[key]} s is shorter than the cold start ({cold} s, cold_start_seconds): a replica still loading would be counted or "
                "removed as idle; use at least the cold start",
            )
    out["activation"] = _resolve_activation(given.get("activation"), out["min_replicas"], where, problems)
    return out


def _resolve_activation(value: Any, min_replicas: int, where: str, problems: Problems) -> Settings | None:
    if value is None:
        if min_replicas == 0:
            problems.add(
                where,
                "autoscaling.activation",
                "min_replicas 0 needs an activation signal that exists while no vLLM pod runs (vLLM's own metrics vanish with "
                "its pods): set autoscaling.activation {query: <PromQL>, threshold: '0'} or min_replicas >= 1",
            )
        return None
    given = problems.mapping(where, "autoscaling.activation", value)
    problems.unknown_keys(where, "autoscaling.activation", given, ACTIVATION_KEYS)
    return {
        "query": problems.string(where, "autoscaling.activation.query", given.get("query"), rule="a PromQL query returning one sample"),
        "threshold": problems.threshold(where, "autoscaling.activation.threshold", given.get("threshold", "0"), minimum_exclusive=False),
        "target": problems.threshold(where, "autoscaling.activation.target", given.get("target", ACTIVATION_TARGET)),
    }


def _resolve_routing(s: Settings, value: Any, cfg: Settings, where: str, problems: Problems) -> Settings:
    given = problems.mapping(where, "routing", value)
    problems.unknown_keys(where, "routing", given, ROUTING_KEYS)
    parent_refs = cfg["gateway"].get("parent_refs") or []
    out = {
        "gateway": given.get("gateway", bool(parent_refs)),
        "ingress": given.get("ingress", False),
        "path_prefix": problems.string(where, "routing.path_prefix", given.get("path_prefix", "/v1"), re.compile(r"^/\S*$"), "a path starting with /"),
    }
    for key in ("gateway", "ingress"):
        if not isinstance(out[key], bool):
            problems.add(where, f"routing.{key}", f"must be true or false, got {out[key]!r}")
            out[key] = False
    if out["gateway"] and not parent_refs:
        problems.add(where, "routing.gateway", "is true but vllm_gateway.parent_refs is empty: name the Gateway(s) the HTTPRoute attaches to")
    if out["ingress"] and not cfg["ingress"].get("host"):
        problems.add(where, "routing.ingress", "is true but vllm_ingress.host is empty: the Ingress serves <name>.<host>")
    return out


def check_across(settings: Sequence[Settings], problems: Problems) -> None:
    """Names and served names unique over all models (one Service per name, one route per served name)."""
    seen_names: dict[str, int] = {}
    seen_served: dict[str, str] = {}
    for index, s in enumerate(settings):
        where = f"vllm_models[{index}] {s['name']}"
        if s["name"] in seen_names:
            problems.add(where, "name", f"{s['name']} is also the name of vllm_models[{seen_names[s['name']]}]")
        seen_names.setdefault(s["name"], index)
        for served in dict.fromkeys(s["served_model_names"]):
            if served in seen_served and seen_served[served] != s["name"]:
                problems.add(where, "served_model_names", f"{served} is also served by {seen_served[served]}")
            seen_served.setdefault(served, s["name"])


# =============================================================================================
# Objects of one model
# =============================================================================================


def selector_labels(s: Settings) -> dict[str, str]:
    """The immutable pod selector: no version, nothing a user sets."""
    return {"app.kubernetes.io/name": "vllm", INSTANCE_LABEL: s["name"]}


def object_labels(s: Settings, cfg: Settings) -> dict[str, str]:
    labels = dict(COMMON_LABELS)
    labels.update({INSTANCE_LABEL: s["name"], VERSION_LABEL: s["vllm_version"]})
    labels.update(cfg["labels"])
    labels.update(s["labels"])
    return dict(sorted(labels.items()))


def _metadata(s: Settings, cfg: Settings, extra_labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    labels = object_labels(s, cfg)
    if extra_labels:
        labels = dict(sorted({**labels, **extra_labels}.items()))
    return {"name": s["name"], "namespace": cfg["namespace"], "labels": labels}


def vllm_args(s: Settings, cfg: Settings) -> list[str]:
    args = ["serve", f"{cfg['model_mount_path']}/{s['model_dir']}/current", "--host", "0.0.0.0", "--port", str(PORT)]
    args += ["--served-model-name", *s["served_model_names"], "--tensor-parallel-size", str(s["tensor_parallel_size"])]
    if s["pipeline_parallel_size"] > 1:
        args += ["--pipeline-parallel-size", str(s["pipeline_parallel_size"])]
    args += ["--gpu-memory-utilization", str(s["gpu_memory_utilization"])]
    for key, flag in (("max_model_len", "--max-model-len"), ("max_num_seqs", "--max-num-seqs"), ("dtype", "--dtype"), ("quantization", "--quantization")):
        if s[key] is not None:
            args += [flag, str(s[key])]
    if s["kv_cache_dtype"] is not None:
        args += ["--kv-cache-dtype", s["kv_cache_dtype"]]
    if s["drains"]:
        args += ["--shutdown-timeout", str(s["shutdown_timeout_seconds"])]
    if s["version_tuple"] >= ACCESS_LOG_FLAG_SINCE:
        args += ["--disable-access-log-for-endpoints", "/health,/metrics"]
    return args + s["extra_args"]


def _env(s: Settings, cfg: Settings) -> list[dict[str, Any]]:
    values = dict(ENV_ALWAYS)
    values.update(s["env"])
    env: list[dict[str, Any]] = [{"name": name, "value": value} for name, value in values.items()]
    secret = cfg["api_key_secret"]
    if secret:
        env.append({"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": secret["name"], "key": secret["key"]}}})
    return env


def _probes(s: Settings) -> dict[str, Any]:
    health = {"path": "/health", "port": PORT_NAME}
    return {
        "startupProbe": {
            "httpGet": health,
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "timeoutSeconds": PROBE_TIMEOUT_SECONDS,
            "failureThreshold": math.ceil(s["startup_budget_seconds"] / PROBE_PERIOD_SECONDS),
        },
        "readinessProbe": {
            "exec": {"command": ["python3", "-c", READINESS_SCRIPT, f"http://127.0.0.1:{PORT}", s["served_model_names"][0]]},
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "timeoutSeconds": PROBE_TIMEOUT_SECONDS,
            "failureThreshold": 3,
        },
        "livenessProbe": {"httpGet": health, "periodSeconds": 15, "timeoutSeconds": PROBE_TIMEOUT_SECONDS, "failureThreshold": 4},
    }


def _container(s: Settings, cfg: Settings) -> dict[str, Any]:
    gpus = {s["gpu_resource"]: s["gpu_limit"]}
    container: dict[str, Any] = {
        "name": VLLM_CONTAINER,
        "image": s["image"],
        "imagePullPolicy": cfg["image_pull_policy"],
        "command": ["vllm"],
        "args": vllm_args(s, cfg),
        "ports": [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}],
        "env": _env(s, cfg),
        "resources": {"requests": {"cpu": s["cpu"], "memory": s["memory_request"], **gpus}, "limits": {"memory": s["memory_limit"], **gpus}},
        "volumeMounts": [
            {"name": MODEL_VOLUME, "mountPath": cfg["model_mount_path"], "readOnly": True},
            {"name": SHM_VOLUME, "mountPath": "/dev/shm"},
            {"name": CACHE_VOLUME, "mountPath": CACHE_PATH},
        ],
        **_probes(s),
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if s["prestop_sleep_seconds"]:
        container["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(s["prestop_sleep_seconds"])]}}}
    return container


def _volumes(s: Settings, cfg: Settings) -> list[dict[str, Any]]:
    storage = cfg["model_storage"]
    if storage["type"] == "pvc":
        models: dict[str, Any] = {"name": MODEL_VOLUME, "persistentVolumeClaim": {"claimName": storage["claim_name"], "readOnly": True}}
    else:
        models = {"name": MODEL_VOLUME, "hostPath": {"path": storage["path"], "type": "Directory"}}
    return [
        models,
        {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": s["shm_size"]}},
        {"name": CACHE_VOLUME, "emptyDir": {"sizeLimit": CACHE_SIZE}},
    ]


def _affinity(s: Settings) -> dict[str, Any]:
    extra = s["affinity_extra"]
    anti = {
        "weight": 100,
        "podAffinityTerm": {"labelSelector": {"matchLabels": selector_labels(s)}, "topologyKey": HOSTNAME_TOPOLOGY},
    }
    affinity: dict[str, Any] = {}
    node = copy.deepcopy(extra.get("nodeAffinity") or {})
    if s["gpu_product_labels"]:
        ours = {"key": GPU_PRODUCT_LABEL, "operator": "In", "values": s["gpu_product_labels"]}
        required = node.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
        # Terms are ORed: the GPU product applies to every term (AND), or is the only term.
        terms = required.get("nodeSelectorTerms") or [{}]
        required["nodeSelectorTerms"] = [{**term, "matchExpressions": [ours, *(term.get("matchExpressions") or [])]} for term in terms]
    if node:
        affinity["nodeAffinity"] = node
    if extra.get("podAffinity"):
        affinity["podAffinity"] = copy.deepcopy(extra["podAffinity"])
    pod_anti = copy.deepcopy(extra.get("podAntiAffinity") or {})
    pod_anti["preferredDuringSchedulingIgnoredDuringExecution"] = [anti, *(pod_anti.get("preferredDuringSchedulingIgnoredDuringExecution") or [])]
    affinity["podAntiAffinity"] = pod_anti
    return affinity


def _pod_spec(s: Settings, cfg: Settings) -> dict[str, Any]:
    security = s["security"]
    pod_security: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
    for key, field in (("run_as_user", "runAsUser"), ("run_as_group", "runAsGroup"), ("fs_group", "fsGroup")):
        if security[key] is not None:
            pod_security[field] = security[key]
    if security["run_as_user"]:
        pod_security["runAsNonRoot"] = True
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,  # vLLM never calls the Kubernetes API
        "enableServiceLinks": False,  # a Service named vllm would inject VLLM_PORT=tcp://..., which vLLM reads
        "terminationGracePeriodSeconds": s["termination_grace_period_seconds"],
        "securityContext": pod_security,
        "containers": [_container(s, cfg)],
        "volumes": _volumes(s, cfg),
        "affinity": _affinity(s),
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": HOSTNAME_TOPOLOGY, "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": selector_labels(s)}}
        ],
        "tolerations": copy.deepcopy(s["tolerations"]),
    }
    if cfg["image_pull_secrets"]:
        spec["imagePullSecrets"] = [{"name": name} for name in cfg["image_pull_secrets"]]
    if s["node_selector"]:
        spec["nodeSelector"] = dict(sorted(s["node_selector"].items()))
    return spec


def service(s: Settings, cfg: Settings) -> K8sObject:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(s, cfg),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(s),
            "ports": [{"name": PORT_NAME, "port": PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def deployment(s: Settings, cfg: Settings) -> K8sObject:
    metadata = _metadata(s, cfg)
    if s["annotations"]:
        metadata["annotations"] = dict(sorted(s["annotations"].items()))
    template_meta: dict[str, Any] = {"labels": object_labels(s, cfg)}
    if s["pod_annotations"]:
        template_meta["annotations"] = dict(sorted(s["pod_annotations"].items()))
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(s)},
        # A new pod may load for its whole startup budget before it counts as progress.
        "progressDeadlineSeconds": max(600, s["startup_budget_seconds"] + PROGRESS_DEADLINE_MARGIN_SECONDS),
        "template": {"metadata": template_meta, "spec": _pod_spec(s, cfg)},
    }
    if s["autoscaling"]["type"] == "none":
        spec = {"replicas": s["replicas"], **spec}  # otherwise the scaler owns spec.replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def pod_disruption_budget(s: Settings, cfg: Settings) -> K8sObject:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(s, cfg),
        # maxUnavailable, never minAvailable (ref §5); a pod that is not ready yet never blocks a drain.
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(s)}, "unhealthyPodEvictionPolicy": "AlwaysAllow"},
    }


def client_namespaces(s: Settings, cfg: Settings) -> list[str]:
    """Namespaces whose pods may call the API: the gateway's (explicit or the parent_refs'), the ingress controller's."""
    gateway = cfg["gateway"]
    namespaces = set(gateway.get("namespaces") or [])
    if not namespaces and s["routing"]["gateway"]:
        namespaces = {ref.get("namespace") or cfg["namespace"] for ref in gateway.get("parent_refs") or []}
    if s["routing"]["ingress"]:
        namespaces |= set(cfg["ingress"].get("namespaces") or [])
    return sorted(namespaces)


def network_policy(s: Settings, cfg: Settings) -> K8sObject:
    port = [{"port": PORT, "protocol": "TCP"}]
    rules: list[dict[str, Any]] = []
    clients = client_namespaces(s, cfg)
    if clients:
        rules.append(
            {"from": [{"namespaceSelector": {"matchExpressions": [{"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": clients}]}}], "ports": port}
        )
    prometheus = cfg["prometheus"]
    rules.append(
        {
            "from": [
                {
                    "namespaceSelector": {"matchExpressions": [{"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": sorted(prometheus["namespaces"])}]},
                    "podSelector": {"matchLabels": dict(sorted(prometheus["pod_labels"].items()))},
                }
            ],
            "ports": port,
        }
    )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(s, cfg),
        "spec": {"podSelector": {"matchLabels": selector_labels(s)}, "policyTypes": ["Ingress"], "ingress": rules},
    }


def service_monitor(s: Settings, cfg: Settings) -> K8sObject:
    monitoring = cfg["monitoring"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _metadata(s, cfg, monitoring.get("labels")),
        "spec": {
            "selector": {"matchLabels": selector_labels(s)},
            "endpoints": [{"port": PORT_NAME, "path": "/metrics", "interval": monitoring["scrape_interval"]}],
        },
    }


def _keda_trigger(name: str, query: str, threshold: str, cfg: Settings, activation: str | None = None) -> dict[str, Any]:
    metadata = {"serverAddress": cfg["prometheus"]["server_address"], "query": query, "threshold": threshold, "ignoreNullValues": "false"}
    if activation is not None:
        metadata["activationThreshold"] = activation
    return {"type": "prometheus", "name": name, "metricType": "AverageValue", "metadata": metadata}


def scaled_object(s: Settings, cfg: Settings) -> K8sObject:
    a = s["autoscaling"]
    queries = keda_queries(cfg["namespace"], s["served_model_names"][0])
    triggers = [
        _keda_trigger("queue", queries["queue"], a["queue_threshold"], cfg),
        _keda_trigger("kv", queries["kv"], a["kv_threshold"], cfg),
    ]
    if a["activation"]:
        act = a["activation"]
        triggers.append(_keda_trigger("activation", act["query"], act["target"], cfg, activation=act["threshold"]))
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(s, cfg),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": s["name"]},
            "minReplicaCount": a["min_replicas"],
            "maxReplicaCount": a["max_replicas"],
            "pollingInterval": a["polling_interval"],
            "cooldownPeriod": a["cooldown_period"],
            "fallback": {"failureThreshold": 3, "replicas": max(a["min_replicas"], 1)},
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": _scaling_behavior(a["scale_up_stabilization_seconds"], 1, a["scale_down_stabilization_seconds"]),
                }
            },
            "triggers": triggers,
        },
    }


def _scaling_behavior(up_window: int, up_pods: int, down_window: int) -> dict[str, Any]:
    """HPA behavior: add up to ``up_pods`` pods a minute after ``up_window`` s, remove one pod per 180 s after ``down_window`` s."""
    return {
        "scaleUp": {"stabilizationWindowSeconds": up_window, "policies": [{"type": "Pods", "value": up_pods, "periodSeconds": 60}]},
        "scaleDown": {"stabilizationWindowSeconds": down_window, "policies": [{"type": "Pods", "value": 1, "periodSeconds": 180}]},
    }


def horizontal_pod_autoscaler(s: Settings, cfg: Settings) -> K8sObject:
    a = s["autoscaling"]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(s, cfg),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": s["name"]},
            "minReplicas": a["min_replicas"],
            "maxReplicas": a["max_replicas"],
            "metrics": [{"type": "Pods", "pods": {"metric": {"name": a["metric"]}, "target": {"type": "AverageValue", "averageValue": a["target"]}}}],
            # The seed guide's policy (ref §5): up 2 pods/60 s after 30 s, down 1 pod/180 s after 300 s.
            "behavior": _scaling_behavior(30, 2, 300),
        },
    }


def http_route(s: Settings, cfg: Settings) -> K8sObject:
    gateway = cfg["gateway"]
    matches = [
        {"path": {"type": "PathPrefix", "value": s["routing"]["path_prefix"]}, "headers": [{"type": "Exact", "name": gateway["header"], "value": served}]}
        for served in s["served_model_names"]
    ]
    spec: dict[str, Any] = {"parentRefs": copy.deepcopy(gateway["parent_refs"])}
    if gateway.get("hostnames"):
        spec["hostnames"] = list(gateway["hostnames"])
    spec["rules"] = [
        {
            "matches": matches,
            "backendRefs": [{"name": s["name"], "port": PORT}],
            "timeouts": {"request": gateway["request_timeout"], "backendRequest": gateway["backend_request_timeout"]},
        }
    ]
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": _metadata(s, cfg), "spec": spec}


def ingress_host(s: Settings, cfg: Settings) -> str:
    return f"{s['name']}.{cfg['ingress']['host']}"


def ingress(s: Settings, cfg: Settings) -> K8sObject:
    options = cfg["ingress"]
    host = ingress_host(s, cfg)
    metadata = _metadata(s, cfg)
    metadata["annotations"] = dict(sorted({**INGRESS_ANNOTATIONS, **(options.get("annotations") or {})}.items()))
    backend = {"service": {"name": s["name"], "port": {"number": PORT}}}
    spec: dict[str, Any] = {
        "ingressClassName": options["class_name"],
        "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}],
    }
    if options.get("tls_secret"):
        spec["tls"] = [{"hosts": [host], "secretName": options["tls_secret"]}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": metadata, "spec": spec}


def model_objects(s: Settings, cfg: Settings) -> list[K8sObject]:
    """The model's objects in apply order (contract: Service, Deployment, PDB, NetworkPolicy, ServiceMonitor, scaler, routes)."""
    objects = [service(s, cfg), deployment(s, cfg)]
    if s["pdb"]:
        objects.append(pod_disruption_budget(s, cfg))
    if cfg["network_policy"]:
        objects.append(network_policy(s, cfg))
    if cfg["monitoring"]["service_monitor"]:
        objects.append(service_monitor(s, cfg))
    scaler = {"keda": scaled_object, "hpa": horizontal_pod_autoscaler}.get(s["autoscaling"]["type"])
    if scaler is not None:
        objects.append(scaler(s, cfg))
    if s["routing"]["gateway"]:
        objects.append(http_route(s, cfg))
    if s["routing"]["ingress"]:
        objects.append(ingress(s, cfg))
    return objects


def summary(s: Settings, cfg: Settings, objects: Sequence[K8sObject]) -> dict[str, Any]:
    a = s["autoscaling"]
    routes = []
    if s["routing"]["gateway"]:
        routes.append(f"{cfg['gateway']['header']}: {', '.join(s['served_model_names'])}")
    if s["routing"]["ingress"]:
        routes.append(f"host: {ingress_host(s, cfg)}")
    return {
        "name": s["name"],
        "served_model_names": list(s["served_model_names"]),
        "image": s["image"],
        "gpu_resource": s["gpu_resource"],
        "gpu_limit": s["gpu_limit"],
        "replicas": a["min_replicas"] if a["type"] != "none" else s["replicas"],
        "autoscaling": "none" if a["type"] == "none" else f"{a['type']} {a['min_replicas']}-{a['max_replicas']}",
        "pdb": s["pdb"],
        "shm_size": s["shm_size"],
        "memory_request": s["memory_request"],
        "memory_limit": s["memory_limit"],
        "startup_budget_seconds": s["startup_budget_seconds"],
        "termination_grace_period_seconds": s["termination_grace_period_seconds"],
        "route": "; ".join(routes) or None,
        "kinds": [obj["kind"] for obj in objects],
    }


# =============================================================================================
# Shared objects and the entry point
# =============================================================================================


def namespace_object(cfg: Settings) -> K8sObject:
    labels = {key: COMMON_LABELS[key] for key in ("app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by")}
    labels.update(cfg["labels"])
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": cfg["namespace"], "labels": dict(sorted(labels.items()))}}


def shared_objects(cfg: Settings, config: Mapping[str, Any]) -> list[K8sObject]:
    shared = []
    if cfg["manage_namespace"]:
        shared.append(namespace_object(cfg))
    if cfg["monitoring"]["prometheus_rule"]:
        shared.append(prometheus_rule(cfg["namespace"], config))
    if cfg["monitoring"]["dashboard"]:
        shared.append(dashboard_configmap(cfg["namespace"], config))
    return shared


def plain(value: Any) -> Any:
    """A fresh tree of dicts and lists: no node shared (YAML would write anchors), tuples become lists."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def _public_settings(s: Settings) -> Settings:
    """Settings as returned, without the internal helpers."""
    return {key: value for key, value in s.items() if key not in ("version_tuple", "mig", "drains", "lowest_replicas")}


def render(models: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    """Every object for ``models`` (see the module docstring); :class:`VllmRenderError` lists every problem."""
    problems = Problems()
    cfg = resolve_config(config, problems)
    if not isinstance(models, list):
        problems.add("vllm_models", "(value)", f"must be a list of model entries, got {type(models).__name__}")
        models = []
    elif not models:
        problems.add("vllm_models", "(value)", "is empty: list at least one model, for example [{name: qwen2-5-7b-instruct}]")
    settings = [resolve_model(index, entry, cfg, problems) for index, entry in enumerate(models)]
    check_across(settings, problems)
    if problems.lines:
        raise VllmRenderError(problems.lines)
    config_for_monitoring = dict(config) if isinstance(config, Mapping) else {}
    rendered = []
    hpa_metrics = []
    for s in settings:
        objects = model_objects(s, cfg)
        rendered.append({"name": s["name"], "settings": _public_settings(s), "objects": objects, "summary": summary(s, cfg, objects)})
        if s["autoscaling"]["type"] == "hpa":
            hpa_metrics.append(s["autoscaling"]["metric"])
    try:
        shared = shared_objects(cfg, config_for_monitoring)
        adapter_rules = prometheus_adapter_rules(sorted(set(hpa_metrics))) if hpa_metrics else []
    except VllmMonitoringError as exc:  # checked above already; kept so no other exception type escapes
        raise VllmRenderError([f"vllm_{line}" for line in str(exc).splitlines()]) from exc
    return plain({"namespace": cfg["namespace"], "models": rendered, "shared": shared, "prometheus_adapter_rules": adapter_rules})
