#!/usr/bin/python
# Copyright: (c) 2026, llmops.gpu_inference contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_smi_facts
short_description: Gather NVIDIA GPU facts from nvidia-smi
version_added: 0.1.0
description:
  - Runs C(nvidia-smi -q -x) and, when MIG is enabled on any GPU, C(nvidia-smi -L), C(nvidia-smi mig -lgi),
    C(nvidia-smi mig -lci) and C(nvidia-smi mig -lgip), and sets C(ansible_facts.nvidia).
  - Reads every C(-q -x) schema from DTD v9 to v13, old C(power_readings) and new C(gpu_power_readings), C(N/A),
    C([N/A]) and C(Not Found) values, the R610 KMD/UMD version renames and both MIG UUID formats.
  - Values nvidia-smi does not report are C(null), never guessed.
  - Fails with a sentence an operator can act on when nvidia-smi is missing, the driver is not loaded,
    nvidia-smi fails, or its output is truncated or malformed.
extends_documentation_fragment:
  - llmops.gpu_inference.attributes
  - llmops.gpu_inference.nvidia_smi
  - llmops.gpu_inference.attributes.facts
  - llmops.gpu_inference.attributes.info_module
requirements:
  - The NVIDIA driver with its nvidia-smi on the managed node.
seealso:
  - name: nvidia-smi documentation
    description: NVIDIA System Management Interface.
    link: https://docs.nvidia.com/deploy/nvidia-smi/index.html
author:
  - llmops.gpu_inference maintainers (@llmops)
"""

EXAMPLES = r"""
- name: Gather GPU facts
  llmops.gpu_inference.nvidia_smi_facts:

- name: Gather GPU facts with the nvidia-smi of a driver container
  llmops.gpu_inference.nvidia_smi_facts:
    nvidia_smi_path: /run/nvidia/driver/usr/bin/nvidia-smi

- name: Show the GPUs and their MIG mode
  ansible.builtin.debug:
    msg: "{{ ansible_facts.nvidia.gpus | map(attribute='name') | zip(ansible_facts.nvidia.gpus | map(attribute='mig_mode_current')) }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to ansible_facts.
  returned: always
  type: dict
  contains:
    nvidia:
      description: The node's NVIDIA driver and GPUs.
      returned: always
      type: dict
      contains:
        driver_version:
          description: Driver version (R610+ reads the KMD version). C(null) when nvidia-smi does not report one.
          type: str
          sample: "550.90.07"
        cuda_version:
          description: Newest CUDA version the driver supports (not an installed toolkit); C(null) when N/A or Not Found.
          type: str
          sample: "12.4"
        gpu_count:
          description: Number of GPUs.
          type: int
          sample: 8
        gpus:
          description: One entry per GPU, in nvidia-smi's index order.
          type: list
          elements: dict
          sample:
            - index: 0
              uuid: GPU-b4895dbf-9350-2524-a89b-98161ddd9fe4
              name: NVIDIA H100 80GB HBM3
              architecture: Hopper
              pci_bus_id: "00000000:18:00.0"
              pci_device_id: "0x233010DE"
              pci_sub_system_id: "0x16C110DE"
              memory_total_mib: 81559
              memory_used_mib: 0
              mig_mode_current: enabled
              mig_mode_pending: enabled
              persistence_mode: true
              ecc_mode_current: enabled
              ecc_uncorrected_volatile: 0
              ecc_uncorrected_aggregate: 0
              retired_pages_pending: null
              remapped_rows_pending: false
              remapped_rows_failure: false
              fabric_state: Completed
              temperature_c: 34
              power_draw_w: 70.5
              power_limit_w: 700.0
              utilization_gpu_pct: null
              processes: [{pid: 1234, name: python3, type: C, used_memory_mib: 1024, gi_id: 1, ci_id: 0}]
              mig_devices:
                - {index: 0, gi_id: 1, ci_id: 0, profile: 3g.40gb, placement_start: 4, placement_size: 4,
                   memory_mib: 40192, multiprocessor_count: 60, uuid: MIG-3f6f389f-b0cc-5e5c-8e32-eaa8fd067902}
              mig_profiles:
                - {name: 1g.10gb, id: 19, slices: 1, memory_mib: 9856, max_instances: 7, free_instances: 7,
                   multiprocessor_count: 16}
          contains:
            index:
              description: nvidia-smi's GPU index.
              type: int
            uuid:
              description: GPU UUID.
              type: str
            name:
              description: Product name as nvidia-smi prints it.
              type: str
            architecture:
              description: Product architecture (DTD v11+), else C(null).
              type: str
            pci_bus_id:
              description: PCI bus id.
              type: str
            pci_device_id:
              description: PCI device and vendor id as C(0xDDDDVVVV), the form mig-parted's C(device-filter) matches.
              type: str
            pci_sub_system_id:
              description: PCI subsystem id as C(0xSSSSVVVV) (a C(device-filter) may add it after a colon); C(null) when not reported.
              type: str
            memory_total_mib:
              description: Total framebuffer memory in MiB.
              type: int
            memory_used_mib:
              description: Used framebuffer memory in MiB.
              type: int
            mig_mode_current:
              description: C(enabled), C(disabled), or C(null) when the GPU is not MIG-capable.
              type: str
            mig_mode_pending:
              description: MIG mode after the next GPU reset; C(null) when not MIG-capable.
              type: str
            persistence_mode:
              description: Whether persistence mode is on; C(null) when not reported.
              type: bool
            ecc_mode_current:
              description: C(enabled), C(disabled), or C(null) when ECC is not supported.
              type: str
            ecc_uncorrected_volatile:
              description: Uncorrectable ECC errors since the last driver load; C(null) when not reported.
              type: int
            ecc_uncorrected_aggregate:
              description: Uncorrectable ECC errors over the GPU's lifetime; C(null) when not reported.
              type: int
            retired_pages_pending:
              description: Whether a page retirement waits for a reset (pre-Ampere); C(null) when not reported.
              type: bool
            remapped_rows_pending:
              description: Whether a row remap waits for a GPU reset (Ampere+); C(null) when not reported.
              type: bool
            remapped_rows_failure:
              description: Whether a row remap failed (the GPU needs service); C(null) when not reported.
              type: bool
            fabric_state:
              description: NVLink fabric registration state (C(Completed) on NVSwitch systems); C(null) elsewhere.
              type: str
            temperature_c:
              description: GPU temperature in Celsius; C(null) when N/A.
              type: int
            power_draw_w:
              description: Power draw in watts; C(null) when N/A.
              type: float
            power_limit_w:
              description: Power limit in watts; C(null) when N/A.
              type: float
            utilization_gpu_pct:
              description: GPU utilisation in percent; C(null) when N/A (always on MIG-enabled GPUs).
              type: int
            processes:
              description: Processes using the GPU (C(pid), C(name), C(type), C(used_memory_mib), C(gi_id), C(ci_id)).
              type: list
              elements: dict
            mig_devices:
              description:
                - MIG devices, matched across the listings by GPU instance and compute instance id.
                - Each has C(index), C(gi_id), C(ci_id), C(profile), C(placement_start), C(placement_size),
                  C(memory_mib), C(multiprocessor_count), C(uuid), and C(ci_profile) when the compute instance
                  uses part of its GPU instance (for example C(1c.3g.71gb)).
                - Empty when MIG is off.
              type: list
              elements: dict
            mig_profiles:
              description:
                - GPU instance profiles the GPU offers (C(name), C(id), C(slices), C(memory_mib), C(max_instances),
                  C(free_instances), C(multiprocessor_count)). Empty when MIG is off or unsupported.
              type: list
              elements: dict
"""


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.gpu_inference.plugins.module_utils._nvidia_smi import NvidiaSmiError, gather, module_runner


def main() -> None:
    module = AnsibleModule(argument_spec=dict(nvidia_smi_path=dict(type="path")), supports_check_mode=True)
    binary, run = module_runner(module)

    try:
        facts = gather(binary, run)
    except NvidiaSmiError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, ansible_facts={"nvidia": facts})


if __name__ == "__main__":
    main()
