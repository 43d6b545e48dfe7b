"""vllm_preflight through AnsibleModule: check mode, fail_on_error, model_config_path, argument checks, docs."""

from __future__ import annotations

import json

import pytest
import yaml
from module_harness import assert_options_documented, run_module

from ansible_collections.llmops.gpu_inference.plugins.module_utils._vllm_preflight import preflight
from ansible_collections.llmops.gpu_inference.plugins.modules import vllm_preflight

# Qwen2.5-7B-Instruct config.json (values of ../shared/reference/vllm-on-kubernetes.md section 2.6)
QWEN_7B = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 3584,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "intermediate_size": 18944,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
}
# One A100 40GB, the seed guide's deployment: fits (45 sequences of 8192 tokens), with one warning (64 > 45).
FITS = {"model_config": QWEN_7B, "gpu_memory_mib": 40960, "gpu_limit": 1, "max_model_len": 8192, "max_num_seqs": 64}
# The seed guide's 1g.5gb MIG slice: 14.2 GiB of weights on 4.3 usable GiB.
TOO_SMALL = {"model_config": QWEN_7B, "gpu_resource": "nvidia.com/mig-1g.5gb", "gpu_limit": 1, "max_model_len": 8192}


def run(args, check_mode=False):
    return run_module(vllm_preflight.main, args, check_mode=check_mode)


@pytest.mark.parametrize("check_mode", [False, True])
def test_returns_the_verdict_and_never_changes(check_mode):
    done = run(FITS, check_mode=check_mode)
    assert not done.failed
    assert done.result["changed"] is False
    assert done.result["ok"] is True and done.result["errors"] == []
    assert done.result["estimates"] == {
        "weights_gib_per_gpu": 14.18,
        "kv_bytes_per_token_per_gpu": 57344,
        "kv_cache_gib_per_gpu": 19.82,
        "max_tokens_in_kv": 371024,
        "max_concurrent_seqs_at_max_len": 45,
    }
    # warnings go through AnsibleModule.warn (Ansible returns them as the result's `warnings`), never as a kwarg
    assert "warnings" not in done.result
    assert len(done.warned) == 1 and done.warned[0].startswith("max_num_seqs 64 is above the 45 sequences")


def test_check_mode_gives_the_same_answer_as_a_normal_run():
    assert run(TOO_SMALL, check_mode=True).result == run(TOO_SMALL).result


def test_errors_fail_the_task_listing_every_error_with_the_verdict():
    done = run(TOO_SMALL)
    assert done.failed
    assert done.result["msg"] == (
        "vLLM preflight found 1 error: (1) weights need 14.2 GiB per GPU plus 2.0 GiB activation and runtime overhead, "
        "but only 4.3 GiB of the 4864 MiB nvidia.com/mig-1g.5gb slice is usable at gpu_memory_utilization 0.9; "
        "use a larger MIG profile or a whole GPU"
    )
    assert done.result["ok"] is False and done.result["changed"] is False
    assert done.result["errors"] == [done.result["msg"].split("(1) ", 1)[1]]
    assert done.result["estimates"]["weights_gib_per_gpu"] == 14.18


def test_several_errors_are_numbered_in_the_message():
    done = run(dict(FITS, tensor_parallel_size=8, gpu_limit=4, extra_args=["--num-scheduler-steps", "8"], vllm_version="0.11.0"))
    assert done.failed
    assert done.result["msg"].startswith("vLLM preflight found 3 errors: (1) num_attention_heads 28 is not divisible")
    assert " (2) gpu_limit 4 (nvidia.com/gpu) is not " in done.result["msg"]
    assert " (3) --num-scheduler-steps in extra_args was removed" in done.result["msg"]
    assert len(done.result["errors"]) == 3


def test_fail_on_error_false_returns_the_verdict():
    done = run(dict(TOO_SMALL, fail_on_error=False))
    assert not done.failed
    assert done.result["ok"] is False
    assert done.result["errors"][0].startswith("weights need 14.2 GiB per GPU")
    assert done.result["estimates"]["max_concurrent_seqs_at_max_len"] == 0
    assert done.warned == []


def test_module_result_is_the_core_verdict():
    args = dict(FITS, tensor_parallel_size="1", shm_size="1Gi", memory_limit="16Gi", vllm_version="0.12.0")
    done = run(args)
    # string numbers are converted by the argument spec as Ansible does for templated values
    expected = preflight(
        model_config=QWEN_7B,
        gpu_memory_mib=40960,
        gpu_limit=1,
        max_model_len=8192,
        max_num_seqs=64,
        shm_size="1Gi",
        memory_limit="16Gi",
        vllm_version="0.12.0",
    )
    assert done.warned == expected.pop("warnings") and len(done.warned) == 2
    assert {key: done.result[key] for key in expected} == expected


def test_model_config_path_is_read_on_the_node(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(QWEN_7B), encoding="utf-8")
    from_path = run(dict({k: v for k, v in FITS.items() if k != "model_config"}, model_config_path=str(path)))
    from_dict = run(FITS)
    assert not from_path.failed
    assert from_path.result == from_dict.result


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "does not exist or is not a file"),
        ('{"hidden_size": 3584,', "is not valid JSON: "),
        ("[1, 2]", "model_config must be a JSON object (config.json), got list"),
        ('{"hidden_size": 3584}', "model_config has no num_hidden_layers"),
    ],
)
def test_unreadable_model_config_path_fails_whatever_fail_on_error_says(tmp_path, content, message):
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    args = dict({k: v for k, v in FITS.items() if k != "model_config"}, model_config_path=str(path), fail_on_error=False)
    done = run(args)
    assert done.failed
    assert message in done.result["msg"]
    if content is None:
        assert done.result["msg"] == f"model_config_path {path} does not exist or is not a file"


def test_model_config_and_its_path_are_mutually_exclusive(tmp_path):
    done = run(dict(FITS, model_config_path=str(tmp_path / "config.json")))
    assert done.failed and "mutually exclusive" in done.result["msg"]


def test_one_of_model_config_and_its_path_is_required():
    done = run({k: v for k, v in FITS.items() if k != "model_config"})
    assert done.failed and "one of the following is required: model_config, model_config_path" in done.result["msg"]


def test_gpu_memory_is_required_for_whole_gpus_but_not_for_mig():
    done = run({k: v for k, v in FITS.items() if k != "gpu_memory_mib"})
    assert done.failed and "gpu_resource is nvidia.com/gpu but all of the following are missing: gpu_memory_mib" in done.result["msg"]
    assert "gpu_memory_mib" not in TOO_SMALL and run(dict(TOO_SMALL, fail_on_error=False)).failed is False


def test_bad_quantity_fails_with_the_reason():
    done = run(dict(FITS, memory_limit="32GB", fail_on_error=False))
    assert done.failed and done.result["msg"] == "memory_limit '32GB' is not a Kubernetes memory quantity such as 32Gi, 512Mi or 8G"


# --------------------------------------------------------------------------------------------
# Documentation (what validate-modules checks, without its dependencies)
# --------------------------------------------------------------------------------------------

DOC = yaml.safe_load(vllm_preflight.DOCUMENTATION)
TYPE_NAMES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict, "path": str}


def test_documented_options_match_the_argument_spec():
    assert_options_documented(vllm_preflight.DOCUMENTATION, vllm_preflight.ARGUMENT_SPEC)


def test_documented_return_keys_match_what_the_module_returns():
    returned = yaml.safe_load(vllm_preflight.RETURN)
    assert set(returned) == {"ok", "errors", "warnings", "estimates", "msg"}
    done = run(FITS)
    assert set(returned["estimates"]["contains"]) == set(done.result["estimates"])
    for key, doc in returned["estimates"]["contains"].items():
        assert isinstance(doc["sample"], TYPE_NAMES[doc["type"]]), key
        assert isinstance(done.result["estimates"][key], TYPE_NAMES[doc["type"]]), key


def test_examples_use_the_fqcn_and_register():
    tasks = yaml.safe_load(vllm_preflight.EXAMPLES)
    ours = [task for task in tasks if "llmops.gpu_inference.vllm_preflight" in task]
    assert len(ours) == 3
    assert all(task["name"] for task in tasks)
    assert not [task for task in tasks if "vllm_preflight" in task]
    assert sum("register" in task for task in ours) == 2


def test_docs_declare_check_mode_support():
    assert DOC["version_added"] == "0.1.0"
    assert "llmops.gpu_inference.attributes.info_module" in DOC["extends_documentation_fragment"]
