"""Small but real Hugging Face model directories for the model_check tests (importable as `model_dirs`).

The safetensors files are written here with the standard library, byte for byte in the format of the
reference implementation (huggingface/safetensors): an 8-byte little-endian header length, a compact JSON
header padded with spaces to a multiple of 8 bytes, then the tensors' bytes back to back in header order.
The test files cross-check this writer against the `safetensors` package where it is installed.

The model is shaped like Qwen2.5-7B-Instruct: its real config.json, generation config and tokenizer files,
and its 339 tensor names (28 layers of q/k/v with biases, o, gate/up/down, two norms; embeddings, final
norm, untied LM head) in 4 shards named as on the hub. Only the tensor dimensions are tiny (hidden 16), so
a whole model is about 260 KB.
"""

from __future__ import annotations

import json
import random
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "F64": 8,
    "I64": 8,
    "U64": 8,
}

# Qwen/Qwen2.5-7B-Instruct config.json (values of ../shared/reference/vllm-on-kubernetes.md section 2.6).
QWEN25_7B_CONFIG: dict[str, Any] = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "hidden_act": "silu",
    "hidden_size": 3584,
    "initializer_range": 0.02,
    "intermediate_size": 18944,
    "max_position_embeddings": 32768,
    "max_window_layers": 28,
    "model_type": "qwen2",
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 131072,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.43.1",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 152064,
}
GENERATION_CONFIG = {
    "bos_token_id": 151643,
    "pad_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "repetition_penalty": 1.05,
    "temperature": 0.7,
    "top_p": 0.8,
    "top_k": 20,
    "transformers_version": "4.37.0",
}
TOKENIZER_CONFIG = {
    "add_prefix_space": False,
    "bos_token": None,
    "chat_template": "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}",
    "clean_up_tokenization_spaces": False,
    "eos_token": "<|im_end|>",
    "errors": "replace",
    "model_max_length": 131072,
    "pad_token": "<|endoftext|>",
    "split_special_tokens": False,
    "tokenizer_class": "Qwen2Tokenizer",
    "unk_token": None,
}
_VOCAB = {token: n for n, token in enumerate(["!", '"', "#", "a", "b", "c", "ab", "abc", "Ġa", "Ġab"])}
TOKENIZER = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": [
        {"id": 151643, "content": "<|endoftext|>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
        {"id": 151644, "content": "<|im_start|>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
        {"id": 151645, "content": "<|im_end|>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
    ],
    "normalizer": {"type": "NFC"},
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
    "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
    "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "fuse_unk": False, "byte_fallback": False, "vocab": _VOCAB, "merges": ["a b", "ab c", "Ġa b"]},
}

# Tiny stand-ins for the real dimensions (3584 hidden, 4 x 128 KV, 18944 MLP, 152064 vocab).
HIDDEN, KV_DIM, MLP, VOCAB = 16, 4, 32, 64
LAYERS = QWEN25_7B_CONFIG["num_hidden_layers"]
SHARDS = 4


def qwen2_tensors(dtype: str = "BF16") -> dict[str, tuple[str, list[int]]]:
    """The 339 tensors of Qwen2.5-7B-Instruct in checkpoint order, with tiny shapes."""
    tensors = {"model.embed_tokens.weight": (dtype, [VOCAB, HIDDEN])}
    for layer in range(LAYERS):
        prefix = f"model.layers.{layer}."
        tensors.update(
            {
                prefix + "input_layernorm.weight": (dtype, [HIDDEN]),
                prefix + "mlp.down_proj.weight": (dtype, [HIDDEN, MLP]),
                prefix + "mlp.gate_proj.weight": (dtype, [MLP, HIDDEN]),
                prefix + "mlp.up_proj.weight": (dtype, [MLP, HIDDEN]),
                prefix + "post_attention_layernorm.weight": (dtype, [HIDDEN]),
                prefix + "self_attn.k_proj.bias": (dtype, [KV_DIM]),
                prefix + "self_attn.k_proj.weight": (dtype, [KV_DIM, HIDDEN]),
                prefix + "self_attn.o_proj.weight": (dtype, [HIDDEN, HIDDEN]),
                prefix + "self_attn.q_proj.bias": (dtype, [HIDDEN]),
                prefix + "self_attn.q_proj.weight": (dtype, [HIDDEN, HIDDEN]),
                prefix + "self_attn.v_proj.bias": (dtype, [KV_DIM]),
                prefix + "self_attn.v_proj.weight": (dtype, [KV_DIM, HIDDEN]),
            }
        )
    tensors["model.norm.weight"] = (dtype, [HIDDEN])
    tensors["lm_head.weight"] = (dtype, [VOCAB, HIDDEN])
    return tensors


def nbytes(dtype: str, shape: list[int]) -> int:
    count = 1
    for n in shape:
        count *= n
    return count * DTYPE_BYTES[dtype]


def tensor_data(name: str, dtype: str, shape: list[int]) -> bytes:
    """Deterministic bytes, different for every tensor."""
    return random.Random(name).randbytes(nbytes(dtype, shape))


def encode_header(header: dict[str, Any]) -> bytes:
    """The length field and the JSON header, padded with spaces to a multiple of 8 as safetensors does."""
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def encode_safetensors(tensors: dict[str, tuple[str, list[int]]], metadata: dict[str, str] | None = None) -> bytes:
    header: dict[str, Any] = {"__metadata__": metadata} if metadata is not None else {}
    data = bytearray()
    for name, (dtype, shape) in tensors.items():
        start = len(data)
        data += tensor_data(name, dtype, shape)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [start, len(data)]}
    return encode_header(header) + bytes(data)


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]], metadata: dict[str, str] | None = None) -> None:
    path.write_bytes(encode_safetensors(tensors, {"format": "pt"} if metadata is None else metadata))


def read_header(path: Path) -> tuple[dict[str, Any], bytes]:
    """The parsed header of a file and its data section."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + length]), raw[8 + length :]


def rewrite_header(path: Path, header: dict[str, Any]) -> None:
    """Replace the header of a file, keeping its data section byte for byte."""
    data = read_header(path)[1]
    path.write_bytes(encode_header(header) + data)


@dataclass
class Model:
    root: Path
    shards: list[str]
    weight_map: dict[str, str]
    tensor_bytes: int

    def path(self, name: str) -> Path:
        return self.root / name

    def shard(self, number: int) -> Path:
        """The shard ``number`` (1-based) of the index."""
        return self.root / self.shards[number - 1]

    @property
    def index(self) -> dict[str, Any]:
        return json.loads((self.root / "model.safetensors.index.json").read_text())

    def write_index(self, index: dict[str, Any]) -> None:
        (self.root / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def write_support_files(root: Path, config: dict[str, Any] | None = None) -> None:
    """config.json, generation config and the Qwen2 tokenizer files (tokenizer.json, vocab.json, merges.txt)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(QWEN25_7B_CONFIG if config is None else config, indent=2))
    (root / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2))
    (root / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2))
    (root / "tokenizer.json").write_text(json.dumps(TOKENIZER, indent=2))
    (root / "vocab.json").write_text(json.dumps(_VOCAB))
    (root / "merges.txt").write_text("#version: 0.2\na b\nab c\nĠa b\n", encoding="utf-8")
    (root / "LICENSE").write_text("Apache License\nVersion 2.0, January 2004\n")


def make_model(root: Path, *, shards: int = SHARDS, config: dict[str, Any] | None = None) -> Model:
    """A Qwen2.5-7B-Instruct-shaped model in ``root``: sharded with an index, or ``model.safetensors`` when shards is 1."""
    write_support_files(root, config)
    tensors = qwen2_tensors()
    total = sum(nbytes(*spec) for spec in tensors.values())
    if shards == 1:
        write_safetensors(root / "model.safetensors", tensors)
        return Model(root, ["model.safetensors"], {}, total)
    # Fill the shards in checkpoint order up to an equal share of the bytes, as transformers' max_shard_size does.
    names = [f"model-{n:05d}-of-{shards:05d}.safetensors" for n in range(1, shards + 1)]
    share = -(-total // shards)
    groups: list[dict[str, tuple[str, list[int]]]] = [{} for name in names]
    filled, current = 0, 0
    for name, spec in tensors.items():
        size = nbytes(*spec)
        if filled + size > share and groups[current] and current < shards - 1:
            current, filled = current + 1, 0
        groups[current][name] = spec
        filled += size
    weight_map = {}
    for shard_name, group in zip(names, groups, strict=True):
        write_safetensors(root / shard_name, group)
        weight_map.update(dict.fromkeys(group, shard_name))
    model = Model(root, names, weight_map, total)
    model.write_index({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    return model
