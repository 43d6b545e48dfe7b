# Copyright: (c) 2026, llmops.gpu_inference contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading a Hugging Face ``config.json``: the one place that knows its key names (DESIGN.md "model facts").

Private to this collection: no AnsibleModule import, no I/O. Shared by ``_vllm_preflight`` (which needs the
facts to be complete and raises on gaps) and ``_model_check`` (which reports whatever the file says and
``None`` for the rest), so both read the same keys in the same order.

Multimodal configs keep the language model under ``text_config`` (``llm_config`` in InternVL): that section
is searched first, then the top level (../shared/reference/vllm-on-kubernetes.md §2.6).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

# Alternative names of the same fact across architectures (GPT-2 ``n_embd``, T5 ``d_model``, ChatGLM
# ``multi_query_group_num``, ...), in the order they are tried.
HIDDEN_SIZE_KEYS = ("hidden_size", "n_embd", "d_model")
NUM_LAYERS_KEYS = ("num_hidden_layers", "n_layer", "num_layers")
NUM_HEADS_KEYS = ("num_attention_heads", "n_head", "num_heads")
NUM_KV_HEADS_KEYS = ("num_key_value_heads", "num_kv_heads", "multi_query_group_num")
INTERMEDIATE_SIZE_KEYS = ("intermediate_size", "ffn_hidden_size", "n_inner")
VOCAB_SIZE_KEYS = ("vocab_size", "padded_vocab_size")
DTYPE_KEYS = ("torch_dtype", "dtype")  # transformers >= 4.56 writes "dtype"
ENCODER_KEYS = ("vision_config", "audio_config")

# vLLM `_get_and_verify_max_len`: the smallest of these is the model's maximum length.
MAX_LEN_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "model_max_length",
    "max_target_positions",
    "max_sequence_length",
    "max_seq_length",
    "seq_len",
)
DEFAULT_MAX_LEN = 2048  # what vLLM assumes when none of MAX_LEN_KEYS is present
ROPE_TYPES_ALREADY_SCALED = ("su", "longrope", "llama3")  # max_position_embeddings already covers them


def is_int(value: Any) -> bool:
    """A JSON integer (``true`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def text_section(config: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The language model's own section of a multimodal config, or None."""
    text = config.get("text_config") or config.get("llm_config")
    return text if isinstance(text, Mapping) else None


def config_sections(config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The sections to search, the language model's first."""
    text = text_section(config)
    return [text, config] if text is not None else [config]


def has_encoders(config: Mapping[str, Any]) -> bool:
    """Multimodal: the config describes vision/audio towers besides the language model."""
    return text_section(config) is not None or any(key in config for key in ENCODER_KEYS)


def lookup(sections: Sequence[Mapping[str, Any]], *keys: str) -> Any:
    """The first non-null value of ``keys`` (in order) in the first section that has one."""
    for section in sections:
        for key in keys:
            value = section.get(key)
            if value is not None:
                return value
    return None


def dtype_name(value: Any) -> str | None:
    """``torch.bfloat16`` / ``bfloat16`` -> ``bfloat16``; None when not set."""
    return str(value).replace("torch.", "") if value else None


def quantization_method(quantization_config: Any) -> str | None:
    """``quantization_config.quant_method`` in lower case (``awq``, ``gptq``, ``fp8``, ...), or None."""
    if isinstance(quantization_config, Mapping) and quantization_config.get("quant_method"):
        return str(quantization_config["quant_method"]).lower()
    return None


def derived_max_len(sections: Sequence[Mapping[str, Any]], model_type: str) -> tuple[int, str]:
    """The longest context vLLM accepts without VLLM_ALLOW_LONG_MAX_MODEL_LEN, and where it comes from."""
    found: list[tuple[int, str]] = []
    for section in sections:  # the language model's own section first
        found = [(section[key], key) for key in MAX_LEN_KEYS if is_int(section.get(key))]
        if found:
            break
    if not found:
        return DEFAULT_MAX_LEN, f"vLLM's default of {DEFAULT_MAX_LEN}: config.json has none of {', '.join(MAX_LEN_KEYS)}"
    length, key = min(found)
    model_max_length = {name: value for value, name in found}.get("model_max_length")
    if model_max_length is not None:  # Command-R/Cohere: vLLM takes it over the smaller keys
        length, key = model_max_length, "model_max_length"
    source = f"{key} {length}"
    rope = lookup(sections, "rope_scaling")
    if isinstance(rope, Mapping) and "gemma3" not in model_type:
        rope_type = rope.get("rope_type") or rope.get("type") or "default"
        factor = rope.get("factor", 1.0)
        if rope_type not in ROPE_TYPES_ALREADY_SCALED and isinstance(factor, (int, float)) and factor != 1:
            if rope_type == "yarn" and isinstance(rope.get("original_max_position_embeddings"), int):
                length = rope["original_max_position_embeddings"]
                source = f"original_max_position_embeddings {length}"
            length = int(length * factor)
            source += f" x rope_scaling factor {factor:g} ({rope_type})"
    return length, source
