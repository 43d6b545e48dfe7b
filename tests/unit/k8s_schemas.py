"""Check rendered Kubernetes objects the way the API server would, in tests (importable as ``k8s_schemas``).

``validate(obj)`` raises :class:`SchemaError` listing every problem, ``problems(obj)`` returns them:

- core kinds (Deployment, Service, HorizontalPodAutoscaler, ...) against the OpenAPI schemas that the pinned
  ``kubernetes-validate`` package ships, in its STRICT variant (an unknown field fails, as the API server's
  field validation rejects it), once for each Kubernetes version in ``k8s_versions``: by default the oldest
  release this collection supports (1.31) and the newest one the package knows;
- custom resources (KEDA ScaledObject, prometheus-operator ServiceMonitor/PodMonitor/PrometheusRule, Gateway API
  HTTPRoute, GPU Operator ClusterPolicy, and every other CustomResourceDefinition found) against the
  ``openAPIV3Schema`` of the CRD files in ../shared/schemas (override with ``K8S_CRD_SCHEMAS``), never copied into
  this repository. The CRD schema is made closed (``additionalProperties: false``) wherever it lists ``properties``
  and does not set ``x-kubernetes-preserve-unknown-fields``: the API server prunes or rejects such fields, so a
  misspelled key would silently vanish. CEL rules (``x-kubernetes-validations``) are not evaluated. When the schemas
  folder is absent, a test that validates a resource of a known CRD group skips and says why;
- for every object: ``metadata`` against the ObjectMeta schema, the name rule of its kind (DNS-1035 label for a
  Service, DNS-1123 label for a Namespace, DNS-1123 subdomain otherwise), the namespace (a DNS-1123 label; none
  on cluster-scoped kinds), label and annotation syntax;
- a few API-server rules that no schema expresses and that rendering code gets wrong: a workload's selector must
  match its pod template labels; extended resources (``nvidia.com/gpu``) must be whole numbers, set in limits and
  equal in requests; a request may not exceed its limit; ConfigMap keys must be valid file names.

An unknown kind (no schema in either source, or an apiVersion whose group does not match) is an error.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate.utils
import pytest
import referencing
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_SCHEMAS = Path(os.environ.get("K8S_CRD_SCHEMAS", REPO_ROOT.parent / "shared" / "schemas"))
_CORE_SCHEMAS = Path(kubernetes_validate.utils.importlib_resources.files("kubernetes_validate")) / "kubernetes-json-schema"

OLDEST_K8S = "1.31.0"  # the oldest Kubernetes release the collection supports (reference §5: "K8s 1.31+")
NEWEST_K8S = kubernetes_validate.utils.latest_version()
DEFAULT_K8S_VERSIONS = (OLDEST_K8S, NEWEST_K8S)

# Groups whose schemas come from CRD files: resources of these groups skip (saying why) when the folder is absent,
# any other group without a schema is an unknown kind.
CRD_GROUPS = frozenset({"keda.sh", "monitoring.coreos.com", "gateway.networking.k8s.io", "inference.networking.k8s.io", "nvidia.com"})

# Core kinds that are cluster-scoped (kubernetes-validate's schemas do not say); a namespace on them is an error.
CLUSTER_SCOPED_CORE = frozenset(
    {
        "APIService",
        "CSIDriver",
        "CSINode",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "IngressClass",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "RuntimeClass",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
    }
)
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})
STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage", "hugepages-")

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
QUANTITY = re.compile(r"^([+-]?[0-9.]+)(?:[eE]([+-]?[0-9]+)|(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E))?$")
_SUFFIX = {"": 1, "m": Fraction(1, 1000), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_SUFFIX.update({s: 1024 ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))})
ANNOTATIONS_MAX_BYTES = 256 * 1024


class SchemaError(AssertionError):
    """An object would be rejected (or silently changed) by the API server; ``problems`` lists every reason."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# =============================================================================================
# Public API
# =============================================================================================


def validate(obj: Mapping[str, Any], k8s_versions: Sequence[str] = DEFAULT_K8S_VERSIONS, crd_release: str | None = None) -> None:
    """Raise :class:`SchemaError` unless ``obj`` is valid for every Kubernetes version in ``k8s_versions``.

    ``crd_release`` picks, for a kind with several CRD files (ClusterPolicy v24.6.2 and v26.7.0), the file whose
    name contains it; by default the newest file.
    """
    found = problems(obj, k8s_versions, crd_release)
    if found:
        raise SchemaError(found)


def validate_all(objs: Iterable[Mapping[str, Any]], k8s_versions: Sequence[str] = DEFAULT_K8S_VERSIONS, crd_release: str | None = None) -> None:
    """:func:`validate` every object; the error lists the problems of all of them."""
    found = [problem for obj in objs for problem in problems(obj, k8s_versions, crd_release)]
    if found:
        raise SchemaError(found)


def problems(obj: Mapping[str, Any], k8s_versions: Sequence[str] = DEFAULT_K8S_VERSIONS, crd_release: str | None = None) -> list[str]:
    """Every reason the API server would reject ``obj`` (empty when it is valid)."""
    if not isinstance(obj, Mapping):
        return [f"object is a {type(obj).__name__}, not a mapping"]
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
        return [f"object has no apiVersion/kind: apiVersion={api_version!r} kind={kind!r}"]
    group, version = api_version.rpartition("/")[::2]
    name = (obj.get("metadata") or {}).get("name") if isinstance(obj.get("metadata"), Mapping) else None
    where = f"{kind}/{name}"
    # Round-trip through JSON first: a value YAML/JSON cannot carry (a tuple, a set, a date) is a problem too.
    try:
        data = json.loads(json.dumps(obj))
    except (TypeError, ValueError) as exc:
        return [f"{where}: not JSON-serialisable: {exc}"]
    if data != obj:
        return [f"{where}: changes when serialised to JSON (tuples or non-string keys?)"]

    found: list[str] = []
    releases = [_core_release(v, found) for v in k8s_versions]
    releases = [r for r in releases if r is not None]
    core = [(release, _core_schema(release, group, version, kind)) for release in releases]
    if any(schema is not None for _release, schema in core):
        for release, schema in core:
            if schema is None:
                found.append(f"{where}: Kubernetes {release} does not serve {kind} in {api_version}")
            else:
                found += [f"{where} (Kubernetes {release}): {msg}" for msg in _schema_errors(release, schema, data)]
        cluster_scoped = kind in CLUSTER_SCOPED_CORE
    else:
        crd = _crd_schema(group, version, kind, crd_release)
        if crd is None:
            return [*found, f"{where}: unknown kind {kind} in apiVersion {api_version} (no core schema, no CRD in {CRD_SCHEMAS})"]
        source, scope, schema = crd
        found += [f"{where} ({source}): {msg}" for msg in _crd_errors(schema, data)]
        for release in releases:
            found += [f"{where} (ObjectMeta, Kubernetes {release}): {msg}" for msg in _metadata_schema_errors(release, data.get("metadata"))]
        cluster_scoped = scope == "Cluster"
    found += [f"{where}: {msg}" for msg in _metadata_rules(kind, data.get("metadata"), cluster_scoped)]
    found += [f"{where}: {msg}" for msg in _semantic_rules(kind, data)]
    return found


# =============================================================================================
# Core kinds: kubernetes-validate's strict schemas
# =============================================================================================


def _version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


@functools.cache
def _shipped_releases() -> tuple[str, ...]:
    return tuple(sorted(set(kubernetes_validate.utils.all_versions()), key=_version_key))


def _core_release(wanted: str, found: list[str]) -> str | None:
    """The newest shipped release not newer than ``wanted`` (major.minor), as kubernetes-validate picks it."""
    key = _version_key(wanted)[:2]
    candidates = [r for r in _shipped_releases() if _version_key(r)[:2] <= key]
    if not candidates or key > _version_key(NEWEST_K8S)[:2]:
        found.append(f"Kubernetes {wanted} is not covered by kubernetes-validate (it ships {', '.join(_shipped_releases())})")
        return None
    return candidates[-1]


@functools.cache
def _core_registry(release: str) -> referencing.Registry:
    definitions = json.loads((_CORE_SCHEMAS / f"v{release}-local-strict" / "_definitions.json").read_text(encoding="utf-8"))
    return referencing.Resource.from_contents(definitions) @ referencing.Registry()


@functools.cache
def _core_schema(release: str, group: str, version: str, kind: str) -> dict[str, Any] | None:
    """The strict schema of a top-level kind, only when its x-kubernetes-group-version-kind names this exact GVK."""
    prefix = f"{group.split('.', 1)[0]}-" if group else ""
    path = _CORE_SCHEMAS / f"v{release}-local-strict" / f"{kind.lower()}-{prefix}{version}.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text(encoding="utf-8"))
    gvks = schema.get("x-kubernetes-group-version-kind") or []
    if {"group": group, "version": version, "kind": kind} not in gvks:
        return None  # a sub-structure (HorizontalPodAutoscalerSpec) or another group with the same prefix
    return schema


def _format_error(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(part) for part in error.absolute_path) or "(root)"
    return f"{path}: {error.message}"


def _schema_errors(release: str, schema: Mapping[str, Any], data: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema, registry=_core_registry(release))
    return sorted(_format_error(e) for e in validator.iter_errors(data))


def _metadata_schema_errors(release: str, metadata: Any) -> list[str]:
    schema = {"$ref": "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    validator = jsonschema.Draft202012Validator(schema, registry=_core_registry(release))
    return sorted(_format_error(e) for e in validator.iter_errors(metadata))


# =============================================================================================
# Custom resources: openAPIV3Schema of the CRD files, closed where the API server would prune
# =============================================================================================


def _go_pattern(pattern: str) -> str:
    """Go's RE2 accepts inline flags anywhere (``^(?i)(abort|warn)?$``); Python only at the start."""
    flags = re.findall(r"\(\?([a-z]+)\)", pattern)
    if not flags or pattern.startswith("(?"):
        return pattern
    return "(?" + "".join(sorted(set("".join(flags)))) + ")" + re.sub(r"\(\?[a-z]+\)", "", pattern)


def _closed(schema: Any) -> Any:
    """The structural schema as the API server applies it: unknown fields fail, ``nullable`` allows null."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {name: _closed(sub) for name, sub in value.items()}
        elif key == "pattern":
            out[key] = _go_pattern(value)
        elif key in ("default", "enum", "example", "required", "description"):
            out[key] = value
        else:
            out[key] = _closed(value)
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if out.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if out.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    return out


@functools.cache
def _crd_index(folder: Path) -> dict[tuple[str, str, str], list[tuple[str, str, bool, dict[str, Any]]]]:
    """(group, version, kind) -> [(file, scope, served, closed schema)], files in version order (newest last)."""
    index: dict[tuple[str, str, str], list[tuple[str, str, bool, dict[str, Any]]]] = {}
    files = sorted((p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml", ".json")), key=lambda p: (str(p.parent), _version_key(p.name), p.name))
    for path in files:
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError:
            continue
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for ver in spec.get("versions", []):
                schema = (ver.get("schema") or {}).get("openAPIV3Schema")
                if schema is None:
                    continue
                key = (spec["group"], ver["name"], spec["names"]["kind"])
                index.setdefault(key, []).append((str(path.relative_to(folder)), spec.get("scope", "Namespaced"), bool(ver.get("served")), _closed(schema)))
    return index


def _crd_schema(group: str, version: str, kind: str, crd_release: str | None) -> tuple[str, str, dict[str, Any]] | None:
    if not CRD_SCHEMAS.is_dir():
        if group in CRD_GROUPS:
            pytest.skip(f"CRD schemas not found at {CRD_SCHEMAS} (set K8S_CRD_SCHEMAS): cannot validate {kind} {group}/{version}")
        return None
    candidates = _crd_index(CRD_SCHEMAS).get((group, version, kind), [])
    if crd_release is not None:
        candidates = [c for c in candidates if crd_release in c[0]]
    if not candidates:
        return None
    source, scope, served, schema = candidates[-1]
    if not served:
        schema = {"not": {}, "description": f"version {version} is not served"}
    return source, scope, schema


def _crd_errors(schema: Mapping[str, Any], data: Any) -> list[str]:
    if schema.get("not") == {}:
        return [str(schema["description"])]
    validator = jsonschema.Draft7Validator(schema)
    return sorted(_format_error(e) for e in validator.iter_errors(data))


# =============================================================================================
# Rules no schema expresses
# =============================================================================================


def _label_key_problems(what: str, key: Any) -> list[str]:
    if not isinstance(key, str):
        return [f"{what} key {key!r} is not a string"]
    prefix, name = key.rpartition("/")[::2]
    out = []
    if "/" in prefix or (prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix))) or (key.endswith("/") or key.startswith("/")):
        out.append(f"{what} key {key!r}: prefix must be a DNS-1123 subdomain")
    if len(name) > 63 or not QUALIFIED_NAME.match(name):
        out.append(f"{what} key {key!r}: name must be <= 63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric")
    return out


def label_problems(what: str, labels: Any) -> list[str]:
    """Syntax of a label map (metadata.labels, a selector's matchLabels, a pod template's labels)."""
    if labels is None:
        return []
    if not isinstance(labels, Mapping):
        return [f"{what} is a {type(labels).__name__}, not a mapping"]
    out = []
    for key, value in labels.items():
        out += _label_key_problems(what, key)
        if not isinstance(value, str):
            out.append(f"{what}[{key}] value {value!r} is a {type(value).__name__}, not a string")
        elif len(value) > 63 or not LABEL_VALUE.match(value):
            out.append(f"{what}[{key}] value {value!r}: must be empty or <= 63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric")
    return out


def _metadata_rules(kind: str, metadata: Any, cluster_scoped: bool) -> list[str]:
    if not isinstance(metadata, Mapping):
        return ["metadata is missing"]
    out = []
    name = metadata.get("name")
    rule, pattern, limit = {
        "Service": ("DNS-1035 label", DNS1035_LABEL, 63),
        "Namespace": ("DNS-1123 label", DNS1123_LABEL, 63),
    }.get(kind, ("DNS-1123 subdomain", DNS1123_SUBDOMAIN, 253))
    if name is None and not metadata.get("generateName"):
        out.append("metadata.name is missing")
    elif name is not None and (not isinstance(name, str) or len(name) > limit or not pattern.match(name)):
        out.append(f"metadata.name {name!r} is not a valid {rule} (<= {limit} characters)")
    namespace = metadata.get("namespace")
    if namespace is not None:
        if cluster_scoped:
            out.append(f"metadata.namespace {namespace!r} set on cluster-scoped kind {kind}")
        elif not isinstance(namespace, str) or len(namespace) > 63 or not DNS1123_LABEL.match(namespace):
            out.append(f"metadata.namespace {namespace!r} is not a valid DNS-1123 label")
    out += label_problems("metadata.labels", metadata.get("labels"))
    annotations = metadata.get("annotations")
    if isinstance(annotations, Mapping):
        for key, value in annotations.items():
            out += _label_key_problems("metadata.annotations", key)
            if not isinstance(value, str):
                out.append(f"metadata.annotations[{key}] value {value!r} is not a string")
        if sum(len(str(k)) + len(str(v)) for k, v in annotations.items()) > ANNOTATIONS_MAX_BYTES:
            out.append("metadata.annotations exceed 256 KiB")
    return out


def quantity(value: Any) -> Fraction:
    """A Kubernetes quantity (``4``, ``500m``, ``18Gi``, ``1e9``) as an exact number; ValueError when malformed."""
    match = QUANTITY.match(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    if match.group(2) is not None:  # decimal exponent: 1e9, 5E-3
        return Fraction(match.group(1)) * Fraction(10) ** int(match.group(2))
    return Fraction(match.group(1)) * _SUFFIX[match.group(3) or ""]


def _pod_spec(kind: str, data: Mapping[str, Any]) -> Mapping[str, Any] | None:
    spec = data.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind in WORKLOAD_KINDS:
        return ((spec.get("template") or {}).get("spec")) or {}
    return None


def _container_resource_problems(container: Mapping[str, Any]) -> list[str]:
    out = []
    where = f"container {container.get('name')}"
    resources = container.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for name in sorted(set(requests) | set(limits)):
        try:
            req = quantity(requests[name]) if name in requests else None
            lim = quantity(limits[name]) if name in limits else None
        except ValueError as exc:
            out.append(f"{where} resource {name}: {exc}")
            continue
        if name.startswith(STANDARD_RESOURCES) or "/" not in name:
            if req is not None and lim is not None and req > lim:
                out.append(f"{where} resource {name}: request {requests[name]} exceeds limit {limits[name]}")
            continue
        # extended resources (nvidia.com/gpu, nvidia.com/mig-*): whole numbers, limit required, request == limit
        if lim is None:
            out.append(f"{where} extended resource {name}: a limit is required")
        if req is not None and lim is not None and req != lim:
            out.append(f"{where} extended resource {name}: request {requests[name]} must equal limit {limits[name]}")
        for value in (req, lim):
            if value is not None and value.denominator != 1:
                out.append(f"{where} extended resource {name}: {value} is not a whole number")
    return out


def _semantic_rules(kind: str, data: Mapping[str, Any]) -> list[str]:
    out = []
    spec = data.get("spec") if isinstance(data.get("spec"), Mapping) else {}
    if kind in WORKLOAD_KINDS and kind != "Job":
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        out += label_problems("spec.selector.matchLabels", selector)
        out += label_problems("spec.template.metadata.labels", template_labels)
        if not selector and not (spec.get("selector") or {}).get("matchExpressions"):
            out.append("spec.selector is empty")
        missing = {k: v for k, v in selector.items() if template_labels.get(k) != v}
        if missing:
            out.append(f"spec.selector.matchLabels {missing} do not match spec.template.metadata.labels")
    if kind in ("Service",):
        out += label_problems("spec.selector", spec.get("selector"))
    if kind in ("PodDisruptionBudget", "NetworkPolicy"):
        field = "selector" if kind == "PodDisruptionBudget" else "podSelector"
        out += label_problems(f"spec.{field}.matchLabels", (spec.get(field) or {}).get("matchLabels"))
    if kind == "PodDisruptionBudget" and "minAvailable" in spec and "maxUnavailable" in spec:
        out.append("spec: minAvailable and maxUnavailable are mutually exclusive")
    if kind == "HorizontalPodAutoscaler" and spec.get("minReplicas", 1) > spec.get("maxReplicas", 0):
        out.append("spec.minReplicas exceeds spec.maxReplicas")
    if kind == "ConfigMap":
        for section in ("data", "binaryData"):
            for key in data.get(section) or {}:
                if len(key) > 253 or not CONFIG_KEY.match(key):
                    out.append(f"{section} key {key!r} is not a valid ConfigMap key")
    pod = _pod_spec(kind, data)
    if pod is not None:
        containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]
        names = [c.get("name") for c in containers]
        if len(set(names)) != len(names):
            out.append(f"duplicate container names {names}")
        for container in containers:
            out += _container_resource_problems(container)
        volumes = [v.get("name") for v in pod.get("volumes") or []]
        if len(set(volumes)) != len(volumes):
            out.append(f"duplicate volume names {volumes}")
        for container in containers:
            for mount in container.get("volumeMounts") or []:
                if mount.get("name") not in volumes:
                    out.append(f"container {container.get('name')} mounts volume {mount.get('name')!r}, which is not in spec.volumes")
    return out


def copy_with(obj: Mapping[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``obj`` with the dotted ``path`` (list indices as numbers) set to ``value`` (for tests)."""
    out = copy.deepcopy(dict(obj))
    node: Any = out
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out
