"""vllm_preflight core: real model configs x GPUs x TP against hand calculations, then one test per rule.

Model configs: the values of ../shared/reference/vllm-on-kubernetes.md section 2.6, which copies them from the
official config.json files (republished on the hub: osllmai-community/Qwen2.5-{7B,14B}-Instruct,
ehristoforu/qwen2.5-test-32b-it, OPEA/Qwen2.5-72B-Instruct-int4-sym-inc, NaniDAO/Meta-Llama-3.1-8B-Instruct-ablated;
Llama-3.1-70B = the Llama-3-70B config of failspy/llama-3-70B-Instruct-abliterated plus the Llama-3.1 context
change seen in the 8B config).

GPUs: H100 80GB 81559 MiB and L40S 46068 MiB are memory.total in the real captures
(../shared/fixtures/nvidia-smi/nvidia_gpu_exporter-*); A100 40GB 40960 MiB; MIG slices from
../shared/reference/mig_profiles.yaml (H100 1g.10gb 9984 MiB and 3g.40gb 40320 MiB, A100-40GB 1g.5gb 4.75 GiB = 4864 MiB).

Hand calculation (GiB = 2**30, everything per GPU):
    usable    = memory_mib x 2**20 x 0.9
    overhead  = 4 GiB on the H100 (>= 70 GiB and not an A100), 2 GiB on the others
    weights   = params x 2 bytes (bf16) / TP, params per layer = 2*h*H*d (q, o) + 2*h*KV*d (k, v) + 3*h*I (MLP)
                + 2*h (norms); plus vocab*h twice (embedding, untied LM head) and h (final norm)
    KV budget = usable - weights - overhead
    KV/token  = 2 x layers x max(1, KV // TP) x 128 x 2 bytes
    tokens    = floor(KV budget / (KV/token x 16)) x 16;  sequences = floor(tokens / 16 / ceil(max_model_len / 16))
Tolerances: GiB within 0.01 (the module rounds to 2 decimals), KV bytes per token exact, tokens within 0.1%,
sequences exact.
"""

from __future__ import annotations

import csv
import math

import pytest
from captures import REPO_ROOT, read_capture

from ansible_collections.llmops.gpu_inference.plugins.module_utils import _vllm_preflight as vp
from ansible_collections.llmops.gpu_inference.plugins.module_utils._vllm_preflight import PreflightInputError, preflight

GIB = 2**30
MIB = 2**20


def qwen2(hidden, layers, heads, kv_heads, intermediate):
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "intermediate_size": intermediate,
        "vocab_size": 152064,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "sliding_window": 131072,
        "use_sliding_window": False,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }


def llama31(hidden, layers, heads, kv_heads, intermediate):
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": 128,
        "intermediate_size": intermediate,
        "vocab_size": 128256,
        "max_position_embeddings": 131072,
        "rope_scaling": {
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }


MODELS = {
    "Qwen2.5-7B-Instruct": qwen2(3584, 28, 28, 4, 18944),
    "Qwen2.5-14B-Instruct": qwen2(5120, 48, 40, 8, 13824),
    "Qwen2.5-32B-Instruct": qwen2(5120, 64, 40, 8, 27648),
    "Qwen2.5-72B-Instruct": qwen2(8192, 80, 64, 8, 29568),
    "Llama-3.1-8B-Instruct": llama31(4096, 32, 32, 8, 14336),
    "Llama-3.1-70B-Instruct": llama31(8192, 80, 64, 8, 28672),
}

GPUS = {
    "H100": {"gpu_memory_mib": 81559, "gpu_name": "NVIDIA H100 80GB HBM3"},
    "A100-40GB": {"gpu_memory_mib": 40960, "gpu_name": "NVIDIA A100-SXM4-40GB"},
    "L40S": {"gpu_memory_mib": 46068, "gpu_name": "NVIDIA L40S"},
    "MIG-1g.10gb": {"gpu_resource": "nvidia.com/mig-1g.10gb", "gpu_memory_mib": 9984, "gpu_name": "NVIDIA H100 80GB HBM3"},
    "MIG-3g.40gb": {"gpu_resource": "nvidia.com/mig-3g.40gb", "gpu_memory_mib": 40320, "gpu_name": "NVIDIA H100 80GB HBM3"},
    "MIG-1g.5gb": {"gpu_resource": "nvidia.com/mig-1g.5gb", "gpu_memory_mib": 4864, "gpu_name": "NVIDIA A100-SXM4-40GB"},
}

# Parameters (see the module docstring for the per-layer sum):
#   Qwen2.5-7B : 28 x (2*3584*3584 + 2*3584*512 + 3*3584*18944 + 2*3584) = 28 x 233_053_184 = 6_525_489_152
#                + 2*152064*3584 = 1_089_994_752, + 3584                                    = 7_615_487_488 -> 14.185 GiB
#   Qwen2.5-14B: 48 x 275_261_440 + 2*152064*5120 + 5120                                   = 14_769_689_600 -> 27.511 GiB
#   Qwen2.5-32B: 64 x 487_598_080 + 2*152064*5120 + 5120                                   = 32_763_417_600 -> 61.027 GiB
#   Qwen2.5-72B: 80 x 877_674_496 + 2*152064*8192 + 8192                                   = 72_705_384_448 -> 135.424 GiB
#   Llama-3.1-8B: 32 x 218_112_000 + 2*128256*4096 + 4096                                  = 8_030_261_248 -> 14.958 GiB
#   Llama-3.1-70B: 80 x 855_654_400 + 2*128256*8192 + 8192                                 = 70_553_706_496 -> 131.417 GiB
# Usable at 0.9: H100 81559 MiB -> 71.683 GiB; A100 40960 -> 36.000; L40S 46068 -> 40.489; 1g.10gb 9984 -> 8.775;
# 3g.40gb 40320 -> 35.438; 1g.5gb 4864 -> 4.275.
CASES = [
    # model, gpu, TP, max_model_len, ok, (weights GiB, KV bytes/token, KV GiB, tokens, sequences)
    # 71.683 - 14.185 - 4 = 53.498 GiB; 2*28*4*128*2 = 57344 B/token; 53.498 GiB / 917504 B per block = 62607 blocks;
    # ref section 2.6 says ~992k tokens at 79.1 GiB (this GPU reports 79.65 GiB)
    ("Qwen2.5-7B-Instruct", "H100", 1, 32768, True, (14.185, 57344, 53.498, 1001712, 30)),
    ("Qwen2.5-7B-Instruct", "H100", 2, 32768, True, (7.092, 28672, 60.590, 2269040, 69)),
    ("Qwen2.5-7B-Instruct", "H100", 4, 32768, True, (3.546, 14336, 64.136, 4803712, 146)),
    # 28 heads % 8 != 0; 4 KV heads // 8 = 0 -> max(1, 0) = 1 KV head per GPU, the same as TP 4
    ("Qwen2.5-7B-Instruct", "H100", 8, 32768, False, (1.773, 14336, 65.910, 4936512, 150)),
    # the seed guide's case: 36.000 - 14.185 - 2 = 19.815 GiB -> 371024 tokens, 45 sequences of 8192
    ("Qwen2.5-7B-Instruct", "A100-40GB", 1, 8192, True, (14.185, 57344, 19.815, 371024, 45)),
    ("Qwen2.5-7B-Instruct", "L40S", 1, 32768, True, (14.185, 57344, 24.305, 455088, 13)),
    # 8.775 - 14.185 - 2 < 0: the weights alone do not fit
    ("Qwen2.5-7B-Instruct", "MIG-1g.10gb", 1, 8192, False, (14.185, 57344, 0.0, 0, 0)),
    ("Qwen2.5-7B-Instruct", "MIG-3g.40gb", 1, 8192, True, (14.185, 57344, 19.253, 360480, 44)),
    # the seed guide's 1g.5gb: 4.275 GiB usable
    ("Qwen2.5-7B-Instruct", "MIG-1g.5gb", 1, 8192, False, (14.185, 57344, 0.0, 0, 0)),
    # 36.000 - 27.511 - 2 = 6.489 GiB / (196608 * 16) -> 35440 tokens: one sequence of 32768
    ("Qwen2.5-14B-Instruct", "A100-40GB", 1, 32768, True, (27.511, 196608, 6.489, 35440, 1)),
    ("Qwen2.5-14B-Instruct", "L40S", 2, 32768, True, (13.755, 98304, 24.734, 270160, 8)),
    ("Qwen2.5-14B-Instruct", "H100", 8, 32768, True, (3.439, 24576, 64.244, 2806848, 85)),
    # 71.683 - 61.027 - 4 = 6.656 GiB -> 27248 tokens: no 32768-token sequence, three of 8192 (ref: "<1@32k, ~3@8k")
    ("Qwen2.5-32B-Instruct", "H100", 1, 32768, False, (61.027, 262144, 6.656, 27248, 0)),
    ("Qwen2.5-32B-Instruct", "H100", 1, 8192, True, (61.027, 262144, 6.656, 27248, 3)),
    ("Qwen2.5-32B-Instruct", "A100-40GB", 2, 8192, True, (30.513, 131072, 3.487, 28560, 3)),
    # 71.683 - 67.712 - 4 = -0.029 GiB (ref: TP2 does not fit)
    ("Qwen2.5-72B-Instruct", "H100", 2, 8192, False, (67.712, 163840, 0.0, 0, 0)),
    ("Qwen2.5-72B-Instruct", "H100", 4, 32768, True, (33.856, 81920, 33.827, 443360, 13)),
    ("Qwen2.5-72B-Instruct", "H100", 8, 32768, True, (16.928, 40960, 50.755, 1330496, 40)),
    # not set: the model's 131072 (rope llama3 is already in max_position_embeddings); 16 GiB per sequence
    ("Llama-3.1-8B-Instruct", "H100", 1, None, True, (14.958, 131072, 52.725, 431920, 3)),
    ("Llama-3.1-8B-Instruct", "L40S", 1, None, True, (14.958, 131072, 23.532, 192768, 1)),
    ("Llama-3.1-8B-Instruct", "A100-40GB", 1, 131072, True, (14.958, 131072, 19.042, 155984, 1)),
    ("Llama-3.1-8B-Instruct", "MIG-1g.10gb", 1, 8192, False, (14.958, 131072, 0.0, 0, 0)),
    ("Llama-3.1-8B-Instruct", "MIG-3g.40gb", 1, 32768, True, (14.958, 131072, 18.480, 151376, 4)),
    # 71.683 - 65.708 - 4 = 1.974 GiB -> 12928 tokens (ref: "~10k, unusable"): fails at 131072, one sequence of 8192
    ("Llama-3.1-70B-Instruct", "H100", 2, 131072, False, (65.708, 163840, 1.974, 12928, 0)),
    ("Llama-3.1-70B-Instruct", "H100", 2, 8192, True, (65.708, 163840, 1.974, 12928, 1)),
    ("Llama-3.1-70B-Instruct", "H100", 4, 131072, True, (32.854, 81920, 34.829, 456496, 3)),
    ("Llama-3.1-70B-Instruct", "A100-40GB", 8, 131072, True, (16.427, 40960, 17.573, 460656, 3)),
    ("Llama-3.1-70B-Instruct", "L40S", 4, 131072, False, (32.854, 81920, 5.635, 73856, 0)),
    ("Llama-3.1-70B-Instruct", "L40S", 4, 32768, True, (32.854, 81920, 5.635, 73856, 2)),
]


def check(model, gpu="H100", tp=1, **options):
    """preflight() of a real model on a real GPU, with gpu_limit = TP x PP unless given."""
    args = dict(GPUS[gpu], model_config=MODELS[model], tensor_parallel_size=tp)
    args["gpu_limit"] = options.pop("gpu_limit", tp * options.get("pipeline_parallel_size", 1))
    args.update(options)
    return preflight(**args)


def only(messages, *needles):
    """The one message containing every needle (fails when there is none or more than one)."""
    hits = [m for m in messages if all(n in m for n in needles)]
    assert len(hits) == 1, f"{needles} in {messages}"
    return hits[0]


@pytest.mark.parametrize(
    ("model", "gpu", "tp", "max_model_len", "ok", "expected"),
    [pytest.param(*case, id=f"{case[0]}-{case[1]}-tp{case[2]}-len{case[3]}") for case in CASES],
)
def test_real_models_on_real_gpus_match_the_hand_calculation(model, gpu, tp, max_model_len, ok, expected):
    weights, kv_per_token, kv_gib, tokens, seqs = expected
    verdict = check(model, gpu, tp, max_model_len=max_model_len)
    estimates = verdict["estimates"]
    assert verdict["ok"] is ok, verdict["errors"]
    assert estimates["weights_gib_per_gpu"] == pytest.approx(weights, abs=0.01)
    assert estimates["kv_bytes_per_token_per_gpu"] == kv_per_token
    assert estimates["kv_cache_gib_per_gpu"] == pytest.approx(kv_gib, abs=0.01)
    assert estimates["max_tokens_in_kv"] == pytest.approx(tokens, rel=0.001)
    assert estimates["max_concurrent_seqs_at_max_len"] == seqs


@pytest.mark.parametrize(
    ("model", "weights_gib", "kv_kib"),
    [
        # ref section 2.6 "(computed) bf16 weights and KV": its own rounding, one decimal
        ("Qwen2.5-7B-Instruct", 14.2, 56),
        ("Qwen2.5-14B-Instruct", 27.5, 192),
        ("Qwen2.5-32B-Instruct", 61.0, 256),
        ("Qwen2.5-72B-Instruct", 135.4, 320),
        ("Llama-3.1-8B-Instruct", 15.0, 128),
        ("Llama-3.1-70B-Instruct", 131.4, 320),
    ],
)
def test_config_estimates_agree_with_the_reference_table(model, weights_gib, kv_kib):
    estimates = check(model, "H100", 1, max_model_len=4096)["estimates"]
    assert estimates["weights_gib_per_gpu"] == pytest.approx(weights_gib, abs=0.05)
    assert estimates["kv_bytes_per_token_per_gpu"] == kv_kib * 1024


def test_config_estimate_is_the_real_safetensors_total_minus_the_qkv_biases():
    # Qwen2.5-7B-Instruct's model.safetensors.index.json metadata.total_size is 15_231_233_024 bytes: the estimate
    # (7_615_487_488 params x 2 = 15_230_974_976) plus the q/k/v biases it leaves out, 28 x (3584 + 512 + 512) x 2.
    from_config = check("Qwen2.5-7B-Instruct", max_model_len=4096)["estimates"]
    from_index = check("Qwen2.5-7B-Instruct", max_model_len=4096, weights_bytes=15_231_233_024)["estimates"]
    assert from_index["weights_gib_per_gpu"] == round(15_231_233_024 / GIB, 2) == 14.19
    assert from_index["weights_gib_per_gpu"] - from_config["weights_gib_per_gpu"] == pytest.approx(0.0, abs=0.01)


# --------------------------------------------------------------------------------------------
# The seed guide's cases
# --------------------------------------------------------------------------------------------


def test_seed_qwen7b_on_one_gpu_with_8192_tokens_and_64_seqs_passes():
    verdict = check("Qwen2.5-7B-Instruct", "A100-40GB", 1, max_model_len=8192, max_num_seqs=64, memory_limit="32Gi", shm_size="8Gi")
    assert verdict["ok"] and verdict["errors"] == []
    # 45 sequences of 8192 tokens fit (see CASES), so 64 is worth a warning, not an error
    only(verdict["warnings"], "max_num_seqs 64", "45 sequences of max_model_len 8192", "371024 tokens")


def test_seed_qwen7b_on_a_1g5gb_mig_slice_fails_on_the_weights():
    verdict = check("Qwen2.5-7B-Instruct", "MIG-1g.5gb", 1, max_model_len=8192)
    assert not verdict["ok"]
    assert verdict["errors"] == [
        "weights need 14.2 GiB per GPU plus 2.0 GiB activation and runtime overhead, but only 4.3 GiB of the 4864 MiB "
        "nvidia.com/mig-1g.5gb slice is usable at gpu_memory_utilization 0.9; use a larger MIG profile or a whole GPU"
    ]


def test_seed_qwen7b_with_tp8_fails_on_its_28_heads():
    verdict = check("Qwen2.5-7B-Instruct", "H100", 8, max_model_len=8192, gpus_per_node=8, shm_size="2Gi")
    assert verdict["errors"] == [
        "num_attention_heads 28 is not divisible by tensor_parallel_size 8, so vLLM refuses to start; "
        "tensor_parallel_size values this model accepts on 8 GPUs: 1, 2, 4"
    ]


# --------------------------------------------------------------------------------------------
# One test per error rule
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tp", "needle"), [(5, "num_key_value_heads 8 is not divisible by tensor_parallel_size 5"), (10, "not a multiple")])
def test_kv_heads_that_cannot_be_split_or_replicated_whole_are_an_error(tp, needle):
    # Qwen2.5-14B: 40 heads split by 5 and by 10, but 8 KV heads neither split by 5 nor replicate to 10
    verdict = check("Qwen2.5-14B-Instruct", "H100", tp, max_model_len=8192, shm_size="2Gi")
    only(verdict["errors"], needle)
    assert len(verdict["errors"]) == 1


@pytest.mark.parametrize(
    ("tp", "limit", "needle"),
    [(1, 2, "vLLM uses 1 and leaves 1 idle; set gpu_limit to 1"), (2, 1, "vLLM needs 2 and fails to start with 1; set gpu_limit to 2")],
)
def test_gpu_limit_other_than_tp_times_pp_is_an_error(tp, limit, needle):
    verdict = check("Qwen2.5-7B-Instruct", "H100", tp, max_model_len=8192, gpu_limit=limit, shm_size="2Gi")
    assert verdict["errors"] == [f"gpu_limit {limit} (nvidia.com/gpu) is not tensor_parallel_size {tp} x pipeline_parallel_size 1 = {tp}: {needle}"]


def test_gpu_limit_is_not_checked_when_not_given():
    assert check("Qwen2.5-7B-Instruct", "H100", 1, max_model_len=8192, gpu_limit=None)["ok"]


def test_tp_times_pp_above_the_gpus_of_a_node_is_an_error():
    verdict = check("Llama-3.1-70B-Instruct", "H100", 8, pipeline_parallel_size=2, gpus_per_node=8, max_model_len=8192, shm_size="2Gi")
    assert verdict["errors"] == [
        "tensor_parallel_size 8 x pipeline_parallel_size 2 = 16 GPUs is more than the 8 nvidia.com/gpu on one node: "
        "a single-node deployment stays Pending; lower the parallelism or use bigger nodes"
    ]


def test_tensor_parallelism_across_mig_devices_is_an_error():
    verdict = check("Qwen2.5-7B-Instruct", "MIG-3g.40gb", 2, max_model_len=8192, shm_size="2Gi")
    only(verdict["errors"], "nvidia.com/mig-3g.40gb is a MIG device", "must be 1 (got 2)")
    assert len(verdict["errors"]) == 1


def test_weights_that_do_not_fit_name_the_numbers_and_the_tp_that_would_fit():
    # Qwen2.5-72B on H100 at TP 2: 67.7 GiB + 4 GiB > 71.7 GiB; at TP 4: 71.683 - 33.856 - 4 = 33.827 GiB left
    verdict = check("Qwen2.5-72B-Instruct", "H100", 2, max_model_len=8192, gpus_per_node=8, shm_size="2Gi")
    assert verdict["errors"] == [
        "weights need 67.7 GiB per GPU plus 4.0 GiB activation and runtime overhead, but only 71.7 GiB of the 81559 MiB GPU "
        "is usable at gpu_memory_utilization 0.9; tensor_parallel_size 4 would leave 33.8 GiB per GPU for the KV cache"
    ]


def test_weights_error_without_a_bigger_valid_tp_suggests_quantization():
    # Llama-3.1-70B on one 48 GB L40S: no TP within 1 GPU per node fits
    verdict = check("Llama-3.1-70B-Instruct", "L40S", 1, max_model_len=8192, gpus_per_node=1)
    only(verdict["errors"], "weights need 131.4 GiB per GPU", "40.5 GiB of the 46068 MiB GPU", "use a quantized checkpoint or a larger GPU")


def test_one_sequence_that_does_not_fit_the_kv_cache_is_an_error_with_the_length_that_fits():
    verdict = check("Qwen2.5-32B-Instruct", "H100", 1, max_model_len=32768)
    # 2048 blocks x 16 x 262144 B = 8.0 GiB for one sequence; 6.656 GiB left
    assert verdict["errors"] == [
        "one sequence of max_model_len 32768 needs 8.0 GiB of KV cache per GPU but only 6.7 GiB is left after the weights "
        "and overhead (71.7 GiB of the 81559 MiB GPU is usable at gpu_memory_utilization 0.9); the KV cache holds 27248 "
        "tokens: lower max_model_len to at most that, or use kv_cache_dtype fp8 or more GPUs"
    ]


def test_max_model_len_defaults_to_the_models_maximum_for_the_kv_check():
    # Llama-3.1-70B on 4 x L40S: 131072 tokens (not set) need 10 GiB per GPU, 5.6 GiB left
    verdict = check("Llama-3.1-70B-Instruct", "L40S", 4, shm_size="2Gi")
    only(verdict["errors"], "max_model_len 131072 (not set: the model's maximum)", "holds 73856 tokens")


@pytest.mark.parametrize(
    ("model", "rope_scaling", "allowed"),
    [
        ("Qwen2.5-7B-Instruct", None, 32768),
        # Qwen2.5 model card: add YaRN factor 4 to go beyond 32768 (ref section 2.6)
        ("Qwen2.5-7B-Instruct", {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}, 131072),
        # rope_type llama3: max_position_embeddings (131072) already includes the factor 8
        ("Llama-3.1-8B-Instruct", "as published", 131072),
        ("Qwen2.5-7B-Instruct", {"rope_type": "linear", "factor": 2.0}, 65536),
    ],
)
def test_max_model_len_above_the_models_derived_maximum_is_an_error(model, rope_scaling, allowed):
    config = dict(MODELS[model])
    if rope_scaling != "as published":
        config["rope_scaling"] = rope_scaling
    base = dict(GPUS["H100"], model_config=config, tensor_parallel_size=4, kv_cache_dtype="fp8", shm_size="2Gi")
    assert not [e for e in preflight(**base, max_model_len=allowed)["errors"] if "max_model_len" in e]
    error = only(preflight(**base, max_model_len=allowed + 1)["errors"], f"max_model_len {allowed + 1} is above the model's maximum of {allowed}")
    assert "VLLM_ALLOW_LONG_MAX_MODEL_LEN" in error


def test_yarn_scales_the_original_length_not_max_position_embeddings():
    # vLLM: for yarn, derived = original_max_position_embeddings x factor, even when max_position_embeddings was
    # already raised in config.json (as some long-context edits do): 32768 x 4 = 131072, not 131072 x 4
    config = dict(
        MODELS["Qwen2.5-7B-Instruct"],
        max_position_embeddings=131072,
        rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
    )
    facts = vp.model_facts(config)
    assert (facts.max_len, facts.max_len_source) == (131072, "original_max_position_embeddings 32768 x rope_scaling factor 4 (yarn)")


def test_gemma3_rope_factor_is_already_in_its_max_position_embeddings():
    # vLLM skips the rope factor for gemma3: Gemma 3's text_config has 131072 with a linear factor 8 (not 1048576)
    text = {"model_type": "gemma3_text", "hidden_size": 5376, "num_hidden_layers": 62, "num_attention_heads": 32, "num_key_value_heads": 16}
    text.update(head_dim=128, max_position_embeddings=131072, rope_scaling={"rope_type": "linear", "factor": 8.0})
    facts = vp.model_facts({"model_type": "gemma3", "text_config": text, "vision_config": {}})
    assert (facts.max_len, facts.max_len_source) == (131072, "max_position_embeddings 131072")
    assert facts.has_encoders


@pytest.mark.parametrize(
    ("flag", "version", "needle"),
    [
        ("--num-scheduler-steps=8", "0.11.0", "--num-scheduler-steps in extra_args was removed in vLLM 0.11.0"),
        ("--num-scheduler-steps 8", "v0.12.1", "--num-scheduler-steps in extra_args was removed in vLLM 0.11.0"),
        ("--disable-log-requests", "0.12.0", "--disable-log-requests in extra_args was removed in vLLM 0.12.0"),
        ("--guided-decoding-backend=xgrammar", "0.13.0", "--guided-decoding-backend in extra_args was removed in vLLM 0.12.0"),
        ("--shutdown-timeout=30", "0.17.1", "--shutdown-timeout in extra_args needs vLLM 0.18.0 or later"),
        ("--disable-access-log-for-endpoints=/health", "0.15.1", "needs vLLM 0.16.0 or later"),
    ],
)
def test_flags_the_pinned_vllm_does_not_accept_are_errors(flag, version, needle):
    verdict = check("Qwen2.5-7B-Instruct", max_model_len=8192, vllm_version=version, extra_args=["--enable-prefix-caching", flag])
    assert "unrecognized arguments" in only(verdict["errors"], needle)
    assert len(verdict["errors"]) == 1


@pytest.mark.parametrize(
    ("flag", "version"),
    [
        ("--num-scheduler-steps=8", "0.10.2"),
        ("--disable-log-requests", "0.11.2"),
        ("--shutdown-timeout=30", "0.18.0"),
        ("--disable-access-log-for-endpoints=/health", "0.16.0"),
    ],
)
def test_flags_the_pinned_vllm_accepts_are_not_errors(flag, version):
    assert check("Qwen2.5-7B-Instruct", max_model_len=8192, vllm_version=version, extra_args=[flag])["ok"]


def test_flags_are_not_checked_without_a_vllm_version():
    assert check("Qwen2.5-7B-Instruct", max_model_len=8192, extra_args=["--num-scheduler-steps", "8"])["ok"]


@pytest.mark.parametrize(
    ("gpu_name", "capability", "quantization", "needle"),
    [
        ("Tesla T4", None, "fp8", "quantization fp8 needs compute capability 8.0 or higher, but the Tesla T4 (compute capability 7.5)"),
        ("Tesla T4", None, "awq_marlin", "quantization awq_marlin needs compute capability 8.0"),
        ("Tesla V100-SXM2-32GB", None, "awq", "quantization awq needs compute capability 7.5 or higher"),
        (None, "7.0", "bitsandbytes", None),
        (None, "6.1", "bitsandbytes", "quantization bitsandbytes needs compute capability 7.0 or higher, but the GPU (compute capability 6.1)"),
    ],
)
def test_quantization_the_gpu_cannot_run_is_an_error(gpu_name, capability, quantization, needle):
    verdict = preflight(
        model_config=MODELS["Qwen2.5-7B-Instruct"],
        gpu_memory_mib=32768,
        gpu_name=gpu_name,
        compute_capability=capability,
        quantization=quantization,
        max_model_len=4096,
    )
    if needle is None:
        assert not [e for e in verdict["errors"] if "compute capability" in e]
    else:
        only(verdict["errors"], needle)


def test_the_checkpoints_own_quantization_is_checked_against_the_gpu():
    # an FP8 checkpoint (quantization_config.quant_method fp8) on a Turing T4
    config = dict(MODELS["Llama-3.1-8B-Instruct"], quantization_config={"quant_method": "fp8", "activation_scheme": "dynamic"})
    verdict = preflight(model_config=config, gpu_memory_mib=15360, gpu_name="Tesla T4", max_model_len=4096)
    only(verdict["errors"], "quantization fp8 needs compute capability 8.0")


def test_bfloat16_below_compute_capability_8_is_an_error():
    verdict = check("Qwen2.5-7B-Instruct", max_model_len=4096, dtype="bfloat16", gpu_name="Tesla V100-SXM2-32GB")
    assert verdict["errors"] == [
        "dtype bfloat16 needs compute capability 8.0 or higher, but the Tesla V100-SXM2-32GB (compute capability 7.0) is lower: use dtype float16"
    ]
    assert check("Qwen2.5-7B-Instruct", max_model_len=4096, dtype="float16", gpu_name="Tesla V100-SXM2-32GB")["ok"]


# --------------------------------------------------------------------------------------------
# One test per warning rule
# --------------------------------------------------------------------------------------------


def test_max_num_seqs_within_the_kv_cache_is_quiet():
    assert check("Qwen2.5-7B-Instruct", "A100-40GB", max_model_len=8192, max_num_seqs=45)["warnings"] == []


def test_tp_above_the_kv_heads_warns_that_kv_heads_are_replicated():
    # Llama-3.1-70B: 64 heads split by 16, 8 KV heads each replicated on 2 GPUs
    verdict = check("Llama-3.1-70B-Instruct", "H100", 16, gpus_per_node=16, max_model_len=8192, shm_size="2Gi")
    assert verdict["ok"]
    assert verdict["warnings"] == [
        "tensor_parallel_size 16 is above num_key_value_heads 8: each KV head is replicated on 2 GPUs, so the KV cache per "
        "token per GPU stops shrinking beyond tensor_parallel_size 8"
    ]
    # 2 x 80 x max(1, 8 // 16) x 128 x 2 = 40960, the same as at TP 8
    assert verdict["estimates"]["kv_bytes_per_token_per_gpu"] == 40960


@pytest.mark.parametrize(
    ("shm_size", "warned"), [(None, "shm_size not set (the container runtime's 64Mi /dev/shm)"), ("512Mi", "shm_size 512Mi"), ("1Gi", None)]
)
def test_small_shm_for_several_gpus_warns(shm_size, warned):
    verdict = check("Qwen2.5-7B-Instruct", "H100", 2, max_model_len=8192, shm_size=shm_size)
    if warned is None:
        assert verdict["warnings"] == []
    else:
        assert "is below 1Gi for tensor_parallel_size x pipeline_parallel_size 2" in only(verdict["warnings"], warned)


def test_shm_is_not_needed_for_one_gpu():
    assert check("Qwen2.5-7B-Instruct", "H100", 1, max_model_len=8192, shm_size="64Mi")["warnings"] == []


def test_memory_limit_below_the_host_floor_warns():
    # 2 processes x 2 GiB + the 14.18 GiB shard = 18.18 GiB > 16 GiB
    verdict = check("Qwen2.5-7B-Instruct", "A100-40GB", max_model_len=8192, memory_limit="16Gi")
    assert verdict["warnings"] == [
        "memory_limit 16Gi (16.0 GiB) is below the 18.2 GiB this model needs in host memory: 2 vLLM processes x 2 GiB plus "
        "the 14.2 GiB weight shard read through host memory while loading; the pod risks being OOMKilled during start-up"
    ]


def test_memory_backed_shm_plus_host_memory_above_the_limit_warns():
    # the seed's 32Gi limit: 18.18 GiB + 8 GiB shm fits; + 16 GiB shm = 34.18 GiB does not
    assert check("Qwen2.5-7B-Instruct", "A100-40GB", max_model_len=8192, memory_limit="32Gi", shm_size="8Gi")["warnings"] == []
    verdict = check("Qwen2.5-7B-Instruct", "A100-40GB", max_model_len=8192, memory_limit="32Gi", shm_size="16Gi")
    only(verdict["warnings"], "memory-backed shm_size 16Gi plus the 18.2 GiB", "is 34.2 GiB, above memory_limit 32Gi", "raise memory_limit to 35Gi")


def test_host_floor_counts_one_worker_per_gpu():
    # Llama-3.1-70B TP 4: API server + engine core + 4 workers = 6 x 2 GiB + 32.85 GiB shard = 44.85 GiB
    verdict = check("Llama-3.1-70B-Instruct", "H100", 4, max_model_len=8192, memory_limit="40Gi", shm_size="2Gi")
    only(verdict["warnings"], "below the 44.9 GiB", "6 vLLM processes")


AWQ_CONFIG = {"bits": 4, "group_size": 128, "quant_method": "awq", "version": "gemm", "zero_point": True}
GPTQ_CONFIG = {"bits": 4, "group_size": 128, "desc_act": False, "sym": True, "quant_method": "gptq"}


@pytest.mark.parametrize(("quant_config", "forced", "marlin"), [(AWQ_CONFIG, "awq", "awq_marlin"), (GPTQ_CONFIG, "gptq", "gptq_marlin")])
def test_forcing_the_plain_kernel_on_a_marlin_convertible_checkpoint_warns(quant_config, forced, marlin):
    config = dict(MODELS["Qwen2.5-7B-Instruct"], quantization_config=quant_config)
    base = dict(model_config=config, gpu_memory_mib=46068, gpu_name="NVIDIA L40S", max_model_len=8192)
    only(preflight(**base, quantization=forced)["warnings"], f"quantization {forced} forces the slower", f"runs on {marlin}")
    assert preflight(**base)["warnings"] == []
    assert preflight(**base, quantization=marlin)["warnings"] == []


def test_forcing_awq_is_right_where_marlin_cannot_run():
    # Marlin needs compute capability 8.0; on a T4 plain AWQ is the kernel vLLM would use anyway
    config = dict(MODELS["Qwen2.5-7B-Instruct"], quantization_config=AWQ_CONFIG)
    verdict = preflight(model_config=config, gpu_memory_mib=15360, gpu_name="Tesla T4", max_model_len=8192, quantization="awq")
    assert verdict["warnings"] == [] and verdict["ok"]


@pytest.mark.parametrize(("gpu", "warned"), [("A100-40GB", True), ("L40S", False), ("H100", False)])
def test_fp8_without_fp8_compute_warns(gpu, warned):
    verdict = check("Qwen2.5-7B-Instruct", gpu, max_model_len=8192, quantization="fp8")
    fp8 = [w for w in verdict["warnings"] if "weight-only FP8" in w]
    assert len(fp8) == (1 if warned else 0)
    assert verdict["ok"]


def test_unknown_quantization_is_estimated_unquantized_with_a_warning():
    verdict = check("Qwen2.5-7B-Instruct", max_model_len=8192, quantization="gguf")
    only(verdict["warnings"], "quantization gguf is not in this module's table", "pass weights_bytes")
    assert verdict["estimates"]["weights_gib_per_gpu"] == pytest.approx(14.185, abs=0.01)


def test_multimodal_config_is_read_from_text_config_and_warns_about_encoders():
    config = {"model_type": "llava", "text_config": MODELS["Llama-3.1-8B-Instruct"], "vision_config": {"hidden_size": 1024}}
    verdict = preflight(model_config=config, gpu_memory_mib=81559, max_model_len=8192)
    assert verdict["estimates"]["kv_bytes_per_token_per_gpu"] == 131072
    assert verdict["estimates"]["weights_gib_per_gpu"] == pytest.approx(14.958, abs=0.01)
    only(verdict["warnings"], "multimodal", "vision/audio encoders")


def test_unmeasured_mig_profile_uses_its_nominal_size_with_a_warning():
    # GB200 1g.23gb is not in the measured table: nominal 23 x 1024 = 23552 MiB
    verdict = preflight(model_config=MODELS["Qwen2.5-7B-Instruct"], gpu_resource="nvidia.com/mig-1g.23gb", max_model_len=8192)
    only(verdict["warnings"], "MIG profile 1g.23gb is not in the table", "nominal 23552 MiB")
    # 23552 x 0.9 / 1024 = 20.7 GiB - 14.185 - 2 = 4.515 GiB
    assert verdict["estimates"]["kv_cache_gib_per_gpu"] == pytest.approx(20.700 - 14.185 - 2, abs=0.01)


def test_whole_gpu_memory_given_for_a_mig_slice_warns():
    verdict = preflight(model_config=MODELS["Qwen2.5-7B-Instruct"], gpu_resource="nvidia.com/mig-3g.40gb", gpu_memory_mib=81559, max_model_len=8192)
    only(verdict["warnings"], "gpu_memory_mib 81559 is more than a 3g.40gb MIG slice has")


def test_vllm_version_that_is_not_a_release_warns_and_skips_the_flag_check():
    verdict = check("Qwen2.5-7B-Instruct", max_model_len=8192, vllm_version="latest", extra_args=["--num-scheduler-steps=8"])
    assert verdict["ok"]
    only(verdict["warnings"], "vllm_version 'latest' is not a release number")


def test_gpu_unknown_to_the_capability_table_warns_when_a_check_needed_it():
    base = dict(model_config=MODELS["Qwen2.5-7B-Instruct"], gpu_memory_mib=24564, gpu_name="NVIDIA GeForce RTX 4090", max_model_len=4096)
    only(preflight(**base, quantization="fp8")["warnings"], "'NVIDIA GeForce RTX 4090' is not in this module's table", "quantization fp8")
    assert preflight(**base)["warnings"] == []
    assert preflight(**base, quantization="fp8", compute_capability="8.9")["warnings"] == []


# --------------------------------------------------------------------------------------------
# Precision, parallelism and weights inputs
# --------------------------------------------------------------------------------------------


def test_awq_checkpoint_weights_are_estimated_at_4_bits_plus_group_scales():
    # linear layers 28 x (2*3584*3584 + 2*3584*512 + 3*3584*18944) = 6_525_288_448 params at 4 bits plus one fp16
    # scale and one 4-bit zero per 128 weights: x (0.5 + 2.5/128) = 3_390_091_264 B; embedding, LM head and norms
    # 1_090_199_040 params x 2 = 2_180_398_080 B; total 5_570_489_344 B = 5.188 GiB
    config = dict(MODELS["Qwen2.5-7B-Instruct"], quantization_config=AWQ_CONFIG)
    verdict = preflight(model_config=config, gpu_memory_mib=46068, max_model_len=8192)
    assert verdict["estimates"]["weights_gib_per_gpu"] == pytest.approx(5.188, abs=0.01)


def test_online_fp8_scales_the_checkpoint_size_by_the_quantized_share():
    # linear layers at 1 byte: 6_525_288_448 + 2_180_398_080 = 8_705_686_528 B = 8.108 GiB
    for weights_bytes in (None, 15_231_233_024):
        verdict = check("Qwen2.5-7B-Instruct", max_model_len=8192, quantization="fp8", weights_bytes=weights_bytes)
        assert verdict["estimates"]["weights_gib_per_gpu"] == pytest.approx(8.108, abs=0.01)


def test_kv_cache_dtype_fp8_halves_the_kv_bytes():
    # Llama-3.1-8B on H100: 2 x 32 x 8 x 128 x 1 = 65536 B; 52.725 GiB -> 863840 tokens, 6 sequences of 131072
    verdict = check("Llama-3.1-8B-Instruct", "H100", 1, kv_cache_dtype="fp8")
    assert verdict["estimates"]["kv_bytes_per_token_per_gpu"] == 65536
    assert verdict["estimates"]["max_tokens_in_kv"] == pytest.approx(863840, rel=0.001)
    assert verdict["estimates"]["max_concurrent_seqs_at_max_len"] == 6


def test_dtype_float32_doubles_the_weights_and_the_kv_cache():
    # 7_615_487_488 x 4 = 28.370 GiB; KV 2 x 28 x 4 x 128 x 4 = 114688; 71.683 - 28.370 - 4 = 39.313 GiB
    verdict = check("Qwen2.5-7B-Instruct", max_model_len=8192, dtype="float32")
    assert verdict["estimates"]["weights_gib_per_gpu"] == pytest.approx(28.370, abs=0.01)
    assert verdict["estimates"]["kv_bytes_per_token_per_gpu"] == 114688
    assert verdict["estimates"]["kv_cache_gib_per_gpu"] == pytest.approx(39.313, abs=0.01)


def test_float32_checkpoint_size_is_halved_when_auto_loads_it_as_16_bit():
    config = dict(MODELS["Qwen2.5-7B-Instruct"], torch_dtype="float32")
    verdict = preflight(model_config=config, gpu_memory_mib=81559, max_model_len=8192, weights_bytes=30_461_949_952)
    assert verdict["estimates"]["weights_gib_per_gpu"] == pytest.approx(30_461_949_952 / 2 / GIB, abs=0.01)


def test_pipeline_parallelism_splits_the_layers_of_the_kv_cache():
    # Llama-3.1-70B TP 4 x PP 2 on H100: 131.417 / 8 = 16.427 GiB; 40 layers x 2 KV heads: 2*40*2*128*2 = 40960 B
    # 71.683 - 16.427 - 4 = 51.256 GiB -> 1343632 tokens, 10 sequences of 131072
    verdict = check("Llama-3.1-70B-Instruct", "H100", 4, pipeline_parallel_size=2, gpus_per_node=8, shm_size="2Gi")
    assert verdict["ok"], verdict["errors"]
    assert verdict["estimates"] == {
        "weights_gib_per_gpu": pytest.approx(16.427, abs=0.01),
        "kv_bytes_per_token_per_gpu": 40960,
        "kv_cache_gib_per_gpu": pytest.approx(51.256, abs=0.01),
        "max_tokens_in_kv": pytest.approx(1343632, rel=0.001),
        "max_concurrent_seqs_at_max_len": 10,
    }


def test_mla_caches_one_latent_per_layer_on_every_rank():
    # DeepSeek-V2-Lite-shaped: 27 layers x (kv_lora_rank 512 + qk_rope_head_dim 64) x 2 bytes = 31104 B, whatever the TP
    config = {
        "model_type": "deepseek_v2",
        "hidden_size": 2048,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "kv_lora_rank": 512,
        "qk_rope_head_dim": 64,
        "n_routed_experts": 64,
        "max_position_embeddings": 163840,
        "torch_dtype": "bfloat16",
    }
    for tp in (1, 2, 4):
        verdict = preflight(
            model_config=config, gpu_memory_mib=81559, tensor_parallel_size=tp, weights_bytes=31_400_000_000, max_model_len=8192, shm_size="2Gi"
        )
        assert verdict["estimates"]["kv_bytes_per_token_per_gpu"] == 31104
        assert verdict["ok"], verdict["errors"]


def test_a100_80gb_keeps_the_small_batch_overhead():
    # vLLM keeps 2048 batched tokens on A100s even with 80 GB: 73.728 - 14.185 - 2 = 55.815 GiB (4 GiB overhead: 53.815)
    base = dict(model_config=MODELS["Qwen2.5-7B-Instruct"], gpu_memory_mib=81920, max_model_len=8192)
    assert preflight(**base, gpu_name="NVIDIA A100-SXM4-80GB")["estimates"]["kv_cache_gib_per_gpu"] == pytest.approx(55.815, abs=0.01)
    assert preflight(**base)["estimates"]["kv_cache_gib_per_gpu"] == pytest.approx(53.815, abs=0.01)


def test_mig_memory_defaults_to_the_measured_slice_size():
    # 1g.10gb: the smaller measurement, A100-40GB 9.62 GiB = 9850 MiB -> 9850 x 0.9 / 1024 = 8.657 GiB usable
    verdict = preflight(model_config=MODELS["Qwen2.5-7B-Instruct"], gpu_resource="nvidia.com/mig-1g.10gb", max_model_len=8192)
    only(verdict["errors"], "8.7 GiB of the 9850 MiB nvidia.com/mig-1g.10gb slice")
    assert verdict["warnings"] == []


# --------------------------------------------------------------------------------------------
# Inputs the preflight cannot evaluate
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_config": {"hidden_size": 4096, "num_hidden_layers": 32}}, "model_config has no num_attention_heads"),
        ({"model_config": ["not", "a", "dict"]}, "model_config must be a JSON object"),
        ({"model_config": dict(MODELS["Qwen2.5-7B-Instruct"], num_attention_heads=0)}, "num_attention_heads is 0"),
        ({"gpu_memory_mib": None}, "gpu_memory_mib is required for nvidia.com/gpu"),
        ({"gpu_resource": "nvidia.com/mig-big"}, "gpu_resource nvidia.com/mig-big is not a MIG resource name"),
        ({"memory_limit": "32GB"}, "memory_limit '32GB' is not a Kubernetes memory quantity"),
        ({"gpu_memory_utilization": 0}, "gpu_memory_utilization must be in (0, 1]"),
        ({"tensor_parallel_size": 0}, "tensor_parallel_size must be at least 1"),
        ({"compute_capability": "89"}, "compute_capability '89' is not of the form MAJOR.MINOR"),
        ({"model_config": dict(MODELS["Qwen2.5-7B-Instruct"], num_experts=60)}, "mixture-of-experts"),
        ({"model_config": {k: v for k, v in MODELS["Qwen2.5-7B-Instruct"].items() if k != "vocab_size"}}, "lacks intermediate_size or vocab_size"),
    ],
)
def test_unusable_inputs_raise_with_the_reason(change, message):
    args = dict(model_config=MODELS["Qwen2.5-7B-Instruct"], gpu_memory_mib=81559, max_model_len=8192)
    args.update(change)
    with pytest.raises(PreflightInputError) as raised:
        preflight(**args)
    assert message in str(raised.value)


def test_moe_config_is_fine_with_weights_bytes():
    config = dict(MODELS["Qwen2.5-7B-Instruct"], num_experts=60)
    verdict = preflight(model_config=config, gpu_memory_mib=81559, max_model_len=8192, weights_bytes=10 * GIB)
    assert verdict["estimates"]["weights_gib_per_gpu"] == 10.0


# --------------------------------------------------------------------------------------------
# Helpers, against real data where there is some
# --------------------------------------------------------------------------------------------


def _query_gpu_row(capture):
    """name and compute_cap of the --query-gpu CSV in an nvidia_gpu_exporter capture bundle."""
    lines = read_capture(capture).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# $ nvidia-smi --query-gpu="))
    rows = [line for line in lines[start + 1 :] if line.strip() and not line.startswith("#")][:2]
    header, values = csv.reader(rows, skipinitialspace=True)
    row = dict(zip(header, values, strict=True))
    return row["name"], row["compute_cap"]


@pytest.mark.parametrize(
    "capture",
    [
        "nvidia_gpu_exporter-capture-linux-x86_64--nvidia-h100-80gb-hbm3--590.48.01.txt",
        "nvidia_gpu_exporter-capture-linux-x86_64--nvidia-h200--590.48.01.txt",
        "nvidia_gpu_exporter-capture-linux-x86_64--nvidia-l40s--595.80.txt",
    ],
)
def test_capability_table_agrees_with_real_captures(capture):
    name, compute_cap = _query_gpu_row(capture)
    assert vp.capability_for_gpu(name) == vp.parse_capability(compute_cap)


@pytest.mark.parametrize(
    ("name", "capability"),
    [
        ("NVIDIA A100-SXM4-40GB", (8, 0)),
        ("NVIDIA A10G", (8, 6)),
        ("NVIDIA A10", (8, 6)),
        ("NVIDIA L4", (8, 9)),
        ("NVIDIA H100 NVL", (9, 0)),
        ("NVIDIA GH200 480GB", (9, 0)),
        ("NVIDIA RTX 6000 Ada Generation", (8, 9)),
        ("Tesla T4", (7, 5)),
        ("NVIDIA GeForce RTX 2080 SUPER", None),
        ("NVIDIA RTX A2000 12GB", None),  # "A2000" is not the A2 (whole tokens, no prefixes)
    ],
)
def test_capability_lookup_matches_whole_name_tokens(name, capability):
    assert vp.capability_for_gpu(name) == capability


def test_mig_slice_table_is_the_smallest_measurement_in_the_reference():
    yaml = pytest.importorskip("yaml")
    reference = REPO_ROOT.parent / "shared" / "reference" / "mig_profiles.yaml"
    if not reference.is_file():
        pytest.skip(f"{reference} not found")
    measured = {}
    for gpu in yaml.safe_load(reference.read_text(encoding="utf-8"))["gpus"].values():
        for profile in gpu["profiles"]:
            mib = profile.get("mem_mib") or profile.get("mem_mib_xml")
            if mib is None and profile.get("mem_gib_lgip") is not None:
                mib = int(profile["mem_gib_lgip"] * 1024)
            name = profile["name"].replace("+me", "")
            if mib is not None:
                measured[name] = min(mib, measured.get(name, mib))
    assert measured, "no measured profile in the reference"
    for name, mib in vp.MIG_SLICE_MEMORY_MIB.items():
        assert measured.get(name) == mib, name
    # and every measured profile is in the table
    assert set(measured) <= set(vp.MIG_SLICE_MEMORY_MIB)


@pytest.mark.parametrize(
    ("resource", "profile", "memory_mib"),
    [
        ("nvidia.com/mig-3g.40gb", "3g.40gb", 40320),
        ("nvidia.com/mig-1g.5gb", "1g.5gb", 4864),
        ("nvidia.com/mig-1g.10gb+me", "1g.10gb+me", 9850),
        ("nvidia.com/mig-1c.3g.71gb", "1c.3g.71gb", 71424),
        ("nvidia.com/mig-1g.23gb", "1g.23gb", None),
    ],
)
def test_parse_mig_resource(resource, profile, memory_mib):
    parsed = vp.parse_mig_resource(resource)
    assert (parsed["profile"], parsed["memory_mib"]) == (profile, memory_mib)


def test_whole_gpu_resources_are_not_mig():
    assert vp.parse_mig_resource("nvidia.com/gpu") is None
    assert vp.parse_mig_resource("nvidia.com/gpu.shared") is None


@pytest.mark.parametrize(
    ("version", "parsed"),
    [("0.11.0", (0, 11, 0)), ("v0.12.1", (0, 12, 1)), ("0.10.1.1", (0, 10, 1)), ("0.12.0rc1", (0, 12, 0)), ("0.9", (0, 9, 0)), ("nightly", None)],
)
def test_parse_version(version, parsed):
    assert vp.parse_version(version) == parsed


@pytest.mark.parametrize(
    ("quantity", "size"),
    [("32Gi", 32 * GIB), ("512Mi", 512 * MIB), ("1.5Gi", 3 * GIB // 2), ("8G", 8 * 10**9), ("1e9", 10**9), ("34359738368", 32 * GIB), ("100k", 10**5)],
)
def test_parse_quantity(quantity, size):
    assert vp.parse_quantity(quantity, "memory_limit") == size


def test_cli_flags_reads_every_long_flag_form():
    assert vp.cli_flags(["--a=1", "--b", "2", "-q", "awq", "--c 3 --d"]) == ["--a", "--b", "--c", "--d"]


def test_model_max_length_overrides_the_smaller_keys_like_vllm():
    # Command-R style configs: vLLM takes model_max_length over max_position_embeddings
    sections = [{"max_position_embeddings": 8192, "model_max_length": 131072}]
    assert vp.derived_max_len(sections, "cohere") == (131072, "model_max_length 131072")
    assert vp.derived_max_len([{}], "x")[0] == 2048


def test_a_sequence_takes_whole_blocks_of_16_tokens():
    # Qwen2.5-7B on A100-40GB holds 371024 tokens = 23189 blocks (see CASES): a sequence of exactly that length fits
    # once; one token more needs ceil(371025 / 16) = 23190 blocks and does not (the length check is irrelevant here)
    blocks = 371024 // 16
    assert math.ceil((16 * blocks + 1) / 16) == blocks + 1
    at_capacity = check("Qwen2.5-7B-Instruct", "A100-40GB", max_model_len=16 * blocks)["estimates"]
    assert at_capacity["max_concurrent_seqs_at_max_len"] == 1
    one_more = check("Qwen2.5-7B-Instruct", "A100-40GB", max_model_len=16 * blocks + 1)
    assert one_more["estimates"]["max_concurrent_seqs_at_max_len"] == 0
    only(one_more["errors"], "one sequence of max_model_len 371025", "the KV cache holds 371024 tokens")
