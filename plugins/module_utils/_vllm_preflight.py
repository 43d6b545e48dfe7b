# Copyright: (c) 2026, llmops.gpu_inference contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Predict, before anything is deployed, whether vLLM will start and serve a model (DESIGN.md contracts).

Private to this collection: no AnsibleModule import, no I/O. :func:`preflight` takes the module's options
as keywords and returns ``{"ok", "errors", "warnings", "estimates"}``; it raises
:class:`PreflightInputError` only when the inputs themselves are unusable (a config.json without the
fields a decoder model has, an unknown GPU memory size, a malformed quantity).

The rules and the memory model follow ../shared/reference/vllm-on-kubernetes.md (cited as "ref §N"):

- parallelism (ref §2.4): attention heads divisible by TP; KV heads split or replicated whole; the GPU
  limit equal to TP x PP; TP x PP within one node; no TP/PP across MIG devices;
- memory (ref §2.5): per GPU, ``gpu_memory_mib x gpu_memory_utilization`` must hold the weights shard,
  the activation/runtime overhead and at least one ``max_model_len`` sequence of KV cache, where
  KV bytes per token per GPU = 2 x layers x max(1, kv_heads // TP) x head_dim x KV dtype bytes, allocated
  in blocks of 16 tokens;
- context (ref §2.3): ``max_model_len`` within the model's derived maximum (max_position_embeddings,
  scaled by the rope factor the way vLLM's ``_get_and_verify_max_len`` does);
- CLI (ref §2.3): flags removed from (or not yet in) the pinned vLLM version;
- container (ref §5): memory-backed /dev/shm counts against the memory limit.

Every constant is in the tables below, each with its source.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Tuple

from ansible_collections.llmops.gpu_inference.plugins.module_utils._model_config import (
    DTYPE_KEYS,
    HIDDEN_SIZE_KEYS,
    INTERMEDIATE_SIZE_KEYS,
    NUM_HEADS_KEYS,
    NUM_KV_HEADS_KEYS,
    NUM_LAYERS_KEYS,
    VOCAB_SIZE_KEYS,
    config_sections,
    derived_max_len,
    dtype_name,
    has_encoders,
    quantization_method,
)
from ansible_collections.llmops.gpu_inference.plugins.module_utils._model_config import is_int as _is_int
from ansible_collections.llmops.gpu_inference.plugins.module_utils._model_config import lookup as _lookup

MIB = 1024**2
GIB = 1024**3

Version = Tuple[int, int, int]
Capability = Tuple[int, int]

# =============================================================================================
# Constants. Change them here, with their source, and nowhere else.
# =============================================================================================

# --- Memory model (ref §2.5, §2.6, §2.3) -----------------------------------------------------
# Activation peak + non-torch memory (CUDA context, NCCL, allocator) + CUDA graphs, per GPU. ref §2.5:
# "empirically ~1-5 GiB/GPU (heuristic, verify with the startup log)"; ref §2.6 assumes 4 GiB on an
# 80 GB H100. The activation peak grows with max_num_batched_tokens, whose API-server default vLLM
# raises from 2048 to 8192 on devices with >= 70 GiB that are not A100s (ref §2.3, arg_utils
# `_set_default_args`), so the overhead follows the same split. 4 GiB is the reference's figure; 2 GiB for a
# quarter of the batch is this module's choice inside the reference's range, not a measurement.
OVERHEAD_GIB_LARGE_BATCH = 4.0  # >= 70 GiB device, not an A100: 8192 batched tokens, 1024 seqs
OVERHEAD_GIB_SMALL_BATCH = 2.0  # everything else (every MIG slice, 40-48 GB cards): 2048 tokens, 256 seqs
LARGE_BATCH_MIN_DEVICE_GIB = 70
LARGE_BATCH_EXCLUDED_GPU = "A100"  # vLLM keeps the small defaults when "a100" is in the device name
KV_BLOCK_TOKENS = 16  # vLLM's default block size; KV is allocated per block (ref §2.5 "page size")

# --- Container memory (ref §5 "Deployment ... memory limit 32Gi, shm emptyDir 8Gi") ----------------
# Heuristics, not measurements: host RSS of one vLLM process with PyTorch/CUDA loaded, and the
# processes vLLM V1 runs (API server + engine core, plus one worker per GPU when TP x PP > 1).
HOST_GIB_PER_PROCESS = 2.0
# /dev/shm for TP x PP > 1 (PyTorch/NCCL IPC between workers). ref §5: "1-2 GiB typical in anchors
# (vLLM docs 2Gi, KServe 1Gi)"; the container runtime's default /dev/shm is 64 MiB.
SHM_MIN_BYTES_MULTI_GPU = 1 * GIB
SHM_RUNTIME_DEFAULT_BYTES = 64 * MIB

# --- dtypes -----------------------------------------------------------------------------------
# vLLM --dtype values; "auto" loads float32 checkpoints as 16-bit (vLLM config `_get_and_verify_dtype`).
DTYPE_BYTES = {"half": 2, "float16": 2, "bfloat16": 2, "float": 4, "float32": 4}
DTYPE_CHOICES = ("auto", "half", "float16", "bfloat16", "float", "float32")
# --kv-cache-dtype (ref §2.3 "--kv-cache-dtype fp8 halves KV bytes"); "auto" = the model dtype.
KV_CACHE_DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1}
KV_CACHE_DTYPE_CHOICES = ("auto", "float16", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2")
BF16_MIN_CAPABILITY = (8, 0)  # vLLM: "Bfloat16 is only supported on GPUs with compute capability of at least 8.0"


# --- Quantization (ref §2.3 "--quantization awq/gptq/fp8"; vLLM quantization/*.py) ---------------
@dataclass(frozen=True)
class QuantSpec:
    bits: int  # weight bits of quantized linear layers when the checkpoint's config does not say
    group_size: int  # weights per scale group (0: per channel/tensor, scales negligible)
    scale_bytes: float  # bytes of scale (+ zero point) stored per group
    min_capability: Capability | None  # QuantizationConfig.get_min_capability(); None: not checked
    marlin_variant: str | None = None  # faster kernel vLLM picks itself unless this method is forced


QUANTIZATION: dict[str, QuantSpec] = {
    # Fp8Config.get_min_capability() == 80; below 8.9 Fp8LinearMethod runs weight-only FP8 on Marlin.
    "fp8": QuantSpec(bits=8, group_size=0, scale_bytes=0, min_capability=(8, 0)),
    # AWQConfig: "The AWQ kernel only supports Turing or newer GPUs" (75); AWQMarlinConfig: 80.
    "awq": QuantSpec(bits=4, group_size=128, scale_bytes=2.5, min_capability=(7, 5), marlin_variant="awq_marlin"),
    "awq_marlin": QuantSpec(bits=4, group_size=128, scale_bytes=2.5, min_capability=(8, 0)),
    # GPTQConfig: 60; GPTQMarlinConfig / MarlinConfig: 80.
    "gptq": QuantSpec(bits=4, group_size=128, scale_bytes=2.5, min_capability=(6, 0), marlin_variant="gptq_marlin"),
    "gptq_marlin": QuantSpec(bits=4, group_size=128, scale_bytes=2.5, min_capability=(8, 0)),
    "marlin": QuantSpec(bits=4, group_size=128, scale_bytes=2.5, min_capability=(8, 0)),
    # BitsAndBytesConfig: 70; 4-bit NF4 with one fp32 absmax per 64 weights.
    "bitsandbytes": QuantSpec(bits=4, group_size=64, scale_bytes=4, min_capability=(7, 0)),
    # compressed-tensors: bits from config_groups; the minimum capability depends on the scheme.
    "compressed-tensors": QuantSpec(bits=8, group_size=0, scale_bytes=0, min_capability=None),
}
FP8_NATIVE_CAPABILITY = (8, 9)  # FP8 W8A8 compute: Ada and Hopper (vLLM docs "FP8 W8A8")
MARLIN_GROUP_SIZES = (-1, 32, 64, 128)  # marlin_utils: group sizes the Marlin kernels take
MARLIN_BITS = (4, 8)

# --- Compute capability by nvidia-smi product-name token ---------------------------------------
# H100, H200 9.0 and L40S 8.9 are the compute_cap of the real captures in
# ../shared/fixtures/nvidia-smi (nvidia_gpu_exporter bundles); the rest are NVIDIA's CUDA GPU list
# (developer.nvidia.com/cuda-gpus). Matched on whole tokens of the name ("NVIDIA A100-SXM4-40GB" ->
# "A100"), so "A10" never matches an A100 and "L4" never matches an L40S.
GPU_COMPUTE_CAPABILITY: dict[str, Capability] = {
    "B200": (10, 0),
    "GB200": (10, 0),
    "H100": (9, 0),
    "H200": (9, 0),
    "GH200": (9, 0),
    "H800": (9, 0),
    "H20": (9, 0),
    "L40S": (8, 9),
    "L40": (8, 9),
    "L20": (8, 9),
    "L4": (8, 9),
    "ADA": (8, 9),  # "NVIDIA RTX 6000 Ada Generation", "NVIDIA RTX 4000 SFF Ada Generation"
    "A100": (8, 0),
    "A800": (8, 0),
    "A30": (8, 0),
    "A40": (8, 6),
    "A10": (8, 6),
    "A10G": (8, 6),
    "A16": (8, 6),
    "A2": (8, 6),
    "A6000": (8, 6),
    "A5000": (8, 6),
    "A4000": (8, 6),
    "T4": (7, 5),
    "V100": (7, 0),
}

# --- MIG slice memory (../shared/reference/mig_profiles.yaml) ----------------------------------
# Usable memory of a MIG device by profile name, used when gpu_memory_mib is not given. Observed
# values (mem_mib, or mem_gib_lgip x 1024); where GPUs share a name the smallest wins (1g.10gb: A100-40GB
# 9.62 GiB vs H100 9984 MiB). Names not listed fall back to the nominal size in the name, with a warning.
MIG_SLICE_MEMORY_MIB: dict[str, int] = {
    "1g.5gb": 4864,  # A100-40GB, 4.75 GiB
    "1g.10gb": 9850,  # A100-40GB 9.62 GiB (H100: 9984)
    "2g.10gb": 9850,  # A100-40GB
    "3g.20gb": 19968,  # A100-40GB, 19.50 GiB
    "4g.20gb": 19968,  # A100-40GB
    "7g.40gb": 40192,  # A100-40GB, 39.25 GiB
    "1g.20gb": 19968,  # A100-80GB (telegraf XML)
    "2g.20gb": 20096,  # H100 80GB
    "3g.40gb": 40320,  # H100 80GB
    "1g.12gb": 11008,  # H100 NVL 10.75 GiB (GH200: 11.00)
    "1g.24gb": 22138,  # H100 NVL 21.62 GiB (GH200: 23.00)
    "2g.24gb": 22138,  # H100 NVL
    "3g.47gb": 47493,  # H100 NVL 46.38 GiB
    "4g.47gb": 47493,  # H100 NVL
    "7g.94gb": 95354,  # H100 NVL 93.12 GiB
    "3g.48gb": 47616,  # GH200-96GB 46.50 GiB
    "4g.48gb": 47616,  # GH200-96GB
    "7g.96gb": 95232,  # GH200-96GB 93.00 GiB
    "1g.18gb": 16384,  # H200
    "2g.35gb": 33280,  # H200
    "3g.71gb": 71424,  # H200
    "1g.6gb": 5949,  # A30 5.81 GiB
    "2g.12gb": 11970,  # A30 11.69 GiB
    "4g.24gb": 24064,  # A30 23.50 GiB
}
MIG_RESOURCE = re.compile(r"^nvidia\.com/mig-(?:(?P<ci>\d+)c\.)?(?P<g>\d+)g\.(?P<gb>\d+)gb(?P<suffix>\+me|-me|\+gfx)?$")

# --- vLLM CLI changes (ref §2.3) ---------------------------------------------------------------
# (flag or prefix ending in "-", version that no longer accepts it, what happened)
REMOVED_FLAGS: tuple[tuple[str, Version, str], ...] = (
    ("--num-scheduler-steps", (0, 11, 0), "multi-step scheduling was removed in Aug 2025 by vllm PRs #22138 and #22779"),
    (
        "--disable-log-requests",
        (0, 12, 0),
        "deprecated by vllm PR #21739 and removed by PR #29402; request logging is off unless --enable-log-requests is set",
    ),
    ("--guided-decoding-", (0, 12, 0), "the --guided-decoding-* options were deprecated and then removed in 0.12"),
)
# (flag, first version that accepts it, source)
ADDED_FLAGS: tuple[tuple[str, Version, str], ...] = (
    ("--shutdown-timeout", (0, 18, 0), "vllm PRs #34730, #36666"),
    ("--disable-access-log-for-endpoints", (0, 16, 0), "vllm#30011"),
)

# --- config.json keys (the shared ones, and the maximum-length rule, are in _model_config) ---------
MOE_KEYS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")


class PreflightInputError(ValueError):
    """The inputs cannot be evaluated (not a verdict about the deployment); the message is for a person."""


# =============================================================================================
# Small helpers
# =============================================================================================


@dataclass(frozen=True)
class ModelFacts:
    """What the preflight needs from a config.json."""

    model_type: str
    hidden_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int | None
    vocab_size: int | None
    tie_word_embeddings: bool
    torch_dtype: str | None
    max_len: int
    max_len_source: str
    quant_method: str | None
    quant_config: Mapping[str, Any]
    mla_kv_dim: int | None  # kv_lora_rank + qk_rope_head_dim for multi-head latent attention
    is_moe: bool
    has_encoders: bool  # multimodal: the config describes vision/audio towers besides the LM


def _positive_int(value: Any, what: str) -> int:
    if not _is_int(value) or value <= 0:
        raise PreflightInputError(f"model_config: {what} is {value!r}, expected a positive integer")
    return value


def model_facts(config: Mapping[str, Any]) -> ModelFacts:
    """Read a config.json; multimodal configs keep the language model under ``text_config``."""
    if not isinstance(config, Mapping):
        raise PreflightInputError(f"model_config must be a JSON object (config.json), got {type(config).__name__}")
    sections = config_sections(config)

    def required(what: str, *keys: str) -> int:
        value = _lookup(sections, *keys)
        if value is None:
            where = " (nor in text_config)" if len(sections) > 1 else ""
            raise PreflightInputError(f"model_config has no {keys[0]}{where}: is it the config.json of a decoder-only language model?")
        return _positive_int(value, what)

    model_type = str(_lookup(sections, "model_type") or "")
    hidden = required("hidden_size", *HIDDEN_SIZE_KEYS)
    layers = required("num_hidden_layers", *NUM_LAYERS_KEYS)
    heads = required("num_attention_heads", *NUM_HEADS_KEYS)
    kv_heads = _lookup(sections, *NUM_KV_HEADS_KEYS)
    kv_heads = heads if kv_heads is None else _positive_int(kv_heads, "num_key_value_heads")
    head_dim = _lookup(sections, "head_dim")
    head_dim = hidden // heads if head_dim is None else _positive_int(head_dim, "head_dim")
    intermediate = _lookup(sections, *INTERMEDIATE_SIZE_KEYS)
    vocab = _lookup(sections, *VOCAB_SIZE_KEYS)
    tie = _lookup(sections, "tie_word_embeddings")
    torch_dtype = _lookup(sections, *DTYPE_KEYS)
    quant = _lookup(sections, "quantization_config")
    quant = quant if isinstance(quant, Mapping) else {}
    kv_lora_rank = _lookup(sections, "kv_lora_rank")
    max_len, max_len_source = derived_max_len(sections, model_type)
    return ModelFacts(
        model_type=model_type,
        hidden_size=hidden,
        num_layers=layers,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate if _is_int(intermediate) else None,
        vocab_size=vocab if _is_int(vocab) else None,
        tie_word_embeddings=True if tie is None else bool(tie),  # transformers' PretrainedConfig default
        torch_dtype=dtype_name(torch_dtype),
        max_len=max_len,
        max_len_source=max_len_source,
        quant_method=quantization_method(quant),
        quant_config=quant,
        mla_kv_dim=kv_lora_rank + int(_lookup(sections, "qk_rope_head_dim") or 0) if _is_int(kv_lora_rank) else None,
        is_moe=any(_is_int(_lookup(sections, key)) and _lookup(sections, key) > 1 for key in MOE_KEYS),
        has_encoders=has_encoders(config),
    )


def dtype_bytes(dtype: str, facts: ModelFacts) -> tuple[int, str]:
    """Bytes per weight/activation element vLLM loads the model in, and the dtype's name."""
    if dtype != "auto":
        if dtype not in DTYPE_BYTES:
            raise PreflightInputError(f"dtype {dtype!r} is not one of {', '.join(DTYPE_CHOICES)}")
        return DTYPE_BYTES[dtype], dtype
    if facts.torch_dtype in ("float16", "bfloat16"):
        return 2, facts.torch_dtype
    return 2, "16-bit (auto loads float32 checkpoints as 16-bit)"


def kv_cache_dtype_bytes(kv_cache_dtype: str, model_dtype_bytes: int) -> int:
    if kv_cache_dtype == "auto":
        return model_dtype_bytes
    if kv_cache_dtype not in KV_CACHE_DTYPE_BYTES:
        raise PreflightInputError(f"kv_cache_dtype {kv_cache_dtype!r} is not one of {', '.join(KV_CACHE_DTYPE_CHOICES)}")
    return KV_CACHE_DTYPE_BYTES[kv_cache_dtype]


def quant_bytes_per_param(method: str, quant_config: Mapping[str, Any]) -> float | None:
    """Bytes per weight of a quantized linear layer (weights + group scales), None for unknown methods."""
    spec = QUANTIZATION.get(method)
    if spec is None:
        return None
    bits, group, scale_bytes = spec.bits, spec.group_size, spec.scale_bytes
    if method == "compressed-tensors":
        for group_cfg in (quant_config.get("config_groups") or {}).values():
            weights = (group_cfg.get("weights") or {}) if isinstance(group_cfg, Mapping) else {}
            if weights.get("num_bits"):
                bits = int(weights["num_bits"])
                if weights.get("strategy") == "group" and weights.get("group_size"):
                    group, scale_bytes = int(weights["group_size"]), 2 + (0 if weights.get("symmetric", True) else bits / 8)
                break
    elif method == "bitsandbytes":
        bits = 8 if quant_config.get("load_in_8bit") else 4
    elif quant_config:
        bits = int(quant_config.get("bits") or quant_config.get("w_bit") or quant_config.get("weight_bits") or bits)
        configured = quant_config.get("group_size", quant_config.get("q_group_size"))
        if isinstance(configured, int):
            group = configured if configured > 0 else 0
    return bits / 8 + (scale_bytes / group if group else 0)


def estimate_weights_bytes(facts: ModelFacts, model_dtype_bytes: int, linear_bytes_per_param: float) -> int:
    """Weights of a dense decoder from its config (ref §2.6 "computed" column).

    Per layer: q and o projections (hidden x heads x head_dim each), k and v (hidden x kv_heads x head_dim
    each), a gated MLP (3 x hidden x intermediate), two norms; plus the embedding, the LM head unless tied,
    and the final norm. Linear layers take ``linear_bytes_per_param`` (quantization), the rest the model
    dtype. Biases are left out (under 0.01% for Qwen2.5's qkv biases).
    """
    if facts.intermediate_size is None or facts.vocab_size is None:
        raise PreflightInputError(
            "model_config lacks intermediate_size or vocab_size, so the weights cannot be estimated: "
            "pass weights_bytes (metadata.total_size of model.safetensors.index.json)"
        )
    h, d = facts.hidden_size, facts.head_dim
    attention = 2 * h * facts.num_attention_heads * d + 2 * h * facts.num_kv_heads * d
    mlp = 3 * h * facts.intermediate_size
    linear = facts.num_layers * (attention + mlp)
    embeddings = facts.vocab_size * h * (1 if facts.tie_word_embeddings else 2)
    other = embeddings + facts.num_layers * 2 * h + h
    return int(linear * linear_bytes_per_param + other * model_dtype_bytes)


def kv_bytes_per_token_per_gpu(facts: ModelFacts, tp: int, pp: int, kv_bytes: int) -> int:
    """ref §2.5: 2 x layers x max(1, kv_heads // TP) x head_dim x dtype bytes, with this GPU's share of the
    layers under pipeline parallelism. MLA caches one latent vector per layer, replicated on every TP rank."""
    layers = math.ceil(facts.num_layers / pp)
    if facts.mla_kv_dim is not None:
        return layers * facts.mla_kv_dim * kv_bytes
    return 2 * layers * max(1, facts.num_kv_heads // tp) * facts.head_dim * kv_bytes


def parse_mig_resource(resource: str) -> dict[str, Any] | None:
    """``nvidia.com/mig-3g.40gb`` -> profile, compute slices, nominal GB and usable MiB; None for whole GPUs."""
    if not resource.startswith("nvidia.com/mig-"):
        return None
    match = MIG_RESOURCE.match(resource)
    if match is None:
        raise PreflightInputError(f"gpu_resource {resource} is not a MIG resource name such as nvidia.com/mig-3g.40gb or nvidia.com/mig-1g.10gb")
    profile = resource[len("nvidia.com/mig-") :]
    base = f"{match.group('g')}g.{match.group('gb')}gb"
    return {
        "profile": profile,
        "compute_slices": int(match.group("g")),
        "nominal_gb": int(match.group("gb")),
        "memory_mib": MIG_SLICE_MEMORY_MIB.get(base),
    }


def parse_version(version: str) -> Version | None:
    """``0.11.0``, ``v0.12.1``, ``0.10.1.1``, ``0.12.0rc1`` -> (major, minor, patch); None when not a release number."""
    match = re.match(r"^v?(\d+)\.(\d+)(?:\.(\d+))?", version.strip())
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def _version_str(version: Version) -> str:
    return ".".join(str(part) for part in version)


def parse_capability(value: str) -> Capability:
    match = re.match(r"^(\d+)\.(\d)$", str(value).strip())
    if match is None:
        raise PreflightInputError(f"compute_capability {value!r} is not of the form MAJOR.MINOR, for example 8.9")
    return int(match.group(1)), int(match.group(2))


def capability_for_gpu(gpu_name: str) -> Capability | None:
    for token in re.split(r"[^A-Z0-9]+", gpu_name.upper()):
        if token in GPU_COMPUTE_CAPABILITY:
            return GPU_COMPUTE_CAPABILITY[token]
    return None


def _capability_str(capability: Capability) -> str:
    return f"{capability[0]}.{capability[1]}"


_QUANTITY = re.compile(r"^(?P<num>\d+(?:\.\d*)?|\.\d+)(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)|[eE](?P<exp>\d+))?$")
_SUFFIX_BYTES = {
    None: 1,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
    "Ei": 1024**6,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}


def parse_quantity(value: str, what: str) -> int:
    """Kubernetes memory quantity (``32Gi``, ``512Mi``, ``8G``, ``1e9``, ``34359738368``) -> bytes."""
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        raise PreflightInputError(f"{what} {value!r} is not a Kubernetes memory quantity such as 32Gi, 512Mi or 8G")
    number = float(match.group("num"))
    if match.group("exp"):
        return int(number * 10 ** int(match.group("exp")))
    return int(number * _SUFFIX_BYTES[match.group("suffix")])


def cli_flags(extra_args: Sequence[str]) -> list[str]:
    """Long flags in ``extra_args`` (``--flag value``, ``--flag=value`` or one string holding several)."""
    flags = []
    for arg in extra_args:
        for token in str(arg).split():
            if token.startswith("--"):
                flags.append(token.split("=", 1)[0])
    return flags


def _gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"


def _valid_tp_sizes(facts: ModelFacts, limit: int) -> list[int]:
    """TP sizes up to ``limit`` that split the attention heads and split or replicate whole KV heads."""
    sizes = []
    for tp in range(1, limit + 1):
        if facts.num_attention_heads % tp:
            continue
        if facts.mla_kv_dim is None and (facts.num_kv_heads % tp if tp <= facts.num_kv_heads else tp % facts.num_kv_heads):
            continue
        sizes.append(tp)
    return sizes


# =============================================================================================
# The rules, one group per function; each appends to a Findings
# =============================================================================================


@dataclass
class Findings:
    errors: list[str]
    warnings: list[str]


@dataclass(frozen=True)
class Device:
    """The GPU (or MIG slice) one vLLM worker sees."""

    resource: str
    memory_mib: int
    mig_profile: str | None
    name: str | None
    capability: Capability | None
    capability_source: str  # "the NVIDIA L40S (compute capability 8.9)", for messages

    @property
    def label(self) -> str:
        return f"{self.resource} slice" if self.mig_profile else "GPU"


def resolve_device(
    gpu_resource: str,
    gpu_memory_mib: int | None,
    gpu_name: str | None,
    compute_capability: str | None,
    found: Findings,
) -> Device:
    """Memory from gpu_memory_mib or the MIG profile; compute capability from the option or the GPU name."""
    mig = parse_mig_resource(gpu_resource)
    if gpu_memory_mib is None:
        if mig is None:
            raise PreflightInputError(f"gpu_memory_mib is required for {gpu_resource}: pass the GPU's memory_total_mib from ansible_facts.nvidia")
        gpu_memory_mib = mig["memory_mib"]
        if gpu_memory_mib is None:
            gpu_memory_mib = mig["nominal_gb"] * 1024
            found.warnings.append(
                f"gpu_memory_mib is not set and MIG profile {mig['profile']} is not in the table of measured slice sizes: "
                f"the estimates assume its nominal {gpu_memory_mib} MiB, more than the slice really has; pass the MIG "
                "device's memory_mib from ansible_facts.nvidia"
            )
    elif mig is not None and gpu_memory_mib > mig["nominal_gb"] * 1024 * 1.05:
        found.warnings.append(
            f"gpu_memory_mib {gpu_memory_mib} is more than a {mig['profile']} MIG slice has (about {mig['nominal_gb']} GB): "
            "it looks like the whole GPU's memory; pass the MIG device's memory_mib so the memory checks mean something"
        )
    capability: Capability | None = None
    source = ""
    if compute_capability is not None:
        capability = parse_capability(compute_capability)
        source = f"the GPU (compute capability {compute_capability})"
    elif gpu_name:
        capability = capability_for_gpu(gpu_name)
        if capability is not None:
            source = f"the {gpu_name} (compute capability {_capability_str(capability)})"
    return Device(
        resource=gpu_resource,
        memory_mib=gpu_memory_mib,
        mig_profile=mig["profile"] if mig else None,
        name=gpu_name,
        capability=capability,
        capability_source=source,
    )


def check_parallelism(
    facts: ModelFacts,
    *,
    tp: int,
    pp: int,
    device: Device,
    gpu_limit: int | None,
    gpus_per_node: int | None,
    found: Findings,
) -> None:
    """ref §2.4: head divisibility, KV head split/replication, GPU limit, node size, MIG."""
    heads, kv_heads, world = facts.num_attention_heads, facts.num_kv_heads, tp * pp
    if heads % tp:
        valid = ", ".join(str(n) for n in _valid_tp_sizes(facts, gpus_per_node or 8))
        found.errors.append(
            f"num_attention_heads {heads} is not divisible by tensor_parallel_size {tp}, so vLLM refuses to start; "
            f"tensor_parallel_size values this model accepts on {gpus_per_node or 8} GPUs: {valid}"
        )
    if facts.mla_kv_dim is None:
        if tp <= kv_heads and kv_heads % tp:
            found.errors.append(f"num_key_value_heads {kv_heads} is not divisible by tensor_parallel_size {tp}: vLLM cannot split the KV heads")
        elif tp > kv_heads and tp % kv_heads:
            found.errors.append(
                f"tensor_parallel_size {tp} is not a multiple of num_key_value_heads {kv_heads}: vLLM can only replicate whole KV heads across GPUs"
            )
        elif tp > kv_heads:
            found.warnings.append(
                f"tensor_parallel_size {tp} is above num_key_value_heads {kv_heads}: each KV head is replicated on "
                f"{tp // kv_heads} GPUs, so the KV cache per token per GPU stops shrinking beyond tensor_parallel_size {kv_heads}"
            )
    if gpu_limit is not None and gpu_limit != world:
        consequence = (
            f"vLLM uses {world} and leaves {gpu_limit - world} idle" if gpu_limit > world else f"vLLM needs {world} and fails to start with {gpu_limit}"
        )
        found.errors.append(
            f"gpu_limit {gpu_limit} ({device.resource}) is not tensor_parallel_size {tp} x pipeline_parallel_size {pp} = "
            f"{world}: {consequence}; set gpu_limit to {world}"
        )
    if gpus_per_node is not None and world > gpus_per_node:
        found.errors.append(
            f"tensor_parallel_size {tp} x pipeline_parallel_size {pp} = {world} GPUs is more than the {gpus_per_node} "
            f"{device.resource} on one node: a single-node deployment stays Pending; lower the parallelism or use bigger nodes"
        )
    if device.mig_profile is not None and world > 1:
        found.errors.append(
            f"{device.resource} is a MIG device and a process sees only one MIG device, so tensor_parallel_size x "
            f"pipeline_parallel_size must be 1 (got {world}); use a larger MIG profile or whole GPUs (nvidia.com/gpu)"
        )


@dataclass(frozen=True)
class Precision:
    model_bytes: int  # bytes per element of the dtype vLLM loads the model in
    model_dtype: str
    kv_bytes: int
    method: str | None  # effective quantization method (option, else the checkpoint's)
    total_weights: int  # bytes of weights loaded on the GPUs, all ranks together


def resolve_precision(
    facts: ModelFacts,
    *,
    dtype: str,
    quantization: str | None,
    kv_cache_dtype: str,
    weights_bytes: int | None,
    found: Findings,
) -> Precision:
    """dtype, KV dtype and quantization from the options or the config; weights from weights_bytes or the config."""
    model_bytes, model_dtype = dtype_bytes(dtype, facts)
    kv_bytes = kv_cache_dtype_bytes(kv_cache_dtype, model_bytes)
    method = (quantization or facts.quant_method or "").lower() or None
    online = quantization is not None and facts.quant_method is None  # quantized while loading (fp8 on bf16)
    dense = not facts.is_moe and facts.mla_kv_dim is None
    linear_bpp = float(model_bytes) if method is None else quant_bytes_per_param(method, facts.quant_config)
    if linear_bpp is None:
        linear_bpp = float(model_bytes)
        if weights_bytes is None or online:
            found.warnings.append(
                f"quantization {method} is not in this module's table, so the weights are estimated unquantized "
                f"({model_dtype}); pass weights_bytes for a real figure"
            )

    def from_config(bytes_per_param: float) -> int:
        if not dense:
            raise PreflightInputError(
                "model_config describes a mixture-of-experts or multi-head-latent-attention model, whose weights this "
                "module does not estimate: pass weights_bytes (metadata.total_size of model.safetensors.index.json)"
            )
        return estimate_weights_bytes(facts, model_bytes, bytes_per_param)

    if weights_bytes is None:
        total = from_config(linear_bpp)
        if facts.has_encoders:
            found.warnings.append(
                "model_config is multimodal: the weights estimate covers the language model only, not the vision/audio "
                "encoders; pass weights_bytes (metadata.total_size of model.safetensors.index.json)"
            )
    elif online and dense:
        # weights_bytes is the checkpoint on disk; vLLM quantizes its linear layers while loading.
        total = int(weights_bytes * from_config(linear_bpp) / from_config(float(model_bytes)))
    elif method is None and facts.torch_dtype in DTYPE_BYTES:
        total = int(weights_bytes * model_bytes / DTYPE_BYTES[facts.torch_dtype])  # e.g. float32 on disk
    else:
        total = weights_bytes
    return Precision(model_bytes, model_dtype, kv_bytes, method, total)


def check_memory(
    facts: ModelFacts,
    *,
    tp: int,
    pp: int,
    device: Device,
    precision: Precision,
    gpu_memory_utilization: float,
    max_model_len: int | None,
    max_num_seqs: int | None,
    gpus_per_node: int | None,
    found: Findings,
) -> dict[str, Any]:
    """ref §2.5: weights + overhead within the budget, one max-length sequence in the KV cache, concurrency."""
    world = tp * pp
    weights_per_gpu = precision.total_weights / world
    device_bytes = device.memory_mib * MIB
    usable = device_bytes * gpu_memory_utilization
    large_batch = device_bytes >= LARGE_BATCH_MIN_DEVICE_GIB * GIB and LARGE_BATCH_EXCLUDED_GPU not in (device.name or "").upper()
    overhead = (OVERHEAD_GIB_LARGE_BATCH if large_batch else OVERHEAD_GIB_SMALL_BATCH) * GIB
    kv_budget = usable - weights_per_gpu - overhead
    kv_per_token = kv_bytes_per_token_per_gpu(facts, tp, pp, precision.kv_bytes)
    block_bytes = kv_per_token * KV_BLOCK_TOKENS
    num_blocks = int(kv_budget // block_bytes) if kv_budget > 0 else 0
    max_tokens = num_blocks * KV_BLOCK_TOKENS
    seq_len = max_model_len or facts.max_len
    blocks_per_seq = math.ceil(seq_len / KV_BLOCK_TOKENS)
    concurrent = num_blocks // blocks_per_seq
    seq_text = f"max_model_len {seq_len}" + ("" if max_model_len else " (not set: the model's maximum)")
    usable_text = f"{_gib(usable)} of the {device.memory_mib} MiB {device.label} is usable at gpu_memory_utilization {gpu_memory_utilization:g}"
    if kv_budget <= 0:
        advice = "use a larger MIG profile or a whole GPU" if device.mig_profile else "use a quantized checkpoint or a larger GPU"
        if device.mig_profile is None:
            for bigger in (n for n in _valid_tp_sizes(facts, gpus_per_node or 8) if n > tp):
                left = usable - precision.total_weights / (bigger * pp) - overhead
                if left > 0:
                    advice = f"tensor_parallel_size {bigger} would leave {_gib(left)} per GPU for the KV cache"
                    break
        found.errors.append(
            f"weights need {_gib(weights_per_gpu)} per GPU plus {_gib(overhead)} activation and runtime overhead, but only {usable_text}; {advice}"
        )
    elif concurrent < 1:
        found.errors.append(
            f"one sequence of {seq_text} needs {_gib(blocks_per_seq * block_bytes)} of KV cache per GPU but only "
            f"{_gib(kv_budget)} is left after the weights and overhead ({usable_text}); the KV cache holds {max_tokens} "
            "tokens: lower max_model_len to at most that, or use kv_cache_dtype fp8 or more GPUs"
        )
    elif max_num_seqs is not None and max_num_seqs > concurrent:
        found.warnings.append(
            f"max_num_seqs {max_num_seqs} is above the {concurrent} sequences of {seq_text} the KV cache holds "
            f"({max_tokens} tokens): at full length the rest wait or are preempted; lower max_num_seqs or max_model_len, "
            "or add KV cache memory"
        )
    return {
        "weights_gib_per_gpu": round(weights_per_gpu / GIB, 2),
        "kv_bytes_per_token_per_gpu": kv_per_token,
        "kv_cache_gib_per_gpu": round(max(kv_budget, 0) / GIB, 2),
        "max_tokens_in_kv": max_tokens,
        "max_concurrent_seqs_at_max_len": concurrent,
    }


def check_context_length(facts: ModelFacts, max_model_len: int | None, found: Findings) -> None:
    """ref §2.3 --max-model-len: vLLM refuses more than the derived maximum."""
    if max_model_len is not None and max_model_len > facts.max_len:
        found.errors.append(
            f"max_model_len {max_model_len} is above the model's maximum of {facts.max_len} ({facts.max_len_source}); "
            "vLLM refuses it unless VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 (which yields garbage past the trained length): "
            "lower max_model_len, or add rope_scaling to config.json if the model card documents it"
        )


def check_flags(extra_args: Sequence[str], vllm_version: str | None, found: Findings) -> None:
    """ref §2.3: flags the pinned vLLM version no longer (or does not yet) accept."""
    if vllm_version is None:
        return
    version = parse_version(vllm_version)
    if version is None:
        found.warnings.append(
            f"vllm_version {vllm_version!r} is not a release number such as 0.11.0: the extra_args flags were not checked against it; pin a release"
        )
        return
    for flag in cli_flags(extra_args):
        for name, removed, why in REMOVED_FLAGS:
            matches = flag.startswith(name) if name.endswith("-") else flag == name
            if matches and version >= removed:
                found.errors.append(
                    f"{flag} in extra_args was removed in vLLM {_version_str(removed)}: {why}. vLLM {vllm_version} "
                    "exits with 'unrecognized arguments'; remove it"
                )
        for name, added, source in ADDED_FLAGS:
            if flag == name and version < added:
                found.errors.append(
                    f"{flag} in extra_args needs vLLM {_version_str(added)} or later ({source}); vllm_version is "
                    f"{vllm_version}, which exits with 'unrecognized arguments'"
                )


def check_kernels(
    facts: ModelFacts,
    *,
    precision: Precision,
    quantization: str | None,
    dtype: str,
    device: Device,
    found: Findings,
) -> None:
    """What the GPU can run (quantization and bfloat16 by compute capability), and forced slow kernels."""
    method = precision.method
    spec = QUANTIZATION.get(method) if method else None
    needs = spec.min_capability if spec is not None else None
    capability = device.capability
    if capability is not None:
        if needs is not None and capability < needs:
            found.errors.append(
                f"quantization {method} needs compute capability {_capability_str(needs)} or higher, but "
                f"{device.capability_source} is lower: use a checkpoint in a format this GPU runs, or a newer GPU"
            )
        elif method == "fp8" and capability < FP8_NATIVE_CAPABILITY:
            found.warnings.append(
                f"quantization fp8 on {device.capability_source} runs weight-only FP8 through the Marlin kernel: the "
                f"weights shrink but there is no FP8 compute, which needs compute capability "
                f"{_capability_str(FP8_NATIVE_CAPABILITY)} (Ada, Hopper)"
            )
        if dtype == "bfloat16" and capability < BF16_MIN_CAPABILITY:
            found.errors.append(
                f"dtype bfloat16 needs compute capability {_capability_str(BF16_MIN_CAPABILITY)} or higher, but "
                f"{device.capability_source} is lower: use dtype float16"
            )
    elif device.name and (needs is not None or dtype == "bfloat16"):
        what = f"quantization {method}" if needs is not None else "dtype bfloat16"
        found.warnings.append(
            f"the compute capability of {device.name!r} is not in this module's table, so whether it runs {what} was not checked; pass compute_capability"
        )

    forced = quantization.lower() if quantization else None
    if forced in ("awq", "gptq") and facts.quant_method == forced:
        # vLLM's awq_marlin/gptq_marlin `override_quantization_method`: convertible checkpoints get the Marlin
        # kernel unless the user forces the plain one ("... you specified quantization=awq explicitly").
        config = facts.quant_config
        bits = config.get("bits", config.get("w_bit"))
        group = config.get("group_size", config.get("q_group_size"))
        layout_ok = config.get("zero_point") is not None if forced == "awq" else bool(config.get("sym", True))
        marlin = QUANTIZATION[forced].marlin_variant
        if layout_ok and bits in MARLIN_BITS and group in MARLIN_GROUP_SIZES and (capability is None or capability >= (8, 0)):
            found.warnings.append(
                f"quantization {forced} forces the slower {forced.upper()} kernel: this {bits}-bit, group size {group} "
                f"checkpoint runs on {marlin}, which vLLM picks by itself when quantization is not set (or set to {marlin})"
            )


def check_container(
    world: int,
    weights_per_gpu: float,
    memory_limit: str | None,
    shm_size: str | None,
    found: Findings,
) -> None:
    """ref §5: /dev/shm for multi-GPU workers; memory-backed shm and vLLM's host memory within the limit."""
    shm = parse_quantity(shm_size, "shm_size") if shm_size is not None else None
    if world > 1 and (shm if shm is not None else SHM_RUNTIME_DEFAULT_BYTES) < SHM_MIN_BYTES_MULTI_GPU:
        shown = shm_size if shm_size is not None else "not set (the container runtime's 64Mi /dev/shm)"
        found.warnings.append(
            f"shm_size {shown} is below 1Gi for tensor_parallel_size x pipeline_parallel_size {world}: the worker "
            "processes exchange tensors through /dev/shm (PyTorch/NCCL IPC); set shm_size to 1Gi-2Gi"
        )
    if memory_limit is None:
        return
    limit = parse_quantity(memory_limit, "memory_limit")
    processes = 2 if world == 1 else world + 2  # API server + engine core (+ one worker per GPU)
    floor = processes * HOST_GIB_PER_PROCESS * GIB + weights_per_gpu
    if limit < floor:
        found.warnings.append(
            f"memory_limit {memory_limit} ({_gib(limit)}) is below the {_gib(floor)} this model needs in host memory: "
            f"{processes} vLLM processes x {HOST_GIB_PER_PROCESS:g} GiB plus the {_gib(weights_per_gpu)} weight shard read "
            "through host memory while loading; the pod risks being OOMKilled during start-up"
        )
    elif shm and limit < floor + shm:
        found.warnings.append(
            f"memory-backed shm_size {shm_size} plus the {_gib(floor)} vLLM needs in host memory is {_gib(floor + shm)}, "
            f"above memory_limit {memory_limit} ({_gib(limit)}): /dev/shm pages count against the container memory "
            f"limit, so the pod can be OOMKilled; raise memory_limit to {math.ceil((floor + shm) / GIB)}Gi or lower shm_size"
        )


# =============================================================================================
# The entry point
# =============================================================================================


def preflight(
    *,
    model_config: Mapping[str, Any],
    tensor_parallel_size: int = 1,
    pipeline_parallel_size: int = 1,
    gpu_resource: str = "nvidia.com/gpu",
    gpu_limit: int | None = None,
    gpu_memory_mib: int | None = None,
    gpus_per_node: int | None = None,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
    max_num_seqs: int | None = None,
    dtype: str = "auto",
    quantization: str | None = None,
    kv_cache_dtype: str = "auto",
    weights_bytes: int | None = None,
    memory_limit: str | None = None,
    shm_size: str | None = None,
    vllm_version: str | None = None,
    extra_args: Sequence[str] | None = None,
    gpu_name: str | None = None,
    compute_capability: str | None = None,
) -> dict[str, Any]:
    """Check one model deployment; return ``ok``, ``errors``, ``warnings`` and ``estimates`` (DESIGN.md).

    Raises PreflightInputError when the inputs cannot be evaluated at all.
    """
    tp, pp = tensor_parallel_size, pipeline_parallel_size
    for name, value in (
        ("tensor_parallel_size", tp),
        ("pipeline_parallel_size", pp),
        ("gpu_limit", gpu_limit),
        ("gpu_memory_mib", gpu_memory_mib),
        ("gpus_per_node", gpus_per_node),
        ("max_model_len", max_model_len),
        ("max_num_seqs", max_num_seqs),
        ("weights_bytes", weights_bytes),
    ):
        if value is not None and value < 1:
            raise PreflightInputError(f"{name} must be at least 1, got {value}")
    if not 0 < gpu_memory_utilization <= 1:
        raise PreflightInputError(f"gpu_memory_utilization must be in (0, 1], got {gpu_memory_utilization}")

    facts = model_facts(model_config)
    found = Findings(errors=[], warnings=[])
    device = resolve_device(gpu_resource, gpu_memory_mib, gpu_name, compute_capability, found)
    check_parallelism(facts, tp=tp, pp=pp, device=device, gpu_limit=gpu_limit, gpus_per_node=gpus_per_node, found=found)
    precision = resolve_precision(facts, dtype=dtype, quantization=quantization, kv_cache_dtype=kv_cache_dtype, weights_bytes=weights_bytes, found=found)
    estimates = check_memory(
        facts,
        tp=tp,
        pp=pp,
        device=device,
        precision=precision,
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        gpus_per_node=gpus_per_node,
        found=found,
    )
    check_context_length(facts, max_model_len, found)
    check_flags(extra_args or (), vllm_version, found)
    check_kernels(facts, precision=precision, quantization=quantization, dtype=dtype, device=device, found=found)
    check_container(tp * pp, precision.total_weights / (tp * pp), memory_limit, shm_size, found)
    return {"ok": not found.errors, "errors": found.errors, "warnings": found.warnings, "estimates": estimates}
