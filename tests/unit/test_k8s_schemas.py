"""The test-side validator (tests/unit/k8s_schemas.py) rejects what the API server would reject."""

from __future__ import annotations

import re
from pathlib import Path

import k8s_schemas
import pytest
from k8s_schemas import SchemaError, copy_with, problems, validate

LABELS = {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": "qwen"}

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "qwen", "namespace": "llm", "labels": {**LABELS, "app.kubernetes.io/version": "0.29.0"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": LABELS},
        "template": {
            "metadata": {"labels": LABELS},
            "spec": {
                "containers": [
                    {
                        "name": "vllm",
                        "image": "vllm/vllm-openai:v0.29.0",
                        "ports": [{"name": "http", "containerPort": 8000}],
                        "resources": {"requests": {"cpu": "4", "memory": "18Gi", "nvidia.com/gpu": 1}, "limits": {"memory": "18Gi", "nvidia.com/gpu": 1}},
                        "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],
                    }
                ],
                "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}],
            },
        },
    },
}

SCALED_OBJECT = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "ScaledObject",
    "metadata": {"name": "qwen", "namespace": "llm"},
    "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "qwen"},
        "minReplicaCount": 1,
        "maxReplicaCount": 4,
        "triggers": [{"type": "prometheus", "name": "queue", "metricType": "AverageValue", "metadata": {"query": "sum(up)", "threshold": "5"}}],
    },
}

HTTP_ROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "qwen", "namespace": "llm"},
    "spec": {
        "parentRefs": [{"name": "inference", "namespace": "gateway"}],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}, "headers": [{"type": "Exact", "name": "x-model-id", "value": "qwen"}]}],
                "backendRefs": [{"name": "qwen", "port": 8000}],
            }
        ],
    },
}


def _needs_crds() -> None:
    if not k8s_schemas.CRD_SCHEMAS.is_dir():
        pytest.skip(f"CRD schemas not found at {k8s_schemas.CRD_SCHEMAS} (set K8S_CRD_SCHEMAS)")


def test_default_versions_are_1_31_and_the_newest_shipped():
    assert k8s_schemas.DEFAULT_K8S_VERSIONS[0] == "1.31.0"
    assert k8s_schemas.DEFAULT_K8S_VERSIONS[1] == k8s_schemas.NEWEST_K8S
    assert k8s_schemas._version_key(k8s_schemas.NEWEST_K8S) >= (1, 31)


@pytest.mark.parametrize("obj", [DEPLOYMENT, SCALED_OBJECT, HTTP_ROUTE], ids=lambda o: o["kind"])
def test_valid_objects_pass(obj):
    if obj["kind"] != "Deployment":
        _needs_crds()
    validate(obj)


@pytest.mark.parametrize(
    ("obj", "path", "value", "message"),
    [
        (DEPLOYMENT, "spec.replcas", 2, r"spec: Additional properties are not allowed \('replcas' was unexpected\)"),
        (DEPLOYMENT, "spec.template.spec.containers.0.imagePullPolicyy", "Always", r"'imagePullPolicyy' was unexpected"),
        (DEPLOYMENT, "metadata.lables", {}, r"'lables' was unexpected"),
        (SCALED_OBJECT, "spec.pollingIntervall", 15, r"spec: Additional properties are not allowed \('pollingIntervall' was unexpected\)"),
        (SCALED_OBJECT, "spec.scaleTargetRef.nmae", "x", r"'nmae' was unexpected"),
        (HTTP_ROUTE, "spec.rules.0.backendRefs.0.prot", 8000, r"'prot' was unexpected"),
        (SCALED_OBJECT, "metadata.lables", {}, r"ObjectMeta.*'lables' was unexpected"),
    ],
    ids=["core-top", "core-nested", "core-metadata", "crd-top", "crd-nested", "crd-list-item", "crd-metadata"],
)
def test_misspelled_field_is_rejected_in_both_versions(obj, path, value, message):
    if obj["kind"] != "Deployment":
        _needs_crds()
    found = problems(copy_with(obj, path, value))
    assert found
    assert all(re.search(message, line) for line in found), found
    if obj["kind"] == "Deployment":
        assert {re.search(r"Kubernetes (\S+)\)", line).group(1) for line in found} == {"1.31.0", k8s_schemas.NEWEST_K8S}


@pytest.mark.parametrize(
    ("obj", "path", "value", "message"),
    [
        (DEPLOYMENT, "spec.replicas", "2", r"spec.replicas: '2' is not of type 'integer'"),
        (DEPLOYMENT, "spec.template.spec.containers.0.ports.0.containerPort", "8000", r"containerPort: '8000' is not of type 'integer'"),
        (SCALED_OBJECT, "spec.minReplicaCount", "1", r"spec.minReplicaCount: '1' is not of type 'integer'"),
        (SCALED_OBJECT, "spec.triggers.0.metadata.threshold", 5, r"threshold: 5 is not of type 'string'"),
        (HTTP_ROUTE, "spec.rules.0.matches.0.path.type", "Prefix", r"'Prefix' is not one of"),
    ],
)
def test_wrong_type_or_value_is_rejected(obj, path, value, message):
    if obj["kind"] != "Deployment":
        _needs_crds()
    with pytest.raises(SchemaError, match=message):
        validate(copy_with(obj, path, value))


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        ("apps/v1", "Deploymnt"),
        ("apps.example.com/v1", "Deployment"),  # same file prefix as apps/v1, different group
        ("autoscaling/v2", "HorizontalPodAutoscalerSpec"),  # a sub-structure schema, not a kind
        ("keda.sh/v1alpha1", "ScaledObjects"),
        ("keda.sh/v1", "ScaledObject"),
        ("example.com/v1", "Widget"),
    ],
)
def test_unknown_kind_is_an_error(api_version, kind):
    with pytest.raises(SchemaError, match=rf"unknown kind {kind} in apiVersion {re.escape(api_version)}"):
        validate({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}})


def test_kubernetes_version_outside_the_package_is_an_error():
    with pytest.raises(SchemaError, match=r"Kubernetes 9.99.0 is not covered"):
        validate(DEPLOYMENT, k8s_versions=("9.99.0",))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("metadata.name", "Qwen_7B", r"metadata.name 'Qwen_7B' is not a valid DNS-1123 subdomain"),
        ("metadata.namespace", "LLM", r"metadata.namespace 'LLM' is not a valid DNS-1123 label"),
        ("metadata.labels", {"app.kubernetes.io/version": "v0.29.0+cu128"}, r"value 'v0.29.0\+cu128'"),
        ("metadata.labels", {"bad key!": "x"}, r"key 'bad key!'"),
        ("metadata.labels", {"Example.com/x": "y"}, r"prefix must be a DNS-1123 subdomain"),
        ("metadata.labels", {"a": "x" * 64}, r"<= 63"),
        ("metadata.annotations", {"a": 1}, r"annotations\[a\] value 1 is not a string"),
    ],
)
def test_metadata_rules(path, value, message):
    with pytest.raises(SchemaError, match=message):
        validate(copy_with(DEPLOYMENT, path, value))


def test_service_names_must_be_dns1035_labels():
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "7b-model"}, "spec": {"ports": [{"port": 8000}]}}
    with pytest.raises(SchemaError, match=r"'7b-model' is not a valid DNS-1035 label"):
        validate(service)
    validate(copy_with(service, "metadata.name", "model-7b"))


def test_namespace_on_a_cluster_scoped_kind_is_an_error():
    with pytest.raises(SchemaError, match=r"namespace 'llm' set on cluster-scoped kind Namespace"):
        validate({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "namespace": "llm"}})


def test_selector_must_match_template_labels():
    with pytest.raises(SchemaError, match=r"spec.selector.matchLabels .* do not match spec.template.metadata.labels"):
        validate(copy_with(DEPLOYMENT, "spec.template.metadata.labels", {"app.kubernetes.io/name": "vllm"}))


@pytest.mark.parametrize(
    ("requests", "limits", "message"),
    [
        ({"nvidia.com/gpu": 1}, {}, r"extended resource nvidia.com/gpu: a limit is required"),
        ({"nvidia.com/gpu": 2}, {"nvidia.com/gpu": 1}, r"request 2 must equal limit 1"),
        ({}, {"nvidia.com/gpu": "500m"}, r"not a whole number"),
        ({"memory": "20Gi"}, {"memory": "18Gi"}, r"request 20Gi exceeds limit 18Gi"),
        ({"memory": "18 Gi"}, {}, r"not a Kubernetes quantity"),
    ],
)
def test_container_resource_rules(requests, limits, message):
    with pytest.raises(SchemaError, match=message):
        validate(copy_with(DEPLOYMENT, "spec.template.spec.containers.0.resources", {"requests": requests, "limits": limits}))


def test_mount_of_an_undeclared_volume_is_an_error():
    with pytest.raises(SchemaError, match=r"mounts volume 'shm', which is not in spec.volumes"):
        validate(copy_with(DEPLOYMENT, "spec.template.spec.volumes", []))


def test_tuples_are_not_accepted_as_lists():
    with pytest.raises(SchemaError, match=r"changes when serialised"):
        validate(copy_with(DEPLOYMENT, "spec.template.spec.volumes", ({"name": "shm", "emptyDir": {}},)))


def test_every_problem_is_listed():
    broken = copy_with(copy_with(DEPLOYMENT, "spec.replcas", 1), "metadata.name", "Bad_Name")
    with pytest.raises(SchemaError) as info:
        validate(broken)
    text = str(info.value)
    assert "'replcas' was unexpected" in text
    assert "'Bad_Name' is not a valid DNS-1123 subdomain" in text
    assert len(info.value.problems) == 3  # the field in each of the two versions, the name once


def test_crd_release_selects_the_clusterpolicy_file():
    _needs_crds()
    policy = {"apiVersion": "nvidia.com/v1", "kind": "ClusterPolicy", "metadata": {"name": "cluster-policy"}, "spec": {}}
    default = problems(policy)
    old = problems(policy, crd_release="v24.6.2")
    assert default
    assert all("nvidia.com_clusterpolicies-v26.7.0.yaml" in line for line in default)
    assert all("nvidia.com_clusterpolicies-v24.6.2.yaml" in line for line in old)


def test_preserve_unknown_fields_stays_open():
    schema = k8s_schemas._closed({"type": "object", "properties": {"a": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {}}}})
    assert schema["additionalProperties"] is False
    assert "additionalProperties" not in schema["properties"]["a"]


def test_go_inline_flags_are_moved_to_the_front():
    assert re.search(k8s_schemas._go_pattern("^(?i)(abort|warn)?$"), "WARN")
    assert k8s_schemas._go_pattern("^[a-z]+$") == "^[a-z]+$"


def test_missing_crd_folder_skips_known_groups_only(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(k8s_schemas, "CRD_SCHEMAS", tmp_path / "absent")
    with pytest.raises(pytest.skip.Exception, match=r"CRD schemas not found .*K8S_CRD_SCHEMAS"):
        validate(SCALED_OBJECT)
    with pytest.raises(SchemaError, match=r"unknown kind Widget"):
        validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "x"}})
