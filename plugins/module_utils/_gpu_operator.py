# Copyright: (c) 2026, llmops.gpu_inference contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Decisions of the gpu_operator role, as pure functions (no AnsibleModule, no Kubernetes client).

1. **Values.** :func:`build` turns the role's inputs, the GPU nodes' facts and the role's per-chart-version
   table into the helm ``release_values`` and the ConfigMaps the chart's values point at (the MIG manager's
   mig-parted config and the device plugin's time-slicing config). Apply and render mode call it the same way.
   Every problem is collected and raised together as :class:`GpuOperatorError` before anything changes:

   - ``driver_enabled: auto`` installs the operator's driver only when no GPU node has a working host driver
     (``ansible_facts.nvidia`` read by nvidia_smi_facts); a fleet with both fails, naming the nodes;
   - the MIG manager's config is the same mig-parted document as the gpu_node role's layouts, through
     :func:`._mig_layout.mig_parted_document`; ``single`` strategy refuses a node whose layout mixes profiles;
   - every value key the role sets must be in the table's keys for the chart version, and every key of
     ``values_overrides`` must exist in that chart version (its ``values.yaml`` when given, else the table).

2. **What the nodes must advertise.** :func:`expected_resources` gives each GPU node's allocatable GPU
   resources from its facts, or from its MIG layout when the MIG manager applies one, with the MIG strategy
   and time-slicing replicas applied; :func:`verify_problems` compares them with what the cluster reports.

3. **Tools.** :func:`tool_check` parses ``helm version --short`` and refuses the pair that is known broken:
   kubernetes.core < 6.4 with helm 4 (the module runs ``helm list --all``, a flag helm 4 removed).
"""

from __future__ import annotations

import difflib
import json
import re
from typing import Any, Callable, Mapping, Sequence

from ansible_collections.llmops.gpu_inference.plugins.module_utils._mig_layout import (
    LayoutError,
    build_gpu,
    mig_parted_document,
    parse_document,
    select_entries,
)

STRATEGIES = ("single", "mixed")
# kubernetes.core.helm passes --wait to helm uninstall only from helm 3.7 on (its documentation).
HELM_MIN = (3, 7, 0)
# kubernetes.core before 6.4.0 runs `helm list --all` (removed in helm 4): ansible-collections/kubernetes.core#1038.
KCORE_MIN_WITH_HELM4 = (6, 4, 0)
MIG_CONFIG_KEY = "config.yaml"
MIG_CONFIG_LABEL = "nvidia.com/mig.config"
_HELM_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")
_MIG_RESOURCE = re.compile(r"^nvidia\.com/mig-(?P<profile>.+)$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


class GpuOperatorError(ValueError):
    """The inputs cannot be turned into a release; ``errors`` lists every problem."""

    def __init__(self, errors: Sequence[str], headline: str = "The GPU Operator values cannot be built") -> None:
        self.errors = list(errors)
        super().__init__(f"{headline}: " + " ".join(f"({n}) {e}" for n, e in enumerate(self.errors, 1)))


# ============================================================================================
# Value keys
# ============================================================================================


def _escape(key: str) -> str:
    return key.replace(".", "\\.")


def chart_keys(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaf key paths of a chart's ``values.yaml`` with their defaults, as ../shared/schemas/gpu-operator lists them.

    Dotted paths with a literal ``.`` escaped (``operator.annotations.openshift\\.io/scc``), lists as ``path[]``
    (not descended), empty maps as leaves.
    """
    keys: dict[str, Any] = {}
    for name, value in values.items():
        path = prefix + _escape(str(name))
        if isinstance(value, Mapping) and value:
            keys.update(chart_keys(value, path + "."))
        elif isinstance(value, list):
            keys[path + "[]"] = value
        else:
            keys[path] = value
    return keys


def value_paths(values: Mapping[str, Any], known: Sequence[str] | Mapping[str, Any], prefix: str = "") -> list[str]:
    """The key paths ``values`` sets, in the notation of :func:`chart_keys`.

    A mapping is descended until its path is a known key: a map-valued leaf (``dcgmExporter.serviceMonitor.
    additionalLabels``, ``driver.resources``) takes any content, as the chart passes it through.
    """
    paths: list[str] = []
    for name, value in values.items():
        path = prefix + _escape(str(name))
        if isinstance(value, Mapping) and value and path not in known:
            paths.extend(value_paths(value, known, path + "."))
        elif isinstance(value, list):
            paths.append(path + "[]")
        else:
            paths.append(path)
    return paths


def _unknown_key_message(path: str, known: Sequence[str] | Mapping[str, Any], where: str) -> str:
    close = difflib.get_close_matches(path, list(known), n=3, cutoff=0.75)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return f"{where} sets '{path}', a key the chart does not have{hint}"


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``; mappings merge, everything else (lists included) is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _set(values: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted table key (no escaped dots: the role only sets plain paths) in a nested dict."""
    parts = (path[:-2] if path.endswith("[]") else path).split(".")
    node = values
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


# ============================================================================================
# GPU nodes
# ============================================================================================


def node_inputs(hostvars: Mapping[str, Any], hosts: Sequence[str], node_names: Mapping[str, str]) -> list[dict[str, Any]]:
    """What the role reads of each GPU node: its facts, why they are missing, its MIG layouts and layout name."""
    nodes = []
    for host in hosts:
        hv = hostvars.get(host) or {}
        facts = hv.get("ansible_facts", {}) or {}
        nodes.append(
            {
                "host": host,
                "node_name": node_names.get(host) or host,
                "nvidia": facts.get("nvidia"),
                "probe_error": hv.get("nvidia_smi_error"),
                "mig_configs": hv.get("gpu_node_mig_configs") or {},
                "mig_config": hv.get("gpu_node_mig_config"),
            }
        )
    return nodes


def _has_host_driver(node: Mapping[str, Any]) -> bool | None:
    """True: nvidia-smi worked on the host; False: it failed or is missing; None: nobody looked."""
    nvidia = node.get("nvidia")
    if isinstance(nvidia, Mapping) and nvidia.get("driver_version"):
        return True
    if node.get("probe_error"):
        return False
    return None


def decide_driver(setting: Any, nodes: Sequence[Mapping[str, Any]]) -> tuple[bool, list[str]]:
    """Whether the operator installs the driver (``driver.enabled``), and the problems that forbid it."""
    if setting not in ("auto", True, False):
        return False, [f"gpu_operator_driver_enabled must be auto, true or false, got {setting!r}"]
    with_driver = [n["host"] for n in nodes if _has_host_driver(n) is True]
    without = [n["host"] for n in nodes if _has_host_driver(n) is False]
    unread = [n["host"] for n in nodes if _has_host_driver(n) is None]
    errors = []
    if unread:
        errors.append(
            f"no GPU facts for {', '.join(unread)}: run llmops.gpu_inference.nvidia_smi_facts on the GPU nodes first "
            "(playbooks/gpu_operator.yml does), or record why it failed in nvidia_smi_error"
        )
    if setting == "auto":
        if with_driver and without:
            errors.append(
                f"mixed fleet: {', '.join(with_driver)} run a host NVIDIA driver but {', '.join(without)} do not "
                f"({'; '.join(str(n['probe_error']) for n in nodes if n['host'] in without)}); the operator either installs the "
                "driver everywhere or nowhere: install the host driver on the others (llmops.gpu_inference.gpu_node checks it), "
                "or remove it and set gpu_operator_driver_enabled: true"
            )
        return bool(without) and not with_driver, errors
    if setting is True and with_driver:
        errors.append(
            f"gpu_operator_driver_enabled is true but {', '.join(with_driver)} already run a host NVIDIA driver: the operator's "
            "driver container cannot load its modules over it; set it to auto or false"
        )
    if setting is False and without:
        errors.append(
            f"gpu_operator_driver_enabled is false but {', '.join(without)} have no working host driver, so their GPUs would never "
            "be advertised; install the driver there or set it to auto"
        )
    return setting is True, errors


def collect_mig_configs(override: Mapping[str, Any] | None, nodes: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """The cluster's ``mig-configs``: ``override`` when given, else the union of the GPU nodes' gpu_node_mig_configs."""
    if override is not None:
        return dict(override), []
    configs: dict[str, Any] = {}
    owner: dict[str, str] = {}
    errors = []
    for node in nodes:
        for name, entries in (node.get("mig_configs") or {}).items():
            if name in configs and configs[name] != entries:
                errors.append(
                    f"MIG config '{name}' differs between {owner[name]} and {node['host']}: the MIG manager reads one ConfigMap "
                    "for the whole cluster, so each name must mean one layout (rename one, or set gpu_operator_mig_configs)"
                )
                continue
            configs.setdefault(name, entries)
            owner.setdefault(name, node["host"])
    return configs, errors


def _layout_devices(nvidia: Mapping[str, Any], entries: Sequence[Any] | None) -> tuple[int, dict[str, int], list[str]]:
    """(whole GPUs, MIG devices by profile, problems) on one node: from its layout when it has one, else its facts."""
    gpus = list(nvidia.get("gpus") or [])
    states = [build_gpu(fact) for fact in gpus]
    chosen: dict[int, Any] = {}
    errors: list[str] = []
    if entries is not None:
        chosen, errors, _warnings = select_entries(entries, states)
    whole = 0
    mig: dict[str, int] = {}
    for fact in gpus:
        entry = chosen.get(fact["index"])
        if entry is not None:
            if not entry.mig_enabled:
                whole += 1
            for want in entry.mig_devices:
                mig[want.profile] = mig.get(want.profile, 0) + want.count
        elif fact.get("mig_mode_current") == "enabled":
            for device in fact.get("mig_devices") or []:
                mig[device["profile"]] = mig.get(device["profile"], 0) + 1
        else:
            whole += 1
    return whole, mig, errors


def expected_resources(
    nvidia: Mapping[str, Any],
    entries: Sequence[Any] | None,
    strategy: str,
    time_slicing: Sequence[Mapping[str, Any]] = (),
    *,
    rename_by_default: bool = False,
    where: str = "node",
) -> tuple[dict[str, int], list[str]]:
    """Allocatable GPU resources the device plugin advertises on a node, and the problems that prevent it."""
    whole, mig, errors = _layout_devices(nvidia, entries)
    errors = [f"{where}: {e}" for e in errors]
    resources: dict[str, int] = {}
    if strategy == "single":
        if len(mig) > 1 or (mig and whole):
            kinds = sorted(mig) + (["whole GPUs"] if whole else [])
            errors.append(
                f"{where}: MIG strategy 'single' needs every GPU of a node in the same MIG profile, but it would have "
                f"{', '.join(kinds)}; use gpu_operator_mig_strategy: mixed or give the node a uniform layout"
            )
        total = whole + sum(mig.values())
        if total:
            resources["nvidia.com/gpu"] = total
    else:
        if whole:
            resources["nvidia.com/gpu"] = whole
        for profile, count in mig.items():
            resources[f"nvidia.com/mig-{profile}"] = count
    replicas = {r["name"]: r["replicas"] for r in time_slicing}
    shared: dict[str, int] = {}
    for name, count in resources.items():
        if name in replicas:
            shared[name + ".shared" if rename_by_default else name] = count * replicas[name]
        else:
            shared[name] = count
    return shared, errors


# ============================================================================================
# ConfigMaps
# ============================================================================================


def time_slicing_document(
    resources: Sequence[Mapping[str, Any]], strategy: str, rename_by_default: bool, fail_requests_greater_than_one: bool
) -> dict[str, Any]:
    """The device plugin's config file (``version: v1``) sharing each resource among ``replicas`` pods by time-slicing."""
    return {
        "version": "v1",
        "flags": {"migStrategy": strategy},
        "sharing": {
            "timeSlicing": {
                "renameByDefault": rename_by_default,
                "failRequestsGreaterThanOne": fail_requests_greater_than_one,
                "resources": [{"name": r["name"], "replicas": r["replicas"]} for r in resources],
            }
        },
    }


def time_slicing_problems(resources: Any) -> list[str]:
    if not isinstance(resources, list):
        return [f"gpu_operator_time_slicing_resources must be a list of {{name, replicas}}, got {resources!r}"]
    errors = []
    seen = set()
    for number, item in enumerate(resources, 1):
        where = f"gpu_operator_time_slicing_resources item {number}"
        if not isinstance(item, Mapping) or set(item) != {"name", "replicas"}:
            errors.append(f"{where} must have exactly the keys name and replicas, got {item!r}")
            continue
        name, replicas = item["name"], item["replicas"]
        match = _MIG_RESOURCE.match(str(name))
        if name != "nvidia.com/gpu" and match is None:
            errors.append(f"{where}: '{name}' is not a GPU resource (nvidia.com/gpu or nvidia.com/mig-<profile>)")
        elif match is not None:
            try:
                parse_document({"version": "v1", "mig-configs": {"check": [{"devices": "all", "mig-enabled": True, "mig-devices": {match["profile"]: 1}}]}})
            except LayoutError as exc:
                errors.append(f"{where}: '{name}' names no MIG profile ({exc.errors[0]})")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 2:
            errors.append(f"{where}: replicas of '{name}' must be a whole number of at least 2, got {replicas!r}")
        if name in seen:
            errors.append(f"{where}: '{name}' is listed twice")
        seen.add(name)
    return errors


def config_map(name: str, namespace: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "llmops.gpu_inference.gpu_operator"}},
        "data": dict(data),
    }


# ============================================================================================
# The release
# ============================================================================================


def _image_values(chart: Mapping[str, Any], registry: str | None, pull_secrets: Sequence[str]) -> dict[str, Any]:
    """``<component>.repository`` rewritten onto ``registry`` and ``<component>.imagePullSecrets`` for every component the version has."""
    values: dict[str, Any] = {}
    if registry:
        prefix = registry.rstrip("/")
        for component, default in chart.get("repositories", {}).items():
            # nvcr.io/nvidia/k8s -> <registry>/nvidia/k8s: the mirror keeps NGC's paths
            _set(values, f"{component}.repository", prefix + "/" + default.split("/", 1)[1])
    if pull_secrets:
        for component in chart.get("pull_secret_components", []):
            _set(values, f"{component}.imagePullSecrets", list(pull_secrets))
    return values


def _base_values(spec: Mapping[str, Any], driver_enabled: bool) -> dict[str, Any]:
    exporter = bool(spec["dcgm_exporter_enabled"])
    values: dict[str, Any] = {
        "driver": {"enabled": driver_enabled},
        "toolkit": {"enabled": bool(spec["toolkit_enabled"])},
        "devicePlugin": {"enabled": bool(spec["device_plugin_enabled"])},
        "mig": {"strategy": spec["mig_strategy"]},
        "migManager": {"enabled": bool(spec["mig_manager_enabled"])},
        "dcgmExporter": {
            "enabled": exporter,
            "serviceMonitor": {
                "enabled": exporter and bool(spec["service_monitor_enabled"]),
                "interval": spec["service_monitor_interval"],
                "honorLabels": bool(spec["service_monitor_honor_labels"]),
                "additionalLabels": dict(spec["service_monitor_labels"] or {}),
            },
        },
        "nfd": {"enabled": bool(spec["nfd_enabled"])},
    }
    if driver_enabled and spec.get("driver_version"):
        values["driver"]["version"] = spec["driver_version"]
    return values


_ALL_DISABLED = {"all-disabled": [{"devices": "all", "mig-enabled": False}]}


def _mig_manager(
    spec: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]], dump: Callable[[Mapping[str, Any]], str], errors: list[str]
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """(migManager values, its ConfigMap, parsed configs by name) from the same layouts the gpu_node role applies."""
    configs, config_errors = collect_mig_configs(spec.get("mig_configs"), nodes)
    errors += config_errors
    default = spec["mig_default_config"]
    if not configs:
        if default != "all-disabled":
            errors.append(f"gpu_operator_mig_default_config '{default}' needs MIG configs (gpu_node_mig_configs or gpu_operator_mig_configs); there are none")
        # The MIG manager's own config holds all-disabled: what it applies to a MIG-capable node without a label.
        return {}, [], parse_document({"version": "v1", "mig-configs": _ALL_DISABLED}) if spec["mig_manager_enabled"] else {}
    if default not in configs:
        if default != "all-disabled":
            errors.append(f"gpu_operator_mig_default_config '{default}' is not one of the MIG configs ({', '.join(sorted(configs))})")
        configs = {**configs, **_ALL_DISABLED}
    try:
        document = mig_parted_document({"version": "v1", "mig-configs": configs})
        parsed = parse_document(document)
    except LayoutError as exc:
        errors += [f"MIG configs: {e}" for e in exc.errors]
        return {}, [], {}
    if not spec["mig_manager_enabled"]:
        return {}, [], {}
    name = spec["mig_config_map"]
    values = {"config": {"name": name, "default": default}}
    return values, [config_map(name, spec["namespace"], {MIG_CONFIG_KEY: dump(document)})], parsed


def _time_slicing(
    spec: Mapping[str, Any], dump: Callable[[Mapping[str, Any]], str], errors: list[str]
) -> tuple[dict[str, Any], list[dict[str, Any]], list[Any]]:
    """(devicePlugin values, its ConfigMap, the valid sharing list) for time-slicing; nothing when no resource is shared."""
    sharing = spec.get("time_slicing_resources") or []
    problems = time_slicing_problems(sharing)
    errors += problems
    if not sharing or problems:
        return {}, [], []
    key = spec["time_slicing_config_name"]
    if not _CONFIG_KEY.match(str(key)):
        errors.append(f"gpu_operator_time_slicing_config_name '{key}' is not a valid ConfigMap key")
    document = time_slicing_document(
        sharing, spec["mig_strategy"], bool(spec["time_slicing_rename_by_default"]), bool(spec["time_slicing_fail_requests_greater_than_one"])
    )
    name = spec["time_slicing_config_map"]
    return {"config": {"name": name, "default": key}}, [config_map(name, spec["namespace"], {key: dump(document)})], list(sharing)


def _key_problems(
    version: str, table_keys: Sequence[str], values: Mapping[str, Any], overrides: Mapping[str, Any], chart_values: Mapping[str, Any] | None
) -> list[str]:
    # Every key the role sets must be in its table for this version (the unit tests hold the table to the chart).
    errors = [f"the role would set '{path}', which is not in its key table for {version}" for path in value_paths(values, table_keys) if path not in table_keys]
    known = chart_keys(chart_values) if chart_values is not None else dict.fromkeys(table_keys)
    for path in value_paths(overrides, known):
        if path in known:
            continue
        if chart_values is None:
            errors.append(
                f"gpu_operator_values_overrides sets '{path}', which is not a key the role sets for {version}; other keys are checked "
                "against the chart's own values.yaml (apply mode reads it from the chart, render mode from gpu_operator_chart_values_path)"
            )
        else:
            errors.append(_unknown_key_message(path, known, "gpu_operator_values_overrides") + f" at {version}")
    return errors


def _node_results(
    spec: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]], parsed: Mapping[str, Any], sharing: Sequence[Any], errors: list[str]
) -> list[dict[str, Any]]:
    """Per GPU node: the MIG label the role sets and the GPU resources it must advertise.

    The MIG manager applies the node's ``nvidia.com/mig.config`` label, or its default config to a MIG-capable
    node without one; without the MIG manager the GPUs stay as the facts show them.
    """
    results = []
    strategy = spec["mig_strategy"]
    rename = bool(spec["time_slicing_rename_by_default"])
    for node in nodes:
        name = node.get("mig_config")
        entries = None
        if parsed:
            wanted = spec["mig_default_config"] if name is None else name
            entries = parsed.get(wanted)
            if entries is None and name is not None:
                errors.append(f"{node['host']}: gpu_node_mig_config '{name}' is not one of the MIG configs ({', '.join(sorted(parsed))})")
        nvidia = node.get("nvidia") or {}
        expected, problems = expected_resources(nvidia, entries, strategy, sharing, rename_by_default=rename, where=node["host"])
        now, _now_problems = expected_resources(nvidia, None, "mixed")
        layout, _layout_problems = expected_resources(nvidia, entries, "mixed")
        if nvidia:
            errors += problems
        results.append(
            {
                "host": node["host"],
                "node_name": node["node_name"],
                # the label the role sets; None leaves the node's label to the operator
                "mig_config": name if entries is not None else None,
                # whether the GPUs already hold that layout (else the MIG manager repartitions them)
                "mig_layout_applied": now == layout,
                "expected": expected if nvidia else None,
            }
        )
    return results


def build(
    spec: Mapping[str, Any],
    charts: Mapping[str, Any],
    nodes: Sequence[Mapping[str, Any]],
    chart_values: Mapping[str, Any] | None = None,
    dump: Callable[[Mapping[str, Any]], str] = json.dumps,
) -> dict[str, Any]:
    """The release values, the ConfigMaps and the per-node expectations; raises GpuOperatorError listing every problem.

    ``spec`` holds the role's inputs without their ``gpu_operator_`` prefix; ``charts`` is the role's table
    (version -> keys, repositories, pull_secret_components); ``chart_values`` the chart's own values.yaml,
    which makes every override key checkable (without it, overrides are limited to the table's keys);
    ``dump`` writes the ConfigMaps' documents (the filter passes YAML; JSON is YAML too).
    """
    version = spec["chart_version"]
    chart = charts.get(version)
    if chart is None:
        raise GpuOperatorError(
            [f"chart version '{version}' is not one the role knows ({', '.join(charts)}): its value keys have not been checked; add it to the role's table"]
        )
    errors: list[str] = []
    if spec["mig_strategy"] not in STRATEGIES:
        errors.append(f"gpu_operator_mig_strategy must be single or mixed, got {spec['mig_strategy']!r}")
    if not nodes:
        errors.append("there are no GPU nodes: gpu_operator_gpu_nodes matches no host of the inventory")
    driver_enabled, driver_errors = decide_driver(spec["driver_enabled"], nodes)
    errors += driver_errors
    values = _base_values(spec, driver_enabled)
    mig_values, mig_maps, parsed = _mig_manager(spec, nodes, dump, errors)
    ts_values, ts_maps, sharing = _time_slicing(spec, dump, errors)
    values["migManager"].update(mig_values)
    values["devicePlugin"].update(ts_values)
    config_maps = mig_maps + ts_maps
    errors += [f"ConfigMap name '{cm['metadata']['name']}' is not a DNS-1123 label" for cm in config_maps if not _DNS_LABEL.match(cm["metadata"]["name"])]
    values = deep_merge(values, _image_values(charts[version], spec.get("image_registry"), spec.get("image_pull_secrets") or []))
    overrides = spec.get("values_overrides") or {}
    errors += _key_problems(version, list(chart["keys"]), values, overrides, chart_values)
    node_results = _node_results(spec, nodes, parsed, sharing, errors)
    if errors:
        raise GpuOperatorError(errors)
    return {
        "chart_version": version,
        "values": deep_merge(values, overrides),
        "config_maps": config_maps,
        "driver_enabled": driver_enabled,
        "nodes": node_results,
        # what the role sets on the Node objects (render mode writes it for GitOps)
        "node_labels": {n["node_name"]: {MIG_CONFIG_LABEL: n["mig_config"]} for n in node_results if n["mig_config"] is not None},
    }


# ============================================================================================
# Tools and verification
# ============================================================================================


def parse_version(text: Any) -> tuple[int, int, int] | None:
    match = _HELM_VERSION.search(str(text or ""))
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def tool_check(helm_short: str, kubernetes_core: Any) -> dict[str, Any]:
    """Parse ``helm version --short`` (``v3.17.2+gcc8a6e1``) and judge it with the kubernetes.core version."""
    helm = parse_version(helm_short)
    kcore = parse_version(kubernetes_core)
    problems = []
    if helm is None:
        problems.append(f"cannot read the helm version from {helm_short!r}: is helm installed (gpu_operator_helm_binary)?")
    elif helm < HELM_MIN:
        problems.append(f"helm {'.'.join(map(str, helm))} is too old: install helm 3.7 or newer (3.17 or 4.1 are tested)")
    if kcore is None:
        problems.append(
            f"kubernetes.core is not installed on the controller (version {kubernetes_core!r}): ansible-galaxy collection install 'kubernetes.core>=6.4.0'"
        )
    elif helm is not None and helm[0] >= 4 and kcore < KCORE_MIN_WITH_HELM4:
        problems.append(
            f"kubernetes.core {'.'.join(map(str, kcore))} cannot drive helm {'.'.join(map(str, helm))}: before 6.4.0 it runs "
            "'helm list --all', which helm 4 removed, so installs fail after creating the release (kubernetes.core#1038). "
            "Install kubernetes.core 6.4.0 or newer (ansible-galaxy collection install 'kubernetes.core>=6.4.0'), or use helm 3"
        )
    return {
        "helm_version": ".".join(map(str, helm)) if helm else None,
        "helm_major": helm[0] if helm else None,
        "kubernetes_core_version": ".".join(map(str, kcore)) if kcore else None,
        "problems": problems,
    }


def _pod_problem(pod: Mapping[str, Any]) -> str | None:
    name = pod.get("metadata", {}).get("name", "?")
    status = pod.get("status") or {}
    phase = status.get("phase")
    if phase == "Succeeded":
        return None
    if phase != "Running":
        reasons = [
            c.get("state", {}).get("waiting", {}).get("reason")
            for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
            if c.get("state", {}).get("waiting")
        ]
        return f"pod {name} is {phase or 'unknown'}" + (f" ({', '.join(r for r in reasons if r)})" if any(reasons) else "")
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if not ready or ready.get("status") != "True":
        return f"pod {name} is running but not ready"
    return None


def verify_problems(kind: str, resources: Sequence[Mapping[str, Any]], expected: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """What is not as it must be: ``pods`` ready, the ``clusterpolicy`` ready, ``nodes`` advertising their GPU resources;
    ``mig_labels``: the MIG label changes that would make the MIG manager repartition a node's GPUs."""
    if kind == "pods":
        if not resources:
            return ["no pods in the operator's namespace yet"]
        return [p for p in (_pod_problem(pod) for pod in resources) if p]
    if kind == "clusterpolicy":
        if not resources:
            return ["no ClusterPolicy exists"]
        return [
            f"ClusterPolicy {cp.get('metadata', {}).get('name')} is {cp.get('status', {}).get('state') or 'without a state'}, not ready"
            for cp in resources
            if (cp.get("status") or {}).get("state") != "ready"
        ]
    if kind == "nodes":
        by_name = {n.get("metadata", {}).get("name"): n for n in resources}
        problems = []
        for node in expected:
            found = by_name.get(node["node_name"])
            if found is None:
                problems.append(f"node {node['node_name']} ({node['host']}) is not in the cluster; set gpu_operator_node_names if its name differs")
                continue
            allocatable = (found.get("status") or {}).get("allocatable") or {}
            reported = {k: int(v) for k, v in allocatable.items() if k.startswith("nvidia.com/") and str(v).isdigit() and int(v) > 0}
            if node.get("expected") is None:
                # no host driver, so no facts: the operator's driver is what makes its GPUs appear
                if not reported:
                    problems.append(f"node {node['node_name']} advertises no GPU resources yet")
            elif reported != node["expected"]:
                problems.append(f"node {node['node_name']} advertises {reported or 'no GPU resources'}, expected {node['expected']}")
        return problems
    if kind == "mig_labels":
        by_name = {n.get("metadata", {}).get("name"): n for n in resources}
        problems = []
        for node in expected:
            if node.get("mig_config") is None:
                continue
            found = by_name.get(node["node_name"])
            if found is None:
                problems.append(f"node {node['node_name']} ({node['host']}) is not in the cluster; set gpu_operator_node_names if its name differs")
                continue
            current = ((found.get("metadata") or {}).get("labels") or {}).get(MIG_CONFIG_LABEL)
            if current != node["mig_config"] and not node.get("mig_layout_applied"):
                problems.append(f"node {node['node_name']}: {MIG_CONFIG_LABEL} {current or '(none)'} -> {node['mig_config']} repartitions its GPUs")
        return problems
    raise ValueError(f"unknown verification kind {kind!r} (pods, clusterpolicy, nodes or mig_labels)")
