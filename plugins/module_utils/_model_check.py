# Copyright: (c) 2026, llmops.gpu_inference contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validate a Hugging Face model directory before vLLM serves it, and read its facts (DESIGN.md data flow).

Private to this collection: no AnsibleModule import; files are read only under the directory it is given,
and the only file it writes is the sha256 manifest in that directory. :func:`check_model` returns
``{"ok", "changed", "model", "problems", "warnings"}`` (plus ``manifest`` in the manifest and verify
modes); it raises :class:`ModelCheckInputError` only when the inputs are unusable (no such directory, a
bad option) or the manifest cannot be written.

What is checked (../shared/reference/vllm-on-kubernetes.md, "rsync backups validating config.json +
tokenizer.json" row of the seed review):

- ``config.json`` parses, and so does every other top-level ``*.json`` (tokenizer, generation config,
  safetensors index): an interrupted copy truncates them, and JSON is the one format whose integrity
  shows without a checksum;
- a tokenizer: ``tokenizer.json`` or ``tokenizer.model``, plus ``tokenizer_config.json``;
- the weights, as the safetensors reference implementation (huggingface/safetensors ``read_metadata``
  and ``Metadata::validate``) accepts them: an 8-byte little-endian header length, a JSON header of at
  most 100,000,000 bytes, every tensor's byte length equal to its dtype size times its shape, the tensors
  tiling the data section from byte 0 without gaps or overlaps, and the data section ending exactly at the
  end of the file. Only the header is read, never the tensor data;
- with ``model.safetensors.index.json``: every shard it names exists, every tensor of its ``weight_map``
  is in the shard it names, and ``metadata.total_size`` equals the bytes of the tensors. Without an index
  every top-level ``*.safetensors`` file is a weight file (``model.safetensors``), as vLLM loads them;
- optionally a sha256 manifest in ``sha256sum`` format (:data:`MANIFEST_NAME`): written by mode
  ``manifest``, compared by mode ``verify``; files are streamed in :data:`HASH_CHUNK_BYTES` chunks, several
  at a time on threads (hashlib releases the GIL while hashing).

Files and directories whose names start with a dot are not model files: the manifest itself, rsync's
in-progress temporary files (``.name.XXXXXX``), ``.cache/huggingface`` download metadata, ``.git``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import stat
import struct
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

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
    is_int,
    lookup,
    quantization_method,
)

MODES = ("check", "manifest", "verify")
MANIFEST_NAME = ".sha256sums"
CONFIG_NAME = "config.json"
INDEX_NAME = "model.safetensors.index.json"
SAFETENSORS_SUFFIX = ".safetensors"
TOKENIZER_NAMES = ("tokenizer.json", "tokenizer.model")
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
HASH_CHUNK_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_JOBS = 4
NAMES_SHOWN = 5  # tensor or file names quoted in one problem before "and N more"
TENSOR_PROBLEMS_SHOWN = 10  # per-tensor problems reported for one file before a summary

# --- The safetensors format (huggingface/safetensors safetensors/src/tensor.rs) ------------------------
HEADER_LENGTH_BYTES = 8  # u64, little endian
MAX_HEADER_BYTES = 100_000_000  # MAX_HEADER_SIZE: larger headers are refused (HeaderTooLarge)
METADATA_KEY = "__metadata__"
# Dtype::bitsize() of safetensors 0.8: every dtype the reference reader accepts. Sub-byte dtypes (F4, F6_*)
# pack several elements per byte; a tensor of them must fill whole bytes.
DTYPE_BITS = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}

# sha256sum's line: optional "\" when the name is escaped, 64 hex digits, " " then " " (text) or "*" (binary).
_MANIFEST_LINE = re.compile(r"^(\\?)([0-9a-fA-F]{64}) ([ *])(.+)$")


class ModelCheckInputError(ValueError):
    """The check cannot run (or its manifest cannot be written); the message is for a person."""


# =============================================================================================
# Small helpers
# =============================================================================================


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _names(names: Iterable[str]) -> str:
    """``a, b, c`` or ``a, b, c, d, e and 7 more``."""
    listed = list(names)
    shown = ", ".join(listed[:NAMES_SHOWN])
    return shown if len(listed) <= NAMES_SHOWN else f"{shown} and {len(listed) - NAMES_SHOWN} more"


def _inside(relative: str) -> bool:
    """A relative path that stays inside the model directory."""
    return bool(relative) and not relative.startswith("/") and ".." not in relative.split("/")


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def list_files(root: str, found: Findings) -> dict[str, int]:
    """Every model file under ``root`` (relative name -> size), hidden files and directories left out.

    Symbolic links to files count as the files they point to (a Hugging Face cache snapshot is made of
    them); a dangling link is a problem; linked directories are not followed.
    """
    files: dict[str, int] = {}
    for directory, dirnames, filenames in os.walk(root):
        relative_dir = os.path.relpath(directory, root)
        prefix = "" if relative_dir == "." else relative_dir.replace(os.sep, "/") + "/"
        for name in sorted(dirnames):
            if not name.startswith(".") and os.path.islink(os.path.join(directory, name)):
                found.warnings.append(f"{prefix}{name} is a symbolic link to a directory: the files in it were not checked")
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            try:
                info = os.stat(os.path.join(directory, name))
            except OSError as exc:
                found.problems.append(f"{prefix}{name} cannot be read: {exc.strerror} (a dangling symbolic link?)")
                continue
            if stat.S_ISREG(info.st_mode):
                files[prefix + name] = info.st_size
    return files


def load_json(root: str, name: str, found: Findings) -> Any:
    """The parsed content of ``root/name``, or None with the problem recorded (missing, unreadable, invalid)."""
    path = os.path.join(root, name)
    if not os.path.isfile(path):
        found.problems.append(f"{name} is missing")
        return None
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        found.problems.append(f"{name} cannot be read: {exc.strerror}")
        return None
    if not raw.strip():
        found.problems.append(f"{name} is empty")
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        found.problems.append(f"{name} is not valid JSON: not UTF-8 at byte {exc.start}")
    except ValueError as exc:
        found.problems.append(f"{name} is not valid JSON ({exc}); the file is {len(raw)} bytes, truncated or damaged?")
    return None


# =============================================================================================
# Model facts from config.json
# =============================================================================================


def config_facts(config: Any, found: Findings) -> dict[str, Any]:
    """The facts later roles need, read with the same keys as vllm_preflight (``_model_config``).

    Values the file does not give are None; a value of the wrong type is a warning and None.
    """
    facts: dict[str, Any] = {
        "architecture": None,
        "architectures": [],
        "model_type": None,
        "multimodal": False,
        "dtype": None,
        "hidden_size": None,
        "num_hidden_layers": None,
        "num_attention_heads": None,
        "num_key_value_heads": None,
        "head_dim": None,
        "intermediate_size": None,
        "vocab_size": None,
        "max_position_embeddings": None,
        "max_model_len": None,
        "rope_scaling": None,
        "quantization": None,
        "quantization_config": None,
    }
    if config is None:
        return facts
    if not isinstance(config, Mapping):
        found.problems.append(f"{CONFIG_NAME} is a JSON {type(config).__name__}, not an object: it is not a model configuration")
        return facts
    sections = config_sections(config)

    def positive(name: str, *keys: str) -> int | None:
        value = lookup(sections, *keys)
        if value is None:
            return None
        if not is_int(value) or value <= 0:
            found.warnings.append(f"{CONFIG_NAME}: {name} is {value!r}, expected a positive integer")
            return None
        return int(value)

    architectures = config.get("architectures")
    if isinstance(architectures, list) and architectures and all(isinstance(a, str) for a in architectures):
        facts["architectures"] = list(architectures)
        facts["architecture"] = architectures[0]
    else:
        found.warnings.append(f"{CONFIG_NAME} names no architectures: vLLM picks the model class from them")
    hidden = positive("hidden_size", *HIDDEN_SIZE_KEYS)
    heads = positive("num_attention_heads", *NUM_HEADS_KEYS)
    kv_heads = positive("num_key_value_heads", *NUM_KV_HEADS_KEYS)
    head_dim = positive("head_dim", "head_dim")
    model_type = config.get("model_type") or lookup(sections, "model_type")
    rope = lookup(sections, "rope_scaling")
    quant = lookup(sections, "quantization_config")
    facts.update(
        model_type=str(model_type) if model_type else None,
        multimodal=has_encoders(config),
        dtype=dtype_name(lookup(sections, *DTYPE_KEYS)),
        hidden_size=hidden,
        num_hidden_layers=positive("num_hidden_layers", *NUM_LAYERS_KEYS),
        num_attention_heads=heads,
        # transformers' defaults, as vllm_preflight: no KV heads means one per attention head (MHA),
        # no head_dim means hidden_size / num_attention_heads.
        num_key_value_heads=kv_heads if kv_heads is not None else heads,
        head_dim=head_dim if head_dim is not None else (hidden // heads if hidden and heads else None),
        intermediate_size=positive("intermediate_size", *INTERMEDIATE_SIZE_KEYS),
        vocab_size=positive("vocab_size", *VOCAB_SIZE_KEYS),
        max_position_embeddings=positive("max_position_embeddings", "max_position_embeddings"),
        max_model_len=derived_max_len(sections, str(lookup(sections, "model_type") or ""))[0],
        rope_scaling=dict(rope) if isinstance(rope, Mapping) else None,
        quantization=quantization_method(quant),
        quantization_config=dict(quant) if isinstance(quant, Mapping) else None,
    )
    return facts


# =============================================================================================
# safetensors headers
# =============================================================================================


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass
class SafetensorsFile:
    """What the header of one ``.safetensors`` file says, and what is wrong with the file."""

    name: str
    size: int
    header_bytes: int = 0
    tensors: dict[str, TensorInfo] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    readable: bool = False  # the header was read and parsed (its tensors can be trusted by name)

    @property
    def tensor_bytes(self) -> int:
        return sum(max(0, info.end - info.start) for info in self.tensors.values())


def _tensor_info(name: str, entry: Any) -> tuple[TensorInfo | None, str | None]:
    """One header entry -> its TensorInfo (when its offsets are usable) and what is wrong with it (or None)."""
    if not isinstance(entry, Mapping):
        return None, f"tensor {name} is described by a JSON {type(entry).__name__}, not an object with dtype, shape and data_offsets"
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(is_int(n) and n >= 0 for n in offsets):
        return None, f"tensor {name} has data_offsets {offsets!r}, expected [begin, end] byte offsets"
    dims: tuple[int, ...] | None = tuple(shape) if isinstance(shape, list) and all(is_int(n) and n >= 0 for n in shape) else None
    info = TensorInfo(str(dtype), dims or (), offsets[0], offsets[1])
    if offsets[1] < offsets[0]:
        return info, f"tensor {name} has data_offsets {offsets}, which end before they begin"
    if dtype not in DTYPE_BITS:
        return info, f"tensor {name} has dtype {dtype!r}, which safetensors does not know"
    if dims is None:
        return info, f"tensor {name} has shape {shape!r}, expected a list of non-negative integers"
    elements = math.prod(info.shape)
    bits = elements * DTYPE_BITS[info.dtype]
    if bits % 8:
        return info, f"tensor {name} is {dtype} {shape}: {elements} elements of {DTYPE_BITS[info.dtype]} bits do not fill whole bytes"
    if info.end - info.start != bits // 8:
        return info, (
            f"tensor {name} is {dtype} {shape}, {bits // 8} bytes, but its data_offsets {offsets} span {info.end - info.start} bytes: "
            "dtype or shape do not match the data"
        )
    return info, None


def read_safetensors_header(root: str, name: str) -> SafetensorsFile:
    """Read and validate the header of ``root/name``; reads 8 + header-length bytes, never the tensor data."""
    path = os.path.join(root, name)
    try:
        size = os.stat(path).st_size
        result = SafetensorsFile(name=name, size=size)
        if size < HEADER_LENGTH_BYTES:
            result.problems.append(f"{name} is {_plural(size, 'byte')}, too short for a safetensors file (it starts with an 8-byte header length)")
            return result
        with open(path, "rb") as handle:
            head = handle.read(HEADER_LENGTH_BYTES)
            if len(head) < HEADER_LENGTH_BYTES:  # shrank since the stat: a transfer is still writing it
                result.problems.append(f"{name} changed while it was read: is a copy into this directory still running?")
                return result
            (header_bytes,) = struct.unpack("<Q", head)
            if header_bytes > MAX_HEADER_BYTES:
                result.problems.append(
                    f"{name} starts with a header length of {header_bytes} bytes, above safetensors' limit of {MAX_HEADER_BYTES}: "
                    "it is not a safetensors file, or its first bytes are damaged"
                )
                return result
            if HEADER_LENGTH_BYTES + header_bytes > size:
                result.problems.append(
                    f"{name} declares a {header_bytes}-byte header but only {size - HEADER_LENGTH_BYTES} bytes follow the header length: "
                    "the file is truncated inside its header, or its first bytes are damaged"
                )
                return result
            raw = handle.read(header_bytes)
    except OSError as exc:
        result = SafetensorsFile(name=name, size=0)
        result.problems.append(f"{name} cannot be read: {exc.strerror}")
        return result
    result.header_bytes = header_bytes
    try:
        header = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        result.problems.append(f"{name} has a header that is not UTF-8 text (byte {exc.start}): the header is damaged")
        return result
    except ValueError as exc:
        result.problems.append(f"{name} has a header that is not valid JSON ({exc}): the header is damaged")
        return result
    if not isinstance(header, dict):
        result.problems.append(f"{name} has a header that is a JSON {type(header).__name__}, not an object: the header is damaged")
        return result
    result.readable = True
    _parse_header(header, result)
    _check_layout(result)
    return result


def _parse_header(header: dict[str, Any], result: SafetensorsFile) -> None:
    entry_problems: list[str] = []
    for key, entry in header.items():
        if key == METADATA_KEY:
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                entry_problems.append(f"its {METADATA_KEY} is not a map of strings to strings, which safetensors refuses")
            else:
                result.metadata = dict(entry)
            continue
        info, problem = _tensor_info(key, entry)
        if info is not None:
            result.tensors[key] = info  # its offsets take part in the layout check even when dtype or shape are wrong
        if problem is not None:
            entry_problems.append(problem)
    if len(entry_problems) > TENSOR_PROBLEMS_SHOWN:
        left = len(entry_problems) - TENSOR_PROBLEMS_SHOWN
        entry_problems = [*entry_problems[:TENSOR_PROBLEMS_SHOWN], f"{_plural(left, 'more header problem')} like these"]
    result.problems.extend(f"{result.name}: {problem}" for problem in entry_problems)


def _check_layout(result: SafetensorsFile) -> None:
    """The tensors must tile the data section from byte 0, in offset order, and end where the file ends."""
    data_bytes = result.size - HEADER_LENGTH_BYTES - result.header_bytes
    ordered = sorted(
        ((info.start, info.end, key) for key, info in result.tensors.items() if info.end >= info.start),
    )
    layout_problems: list[str] = []
    cursor, previous = 0, None
    for start, end, key in ordered:
        if start < cursor:
            layout_problems.append(f"tensors {previous} and {key} overlap (bytes {start} to {min(cursor, end)} of the data section)")
        elif cursor < min(start, data_bytes):
            after = f"after tensor {previous}" if previous else "at the start of the data section"
            following = f"; next is {key}" if start <= data_bytes else ""
            layout_problems.append(f"bytes {cursor} to {min(start, data_bytes)} of the data section belong to no tensor ({after}{following})")
        if end >= cursor:
            cursor, previous = end, key
    name = result.name
    result.problems.extend(f"{name}: {problem}" for problem in layout_problems[:TENSOR_PROBLEMS_SHOWN])
    if len(layout_problems) > TENSOR_PROBLEMS_SHOWN:
        result.problems.append(f"{name}: {_plural(len(layout_problems) - TENSOR_PROBLEMS_SHOWN, 'more offset problem')} like these")
    if cursor > data_bytes:
        beyond = [key for start, end, key in ordered if end > data_bytes]
        if layout_problems:
            result.problems.append(
                f"{name}: the data_offsets of {_plural(len(beyond), 'tensor')} ({_names(beyond)}) reach past the end of the {data_bytes}-byte data section"
            )
        else:
            result.problems.append(
                f"{name} is truncated: its header describes {cursor} bytes of tensor data but the file holds {data_bytes} after the header "
                f"({cursor - data_bytes} bytes missing; {_plural(len(beyond), 'tensor')} cut off: {_names(beyond)})"
            )
    elif cursor < data_bytes:
        result.problems.append(
            f"{name} has {data_bytes - cursor} bytes after its last tensor: the data section is {data_bytes} bytes but the tensors end at "
            f"byte {cursor} (safetensors requires the last tensor to end the file)"
        )


# =============================================================================================
# Weights: index, shards, totals
# =============================================================================================


def check_weights(root: str, files: Mapping[str, int], found: Findings) -> dict[str, Any]:
    """Validate every weight file and the index; return the weight facts."""
    top_level = sorted(name for name in files if "/" not in name and name.endswith(SAFETENSORS_SUFFIX))
    index_present = os.path.isfile(os.path.join(root, INDEX_NAME))
    weight_map: dict[str, str] | None = None
    total_size: Any = None
    if index_present:
        weight_map, total_size = _read_index(root, found)
    if weight_map is not None:
        shard_names = sorted(set(weight_map.values()))
    elif index_present:
        shard_names = top_level  # the index is broken; still check what is there
    elif top_level:
        shard_names = top_level
    else:
        others = sorted(name for name in files if name.endswith((".bin", ".pt", ".pth", ".gguf")))
        seen = f" (found {_names(others)}: this module checks safetensors checkpoints only)" if others else ""
        found.problems.append(f"no weights: there is neither {INDEX_NAME} nor a .safetensors file{seen}")
        shard_names = []

    headers: dict[str, SafetensorsFile] = {}
    for name in sorted(set(shard_names) | set(top_level)):
        if name in files:
            headers[name] = read_safetensors_header(root, name)
            found.problems.extend(headers[name].problems)
    complete = bool(shard_names) and all(name in headers and headers[name].readable and not headers[name].problems for name in shard_names)

    if weight_map is not None:
        _check_index_against_shards(weight_map, total_size, headers, complete, found)
        for name in top_level:
            if name not in weight_map.values():
                found.warnings.append(f"{name} is not in the weight_map of {INDEX_NAME}: vLLM does not load it")

    loaded = [headers[name] for name in shard_names if name in headers]
    dtypes = sorted({info.dtype for shard in loaded for info in shard.tensors.values()})
    return {
        "weights_bytes": sum(shard.tensor_bytes for shard in loaded) if complete else None,
        "tensor_count": sum(len(shard.tensors) for shard in loaded),
        "tensor_dtypes": dtypes,
        "shard_count": len(shard_names),
        "shards": [
            {
                "name": name,
                "size": files.get(name),
                "tensors": len(headers[name].tensors) if name in headers and headers[name].readable else None,
                "tensor_bytes": headers[name].tensor_bytes if name in headers and headers[name].readable else None,
            }
            for name in shard_names
        ],
    }


def _read_index(root: str, found: Findings) -> tuple[dict[str, str] | None, Any]:
    index = load_json(root, INDEX_NAME, found)
    if index is None:
        return None, None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        found.problems.append(f"{INDEX_NAME} has no weight_map (tensor name -> shard file): it is not a safetensors index")
        return None, None
    bad = sorted({str(shard) for shard in weight_map.values() if not isinstance(shard, str) or not _inside(shard)})
    if bad:
        found.problems.append(f"{INDEX_NAME} maps tensors to {_names(bad)}, which are not files inside the model directory")
        return None, None
    metadata = index.get("metadata")
    total_size = metadata.get("total_size") if isinstance(metadata, dict) else None
    if isinstance(total_size, float) and total_size.is_integer():
        total_size = int(total_size)  # some writers store it as 15231233024.0
    return dict(weight_map), total_size


def _check_index_against_shards(
    weight_map: Mapping[str, str],
    total_size: Any,
    headers: Mapping[str, SafetensorsFile],
    complete: bool,
    found: Findings,
) -> None:
    by_shard: dict[str, list[str]] = {}
    for tensor, shard in weight_map.items():
        by_shard.setdefault(shard, []).append(tensor)
    for shard, tensors in sorted(by_shard.items()):
        header = headers.get(shard)
        if header is None:
            found.problems.append(f"{shard} is missing: {INDEX_NAME} maps {_plural(len(tensors), 'tensor')} to it ({_names(sorted(tensors))})")
            continue
        if not header.readable:
            continue  # its header problem is already reported
        absent = sorted(tensor for tensor in tensors if tensor not in header.tensors)
        if absent:
            found.problems.append(f"{shard} lacks {_plural(len(absent), 'tensor')} that {INDEX_NAME} maps to it: {_names(absent)}")
        unlisted = sorted(tensor for tensor in header.tensors if weight_map.get(tensor) != shard)
        if unlisted:
            found.warnings.append(f"{shard} holds {_plural(len(unlisted), 'tensor')} that {INDEX_NAME} does not map to it: {_names(unlisted)}")
    if total_size is None:
        found.warnings.append(f"{INDEX_NAME} has no metadata.total_size, so the weight bytes were not compared with it")
    elif not is_int(total_size):
        found.problems.append(f"{INDEX_NAME} has metadata.total_size {total_size!r}, expected a number of bytes")
    elif complete:
        actual = sum(headers[shard].tensor_bytes for shard in by_shard)
        if actual != total_size:
            found.problems.append(
                f"{INDEX_NAME} says metadata.total_size is {total_size} bytes but the tensors of its shards are {actual} bytes "
                f"({actual - total_size:+d}): the index does not belong to these shards"
            )


def check_tokenizer(root: str, files: Mapping[str, int], found: Findings) -> list[str]:
    """``tokenizer.json`` or ``tokenizer.model``, plus ``tokenizer_config.json``; return the ones present."""
    present = [name for name in (*TOKENIZER_NAMES, TOKENIZER_CONFIG_NAME) if name in files]
    if not any(name in files for name in TOKENIZER_NAMES):
        found.problems.append(f"no tokenizer: neither {' nor '.join(TOKENIZER_NAMES)} is present")
    if TOKENIZER_CONFIG_NAME not in files:
        found.problems.append(f"{TOKENIZER_CONFIG_NAME} is missing")
    for name in present:
        if files[name] == 0 and not name.endswith(".json"):  # empty JSON files are reported by load_json
            found.problems.append(f"{name} is empty")
    return present


# =============================================================================================
# sha256 manifest
# =============================================================================================


def sha256_file(path: str, chunk_bytes: int = HASH_CHUNK_BYTES) -> str:
    """Hex sha256 of a file, read in ``chunk_bytes`` pieces into one reused buffer."""
    digest = hashlib.sha256()
    buffer = bytearray(chunk_bytes)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while True:
            count = handle.readinto(buffer)
            if not count:
                break
            digest.update(view[:count])
    return digest.hexdigest()


def hash_files(root: str, names: Iterable[str], jobs: int) -> dict[str, str | OSError]:
    """sha256 of each file, ``jobs`` at a time, largest first; an OSError in place of a file that failed."""

    def one(name: str) -> tuple[str, str | OSError]:
        try:
            return name, sha256_file(os.path.join(root, name))
        except OSError as exc:
            return name, exc

    def size(name: str) -> int:
        try:
            return os.stat(os.path.join(root, name)).st_size
        except OSError:
            return 0

    ordered = sorted(names, key=lambda name: (-size(name), name))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return dict(pool.map(one, ordered))


def _escape(name: str) -> tuple[str, str]:
    """GNU sha256sum's escaping of names with a backslash or line break: ("\\", escaped) or ("", name)."""
    if not any(char in name for char in "\\\n\r"):
        return "", name
    return "\\", name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def _unescape(name: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r", "\\": "\\"}.get(m.group(1), m.group(0)), name)


def format_manifest(hashes: Mapping[str, str]) -> str:
    """``sha256sum`` text-mode lines (``<hex>  <name>``), sorted by name, so ``sha256sum -c`` reads them."""
    lines = []
    for name in sorted(hashes):
        marker, shown = _escape(name)
        lines.append(f"{marker}{hashes[name]}  {shown}\n")
    return "".join(lines)


def parse_manifest(text: str, found: Findings) -> dict[str, str]:
    """name -> lower-case hex; malformed lines, duplicates and paths outside the directory are problems."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _MANIFEST_LINE.match(line)
        if match is None:
            found.problems.append(f"{MANIFEST_NAME} line {number} is not a sha256sum line (<64 hex digits>  <file>): {line[:80]!r}")
            continue
        escaped, digest, _mode, name = match.groups()
        name = _unescape(name) if escaped else name
        while name.startswith("./"):
            name = name[2:]
        if not _inside(name):
            found.problems.append(f"{MANIFEST_NAME} line {number} names {name!r}, which is not a file inside the model directory")
        elif name in entries:
            found.problems.append(f"{MANIFEST_NAME} line {number} lists {name} a second time")
        else:
            entries[name] = digest.lower()
    return entries


def _hash_problems(hashes: Mapping[str, str | OSError], found: Findings) -> dict[str, str]:
    good: dict[str, str] = {}
    for name, digest in sorted(hashes.items()):
        if isinstance(digest, OSError):
            found.problems.append(f"{name} cannot be read for its sha256: {digest.strerror}")
        else:
            good[name] = digest
    return good


def write_manifest(root: str, text: str) -> None:
    """Replace ``root/MANIFEST_NAME`` atomically: a temporary file beside it, fsync, rename, fsync the directory."""
    target = os.path.join(root, MANIFEST_NAME)
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=MANIFEST_NAME + ".", suffix=".tmp", dir=root)
    except OSError as exc:
        raise ModelCheckInputError(f"cannot write {target}: {exc.strerror}") from exc
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise ModelCheckInputError(f"cannot write {target}: {exc.strerror}") from exc
    try:
        directory = os.open(root, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename itself is atomic


def _read_manifest_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def make_manifest(root: str, files: Mapping[str, int], jobs: int, write: bool, found: Findings) -> tuple[dict[str, Any], bool]:
    """Hash every model file; write the manifest when it differs (and ``write``). Return its result and changed."""
    path = os.path.join(root, MANIFEST_NAME)
    result: dict[str, Any] = {"path": path, "files": len(files), "missing": [], "extra": [], "different": []}
    if found.problems:
        found.problems.append(f"{MANIFEST_NAME} was not written: a manifest of a model with problems would vouch for it")
        return result, False
    hashes = _hash_problems(hash_files(root, files, jobs), found)
    if found.problems:
        return result, False
    text = format_manifest(hashes)
    try:
        changed = _read_manifest_text(path) != text
    except (OSError, ValueError):
        changed = True
    if changed and write:
        write_manifest(root, text)
    return result, changed


def verify_manifest(root: str, files: Mapping[str, int], jobs: int, found: Findings) -> dict[str, Any]:
    """Compare every file with the manifest: missing, extra (not listed) and different files are each named."""
    path = os.path.join(root, MANIFEST_NAME)
    result: dict[str, Any] = {"path": path, "files": 0, "missing": [], "extra": [], "different": []}
    try:
        text = _read_manifest_text(path)
    except (OSError, ValueError) as exc:
        found.problems.append(f"{MANIFEST_NAME} cannot be read: {getattr(exc, 'strerror', None) or exc}")
        return result
    if text is None:
        found.problems.append(f"{MANIFEST_NAME} is missing, so nothing could be verified: write it with mode=manifest where the model is known good")
        return result
    entries = parse_manifest(text, found)
    result["files"] = len(entries)
    result["missing"] = sorted(name for name in entries if not os.path.isfile(os.path.join(root, name)))
    result["extra"] = sorted(name for name in files if name not in entries)
    missing = set(result["missing"])
    present = [name for name in entries if name not in missing]
    hashes = _hash_problems(hash_files(root, present, jobs), found)
    result["different"] = sorted(name for name, digest in hashes.items() if digest != entries[name])
    found.problems.extend(f"{name} is listed in {MANIFEST_NAME} but missing" for name in result["missing"])
    found.problems.extend(f"{name} is not listed in {MANIFEST_NAME} (a file added since it was written)" for name in result["extra"])
    found.problems.extend(f"{name} does not match {MANIFEST_NAME}: sha256 {hashes[name]}, expected {entries[name]}" for name in result["different"])
    return result


# =============================================================================================
# The entry point
# =============================================================================================


def default_jobs() -> int:
    return min(DEFAULT_MAX_JOBS, os.cpu_count() or 1)


def check_model(path: str, *, mode: str = "check", jobs: int | None = None, write: bool = True) -> dict[str, Any]:
    """Check the model directory ``path``; in mode ``manifest`` write its manifest unless ``write`` is false.

    Returns ``ok``, ``changed`` (the manifest was, or in check mode would be, written), ``model`` (facts),
    ``problems``, ``warnings`` and, in modes manifest and verify, ``manifest``.
    """
    if mode not in MODES:
        raise ModelCheckInputError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    if jobs is not None and jobs < 1:
        raise ModelCheckInputError(f"jobs must be at least 1, got {jobs}")
    if not os.path.isdir(path):
        raise ModelCheckInputError(f"{path} does not exist or is not a directory")
    jobs = jobs or default_jobs()
    found = Findings()
    files = list_files(path, found)
    model: dict[str, Any] = {"path": path, "real_path": os.path.realpath(path)}
    model.update(config_facts(load_json(path, CONFIG_NAME, found), found))
    for name in sorted(files):
        if "/" not in name and name.endswith(".json") and name not in (CONFIG_NAME, INDEX_NAME):
            load_json(path, name, found)  # tokenizer, generation and processor configs must parse
    model["tokenizer_files"] = check_tokenizer(path, files, found)
    model.update(check_weights(path, files, found))
    model["files"] = [{"name": name, "size": size} for name, size in sorted(files.items())]
    model["total_bytes"] = sum(files.values())

    result: dict[str, Any] = {"changed": False, "model": model}
    if mode == "manifest":
        result["manifest"], result["changed"] = make_manifest(path, files, jobs, write, found)
    elif mode == "verify":
        result["manifest"] = verify_manifest(path, files, jobs, found)
    result.update(ok=not found.problems, problems=found.problems, warnings=found.warnings)
    return result
