"""gpu_operator core: driver decision, MIG and time-slicing configs, per-node expectations, key checks, tools, verification."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import yaml

from ansible_collections.llmops.gpu_inference.plugins.module_utils._gpu_operator import (
    GpuOperatorError,
    build,
    chart_keys,
    decide_driver,
    expected_resources,
    node_inputs,
    parse_document,
    time_slicing_problems,
    tool_check,
    value_paths,
    verify_problems,
)
from ansible_collections.llmops.gpu_inference.plugins.module_utils._mig_layout import mig_parted_document

FIXTURES = Path(os.environ.get("NVIDIA_SMI_FIXTURES", Path(__file__).resolve().parents[4].parent / "shared" / "fixtures" / "nvidia-smi"))
ROLE_VARS = Path(__file__).resolve().parents[4] / "roles" / "gpu_operator" / "vars" / "main.yml"
CHARTS = yaml.safe_load(ROLE_VARS.read_text())["__gpu_operator_charts"]
H100 = "0x233010DE"
L40S = "0x26B910DE"


def gpu(index, device=H100, name="NVIDIA H100 80GB HBM3", mig=None, devices=()):
    return {
        "index": index,
        "name": name,
        "pci_device_id": device,
        "mig_mode_current": mig,
        "mig_mode_pending": mig,
        "mig_devices": [{"profile": p} for p in devices],
        "mig_profiles": [],
        "processes": [],
    }


def facts(*gpus, driver="550.90.07"):
    return {"driver_version": driver, "cuda_version": "12.4", "gpu_count": len(gpus), "gpus": list(gpus)}


def node(host, nvidia=None, error=None, configs=None, config=None):
    return {"host": host, "node_name": host, "nvidia": nvidia, "probe_error": error, "mig_configs": configs or {}, "mig_config": config}


BALANCED = {
    "all-disabled": [{"devices": "all", "mig-enabled": False}],
    "all-balanced": [
        {"devices": "all", "device-filter": H100, "mig-enabled": True, "mig-devices": {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}},
    ],
    "all-3g": [{"devices": "all", "device-filter": H100, "mig-enabled": True, "mig-devices": {"3g.40gb": {"count": 2, "placements": [0, 4]}}}],
}

SPEC = {
    "chart_version": "v26.7.0",
    "namespace": "gpu-operator",
    "driver_enabled": "auto",
    "driver_version": None,
    "toolkit_enabled": True,
    "device_plugin_enabled": True,
    "nfd_enabled": True,
    "mig_manager_enabled": True,
    "mig_strategy": "mixed",
    "mig_configs": None,
    "mig_default_config": "all-disabled",
    "mig_config_map": "llmops-mig-parted-config",
    "time_slicing_resources": [],
    "time_slicing_rename_by_default": False,
    "time_slicing_fail_requests_greater_than_one": True,
    "time_slicing_config_map": "llmops-device-plugin-config",
    "time_slicing_config_name": "time-slicing",
    "dcgm_exporter_enabled": True,
    "service_monitor_enabled": True,
    "service_monitor_interval": "15s",
    "service_monitor_honor_labels": False,
    "service_monitor_labels": {"release": "kube-prometheus-stack"},
    "image_registry": None,
    "image_pull_secrets": [],
    "values_overrides": {},
}


def spec(**changes):
    result = copy.deepcopy(SPEC)
    result.update(changes)
    return result


def fleet():
    return [
        node("h100-1", facts(*(gpu(i, mig="disabled") for i in range(2))), configs=BALANCED, config="all-balanced"),
        node("l40s-1", facts(gpu(0, L40S, "NVIDIA L40S"), gpu(1, L40S, "NVIDIA L40S")), configs=BALANCED),
    ]


def errors_of(*args, **kwargs):
    with pytest.raises(GpuOperatorError) as info:
        build(*args, **kwargs)
    return info.value.errors


# ---- driver decision -------------------------------------------------------------------------


def test_driver_auto_leaves_the_driver_to_hosts_that_all_have_one():
    assert decide_driver("auto", [node("a", facts(gpu(0))), node("b", facts(gpu(0)))]) == (False, [])


def test_driver_auto_installs_it_when_no_node_has_a_host_driver():
    nodes = [node("a", error="nvidia-smi not found"), node("b", error="NVIDIA-SMI has failed")]
    assert decide_driver("auto", nodes) == (True, [])


def test_driver_auto_refuses_a_mixed_fleet_naming_both_sides():
    enabled, errors = decide_driver("auto", [node("a", facts(gpu(0))), node("b", error="nvidia-smi not found")])
    assert len(errors) == 1
    assert "mixed fleet" in errors[0] and "a run a host NVIDIA driver" in errors[0] and "b do not" in errors[0] and "nvidia-smi not found" in errors[0]
    assert enabled is False


def test_driver_decision_needs_facts_of_every_node():
    _enabled, errors = decide_driver("auto", [node("a", facts(gpu(0))), node("b")])
    assert errors == [pytest.approx(errors[0])] and "no GPU facts for b" in errors[0]


@pytest.mark.parametrize(
    ("setting", "nodes", "message"),
    [
        (True, [node("a", facts(gpu(0)))], "already run a host NVIDIA driver"),
        (False, [node("a", error="missing")], "have no working host driver"),
        ("yes", [node("a", facts(gpu(0)))], "must be auto, true or false"),
    ],
)
def test_explicit_driver_settings_that_contradict_the_facts_fail(setting, nodes, message):
    _enabled, errors = decide_driver(setting, nodes)
    assert any(message in e for e in errors)


# ---- per-node expectations -------------------------------------------------------------------


def test_whole_gpus_come_from_the_facts():
    assert expected_resources(facts(*(gpu(i) for i in range(8))), None, "single") == ({"nvidia.com/gpu": 8}, [])


def test_mixed_strategy_matches_what_the_real_operator_advertised_for_all_balanced():
    """The GPU Operator's own node labels for all-balanced on one H100 (NVIDIA/cloud-native-docs capture)."""
    path = FIXTURES / "gpu-operator-h100-node-labels-mig-mixed-all-balanced.json"
    if not path.exists():
        pytest.skip(f"real GPU Operator node labels not found at {path} (set NVIDIA_SMI_FIXTURES)")
    labels = json.loads(path.read_text())
    advertised = {
        key.removesuffix(".count"): int(value) for key, value in labels.items() if key.startswith("nvidia.com/mig-") and key.endswith(".count") and int(value)
    }
    entries = parse_document({"version": "v1", "mig-configs": BALANCED})["all-balanced"]
    expected, problems = expected_resources(facts(gpu(0, mig="disabled")), entries, labels["nvidia.com/mig.strategy"])
    assert problems == []
    assert expected == advertised == {"nvidia.com/mig-1g.10gb": 2, "nvidia.com/mig-2g.20gb": 1, "nvidia.com/mig-3g.40gb": 1}


def test_layout_applies_only_to_the_gpus_its_device_filter_selects():
    entries = parse_document({"version": "v1", "mig-configs": BALANCED})["all-3g"]
    mixed_node = facts(gpu(0, mig="disabled"), gpu(1, L40S, "NVIDIA L40S"))
    assert expected_resources(mixed_node, entries, "mixed") == ({"nvidia.com/gpu": 1, "nvidia.com/mig-3g.40gb": 2}, [])


def test_single_strategy_counts_mig_devices_as_gpus_and_refuses_mixed_profiles():
    entries = parse_document({"version": "v1", "mig-configs": BALANCED})
    assert expected_resources(facts(gpu(0, mig="enabled"), gpu(1, mig="enabled")), entries["all-3g"], "single") == ({"nvidia.com/gpu": 4}, [])
    _expected, problems = expected_resources(facts(gpu(0, mig="enabled")), entries["all-balanced"], "single", where="h100-1")
    assert len(problems) == 1 and "h100-1" in problems[0] and "1g.10gb, 2g.20gb, 3g.40gb" in problems[0] and "mixed" in problems[0]


def test_mig_devices_in_the_facts_count_when_no_layout_is_managed():
    node_facts = facts(gpu(0, mig="enabled", devices=["3g.40gb", "3g.40gb"]), gpu(1))
    assert expected_resources(node_facts, None, "mixed") == ({"nvidia.com/gpu": 1, "nvidia.com/mig-3g.40gb": 2}, [])


def test_time_slicing_multiplies_and_optionally_renames():
    node_facts = facts(gpu(0), gpu(1))
    sharing = [{"name": "nvidia.com/gpu", "replicas": 4}]
    assert expected_resources(node_facts, None, "single", sharing) == ({"nvidia.com/gpu": 8}, [])
    assert expected_resources(node_facts, None, "single", sharing, rename_by_default=True) == ({"nvidia.com/gpu.shared": 8}, [])


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ([{"name": "nvidia.com/gpu", "replicas": 1}], "at least 2"),
        ([{"name": "nvidia.com/gpu", "replicas": True}], "at least 2"),
        ([{"name": "nvidia.com/tpu", "replicas": 2}], "not a GPU resource"),
        ([{"name": "nvidia.com/mig-9g.1gb", "replicas": 2}], "names no MIG profile"),
        ([{"name": "nvidia.com/gpu", "replicas": 2}, {"name": "nvidia.com/gpu", "replicas": 3}], "listed twice"),
        ([{"name": "nvidia.com/gpu"}], "exactly the keys name and replicas"),
        ({"name": "nvidia.com/gpu"}, "must be a list"),
    ],
)
def test_bad_time_slicing_inputs_are_named(resources, message):
    assert any(message in e for e in time_slicing_problems(resources))


# ---- keys ------------------------------------------------------------------------------------


def test_chart_keys_use_the_key_list_notation():
    values = {"operator": {"annotations": {"openshift.io/scc": "x"}, "tolerations": [{"key": "a"}]}, "daemonsets": {"labels": {}}}
    assert list(chart_keys(values)) == ["operator.annotations.openshift\\.io/scc", "operator.tolerations[]", "daemonsets.labels"]


def test_value_paths_stop_at_map_valued_chart_keys():
    known = {"dcgmExporter.serviceMonitor.additionalLabels": {}, "driver.enabled": True}
    values = {"dcgmExporter": {"serviceMonitor": {"additionalLabels": {"release": "prom"}}}, "driver": {"enabled": False, "typo": 1}}
    assert value_paths(values, known) == ["dcgmExporter.serviceMonitor.additionalLabels", "driver.enabled", "driver.typo"]


# ---- build -----------------------------------------------------------------------------------


def test_build_makes_values_and_a_mig_configmap_from_the_gpu_node_layouts():
    release = build(spec(), CHARTS, fleet())
    values = release["values"]
    assert values["driver"] == {"enabled": False}
    assert values["mig"] == {"strategy": "mixed"}
    assert values["migManager"] == {"enabled": True, "config": {"name": "llmops-mig-parted-config", "default": "all-disabled"}}
    assert values["dcgmExporter"]["serviceMonitor"] == {
        "enabled": True,
        "interval": "15s",
        "honorLabels": False,
        "additionalLabels": {"release": "kube-prometheus-stack"},
    }
    assert "config" not in values["devicePlugin"]
    [cm] = release["config_maps"]
    assert cm["metadata"] == {
        "name": "llmops-mig-parted-config",
        "namespace": "gpu-operator",
        "labels": {"app.kubernetes.io/managed-by": "llmops.gpu_inference.gpu_operator"},
    }
    # the same layouts as gpu_node, placement pins dropped as mig-parted needs
    assert json.loads(cm["data"]["config.yaml"]) == mig_parted_document({"version": "v1", "mig-configs": BALANCED})
    assert release["node_labels"] == {"h100-1": {"nvidia.com/mig.config": "all-balanced"}}
    by_host = {n["host"]: n for n in release["nodes"]}
    assert by_host["h100-1"]["expected"] == {"nvidia.com/mig-1g.10gb": 4, "nvidia.com/mig-2g.20gb": 2, "nvidia.com/mig-3g.40gb": 2}
    assert by_host["h100-1"]["mig_layout_applied"] is False
    assert by_host["l40s-1"] == {"host": "l40s-1", "node_name": "l40s-1", "mig_config": None, "mig_layout_applied": True, "expected": {"nvidia.com/gpu": 2}}


def test_build_adds_all_disabled_when_the_layouts_lack_the_default():
    layouts = {"all-3g": BALANCED["all-3g"]}
    release = build(spec(mig_configs=layouts), CHARTS, fleet()[1:])
    document = json.loads(release["config_maps"][0]["data"]["config.yaml"])
    assert document["mig-configs"]["all-disabled"] == [{"devices": "all", "mig-enabled": False}]


def test_build_writes_the_time_slicing_config():
    sharing = [{"name": "nvidia.com/gpu", "replicas": 4}]
    release = build(spec(time_slicing_resources=sharing, mig_manager_enabled=False), CHARTS, fleet())
    [cm] = release["config_maps"]
    assert release["values"]["devicePlugin"]["config"] == {"name": "llmops-device-plugin-config", "default": "time-slicing"}
    assert json.loads(cm["data"]["time-slicing"]) == {
        "version": "v1",
        "flags": {"migStrategy": "mixed"},
        "sharing": {"timeSlicing": {"renameByDefault": False, "failRequestsGreaterThanOne": True, "resources": sharing}},
    }
    assert {n["host"]: n["expected"] for n in release["nodes"]} == {"h100-1": {"nvidia.com/gpu": 8}, "l40s-1": {"nvidia.com/gpu": 8}}


def test_build_moves_every_image_to_the_mirror_and_sets_pull_secrets():
    release = build(spec(image_registry="registry.example.internal/ngc/", image_pull_secrets=["ngc-mirror"]), CHARTS, fleet())
    values = release["values"]
    assert values["toolkit"]["repository"] == "registry.example.internal/ngc/nvidia/k8s"
    assert values["driver"]["manager"]["repository"] == "registry.example.internal/ngc/nvidia/cloud-native"
    assert values["operator"]["imagePullSecrets"] == ["ngc-mirror"]
    repositories = [path for path in value_paths(values, CHARTS["v26.7.0"]["keys"]) if path.endswith(".repository")]
    assert len(repositories) == len(CHARTS["v26.7.0"]["repositories"])


def test_build_refuses_an_unknown_chart_version():
    assert "not one the role knows (v24.6.2, v25.3.4, v25.10.1, v26.7.0)" in errors_of(spec(chart_version="v23.9.0"), CHARTS, fleet())[0]


def test_build_refuses_a_key_missing_from_the_role_table():
    table = copy.deepcopy(CHARTS)
    table["v26.7.0"]["keys"].remove("nfd.enabled")
    assert errors_of(spec(), table, fleet()) == ["the role would set 'nfd.enabled', which is not in its key table for v26.7.0"]


def test_overrides_beyond_the_table_need_the_charts_values():
    overrides = {"operator": {"resources": {"limits": {"memory": "1Gi"}}}}
    [error] = errors_of(spec(values_overrides=overrides), CHARTS, fleet())
    assert "operator.resources.limits.memory" in error and "gpu_operator_chart_values_path" in error
    chart = {"operator": {"resources": {"limits": {"memory": "350Mi"}}}}
    assert build(spec(values_overrides=overrides), CHARTS, fleet(), chart_values=chart)["values"]["operator"] == overrides["operator"]


def test_an_override_the_chart_lacks_is_named_with_a_suggestion():
    chart = {"driver": {"kernelModuleType": "auto", "enabled": True}}
    [error] = errors_of(spec(values_overrides={"driver": {"kernelModuleTyp": "open"}}), CHARTS, fleet(), chart_values=chart)
    assert (
        error == "gpu_operator_values_overrides sets 'driver.kernelModuleTyp', a key the chart does not have (did you mean driver.kernelModuleType?) at v26.7.0"
    )


def test_build_lists_every_problem_at_once():
    nodes = [*fleet(), node("gpu-x", error="nvidia-smi not found", config="nope")]
    errors = errors_of(spec(mig_strategy="single", time_slicing_resources=[{"name": "nvidia.com/gpu", "replicas": 1}]), CHARTS, nodes)
    assert any("mixed fleet" in e for e in errors)
    assert any("at least 2" in e for e in errors)
    assert any("gpu-x: gpu_node_mig_config 'nope'" in e for e in errors)
    assert any("h100-1: MIG strategy 'single'" in e for e in errors)


def test_layouts_that_differ_between_nodes_under_one_name_fail():
    other = copy.deepcopy(BALANCED)
    other["all-3g"][0]["mig-devices"] = {"3g.40gb": 1}
    nodes = [node("a", facts(gpu(0)), configs=BALANCED), node("b", facts(gpu(0)), configs=other)]
    assert any("MIG config 'all-3g' differs between a and b" in e for e in errors_of(spec(), CHARTS, nodes))


def test_an_invalid_layout_fails_with_the_mig_layout_message():
    broken = {"bad": [{"devices": "all", "mig-enabled": True, "mig-devices": {"5g.1gb": 1}}]}
    assert any(e.startswith("MIG configs: config 'bad' entry 1") for e in errors_of(spec(mig_configs=broken), CHARTS, fleet()[1:]))


def test_no_gpu_nodes_is_an_error():
    assert any("no GPU nodes" in e for e in errors_of(spec(), CHARTS, []))


def test_node_inputs_read_hostvars():
    hostvars = {
        "g1": {"ansible_facts": {"nvidia": facts(gpu(0))}, "gpu_node_mig_config": "all-3g", "gpu_node_mig_configs": BALANCED},
        "g2": {"nvidia_smi_error": "boom"},
    }
    nodes = node_inputs(hostvars, ["g1", "g2"], {"g2": "gpu-2.cluster.local"})
    assert [(n["host"], n["node_name"], n["mig_config"], n["probe_error"]) for n in nodes] == [
        ("g1", "g1", "all-3g", None),
        ("g2", "gpu-2.cluster.local", None, "boom"),
    ]


# ---- tools -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("helm", "kcore", "major", "problem"),
    [
        ("v3.17.2+gcc8a6e1", "6.2.0", 3, None),
        ("v4.1.4+g05fa379", "6.5.0", 4, None),
        ("v4.1.4+g05fa379", "6.2.0", 4, "kubernetes.core 6.2.0 cannot drive helm 4.1.4"),
        ("v3.6.3+gd506314", "6.5.0", 3, "too old"),
        ("", "6.5.0", None, "cannot read the helm version"),
        ("v3.17.2", None, 3, "kubernetes.core is not installed"),
    ],
)
def test_tool_check(helm, kcore, major, problem):
    result = tool_check(helm, kcore)
    assert result["helm_major"] == major
    if problem is None:
        assert result["problems"] == []
    else:
        assert len(result["problems"]) == 1 and problem in result["problems"][0]


# ---- verification ----------------------------------------------------------------------------


def pod(name, phase, ready=True):
    return {"metadata": {"name": name}, "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_pods_must_be_ready_or_completed():
    assert verify_problems("pods", [pod("operator", "Running"), pod("cuda-validator", "Succeeded", ready=False)]) == []
    assert verify_problems("pods", [pod("dp", "Running", ready=False), pod("driver", "Pending")]) == [
        "pod dp is running but not ready",
        "pod driver is Pending",
    ]
    assert verify_problems("pods", []) == ["no pods in the operator's namespace yet"]


def test_clusterpolicy_must_be_ready():
    assert verify_problems("clusterpolicy", [{"metadata": {"name": "cluster-policy"}, "status": {"state": "ready"}}]) == []
    assert verify_problems("clusterpolicy", [{"metadata": {"name": "cluster-policy"}, "status": {"state": "notReady"}}]) == [
        "ClusterPolicy cluster-policy is notReady, not ready"
    ]


def test_nodes_must_advertise_exactly_what_is_expected():
    expected = [
        {"host": "a", "node_name": "a", "expected": {"nvidia.com/gpu": 2}},
        {"host": "b", "node_name": "b", "expected": None},
        {"host": "c", "node_name": "c", "expected": {"nvidia.com/gpu": 1}},
    ]
    nodes = [
        {"metadata": {"name": "a"}, "status": {"allocatable": {"cpu": "64", "nvidia.com/gpu": "1"}}},
        {"metadata": {"name": "b"}, "status": {"allocatable": {"cpu": "64"}}},
    ]
    assert verify_problems("nodes", nodes, expected) == [
        "node a advertises {'nvidia.com/gpu': 1}, expected {'nvidia.com/gpu': 2}",
        "node b advertises no GPU resources yet",
        "node c (c) is not in the cluster; set gpu_operator_node_names if its name differs",
    ]


def test_a_mig_label_change_on_gpus_without_the_layout_is_a_repartition():
    expected = [
        {"host": "a", "node_name": "a", "mig_config": "all-3g", "mig_layout_applied": False},
        {"host": "b", "node_name": "b", "mig_config": "all-3g", "mig_layout_applied": True},
        {"host": "c", "node_name": "c", "mig_config": "all-3g", "mig_layout_applied": False},
    ]
    nodes = [
        {"metadata": {"name": "a", "labels": {"nvidia.com/mig.config": "all-disabled"}}},
        {"metadata": {"name": "b", "labels": {}}},
        {"metadata": {"name": "c", "labels": {"nvidia.com/mig.config": "all-3g"}}},
    ]
    assert verify_problems("mig_labels", nodes, expected) == ["node a: nvidia.com/mig.config all-disabled -> all-3g repartitions its GPUs"]


def test_unknown_verification_kind_is_an_error():
    with pytest.raises(ValueError, match="unknown verification kind"):
        verify_problems("deployments", [])
