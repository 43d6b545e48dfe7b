#!/usr/bin/python
# Copyright: (c) 2026, llmops.gpu_inference contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_check
short_description: Validate a Hugging Face model directory for vLLM and return its facts
version_added: 0.1.0
description:
  - Checks a model directory on the managed node before vLLM serves it, and returns the facts later roles need
    (architecture, dtype, sizes, context length, quantization, weight bytes, files).
  - C(config.json) must parse, and so must every other top-level C(*.json) file (tokenizer, generation config, index).
  - A tokenizer must be present, C(tokenizer.json) or C(tokenizer.model), plus C(tokenizer_config.json).
  - "Every safetensors file's header is validated as the safetensors reference reader does: the 8-byte little-endian header length,
    the JSON header, each tensor's byte length against its dtype and shape, the tensors tiling the data section without gaps or
    overlaps, and the data section ending exactly at the end of the file (a truncated or padded file is named)."
  - With C(model.safetensors.index.json), every shard its C(weight_map) names must exist, every tensor must be in the shard the index
    names, and C(metadata.total_size) must equal the bytes of the tensors. Without an index, every top-level C(*.safetensors) file
    (usually C(model.safetensors)) is a weight file, as vLLM loads them.
  - In the default O(mode=check) only headers and JSON files are read, never tensor data, so a check of a 140 GB model takes seconds.
  - O(mode=manifest) and O(mode=verify) add a sha256 manifest, streamed in 8 MiB chunks, O(jobs) files at a time.
  - Every problem is reported in one failure, each naming the file; RV(problems) lists them.
  - Files and directories whose names start with a dot are not model files and are left out of the checks and the manifest
    (the manifest itself, rsync's temporary files, C(.cache/huggingface) download metadata, C(.git)).
options:
  path:
    description:
      - The model directory on the managed node, for example a revision directory of the model store or its C(current) link.
    type: path
    required: true
  mode:
    description:
      - V(check) validates the files from their headers and JSON content only.
      - V(manifest) also hashes every file and writes the sha256 manifest C(.sha256sums) in O(path) in C(sha256sum) format
        (C(cd PATH && sha256sum -c .sha256sums) verifies it), atomically (a temporary file renamed over it) with mode C(0644).
        It is written only when the model has no problems, and only when its content changes.
      - V(verify) also hashes every file and compares it with C(.sha256sums); files that are missing, not listed, or different
        are each named.
    type: str
    default: check
    choices: [check, manifest, verify]
  jobs:
    description:
      - How many files are hashed at the same time in O(mode=manifest) and O(mode=verify).
      - Defaults to the number of CPUs, at most 4. Raise it for network storage with high latency.
    type: int
  fail_on_problems:
    description:
      - Fail the task when the model has a problem. When V(false), the result still lists them and sets RV(ok=false).
    type: bool
    default: true
extends_documentation_fragment:
  - llmops.gpu_inference.attributes
attributes:
  check_mode:
    support: full
    details:
      - In O(mode=manifest), check mode hashes the files and reports whether the manifest would change, without writing it.
  diff_mode:
    support: none
notes:
  - Only safetensors checkpoints are checked; a directory with only C(.bin), C(.pt) or C(.gguf) weights fails with a problem that says so.
  - A symbolic link to a file is checked as that file (a Hugging Face cache snapshot); linked directories are not followed.
requirements:
  - Python 3.8 or later on the managed node; no third-party packages.
seealso:
  - module: llmops.gpu_inference.vllm_preflight
  - name: safetensors format
    description: The safetensors file layout the headers are checked against.
    link: https://github.com/huggingface/safetensors#format
author:
  - llmops.gpu_inference maintainers (@llmops)
"""

EXAMPLES = r"""
- name: Check a synced model before publishing it
  llmops.gpu_inference.model_check:
    path: /srv/models/qwen2-5-7b-instruct/.staging
  register: __model_sync_check

- name: Write the sha256 manifest of a verified revision
  llmops.gpu_inference.model_check:
    path: /srv/models/qwen2-5-7b-instruct/2026-05-01
    mode: manifest
    jobs: 8

- name: Verify a backup against its manifest, reporting instead of failing
  llmops.gpu_inference.model_check:
    path: /backup/models/qwen2-5-7b-instruct/2026-05-01
    mode: verify
    fail_on_problems: false
  register: __model_backup_verify

- name: Feed the model facts to the preflight
  llmops.gpu_inference.vllm_preflight:
    model_config_path: /srv/models/qwen2-5-7b-instruct/current/config.json
    weights_bytes: "{{ __model_sync_check.model.weights_bytes }}"
    gpu_memory_mib: 81559
    gpu_limit: 1
"""

RETURN = r"""
ok:
  description: Whether the model has no problem.
  returned: always
  type: bool
  sample: true
problems:
  description: Every problem found, each naming the file; empty when RV(ok) is true.
  returned: always
  type: list
  elements: str
  sample:
    - "model-00002-of-00004.safetensors is truncated: its header describes 3959422976 bytes of tensor data but the file holds
      1073741824 after the header (2885681152 bytes missing; 81 tensors cut off: model.layers.10.mlp.down_proj.weight, ...)"
    - tokenizer_config.json is missing
msg:
  description: The problems, numbered, when the task fails.
  returned: failure
  type: str
  sample: "model check of /srv/models/qwen2-5-7b-instruct/.staging found 1 problem: (1) tokenizer_config.json is missing"
manifest:
  description: The sha256 manifest written or verified.
  returned: when O(mode) is V(manifest) or V(verify)
  type: dict
  contains:
    path:
      description: Path of the manifest, C(.sha256sums) in O(path).
      type: str
      sample: /srv/models/qwen2-5-7b-instruct/2026-05-01/.sha256sums
    files:
      description: Number of files the manifest lists (in O(mode=manifest), the number it lists once written).
      type: int
      sample: 14
    missing:
      description: Files the manifest lists that are not in the directory.
      type: list
      elements: str
      sample: [model-00003-of-00004.safetensors]
    extra:
      description: Files in the directory that the manifest does not list.
      type: list
      elements: str
      sample: []
    different:
      description: Files whose sha256 differs from the manifest's.
      type: list
      elements: str
      sample: [model-00001-of-00004.safetensors]
  sample:
    path: /srv/models/qwen2-5-7b-instruct/2026-05-01/.sha256sums
    files: 14
    missing: []
    extra: []
    different: []
model:
  description:
    - Facts about the model. Values C(config.json) does not give are C(null).
    - Returned on failure as well, as far as the files could be read.
  returned: always
  type: dict
  contains:
    path:
      description: O(path) as given.
      type: str
      sample: /srv/models/qwen2-5-7b-instruct/current
    real_path:
      description: O(path) with symbolic links resolved (the revision a C(current) link points to).
      type: str
      sample: /srv/models/qwen2-5-7b-instruct/2026-05-01
    architecture:
      description: The first of C(architectures), the class vLLM loads.
      type: str
      sample: Qwen2ForCausalLM
    architectures:
      description: C(architectures) of C(config.json).
      type: list
      elements: str
      sample: [Qwen2ForCausalLM]
    model_type:
      description: C(model_type) of C(config.json) (for a multimodal model, the top-level one).
      type: str
      sample: qwen2
    multimodal:
      description: Whether the config has a language model under C(text_config) or vision/audio towers; the size facts then come from C(text_config).
      type: bool
      sample: false
    dtype:
      description: C(torch_dtype) (C(dtype) in newer configs) of the checkpoint.
      type: str
      sample: bfloat16
    hidden_size:
      description: Hidden size.
      type: int
      sample: 3584
    num_hidden_layers:
      description: Number of decoder layers.
      type: int
      sample: 28
    num_attention_heads:
      description: Number of attention heads.
      type: int
      sample: 28
    num_key_value_heads:
      description: Number of KV heads; the attention heads when the config gives none.
      type: int
      sample: 4
    head_dim:
      description: C(head_dim), or hidden size divided by attention heads when the config gives none.
      type: int
      sample: 128
    intermediate_size:
      description: MLP intermediate size.
      type: int
      sample: 18944
    vocab_size:
      description: Vocabulary size.
      type: int
      sample: 152064
    max_position_embeddings:
      description: C(max_position_embeddings).
      type: int
      sample: 32768
    max_model_len:
      description: The longest context vLLM accepts, derived as vLLM does (the smallest length key, scaled by C(rope_scaling)).
      type: int
      sample: 32768
    rope_scaling:
      description: C(rope_scaling), or C(null).
      type: dict
      sample: {type: yarn, factor: 4.0, original_max_position_embeddings: 32768}
    quantization:
      description: C(quantization_config.quant_method) in lower case (C(awq), C(gptq), C(fp8), ...), or C(null).
      type: str
      sample: awq
    quantization_config:
      description: C(quantization_config), or C(null).
      type: dict
      sample: {quant_method: awq, bits: 4, group_size: 128, zero_point: true, version: gemm}
    tokenizer_files:
      description: The tokenizer files present.
      type: list
      elements: str
      sample: [tokenizer.json, tokenizer_config.json]
    weights_bytes:
      description:
        - Bytes of all tensors vLLM loads, summed from the safetensors headers; pass it to vllm_preflight as
          O(llmops.gpu_inference.vllm_preflight#module:weights_bytes).
        - C(null) when a weight file is missing or its header cannot be read.
      type: int
      sample: 15231233024
    tensor_count:
      description: Number of tensors in the weight files.
      type: int
      sample: 339
    tensor_dtypes:
      description: The safetensors dtypes of the tensors.
      type: list
      elements: str
      sample: [BF16]
    shard_count:
      description: Number of weight files vLLM loads.
      type: int
      sample: 4
    shards:
      description: Each weight file with its C(name), C(size), number of C(tensors) and C(tensor_bytes) (C(null) when its header cannot be read).
      type: list
      elements: dict
      sample: [{name: model-00001-of-00004.safetensors, size: 3945441440, tensors: 84, tensor_bytes: 3945426944}]
    files:
      description: Every model file (hidden ones left out) with its C(name) relative to O(path) and its C(size) in bytes.
      type: list
      elements: dict
      sample: [{name: config.json, size: 663}, {name: model-00001-of-00004.safetensors, size: 3945441440}]
    total_bytes:
      description: Sum of the sizes of the files.
      type: int
      sample: 15242084405
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.gpu_inference.plugins.module_utils._model_check import MODES, ModelCheckInputError, check_model

ARGUMENT_SPEC = dict(
    path=dict(type="path", required=True),
    mode=dict(type="str", default="check", choices=list(MODES)),
    jobs=dict(type="int"),
    fail_on_problems=dict(type="bool", default=True),
)


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    try:
        result = check_model(params["path"], mode=params["mode"], jobs=params["jobs"], write=not module.check_mode)
    except ModelCheckInputError as exc:
        module.fail_json(msg=str(exc))

    for warning in result.pop("warnings"):
        module.warn(warning)  # Ansible returns them as the result's ``warnings``
    problems = result["problems"]
    if problems and params["fail_on_problems"]:
        listed = " ".join(f"({n}) {problem}" for n, problem in enumerate(problems, 1))
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        module.fail_json(msg=f"model check of {params['path']} found {count}: {listed}", **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
