"""The model_check core on real model directories: facts, every kind of corruption, the sha256 manifest, speed.

The models are written by `model_dirs` (Qwen2.5-7B-Instruct-shaped, real safetensors files); where the
`safetensors` package is installed (requirements/dev.txt), the reference implementation cross-checks both
the writer and the verdicts.
"""

from __future__ import annotations

import builtins
import ctypes
import hashlib
import json
import os
import shutil
import struct
import subprocess
import threading
from pathlib import Path

import pytest
from model_dirs import (
    QWEN25_7B_CONFIG,
    Model,
    encode_header,
    encode_safetensors,
    make_model,
    qwen2_tensors,
    read_header,
    rewrite_header,
    tensor_data,
    write_safetensors,
    write_support_files,
)

from ansible_collections.llmops.gpu_inference.plugins.module_utils import _model_check as mc
from ansible_collections.llmops.gpu_inference.plugins.module_utils import _vllm_preflight as vp
from ansible_collections.llmops.gpu_inference.plugins.module_utils._model_check import ModelCheckInputError, check_model

SHARD1, SHARD2, SHARD3, SHARD4 = (f"model-0000{n}-of-00004.safetensors" for n in range(1, 5))
INDEX = "model.safetensors.index.json"


@pytest.fixture
def model(tmp_path) -> Model:
    return make_model(tmp_path / "Qwen2.5-7B-Instruct")


def problems_of(model: Model, **kwargs) -> list[str]:
    result = check_model(str(model.root), **kwargs)
    assert result["ok"] is (not result["problems"])
    return result["problems"]


# =============================================================================================
# A complete model
# =============================================================================================


def test_complete_sharded_model_passes_with_its_facts(model):
    result = check_model(str(model.root))
    assert result["ok"] is True, result["problems"]
    assert result["problems"] == [] and result["warnings"] == []
    assert result["changed"] is False and "manifest" not in result
    facts = result["model"]
    files = sorted(p.name for p in model.root.iterdir())
    assert facts == {
        "path": str(model.root),
        "real_path": str(model.root.resolve()),
        "architecture": "Qwen2ForCausalLM",
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "multimodal": False,
        "dtype": "bfloat16",
        "hidden_size": 3584,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "head_dim": 128,
        "intermediate_size": 18944,
        "vocab_size": 152064,
        "max_position_embeddings": 32768,
        "max_model_len": 32768,
        "rope_scaling": None,
        "quantization": None,
        "quantization_config": None,
        "tokenizer_files": ["tokenizer.json", "tokenizer_config.json"],
        "weights_bytes": model.tensor_bytes,
        "tensor_count": 339,
        "tensor_dtypes": ["BF16"],
        "shard_count": 4,
        "shards": [
            {
                "name": name,
                "size": model.path(name).stat().st_size,
                "tensors": sum(1 for shard in model.weight_map.values() if shard == name),
                "tensor_bytes": len(read_header(model.path(name))[1]),
            }
            for name in (SHARD1, SHARD2, SHARD3, SHARD4)
        ],
        "files": [{"name": name, "size": model.path(name).stat().st_size} for name in files],
        "total_bytes": sum(model.path(name).stat().st_size for name in files),
    }
    # weights_bytes is the figure the index carries as metadata.total_size
    assert facts["weights_bytes"] == model.index["metadata"]["total_size"] == sum(s["tensor_bytes"] for s in facts["shards"])


def test_single_file_model_without_index_passes(tmp_path):
    model = make_model(tmp_path / "m", shards=1)
    result = check_model(str(model.root))
    assert result["ok"] is True, result["problems"]
    assert result["model"]["shard_count"] == 1
    assert result["model"]["shards"][0]["name"] == "model.safetensors"
    assert result["model"]["weights_bytes"] == model.tensor_bytes
    assert result["model"]["tensor_count"] == 339


def test_facts_agree_with_the_preflights_reading_of_the_same_config(model):
    facts = check_model(str(model.root))["model"]
    preflight = vp.model_facts(QWEN25_7B_CONFIG)
    assert (facts["hidden_size"], facts["num_hidden_layers"], facts["num_attention_heads"]) == (
        preflight.hidden_size,
        preflight.num_layers,
        preflight.num_attention_heads,
    )
    assert (facts["num_key_value_heads"], facts["head_dim"], facts["max_model_len"]) == (preflight.num_kv_heads, preflight.head_dim, preflight.max_len)


def test_hidden_files_are_not_model_files(model):
    # rsync's temporary file of an interrupted transfer, and huggingface-cli's download metadata
    (model.root / f".{SHARD2}.Xy12Ab").write_bytes(b"partial")
    (model.root / ".cache" / "huggingface").mkdir(parents=True)
    (model.root / ".cache" / "huggingface" / "config.json.metadata").write_text("x")
    result = check_model(str(model.root))
    assert result["ok"] is True, result["problems"]
    assert not [f for f in result["model"]["files"] if f["name"].startswith(".")]


def test_files_in_subdirectories_are_listed_with_relative_names(model):
    (model.root / "original").mkdir()
    (model.root / "original" / "params.json").write_text("{}")
    result = check_model(str(model.root))
    assert result["ok"] is True
    assert {"name": "original/params.json", "size": 2} in result["model"]["files"]


def test_symlinked_files_count_as_their_targets_like_a_hub_cache_snapshot(model, tmp_path):
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    for entry in model.root.iterdir():
        (snapshot / entry.name).symlink_to(entry)
    result = check_model(str(snapshot))
    assert result["ok"] is True, result["problems"]
    assert result["model"]["weights_bytes"] == model.tensor_bytes


def test_dangling_symlink_is_named(model):
    model.shard(3).rename(model.root / "elsewhere")
    model.shard(3).symlink_to(model.root / "gone")
    problems = problems_of(model)
    assert f"{SHARD3} cannot be read: No such file or directory (a dangling symbolic link?)" in problems


# =============================================================================================
# Facts from other configs
# =============================================================================================

# mistralai/Mistral-Small-3.1-24B-Instruct-2503: the language model under text_config, explicit head_dim 128
# (not 5120 / 32).
MISTRAL_SMALL_31 = {
    "architectures": ["Mistral3ForConditionalGeneration"],
    "model_type": "mistral3",
    "image_token_index": 10,
    "multimodal_projector_bias": False,
    "projector_hidden_act": "gelu",
    "spatial_merge_size": 2,
    "text_config": {
        "head_dim": 128,
        "hidden_act": "silu",
        "hidden_size": 5120,
        "intermediate_size": 32768,
        "max_position_embeddings": 131072,
        "model_type": "mistral",
        "num_attention_heads": 32,
        "num_hidden_layers": 40,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-05,
        "rope_theta": 1000000000.0,
        "sliding_window": None,
        "vocab_size": 131072,
    },
    "torch_dtype": "bfloat16",
    "vision_config": {"hidden_size": 1024, "image_size": 1540, "model_type": "pixtral", "num_hidden_layers": 24, "patch_size": 14},
    "vision_feature_layer": -1,
}
# Qwen/Qwen2.5-7B-Instruct-AWQ: the same model, 4-bit AWQ, float16
QWEN25_7B_AWQ = dict(
    QWEN25_7B_CONFIG,
    torch_dtype="float16",
    quantization_config={"bits": 4, "group_size": 128, "modifiers": [], "quant_method": "awq", "version": "gemm", "zero_point": True},
)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            MISTRAL_SMALL_31,
            dict(
                architecture="Mistral3ForConditionalGeneration",
                model_type="mistral3",
                multimodal=True,
                dtype="bfloat16",
                hidden_size=5120,
                num_hidden_layers=40,
                num_attention_heads=32,
                num_key_value_heads=8,
                head_dim=128,
                vocab_size=131072,
                max_position_embeddings=131072,
                max_model_len=131072,
            ),
        ),
        (
            QWEN25_7B_AWQ,
            dict(dtype="float16", quantization="awq", quantization_config=QWEN25_7B_AWQ["quantization_config"], head_dim=128),
        ),
        (
            # the Qwen2.5 model card's long-context edit: YaRN x4 over 32768
            dict(QWEN25_7B_CONFIG, rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}),
            dict(rope_scaling={"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}, max_model_len=131072, max_position_embeddings=32768),
        ),
        (
            # transformers >= 4.56 writes "dtype"; no num_key_value_heads and no head_dim: MHA, hidden / heads
            {
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "hidden_size": 4096,
                "num_attention_heads": 32,
                "num_hidden_layers": 32,
                "dtype": "float16",
            },
            dict(dtype="float16", num_key_value_heads=32, head_dim=128, max_position_embeddings=None, max_model_len=2048, vocab_size=None),
        ),
    ],
    ids=["multimodal-text_config", "awq", "yarn", "defaults"],
)
def test_config_facts(config, expected):
    found = mc.Findings()
    facts = mc.config_facts(config, found)
    assert {key: facts[key] for key in expected} == expected
    assert found.problems == [] and found.warnings == []


def test_config_values_of_the_wrong_type_are_warned_about_and_left_null():
    found = mc.Findings()
    facts = mc.config_facts(dict(QWEN25_7B_CONFIG, hidden_size="3584", num_key_value_heads=0), found)
    assert facts["hidden_size"] is None and facts["num_key_value_heads"] == 28  # falls back to the attention heads
    assert found.warnings == [
        "config.json: hidden_size is '3584', expected a positive integer",
        "config.json: num_key_value_heads is 0, expected a positive integer",
    ]
    assert found.problems == []


def test_config_without_architectures_is_warned_about(model):
    (model.root / "config.json").write_text(json.dumps({k: v for k, v in QWEN25_7B_CONFIG.items() if k != "architectures"}))
    result = check_model(str(model.root))
    assert result["ok"] is True
    assert result["warnings"] == ["config.json names no architectures: vLLM picks the model class from them"]


# =============================================================================================
# Every corruption is named
# =============================================================================================


def _truncate(path: Path, keep: int) -> None:
    with path.open("r+b") as handle:
        handle.truncate(keep)


def truncate_shard(model: Model) -> None:
    path = model.shard(2)
    _truncate(path, path.stat().st_size // 2)


def header_length_beyond_file(model: Model) -> None:
    raw = bytearray(model.shard(2).read_bytes())
    raw[:8] = struct.pack("<Q", len(raw))
    model.shard(2).write_bytes(raw)


def header_length_over_limit(model: Model) -> None:
    raw = bytearray(model.shard(2).read_bytes())
    raw[:8] = struct.pack("<Q", 2**40)
    model.shard(2).write_bytes(raw)


def header_not_json(model: Model) -> None:
    raw = bytearray(model.shard(2).read_bytes())
    raw[8:12] = b"\x00\x01{x"
    model.shard(2).write_bytes(raw)


def _edit_header(model: Model, number: int, edit) -> None:
    header = read_header(model.shard(number))[0]
    edit(header)
    rewrite_header(model.shard(number), header)


def overlapping_offsets(model: Model) -> None:
    # post_attention_layernorm takes the bytes of input_layernorm (same size): an overlap, and a hole where it was
    def edit(header):
        layer = next(k for k in header if k.endswith("post_attention_layernorm.weight"))
        header[layer]["data_offsets"] = header[layer.replace("post_attention", "input")]["data_offsets"]

    _edit_header(model, 2, edit)


def out_of_range_offsets(model: Model) -> None:
    def edit(header):
        name = next(k for k in header if k.endswith("q_proj.bias"))
        start, end = header[name]["data_offsets"]
        header[name]["data_offsets"] = [start + 10**6, end + 10**6]

    _edit_header(model, 2, edit)


def dtype_mismatch(model: Model) -> None:
    _edit_header(model, 2, lambda header: header["model.layers.10.self_attn.q_proj.bias"].update(dtype="F32"))


def shape_mismatch(model: Model) -> None:
    _edit_header(model, 2, lambda header: header["model.layers.10.self_attn.q_proj.bias"].update(shape=[17]))


def unknown_dtype(model: Model) -> None:
    _edit_header(model, 2, lambda header: header["model.layers.10.self_attn.q_proj.bias"].update(dtype="BF17"))


def trailing_bytes(model: Model) -> None:
    with model.shard(4).open("ab") as handle:
        handle.write(b"\x00" * 100)


def shard_missing(model: Model) -> None:
    model.shard(3).unlink()


def tensor_missing_from_its_shard(model: Model) -> None:
    # the bytes stay, under another name: the shard is a valid file but not the one the index describes
    def edit(header):
        header["model.layers.10.mlp.up_proj.weight.renamed"] = header.pop("model.layers.10.mlp.up_proj.weight")

    _edit_header(model, 2, edit)


def total_size_mismatch(model: Model) -> None:
    index = model.index
    index["metadata"]["total_size"] += 2
    model.write_index(index)


def tokenizer_missing(model: Model) -> None:
    model.path("tokenizer.json").unlink()


def tokenizer_config_missing(model: Model) -> None:
    model.path("tokenizer_config.json").unlink()


def config_invalid_json(model: Model) -> None:
    text = model.path("config.json").read_text()
    model.path("config.json").write_text(text[: len(text) // 2])


def config_missing(model: Model) -> None:
    model.path("config.json").unlink()


def tokenizer_json_truncated(model: Model) -> None:
    _truncate(model.path("tokenizer.json"), 100)


def index_invalid_json(model: Model) -> None:
    _truncate(model.path(INDEX), 50)


def index_outside_the_directory(model: Model) -> None:
    index = model.index
    index["weight_map"]["lm_head.weight"] = "../other-model/model-00004-of-00004.safetensors"
    model.write_index(index)


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (truncate_shard, f"{SHARD2} is truncated: its header describes 31792 bytes of tensor data but the file holds"),
        (header_length_beyond_file, f"{SHARD2} declares a 40464-byte header but only 40456 bytes follow the header length"),
        (header_length_over_limit, f"{SHARD2} starts with a header length of 1099511627776 bytes, above safetensors' limit of 100000000"),
        (header_not_json, f"{SHARD2} has a header that is not "),
        (overlapping_offsets, f"{SHARD2}: tensors model.layers.7.input_layernorm.weight and model.layers.7.post_attention_layernorm.weight overlap"),
        (out_of_range_offsets, f"{SHARD2}: the data_offsets of 1 tensor (model.layers."),
        (dtype_mismatch, f"{SHARD2}: tensor model.layers.10.self_attn.q_proj.bias is F32 [16], 64 bytes, but its data_offsets"),
        (shape_mismatch, f"{SHARD2}: tensor model.layers.10.self_attn.q_proj.bias is BF16 [17], 34 bytes, but its data_offsets"),
        (unknown_dtype, f"{SHARD2}: tensor model.layers.10.self_attn.q_proj.bias has dtype 'BF17', which safetensors does not know"),
        (trailing_bytes, f"{SHARD4} has 100 bytes after its last tensor"),
        (shard_missing, f"{SHARD3} is missing: {INDEX} maps 88 tensors to it (model.layers."),
        (tensor_missing_from_its_shard, f"{SHARD2} lacks 1 tensor that {INDEX} maps to it: model.layers.10.mlp.up_proj.weight"),
        (total_size_mismatch, f"{INDEX} says metadata.total_size is 129122 bytes but the tensors of its shards are 129120 bytes (-2)"),
        (tokenizer_missing, "no tokenizer: neither tokenizer.json nor tokenizer.model is present"),
        (tokenizer_config_missing, "tokenizer_config.json is missing"),
        (config_invalid_json, "config.json is not valid JSON (Unterminated string"),
        (config_missing, "config.json is missing"),
        (tokenizer_json_truncated, "tokenizer.json is not valid JSON ("),
        (index_invalid_json, f"{INDEX} is not valid JSON ("),
        (index_outside_the_directory, f"{INDEX} maps tensors to ../other-model/model-00004-of-00004.safetensors, which are not files inside"),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_each_corruption_is_named(model, corrupt, expected):
    assert problems_of(model) == []
    corrupt(model)
    problems = problems_of(model)
    assert [p for p in problems if p.startswith(expected)], problems


def test_truncated_shard_says_how_much_is_missing_and_which_tensors(model):
    path = model.shard(2)
    header, data = read_header(path)
    _truncate(path, path.stat().st_size - 100)
    last = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][1])
    cut = sorted(k for k in header if k != "__metadata__" and header[k]["data_offsets"][1] > len(data) - 100)
    assert problems_of(model) == [
        f"{SHARD2} is truncated: its header describes {len(data)} bytes of tensor data but the file holds {len(data) - 100} after the header "
        f"(100 bytes missing; {len(cut)} tensors cut off: {', '.join(cut)})"
    ]
    assert last in cut


def test_a_tensor_the_index_does_not_map_is_a_warning(model):
    def edit(header):
        header["extra.weight"] = header.pop("model.norm.weight")

    index = model.index
    shard = index["weight_map"]["model.norm.weight"]
    del index["weight_map"]["model.norm.weight"]
    model.write_index(index)
    _edit_header(model, model.shards.index(shard) + 1, edit)
    result = check_model(str(model.root))
    # total_size still counts the bytes of model.norm.weight, which are now extra.weight's
    assert result["problems"] == [] and result["ok"] is True
    assert result["warnings"] == [f"{shard} holds 1 tensor that {INDEX} does not map to it: extra.weight"]


def test_index_without_total_size_is_a_warning(model):
    index = model.index
    del index["metadata"]
    model.write_index(index)
    result = check_model(str(model.root))
    assert result["ok"] is True
    assert result["warnings"] == [f"{INDEX} has no metadata.total_size, so the weight bytes were not compared with it"]


@pytest.mark.parametrize(("total_size", "problems"), [(129120.0, []), ("129120", [f"{INDEX} has metadata.total_size '129120', expected a number of bytes"])])
def test_total_size_written_as_a_float_is_accepted_but_not_as_a_string(model, total_size, problems):
    index = model.index
    index["metadata"]["total_size"] = total_size
    model.write_index(index)
    assert problems_of(model) == problems


def test_a_shard_that_shrinks_while_it_is_read_is_named(tmp_path, monkeypatch):
    (tmp_path / "s.safetensors").write_bytes(b"\x10\x00\x00")
    real_stat = os.stat
    # what a concurrent rsync looks like: stat saw the old size, the file is shorter when read
    monkeypatch.setattr(mc.os, "stat", lambda path: os.stat_result((*real_stat(path)[:6], 64, *real_stat(path)[7:])))
    assert mc.read_safetensors_header(str(tmp_path), "s.safetensors").problems == [
        "s.safetensors changed while it was read: is a copy into this directory still running?"
    ]


def test_safetensors_file_outside_the_index_is_a_warning(model):
    write_safetensors(model.root / "consolidated.safetensors", {"x": ("BF16", [4])})
    result = check_model(str(model.root))
    assert result["ok"] is True
    assert result["warnings"] == [f"consolidated.safetensors is not in the weight_map of {INDEX}: vLLM does not load it"]
    assert result["model"]["shard_count"] == 4


def test_corrupt_safetensors_file_outside_the_index_is_still_a_problem(model):
    (model.root / "consolidated.safetensors").write_bytes(b"\x10\x00")
    assert problems_of(model) == ["consolidated.safetensors is 2 bytes, too short for a safetensors file (it starts with an 8-byte header length)"]


def test_no_safetensors_weights_is_a_problem_naming_what_is_there(tmp_path):
    write_support_files(tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"PK")
    result = check_model(str(tmp_path))
    assert result["problems"] == [
        f"no weights: there is neither {INDEX} nor a .safetensors file (found pytorch_model.bin: this module checks safetensors checkpoints only)"
    ]
    assert result["model"]["weights_bytes"] is None and result["model"]["shard_count"] == 0


def test_weights_bytes_is_null_when_a_shard_is_missing(model):
    shard_missing(model)
    facts = check_model(str(model.root))["model"]
    assert facts["weights_bytes"] is None
    assert facts["shards"][2] == {"name": SHARD3, "size": None, "tensors": None, "tensor_bytes": None}


def test_every_problem_is_listed_in_one_result(model):
    truncate_shard(model)
    tokenizer_missing(model)
    config_invalid_json(model)
    shard_missing(model)
    problems = problems_of(model)
    assert len(problems) == 4, problems
    for name in ("config.json", "tokenizer", SHARD2, SHARD3):
        assert [p for p in problems if name in p], name


def test_config_json_that_is_not_an_object_is_a_problem(model):
    model.path("config.json").write_text("[]")
    assert problems_of(model) == ["config.json is a JSON list, not an object: it is not a model configuration"]


def test_metadata_that_is_not_strings_is_a_problem(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(encode_header({"__metadata__": {"format": 1}, "x": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}) + b"ab")
    shard = mc.read_safetensors_header(str(tmp_path), "model.safetensors")
    assert shard.problems == ["model.safetensors: its __metadata__ is not a map of strings to strings, which safetensors refuses"]


TRAILING_2 = (
    "f has 2 bytes after its last tensor: the data section is 2 bytes but the tensors end at byte 0 (safetensors requires the last tensor to end the file)"
)


@pytest.mark.parametrize(
    ("header", "data", "expected"),
    [
        # F4 packs two elements a byte: 3 elements leave half a byte
        ({"x": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}}, b"ab", ["f: tensor x is F4 [3]: 3 elements of 4 bits do not fill whole bytes"]),
        ({"x": {"dtype": "F4", "shape": [4], "data_offsets": [0, 2]}}, b"ab", []),
        ({"x": {"dtype": "F6_E2M3", "shape": [4], "data_offsets": [0, 3]}}, b"abc", []),
        # zero-element tensors take no bytes and may share an offset with the next tensor
        ({"a": {"dtype": "BF16", "shape": [0, 4], "data_offsets": [0, 0]}, "b": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}, b"ab", []),
        # a scalar is one element
        ({"s": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}}, b"abcd", []),
        ({}, b"", []),
        (
            {"x": {"dtype": "U8", "shape": [2], "data_offsets": [2, 0]}},
            b"ab",
            [
                "f: tensor x has data_offsets [2, 0], which end before they begin",
                TRAILING_2,
            ],
        ),
        (
            {"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}, "b": {"dtype": "U8", "shape": [2], "data_offsets": [3, 5]}},
            b"abcde",
            ["f: bytes 2 to 3 of the data section belong to no tensor (after tensor a; next is b)"],
        ),
        ({"x": {"dtype": "U8", "shape": [-2], "data_offsets": [0, 2]}}, b"ab", ["f: tensor x has shape [-2], expected a list of non-negative integers"]),
        (
            {"x": {"dtype": "U8", "shape": [2], "data_offsets": [0]}},
            b"ab",
            [
                "f: tensor x has data_offsets [0], expected [begin, end] byte offsets",
                TRAILING_2,
            ],
        ),
        ({"x": [1, 2]}, b"", ["f: tensor x is described by a JSON list, not an object with dtype, shape and data_offsets"]),
    ],
    ids=["f4-half-byte", "f4", "f6", "zero-elements", "scalar", "empty", "reversed-offsets", "gap", "negative-shape", "one-offset", "not-an-object"],
)
def test_header_rules(tmp_path, header, data, expected):
    (tmp_path / "f").write_bytes(encode_header(header) + data)
    assert mc.read_safetensors_header(str(tmp_path), "f").problems == expected


def test_many_broken_tensors_are_summarised(tmp_path):
    header = {f"t{n:02d}": {"dtype": "U8", "shape": [3], "data_offsets": [2 * n, 2 * n + 2]} for n in range(15)}
    (tmp_path / "f").write_bytes(encode_header(header) + b"x" * 30)
    problems = mc.read_safetensors_header(str(tmp_path), "f").problems
    assert len(problems) == 11
    assert problems[-1] == "f: 5 more header problems like these"


# =============================================================================================
# Cross-checks with the safetensors reference implementation
# =============================================================================================


def _reference():
    return pytest.importorskip("safetensors", reason="the safetensors package (requirements/dev.txt) cross-checks the writer")


def write_with_reference(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> None:
    """Write a file with safetensors' own serializer (raw buffers through TensorSpec, no numpy or torch)."""
    safetensors = _reference()
    torch_names = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "I32": "int32", "U8": "uint8", "I64": "int64"}
    buffers = {
        name: ctypes.create_string_buffer(tensor_data(name, dtype, shape), max(1, len(tensor_data(name, dtype, shape))))
        for name, (dtype, shape) in tensors.items()
    }
    specs = {
        name: safetensors.TensorSpec(
            dtype=torch_names[dtype], shape=shape, data_ptr=ctypes.addressof(buffers[name]), data_len=len(tensor_data(name, dtype, shape))
        )
        for name, (dtype, shape) in tensors.items()
    }
    safetensors.serialize_file(specs, str(path), {"format": "pt"})


def test_files_written_by_the_reference_implementation_pass(model):
    for number in range(1, 5):
        header = read_header(model.shard(number))[0]
        tensors = {key: (value["dtype"], value["shape"]) for key, value in header.items() if key != "__metadata__"}
        write_with_reference(model.shard(number), tensors)
        # the reference lays out the data by dtype alignment, then name: in that order our writer gives the same bytes
        assert model.shard(number).read_bytes() == encode_safetensors(dict(sorted(tensors.items())), {"format": "pt"})
    result = check_model(str(model.root))
    assert result["ok"] is True, result["problems"]
    assert result["model"]["weights_bytes"] == model.tensor_bytes


def test_mixed_dtypes_written_by_the_reference_implementation_pass(tmp_path):
    write_with_reference(
        tmp_path / "q.safetensors", {"qweight": ("I32", [16, 2]), "scales": ("F16", [1, 16]), "zeros": ("I32", [1, 2]), "flag": ("U8", [3]), "b": ("F32", [5])}
    )
    shard = mc.read_safetensors_header(str(tmp_path), "q.safetensors")
    assert shard.problems == []
    assert shard.tensor_bytes == 128 + 32 + 8 + 3 + 20


def test_the_reference_reads_our_files_as_we_wrote_them(model):
    safetensors = _reference()
    for number in range(1, 5):
        header = read_header(model.shard(number))[0]
        loaded = dict(safetensors.deserialize(model.shard(number).read_bytes()))
        assert set(loaded) == {k for k in header if k != "__metadata__"}
        for name, tensor in loaded.items():
            assert (tensor["dtype"], tensor["shape"]) == (header[name]["dtype"], header[name]["shape"])
            assert bytes(tensor["data"]) == tensor_data(name, header[name]["dtype"], header[name]["shape"])


FILE_LEVEL_CORRUPTIONS = [
    truncate_shard,
    header_length_beyond_file,
    header_length_over_limit,
    header_not_json,
    overlapping_offsets,
    out_of_range_offsets,
    dtype_mismatch,
    shape_mismatch,
    unknown_dtype,
]


@pytest.mark.parametrize("corrupt", FILE_LEVEL_CORRUPTIONS, ids=lambda f: f.__name__)
def test_the_reference_refuses_the_files_we_call_corrupt(model, corrupt):
    safetensors = _reference()
    corrupt(model)
    with pytest.raises(safetensors.SafetensorError):
        safetensors.deserialize(model.shard(2).read_bytes())


def test_the_reference_refuses_trailing_bytes_too(model):
    safetensors = _reference()
    trailing_bytes(model)
    with pytest.raises(safetensors.SafetensorError, match="incomplete metadata"):
        safetensors.deserialize(model.shard(4).read_bytes())


# =============================================================================================
# Tensor data is never read without sha256
# =============================================================================================


class CountingOpen:
    """Wraps open() in the core's namespace: bytes read per path, and the largest single read."""

    def __init__(self):
        self.bytes_read: dict[str, int] = {}
        self.largest_read = 0

    def __call__(self, path, mode="r", *args, **kwargs):
        handle = builtins.open(path, mode, *args, **kwargs)  # noqa: SIM115  # closed by the caller's with block
        counter = self
        key = os.path.basename(str(path))

        class Counted:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                handle.close()

            def _count(self, n):
                counter.bytes_read[key] = counter.bytes_read.get(key, 0) + n
                counter.largest_read = max(counter.largest_read, n)
                return n

            def read(self, size=-1):
                data = handle.read(size)
                self._count(len(data))
                return data

            def readinto(self, buffer):
                return self._count(handle.readinto(buffer) or 0)

            def __getattr__(self, name):
                return getattr(handle, name)

        return Counted()


def test_check_reads_only_the_headers_of_the_weight_files(model, monkeypatch):
    counting = CountingOpen()
    monkeypatch.setattr(mc, "open", counting, raising=False)
    result = check_model(str(model.root))
    assert result["ok"] is True
    for number, name in enumerate(model.shards, 1):
        (header_length,) = struct.unpack("<Q", model.shard(number).read_bytes()[:8])
        assert counting.bytes_read[name] == 8 + header_length < model.shard(number).stat().st_size


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux's /proc/self/io read counters")
def test_check_of_a_multi_gib_shard_reads_kilobytes(tmp_path):
    """A 6 GiB shard (sparse: no disk used) is checked in well under a second, reading only its header."""
    model = make_model(tmp_path / "m", shards=1)
    big = 6 * 1024**3
    header = encode_header({"__metadata__": {"format": "pt"}, "model.big.weight": {"dtype": "BF16", "shape": [big // 2], "data_offsets": [0, big]}})
    shard = model.root / "model-big.safetensors"
    with shard.open("wb") as handle:
        handle.write(header)
        handle.truncate(len(header) + big)

    def rchar() -> int:
        with open("/proc/self/io") as io:
            return int(next(line for line in io if line.startswith("rchar:")).split()[1])

    before = rchar()
    result = check_model(str(model.root))
    read = rchar() - before
    assert result["ok"] is True, result["problems"]
    assert result["model"]["weights_bytes"] == model.tensor_bytes + big
    assert read < 4 * 1024**2, f"read {read} bytes"


# =============================================================================================
# sha256 manifest
# =============================================================================================


def test_manifest_then_verify_passes_and_sha256sum_agrees(model):
    result = check_model(str(model.root), mode="manifest")
    assert result["ok"] is True and result["changed"] is True
    manifest = model.root / ".sha256sums"
    names = sorted(p.name for p in model.root.iterdir() if not p.name.startswith("."))
    assert result["manifest"] == {"path": str(manifest), "files": len(names), "missing": [], "extra": [], "different": []}
    assert manifest.read_text() == "".join(f"{hashlib.sha256(model.path(n).read_bytes()).hexdigest()}  {n}\n" for n in names)
    assert oct(manifest.stat().st_mode & 0o777) == "0o644"
    assert not [p for p in model.root.iterdir() if p.name.startswith(".sha256sums.")]  # no temporary file left
    if shutil.which("sha256sum"):
        done = subprocess.run(["sha256sum", "--strict", "-c", ".sha256sums"], cwd=model.root, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
    verified = check_model(str(model.root), mode="verify")
    assert verified["ok"] is True and verified["changed"] is False
    assert verified["manifest"]["files"] == len(names)


def test_manifest_is_idempotent(model):
    assert check_model(str(model.root), mode="manifest")["changed"] is True
    before = (model.root / ".sha256sums").stat().st_mtime_ns
    assert check_model(str(model.root), mode="manifest")["changed"] is False
    assert (model.root / ".sha256sums").stat().st_mtime_ns == before


def test_manifest_changes_when_a_file_does(model):
    check_model(str(model.root), mode="manifest")
    (model.root / "LICENSE").write_text("changed")
    assert check_model(str(model.root), mode="manifest")["changed"] is True
    assert check_model(str(model.root), mode="verify")["ok"] is True


def test_manifest_is_not_written_when_write_is_false(model):
    result = check_model(str(model.root), mode="manifest", write=False)
    assert result["changed"] is True and result["ok"] is True
    assert not (model.root / ".sha256sums").exists()
    assert not [p for p in model.root.iterdir() if p.name.startswith(".")]


def test_manifest_is_not_written_for_a_model_with_problems(model):
    tokenizer_missing(model)
    result = check_model(str(model.root), mode="manifest")
    assert result["changed"] is False
    assert result["problems"][-1] == ".sha256sums was not written: a manifest of a model with problems would vouch for it"
    assert not (model.root / ".sha256sums").exists()


def test_manifest_replacement_is_atomic(model, monkeypatch):
    check_model(str(model.root), mode="manifest")
    old = (model.root / ".sha256sums").read_text()
    (model.root / "LICENSE").write_text("changed")

    def fail(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mc.os, "replace", fail)
    with pytest.raises(ModelCheckInputError, match=r"cannot write .*\.sha256sums: No space left on device"):
        check_model(str(model.root), mode="manifest")
    assert (model.root / ".sha256sums").read_text() == old
    assert sorted(p.name for p in model.root.iterdir() if p.name.startswith(".")) == [".sha256sums"]


def test_verify_after_a_byte_flip_names_the_file(model):
    check_model(str(model.root), mode="manifest")
    path = model.shard(3)
    raw = bytearray(path.read_bytes())
    raw[-1000] ^= 0x01  # in the tensor data: the headers still check out
    path.write_bytes(raw)
    assert check_model(str(model.root))["ok"] is True
    result = check_model(str(model.root), mode="verify")
    assert result["manifest"]["different"] == [SHARD3]
    assert result["problems"] == [
        f"{SHARD3} does not match .sha256sums: sha256 {hashlib.sha256(raw).hexdigest()}, expected "
        f"{next(line.split()[0] for line in (model.root / '.sha256sums').read_text().splitlines() if line.endswith(SHARD3))}"
    ]


def test_verify_names_missing_and_extra_files(model):
    check_model(str(model.root), mode="manifest")
    model.path("merges.txt").unlink()
    model.path("README.md").write_text("# added later\n")
    result = check_model(str(model.root), mode="verify")
    assert (result["manifest"]["missing"], result["manifest"]["extra"], result["manifest"]["different"]) == (["merges.txt"], ["README.md"], [])
    assert result["problems"] == [
        "merges.txt is listed in .sha256sums but missing",
        "README.md is not listed in .sha256sums (a file added since it was written)",
    ]


def test_verify_without_a_manifest_is_a_problem(model):
    result = check_model(str(model.root), mode="verify")
    assert result["problems"] == [".sha256sums is missing, so nothing could be verified: write it with mode=manifest where the model is known good"]


def test_verify_reports_the_structural_problems_too(model):
    check_model(str(model.root), mode="manifest")
    truncate_shard(model)
    result = check_model(str(model.root), mode="verify")
    assert result["manifest"]["different"] == [SHARD2]
    assert [p for p in result["problems"] if p.startswith(f"{SHARD2} is truncated")]


def test_manifest_written_by_sha256sum_is_verified(model):
    if not shutil.which("sha256sum"):
        pytest.skip("needs coreutils sha256sum")
    names = sorted(p.name for p in model.root.iterdir())
    # `find . -type f | xargs sha256sum --binary`: ./ prefixes and binary markers
    done = subprocess.run(["sha256sum", "--binary", *(f"./{n}" for n in names)], cwd=model.root, capture_output=True, text=True, check=True)
    (model.root / ".sha256sums").write_text(done.stdout)
    assert check_model(str(model.root), mode="verify")["ok"] is True


def test_parse_manifest_reads_sha256sum_escapes_and_names_bad_lines():
    digest = "ab" * 32
    found = mc.Findings()
    entries = mc.parse_manifest(
        f"{digest}  ./a.txt\n{digest.upper()} *b c.txt\n\\{digest}  new\\nline\\\\x\n\n{digest}  a.txt\nnot a line\n{digest}  ../etc/passwd\n",
        found,
    )
    assert entries == {"a.txt": digest, "b c.txt": digest, "new\nline\\x": digest}
    assert found.problems == [
        ".sha256sums line 5 lists a.txt a second time",
        ".sha256sums line 6 is not a sha256sum line (<64 hex digits>  <file>): 'not a line'",
        ".sha256sums line 7 names '../etc/passwd', which is not a file inside the model directory",
    ]


def test_format_manifest_escapes_like_sha256sum(tmp_path):
    digest = "cd" * 32
    text = mc.format_manifest({"b": digest, "a\nb": digest, "c\\d": digest})
    assert text == f"\\{digest}  a\\nb\n{digest}  b\n\\{digest}  c\\\\d\n"
    found = mc.Findings()
    assert mc.parse_manifest(text, found) == {"a\nb": digest, "b": digest, "c\\d": digest} and not found.problems


def test_sha256_streams_in_chunks(tmp_path, monkeypatch):
    data = os.urandom(5 * 1024**2 + 17)
    (tmp_path / "blob").write_bytes(data)
    counting = CountingOpen()
    monkeypatch.setattr(mc, "open", counting, raising=False)
    assert mc.sha256_file(str(tmp_path / "blob"), chunk_bytes=1024**2) == hashlib.sha256(data).hexdigest()
    assert counting.bytes_read["blob"] == len(data)
    assert counting.largest_read == 1024**2


def test_hashing_runs_files_in_parallel(tmp_path, monkeypatch):
    """Three files, three jobs: each hash waits at a barrier that only opens when all three run at once."""
    for name in "abc":
        (tmp_path / name).write_bytes(name.encode() * 1000)
    barrier = threading.Barrier(3, timeout=10)
    real = mc.sha256_file

    def waiting(path, chunk_bytes=mc.HASH_CHUNK_BYTES):
        barrier.wait()  # BrokenBarrierError when the files are hashed one after another
        return real(path, chunk_bytes)

    monkeypatch.setattr(mc, "sha256_file", waiting)
    hashes = mc.hash_files(str(tmp_path), ["a", "b", "c"], jobs=3)
    assert hashes == {name: hashlib.sha256(name.encode() * 1000).hexdigest() for name in "abc"}


def test_a_file_that_cannot_be_read_is_named(model, monkeypatch):
    real = mc.sha256_file

    def failing(path, chunk_bytes=mc.HASH_CHUNK_BYTES):
        if path.endswith(SHARD4):
            raise OSError(5, "Input/output error")
        return real(path, chunk_bytes)

    monkeypatch.setattr(mc, "sha256_file", failing)
    result = check_model(str(model.root), mode="manifest")
    assert result["problems"] == [f"{SHARD4} cannot be read for its sha256: Input/output error"]
    assert result["changed"] is False and not (model.root / ".sha256sums").exists()


def test_default_jobs_is_the_cpu_count_up_to_four(monkeypatch):
    monkeypatch.setattr(mc.os, "cpu_count", lambda: 16)
    assert mc.default_jobs() == 4
    monkeypatch.setattr(mc.os, "cpu_count", lambda: 2)
    assert mc.default_jobs() == 2
    monkeypatch.setattr(mc.os, "cpu_count", lambda: None)
    assert mc.default_jobs() == 1


# =============================================================================================
# Bad input
# =============================================================================================


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(mode="fast"), "mode 'fast' is not one of check, manifest, verify"),
        (dict(jobs=0), "jobs must be at least 1, got 0"),
    ],
)
def test_bad_options_raise(model, kwargs, message):
    with pytest.raises(ModelCheckInputError, match=message):
        check_model(str(model.root), **kwargs)


def test_missing_directory_raises(tmp_path):
    with pytest.raises(ModelCheckInputError, match=r"/nowhere does not exist or is not a directory"):
        check_model(str(tmp_path / "nowhere"))


def test_qwen2_writer_matches_the_real_tensor_count():
    assert len(qwen2_tensors()) == 339
