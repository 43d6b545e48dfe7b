"""model_check through AnsibleModule: results, failures, the manifest under check mode, reading no tensor data, docs."""

from __future__ import annotations

import json
import os
import re
import struct
from unittest.mock import patch

import pytest
import yaml
from model_dirs import encode_header, make_model, read_header
from module_harness import assert_options_documented, run_module

from ansible_collections.llmops.gpu_inference.plugins.module_utils import _model_check
from ansible_collections.llmops.gpu_inference.plugins.module_utils._model_check import check_model
from ansible_collections.llmops.gpu_inference.plugins.modules import model_check

DOC = yaml.safe_load(model_check.DOCUMENTATION)
RETURNED = yaml.safe_load(model_check.RETURN)
TYPE_NAMES = {"int": int, "str": str, "bool": bool, "list": list, "dict": dict}
SHARD2 = "model-00002-of-00004.safetensors"


@pytest.fixture
def model(tmp_path):
    return make_model(tmp_path / "Qwen2.5-7B-Instruct")


def run(args, check_mode=False):
    return run_module(model_check.main, args, check_mode=check_mode)


def _truncate(path, size):
    with path.open("r+b") as handle:
        handle.truncate(size)


@pytest.mark.parametrize("check_mode", [False, True])
def test_complete_model_returns_its_facts_and_changes_nothing(model, check_mode):
    done = run({"path": str(model.root)}, check_mode=check_mode)
    assert not done.failed, done.result.get("msg")
    assert done.result["changed"] is False and done.result["ok"] is True and done.result["problems"] == []
    facts = done.result["model"]
    assert (facts["architecture"], facts["dtype"], facts["hidden_size"], facts["num_key_value_heads"], facts["head_dim"]) == (
        "Qwen2ForCausalLM",
        "bfloat16",
        3584,
        4,
        128,
    )
    assert facts["weights_bytes"] == model.index["metadata"]["total_size"]
    assert facts["shard_count"] == 4
    assert "manifest" not in done.result and "warnings" not in done.result and done.warned == []


def test_module_result_is_the_core_result(model):
    done = run({"path": str(model.root), "mode": "verify", "fail_on_problems": False})
    core = check_model(str(model.root), mode="verify")
    warnings = core.pop("warnings")
    assert done.result == core and done.warned == warnings


def test_problems_fail_the_task_numbered_in_one_message(model):
    (model.root / "tokenizer_config.json").unlink()
    _truncate(model.shard(2), 20000)  # past the 8 KiB header: the tensor data is cut
    done = run({"path": str(model.root)})
    assert done.failed
    assert done.result["ok"] is False and done.result["changed"] is False
    problems = done.result["problems"]
    assert problems[0] == "tokenizer_config.json is missing"
    assert problems[1].startswith(f"{SHARD2} is truncated: its header describes")
    assert done.result["msg"] == f"model check of {model.root} found 2 problems: (1) {problems[0]} (2) {problems[1]}"
    # the facts come back with the failure, as far as the files could be read
    assert done.result["model"]["hidden_size"] == 3584 and done.result["model"]["weights_bytes"] is None


def test_one_problem_is_singular(model):
    (model.root / "tokenizer.json").unlink()
    done = run({"path": str(model.root)})
    assert done.result["msg"] == f"model check of {model.root} found 1 problem: (1) no tokenizer: neither tokenizer.json nor tokenizer.model is present"


def test_fail_on_problems_false_reports_without_failing(model):
    (model.root / "config.json").write_text("{")
    done = run({"path": str(model.root), "fail_on_problems": False})
    assert not done.failed
    assert done.result["ok"] is False
    assert done.result["problems"][0].startswith("config.json is not valid JSON (")


def test_warnings_go_through_ansible(model):
    index = model.index
    del index["metadata"]
    model.write_index(index)
    done = run({"path": str(model.root)})
    assert not done.failed and "warnings" not in done.result
    assert done.warned == ["model.safetensors.index.json has no metadata.total_size, so the weight bytes were not compared with it"]


def test_missing_directory_fails_with_the_reason(tmp_path):
    done = run({"path": str(tmp_path / "absent")})
    assert done.failed
    assert done.result["msg"] == f"{tmp_path / 'absent'} does not exist or is not a directory"


def test_bad_jobs_fails(model):
    done = run({"path": str(model.root), "mode": "manifest", "jobs": 0})
    assert done.failed and done.result["msg"] == "jobs must be at least 1, got 0"


def test_mode_must_be_one_of_the_choices(model):
    done = run({"path": str(model.root), "mode": "fast"})
    assert done.failed and "value of mode must be one of: check, manifest, verify" in done.result["msg"]


# =============================================================================================
# Manifest: check mode, idempotence, verify
# =============================================================================================


def test_manifest_in_check_mode_reports_the_change_and_writes_nothing(model):
    done = run({"path": str(model.root), "mode": "manifest"}, check_mode=True)
    assert not done.failed and done.result["changed"] is True
    assert done.result["manifest"]["path"] == str(model.root / ".sha256sums")
    assert sorted(p.name for p in model.root.iterdir() if p.name.startswith(".")) == []


def test_manifest_apply_then_rerun_and_check_mode_rerun_are_unchanged(model):
    assert run({"path": str(model.root), "mode": "manifest"}).result["changed"] is True
    written = (model.root / ".sha256sums").read_bytes()
    assert run({"path": str(model.root), "mode": "manifest"}, check_mode=True).result["changed"] is False
    assert run({"path": str(model.root), "mode": "manifest"}).result["changed"] is False
    assert (model.root / ".sha256sums").read_bytes() == written


def test_verify_after_a_byte_flip_fails_naming_the_file(model):
    assert not run({"path": str(model.root), "mode": "manifest"}).failed
    raw = bytearray(model.shard(2).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    model.shard(2).write_bytes(raw)
    done = run({"path": str(model.root), "mode": "verify"}, check_mode=True)
    assert done.failed and done.result["changed"] is False
    assert done.result["manifest"]["different"] == [SHARD2]
    assert done.result["msg"].startswith(f"model check of {model.root} found 1 problem: (1) {SHARD2} does not match .sha256sums: sha256 ")


def test_manifest_is_refused_for_a_broken_model(model):
    (model.root / "tokenizer.json").unlink()
    done = run({"path": str(model.root), "mode": "manifest"})
    assert done.failed and done.result["changed"] is False
    assert not (model.root / ".sha256sums").exists()


def test_unwritable_manifest_fails_with_the_reason(model):
    # injected at the rename: directory permissions do not stop root, who runs CI
    with patch.object(_model_check.os, "replace", side_effect=PermissionError(13, "Permission denied")):
        done = run({"path": str(model.root), "mode": "manifest"})
    assert done.failed and done.result["msg"] == f"cannot write {model.root / '.sha256sums'}: Permission denied"
    assert [p.name for p in model.root.iterdir() if p.name.startswith(".")] == []


# =============================================================================================
# Without sha256, tensor data is never read
# =============================================================================================


def _rchar():
    with open("/proc/self/io") as io:
        return int(next(line for line in io if line.startswith("rchar:")).split()[1])


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux's /proc/self/io read counters")
@pytest.mark.parametrize("check_mode", [True, False])
def test_check_of_an_8_gib_model_reads_only_headers(tmp_path, check_mode):
    """Every shard is a sparse 2 GiB file: reading their data would take seconds and show in the read counter."""
    root = tmp_path / "big"
    model = make_model(root)
    for number in range(1, 5):
        header = read_header(model.shard(number))[0]
        tensors = [k for k in header if k != "__metadata__"]
        grown = 2 * 1024**3
        # the shard's last tensor grows to 2 GiB; the index's total follows
        last = max(tensors, key=lambda k: header[k]["data_offsets"][1])
        start = header[last]["data_offsets"][0]
        header[last] = {"dtype": "U8", "shape": [grown - start], "data_offsets": [start, grown]}
        raw = encode_header(header)
        with model.shard(number).open("wb") as handle:
            handle.write(raw)
            handle.write(b"\x01" * start)
            handle.truncate(len(raw) + grown)
    index = model.index
    index["metadata"]["total_size"] = 4 * 2 * 1024**3
    model.write_index(index)

    before = _rchar()
    done = run({"path": str(root)}, check_mode=check_mode)
    read = _rchar() - before
    assert not done.failed, done.result.get("msg")
    assert done.result["model"]["weights_bytes"] == 8 * 1024**3
    assert done.result["model"]["total_bytes"] > 8 * 1024**3
    assert read < 8 * 1024**2, f"read {read} bytes"


def test_check_opens_weight_files_only_for_their_headers(model):
    reads = {}
    real_open = open

    def counting_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        name = os.path.basename(str(path))
        read = handle.read

        def counted(size=-1):
            data = read(size)
            reads[name] = reads.get(name, 0) + len(data)
            return data

        handle.read = counted
        return handle

    with patch.object(_model_check, "open", counting_open, create=True):
        done = run({"path": str(model.root)}, check_mode=True)
    assert not done.failed
    for number, name in enumerate(model.shards, 1):
        (length,) = struct.unpack("<Q", model.shard(number).read_bytes()[:8])
        assert reads[name] == 8 + length


# =============================================================================================
# Documentation
# =============================================================================================


def test_documented_options_match_the_argument_spec():
    assert_options_documented(model_check.DOCUMENTATION, model_check.ARGUMENT_SPEC)


def test_documented_return_keys_match_what_the_module_returns(model):
    done = run({"path": str(model.root), "mode": "manifest"})
    assert set(RETURNED) == {"ok", "problems", "msg", "manifest", "model"}
    assert set(done.result) == {"ok", "problems", "manifest", "model", "changed"}
    for section in ("model", "manifest"):
        contains = RETURNED[section]["contains"]
        assert set(contains) == set(done.result[section]), section
        for key, doc in contains.items():
            assert isinstance(doc["sample"], TYPE_NAMES[doc["type"]]), key
            value = done.result[section][key]
            assert value is None or isinstance(value, TYPE_NAMES[doc["type"]]), key


def test_documented_sample_of_a_problem_is_the_real_message(model):
    sample = RETURNED["problems"]["sample"][0]
    _truncate(model.shard(2), 20000)
    problem = run({"path": str(model.root), "fail_on_problems": False}).result["problems"][0]

    def shape(text):
        return re.sub(r"\d+", "N", " ".join(text.split()).split(" cut off:", maxsplit=1)[0])

    assert shape(sample) == shape(problem)


def test_examples_use_the_fqcn_and_register():
    tasks = yaml.safe_load(model_check.EXAMPLES)
    ours = [task for task in tasks if "llmops.gpu_inference.model_check" in task]
    assert len(ours) == 3 and all(task["name"] for task in tasks)
    assert not [task for task in tasks if "model_check" in task]
    assert sum("register" in task for task in ours) == 2
    for task in ours:
        assert set(task["llmops.gpu_inference.model_check"]) <= set(model_check.ARGUMENT_SPEC)


def test_docs_declare_check_mode_and_no_diff():
    assert DOC["version_added"] == "0.1.0"
    assert DOC["author"] == ["llmops.gpu_inference maintainers (@llmops)"]
    assert DOC["extends_documentation_fragment"] == ["llmops.gpu_inference.attributes"]
    assert DOC["attributes"]["check_mode"]["support"] == "full"
    assert DOC["attributes"]["diff_mode"]["support"] == "none"
    assert json.dumps(DOC)  # plain data, no YAML oddities
