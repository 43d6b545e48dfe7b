#!/usr/bin/python
# Copyright: (c) 2026, llmops.gpu_inference contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: vllm_preflight
short_description: Check that a vLLM deployment fits its GPUs before it is deployed
version_added: 0.1.0
description:
  - Predicts, from the model's C(config.json), the GPU facts and the deployment settings, the failures vLLM
    users otherwise meet after deploying, for one model per call, and changes nothing.
  - "Errors: attention heads not divisible by O(tensor_parallel_size) (or KV heads that can be neither split
    nor replicated whole); O(gpu_limit) other than O(tensor_parallel_size) x O(pipeline_parallel_size);
    more GPUs than O(gpus_per_node); tensor or pipeline parallelism across MIG devices; weights plus
    activation and runtime overhead above O(gpu_memory_mib) x O(gpu_memory_utilization); no room for one
    sequence of O(max_model_len) in the KV cache that is left; O(max_model_len) above the model's maximum;
    flags in O(extra_args) that O(vllm_version) does not accept; a quantization method or C(bfloat16)
    the GPU's compute capability cannot run."
  - "Warnings: O(max_num_seqs) above the sequences of O(max_model_len) the KV cache holds; KV heads
    replicated because O(tensor_parallel_size) exceeds them; O(shm_size) too small for several GPUs;
    O(memory_limit) below what vLLM needs in host memory, or below it plus the memory-backed O(shm_size);
    forcing C(awq) or C(gptq) where vLLM would pick the faster Marlin kernel; FP8 without FP8 compute;
    estimates that had to guess (unknown quantization, multimodal encoders, unmeasured MIG profile)."
  - Every message carries the numbers to act on, for example the GiB the weights need and the GiB
    the GPU or MIG slice offers.
  - "The memory model, per GPU: usable = O(gpu_memory_mib) x O(gpu_memory_utilization); KV cache = usable
    minus the weights shard minus an activation and runtime overhead of 4 GiB on devices of 70 GiB or more
    that are not A100s (where vLLM's default batch is 8192 tokens) and 2 GiB elsewhere; KV bytes per token =
    2 x layers x max(1, KV heads // TP) x head_dim x KV dtype bytes, in blocks of 16 tokens.
    The overhead is a heuristic: compare the estimates with the C(Available KV cache memory) line of
    vLLM's start-up log."
  - The weights come from O(weights_bytes) when given, else from the config (dense decoders only).
    The dtype and quantization come from the config unless O(dtype) or O(quantization) override them.
options:
  model_config:
    description:
      - The model's C(config.json), as a dictionary.
      - Multimodal configs are read from their C(text_config).
      - Exactly one of O(model_config) and O(model_config_path) is required.
    type: dict
  model_config_path:
    description:
      - Path of the model's C(config.json) on the managed node, read and parsed there.
    type: path
  tensor_parallel_size:
    description: vLLM C(--tensor-parallel-size).
    type: int
    default: 1
  pipeline_parallel_size:
    description: vLLM C(--pipeline-parallel-size).
    type: int
    default: 1
  gpu_resource:
    description:
      - The extended resource the pod requests, C(nvidia.com/gpu) or a MIG resource of the GPU Operator's
        C(mixed) strategy such as C(nvidia.com/mig-3g.40gb).
      - A MIG resource allows no tensor or pipeline parallelism, since a process sees one MIG device.
    type: str
    default: nvidia.com/gpu
  gpu_limit:
    description:
      - The pod's limit of O(gpu_resource). It must equal O(tensor_parallel_size) x O(pipeline_parallel_size).
      - When not set, that check is skipped.
    type: int
  gpu_memory_mib:
    description:
      - Memory of one GPU, or of one MIG slice, in MiB (C(memory_total_mib), or a MIG device's C(memory_mib),
        from C(ansible_facts.nvidia)).
      - Required for C(nvidia.com/gpu). For a MIG resource it defaults to the slice size measured for that
        profile (or its nominal size, with a warning, for profiles not measured).
    type: int
  gpus_per_node:
    description:
      - How many O(gpu_resource) devices one node has. When set, O(tensor_parallel_size) x
        O(pipeline_parallel_size) must not exceed it, since the deployment runs on one node.
    type: int
  gpu_memory_utilization:
    description: vLLM C(--gpu-memory-utilization), the fraction of the device's total memory vLLM may use.
    type: float
    default: 0.9
  max_model_len:
    description:
      - vLLM C(--max-model-len). When not set, vLLM (and this check) uses the model's maximum.
    type: int
  max_num_seqs:
    description:
      - vLLM C(--max-num-seqs). When set, a warning says if the KV cache holds fewer sequences of
        O(max_model_len) than this.
    type: int
  dtype:
    description:
      - vLLM C(--dtype). C(auto) uses the config's C(torch_dtype) and loads float32 checkpoints as 16-bit.
    type: str
    default: auto
    choices: [auto, half, float16, bfloat16, float, float32]
  quantization:
    description:
      - vLLM C(--quantization) when forced, for example C(fp8) (online FP8 on an unquantized checkpoint),
        C(awq), C(awq_marlin), C(gptq), C(gptq_marlin), C(bitsandbytes).
      - When not set, the checkpoint's C(quantization_config) applies, as in vLLM.
    type: str
  kv_cache_dtype:
    description: vLLM C(--kv-cache-dtype). C(auto) uses the model dtype; the C(fp8) variants halve the KV cache.
    type: str
    default: auto
    choices: [auto, float16, bfloat16, fp8, fp8_e4m3, fp8_e5m2]
  weights_bytes:
    description:
      - Bytes of weights, C(metadata.total_size) of the model's C(model.safetensors.index.json).
      - When not set, the weights are estimated from the config, which covers dense decoder models only;
        mixture-of-experts models need this option.
    type: int
  memory_limit:
    description:
      - The container's memory limit, as a Kubernetes quantity such as C(32Gi).
      - When set, it is compared with what vLLM needs in host memory, and with that plus O(shm_size).
    type: str
  shm_size:
    description:
      - Size of the memory-backed C(emptyDir) mounted at C(/dev/shm), as a Kubernetes quantity such as C(2Gi).
      - When not set, the container runtime's 64 MiB default is assumed for the multi-GPU check.
    type: str
  vllm_version:
    description:
      - The vLLM version the image runs, for example C(0.12.0). O(extra_args) is checked against the flags
        this version removed or does not have yet. When not set, that check is skipped.
    type: str
  extra_args:
    description:
      - Additional vLLM command-line arguments, for example C([--enable-prefix-caching, --max-num-batched-tokens=8192]).
      - Only long flags are checked; values are not.
    type: list
    elements: str
    default: []
  gpu_name:
    description:
      - The GPU's product name as nvidia-smi prints it (C(ansible_facts.nvidia.gpus[].name)), for example
        C(NVIDIA L40S).
      - Used to look up the compute capability for the quantization and dtype checks, and to apply vLLM's
        smaller default batch on A100s. When the name is not known to the module, those checks are skipped
        with a warning.
    type: str
  compute_capability:
    description:
      - The GPU's CUDA compute capability, for example C(8.9); overrides the lookup by O(gpu_name).
    type: str
  fail_on_error:
    description:
      - Fail the task, listing every error, when the preflight finds errors.
      - When V(false), the verdict is returned and the caller decides.
    type: bool
    default: true
extends_documentation_fragment:
  - llmops.gpu_inference.attributes
  - llmops.gpu_inference.attributes.info_module
notes:
  - The estimates cover the memory vLLM reserves at start-up, not a benchmark. Models with sliding-window
    or hybrid attention hold more tokens than estimated.
  - Input that cannot be evaluated (a C(config.json) without the fields of a decoder model, an unreadable
    O(model_config_path), a malformed quantity) fails the task whatever O(fail_on_error) says.
seealso:
  - module: llmops.gpu_inference.nvidia_smi_facts
  - name: vLLM engine arguments
    description: The flags this module checks.
    link: https://docs.vllm.ai/en/latest/configuration/engine_args.html
author:
  - llmops.gpu_inference maintainers (@llmops)
"""

EXAMPLES = r"""
- name: Check Qwen2.5-7B-Instruct on one L40S before deploying it
  llmops.gpu_inference.vllm_preflight:
    model_config_path: /srv/models/Qwen2.5-7B-Instruct/current/config.json
    weights_bytes: 15231233024
    tensor_parallel_size: 1
    gpu_limit: 1
    gpu_memory_mib: 46068
    gpu_name: NVIDIA L40S
    max_model_len: 8192
    max_num_seqs: 64
    memory_limit: 32Gi
    shm_size: 2Gi
    vllm_version: 0.12.0
    extra_args: [--enable-prefix-caching]
  register: __vllm_preflight

- name: Show how many full-length sequences the KV cache holds
  ansible.builtin.debug:
    msg: >-
      {{ __vllm_preflight.estimates.max_concurrent_seqs_at_max_len }} sequences,
      {{ __vllm_preflight.estimates.kv_cache_gib_per_gpu }} GiB KV cache per GPU

- name: Collect the verdict for every model without failing, from the facts of a GPU node
  llmops.gpu_inference.vllm_preflight:
    model_config: "{{ item.config }}"
    weights_bytes: "{{ item.weights_bytes }}"
    tensor_parallel_size: "{{ item.tensor_parallel_size }}"
    gpu_limit: "{{ item.gpu_limit }}"
    gpu_memory_mib: "{{ hostvars[groups['gpu_nodes'][0]].ansible_facts.nvidia.gpus[0].memory_total_mib }}"
    gpus_per_node: "{{ hostvars[groups['gpu_nodes'][0]].ansible_facts.nvidia.gpu_count }}"
    gpu_name: "{{ hostvars[groups['gpu_nodes'][0]].ansible_facts.nvidia.gpus[0].name }}"
    max_model_len: "{{ item.max_model_len }}"
    fail_on_error: false
  loop: "{{ vllm_models }}"
  register: __vllm_preflight_all

- name: Fail on a MIG slice too small for the model, listing every error
  llmops.gpu_inference.vllm_preflight:
    model_config: "{{ lookup('ansible.builtin.file', 'files/Qwen2.5-7B-Instruct/config.json') | from_json }}"
    gpu_resource: nvidia.com/mig-1g.10gb
    gpu_limit: 1
    max_model_len: 8192
"""

RETURN = r"""
ok:
  description: Whether the preflight found no errors.
  returned: always
  type: bool
  sample: false
errors:
  description: Every error found, each a sentence with the numbers to act on. Empty when RV(ok) is true.
  returned: always
  type: list
  elements: str
  sample:
    - "num_attention_heads 28 is not divisible by tensor_parallel_size 8, so vLLM refuses to start;
      tensor_parallel_size values this model accepts on 8 GPUs: 1, 2, 4"
warnings:
  description:
    - Every warning found. They are emitted as Ansible warnings, so they are also printed as C([WARNING])
      lines, and Ansible leaves the key out of the result when there are none (use C(| default([]))).
  returned: when the preflight has warnings
  type: list
  elements: str
  sample:
    - "max_num_seqs 64 is above the 45 sequences of max_model_len 8192 the KV cache holds (371024 tokens):
      at full length the rest wait or are preempted; lower max_num_seqs or max_model_len, or add KV cache memory"
estimates:
  description: What vLLM is expected to reserve per GPU (or MIG slice).
  returned: always
  type: dict
  contains:
    weights_gib_per_gpu:
      description: Weights on each GPU in GiB (all weights divided by tensor x pipeline parallel size).
      type: float
      returned: always
      sample: 14.18
    kv_bytes_per_token_per_gpu:
      description: KV cache bytes one token takes on each GPU.
      type: int
      returned: always
      sample: 57344
    kv_cache_gib_per_gpu:
      description: KV cache left on each GPU after the weights and the overhead, in GiB; 0 when nothing is left.
      type: float
      returned: always
      sample: 19.82
    max_tokens_in_kv:
      description: Tokens the KV cache holds, in whole blocks of 16 tokens.
      type: int
      returned: always
      sample: 371024
    max_concurrent_seqs_at_max_len:
      description: Sequences of O(max_model_len) (or the model's maximum) the KV cache holds at once.
      type: int
      returned: always
      sample: 45
msg:
  description: With O(fail_on_error=true) and errors, the number of errors and every error, one after the other.
  returned: failure
  type: str
  sample: "vLLM preflight found 1 error: (1) weights need 14.2 GiB per GPU plus 2.0 GiB activation and runtime overhead,
    but only 8.7 GiB of the 9850 MiB nvidia.com/mig-1g.10gb slice is usable at gpu_memory_utilization 0.9;
    use a larger MIG profile or a whole GPU"
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.gpu_inference.plugins.module_utils._vllm_preflight import (
    DTYPE_CHOICES,
    KV_CACHE_DTYPE_CHOICES,
    PreflightInputError,
    preflight,
)

ARGUMENT_SPEC = dict(
    model_config=dict(type="dict"),
    model_config_path=dict(type="path"),
    tensor_parallel_size=dict(type="int", default=1),
    pipeline_parallel_size=dict(type="int", default=1),
    gpu_resource=dict(type="str", default="nvidia.com/gpu"),
    gpu_limit=dict(type="int"),
    gpu_memory_mib=dict(type="int"),
    gpus_per_node=dict(type="int"),
    gpu_memory_utilization=dict(type="float", default=0.9),
    max_model_len=dict(type="int"),
    max_num_seqs=dict(type="int"),
    dtype=dict(type="str", default="auto", choices=list(DTYPE_CHOICES)),
    quantization=dict(type="str"),
    kv_cache_dtype=dict(type="str", default="auto", choices=list(KV_CACHE_DTYPE_CHOICES)),
    weights_bytes=dict(type="int"),
    memory_limit=dict(type="str"),
    shm_size=dict(type="str"),
    vllm_version=dict(type="str"),
    extra_args=dict(type="list", elements="str", default=[]),
    gpu_name=dict(type="str"),
    compute_capability=dict(type="str"),
    fail_on_error=dict(type="bool", default=True),
)
_NOT_FOR_THE_CORE = ("model_config", "model_config_path", "fail_on_error")


def read_model_config(path: str) -> object:
    """Parse the config.json at ``path``; PreflightInputError with the reason when it cannot be read."""
    if not os.path.isfile(path):
        raise PreflightInputError(f"model_config_path {path} does not exist or is not a file")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except ValueError as exc:
        raise PreflightInputError(f"model_config_path {path} is not valid JSON: {exc}") from exc
    except OSError as exc:
        raise PreflightInputError(f"model_config_path {path} cannot be read: {exc.strerror}") from exc


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        mutually_exclusive=[("model_config", "model_config_path")],
        required_one_of=[("model_config", "model_config_path")],
        required_if=[("gpu_resource", "nvidia.com/gpu", ("gpu_memory_mib",))],
        supports_check_mode=True,
    )
    params = module.params
    try:
        config = params["model_config"] if params["model_config"] is not None else read_model_config(params["model_config_path"])
        verdict = preflight(model_config=config, **{k: v for k, v in params.items() if k not in _NOT_FOR_THE_CORE})
    except PreflightInputError as exc:
        module.fail_json(msg=str(exc))

    for warning in verdict.pop("warnings"):
        module.warn(warning)  # Ansible returns them as the result's ``warnings`` (exit_json(warnings=) is deprecated)
    errors = verdict["errors"]
    if errors and params["fail_on_error"]:
        listed = " ".join(f"({n}) {error}" for n, error in enumerate(errors, 1))
        module.fail_json(msg=f"vLLM preflight found {len(errors)} error{'s' if len(errors) > 1 else ''}: {listed}", changed=False, **verdict)
    module.exit_json(changed=False, **verdict)


if __name__ == "__main__":
    main()
