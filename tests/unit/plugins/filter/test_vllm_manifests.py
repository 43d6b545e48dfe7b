"""The vllm_manifests filter is a thin wrapper: the core's result, the core's problems as an AnsibleFilterError."""

from __future__ import annotations

import copy

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.gpu_inference.plugins.filter.vllm_manifests import FilterModule, vllm_manifests
from ansible_collections.llmops.gpu_inference.plugins.module_utils._vllm_manifests import VllmRenderError, render

CONFIG = {"namespace": "llm", "gateway": {"parent_refs": [{"name": "inference", "namespace": "gateway"}]}}
MODELS = [{"name": "qwen7b", "max_model_len": 32768}, {"name": "llama70b", "tensor_parallel_size": 4, "autoscaling": {"type": "hpa"}}]


def test_filter_is_registered_under_its_name():
    assert FilterModule().filters() == {"vllm_manifests": vllm_manifests}


def test_filter_returns_what_the_core_renders():
    assert vllm_manifests(copy.deepcopy(MODELS), copy.deepcopy(CONFIG)) == render(copy.deepcopy(MODELS), copy.deepcopy(CONFIG))


def test_filter_turns_every_render_problem_into_one_filter_error():
    models = [{"name": "Bad_Name"}, {"name": "m", "image": "vllm/vllm-openai:latest", "replica": 2}]
    with pytest.raises(VllmRenderError) as core:
        render(copy.deepcopy(models), CONFIG)
    with pytest.raises(AnsibleFilterError) as info:
        vllm_manifests(models, CONFIG)
    message = str(info.value)
    assert message.startswith("vllm_manifests: 3 problem(s) in vllm_models / the vllm_ variables:\n")
    assert len(core.value.problems) == 3
    for line in core.value.problems:
        assert line in message
    assert isinstance(info.value.__cause__, VllmRenderError)
