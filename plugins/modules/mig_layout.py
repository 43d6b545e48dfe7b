#!/usr/bin/python
# Copyright: (c) 2026, llmops.gpu_inference contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mig_layout
short_description: Partition NVIDIA GPUs with MIG from a mig-parted layout, per GPU and idempotently
version_added: 0.1.0
description:
  - Applies one config of a layout written in NVIDIA mig-parted's C(version) V(v1) format, the same document the GPU
    Operator's MIG manager reads.
  - The document is validated as mig-parted validates it (version, unknown fields, required fields, C(device-filter) form),
    and every problem is reported with the config, the entry and the field.
  - Each GPU gets the entry whose C(devices) and C(device-filter) select it. Profile names resolve to profile IDs from that
    GPU's own C(nvidia-smi mig -lgip) (C(1g.10gb) is ID 15 on A100-40GB and 19 on H100); placements come from
    C(nvidia-smi mig -lgipp).
  - Before anything changes, the layout is rejected when a profile is unknown on that GPU model and driver, a count exceeds the
    profile's instance limit, the compute or memory slices exceed the GPU's, more than one C(+me) profile is asked for, or no
    placement holds the set. Each error names the GPU, the profile and the reason; all are reported together.
  - The current layout is compared with the wanted one by profile multiset (by profile and start for pinned placements), never
    by GPU or compute instance IDs. Instances that already match are kept; only the rest is destroyed and created, so a change
    to one GPU runs commands on that GPU only. When the missing instances cannot fit around the kept ones, the GPU is rebuilt.
  - A placement can be pinned by writing a profile's value as a mapping with C(count) and C(placements) (the memory-slice starts) instead of a count. This is an
    extension of mig-parted's format; documents without it are plain mig-parted documents.
  - MIG mode changes follow the driver. A change that stays pending is completed with a GPU reset (C(nvidia-smi -r)) only when
    O(reset_ok=true); otherwise the task fails and names the variable to set. Where the GPU cannot be reset (passthrough VMs),
    the result sets RV(reboot_required); the module never reboots.
  - Instances with processes on them are never destroyed, and the MIG mode of a GPU with processes is never changed, unless
    O(force=true).
  - After applying, the GPUs are read back and must hold the layout, because the driver can report success without creating
    instances. A failure part way says which GPU and command failed and what was and was not created.
  - MIG-capable GPUs that the config does not select are left alone, as are GPUs that are not MIG-capable under C(devices) V(all).
options:
  config:
    description:
      - The layout document as a mapping with C(version) (V(v1)) and C(mig-configs).
      - Mutually exclusive with O(config_path).
    type: dict
  config_path:
    description:
      - Path on the managed node to a layout file in JSON or YAML (YAML needs PyYAML on the node).
      - Mutually exclusive with O(config).
    type: path
  config_name:
    description:
      - The name of the config in C(mig-configs) to apply.
    type: str
    required: true
  reset_ok:
    description:
      - Allow C(nvidia-smi -r -i N) on a GPU whose MIG mode change stays pending. A reset stops everything on the GPU.
      - The gpu_node role sets it from C(gpu_node_mig_reset_ok).
    type: bool
    default: false
  force:
    description:
      - Reconfigure GPUs although processes run on the instances to destroy, or on a GPU whose MIG mode changes.
      - The driver may still refuse ("In use by another client"); that failure is reported with the GPU and the command.
    type: bool
    default: false
extends_documentation_fragment:
  - llmops.gpu_inference.attributes
  - llmops.gpu_inference.nvidia_smi
attributes:
  check_mode:
    support: full
    details:
      - Returns the plan and runs no command that changes a GPU.
      - Profiles of a GPU whose MIG mode is still off can only be listed once it is on, unless an enabled GPU of the same model
        lists them; such a layout is checked right after the mode change, before any instance is created.
  diff_mode:
    support: full
    details:
      - Before and after show each managed GPU's MIG mode and its GPU instances with their placements.
notes:
  - Placement is chosen by the driver. The plan predicts it (each new instance at the lowest free start, in creation order)
    and orders the creation so that everything fits; when the driver places an instance elsewhere and the rest still fits,
    the rest is created by another call.
  - MIG instances do not survive a reboot; the gpu_node role installs a boot unit that re-applies the layout.
requirements:
  - The NVIDIA driver with its nvidia-smi on the managed node, and a MIG-capable GPU (A100, A30, H100, H200, GH200, ...).
seealso:
  - module: llmops.gpu_inference.nvidia_smi_facts
  - name: NVIDIA mig-parted
    description: The layout format this module reads.
    link: https://github.com/NVIDIA/mig-parted
  - name: NVIDIA MIG User Guide
    description: MIG profiles, placements and the nvidia-smi mig commands.
    link: https://docs.nvidia.com/datacenter/tesla/mig-user-guide/
author:
  - llmops.gpu_inference maintainers (@llmops)
"""

EXAMPLES = r"""
- name: Apply the balanced layout on every GPU
  llmops.gpu_inference.mig_layout:
    config:
      version: v1
      mig-configs:
        all-balanced:
          - devices: all
            mig-enabled: true
            mig-devices:
              "1g.10gb": 2
              "2g.20gb": 1
              "3g.40gb": 1
    config_name: all-balanced
  register: mig

- name: Apply a layout from a file, allowing the GPU reset a MIG mode change needs
  llmops.gpu_inference.mig_layout:
    config_path: /etc/llmops/mig-layouts.yaml
    config_name: "{{ gpu_node_mig_config }}"
    reset_ok: "{{ gpu_node_mig_reset_ok }}"
  register: mig

- name: Different layouts per GPU, with pinned placements on GPU 1
  llmops.gpu_inference.mig_layout:
    config:
      version: v1
      mig-configs:
        inference:
          - devices: [0]
            mig-enabled: false
          - devices: [1]
            mig-enabled: true
            mig-devices:
              "3g.40gb": {count: 1, placements: [4]}
              "1g.10gb": {count: 2, placements: [0, 1]}
    config_name: inference

- name: Show what would change without changing anything
  llmops.gpu_inference.mig_layout:
    config_path: /etc/llmops/mig-layouts.yaml
    config_name: all-1g.10gb
  check_mode: true
  diff: true
  register: mig_plan

- name: Tell the operator a reboot is due
  ansible.builtin.debug:
    msg: "A reboot is needed to finish the MIG mode change on {{ inventory_hostname }}"
  when: mig.reboot_required
"""

RETURN = r"""
plan:
  description:
    - One entry per GPU, in nvidia-smi's index order.
  returned: success
  type: list
  elements: dict
  sample:
    - index: 3
      name: NVIDIA H100 80GB HBM3
      pci_device_id: "0x233010DE"
      managed: true
      entry: config 'inference' entry 2
      action: apply
      mig_mode: {current: enabled, pending: enabled, wanted: enabled}
      reset: false
      destroy: [1g.10gb, 1g.10gb]
      create: [2g.20gb]
      keep: [2g.20gb, 3g.40gb]
      rebuild: false
      profiles_checked: true
  contains:
    index:
      description: nvidia-smi's GPU index.
      type: int
    name:
      description: Product name.
      type: str
    pci_device_id:
      description: PCI device and vendor id (C(0xDDDDVVVV)) that C(device-filter) matches.
      type: str
    managed:
      description: Whether an entry of the config selects this MIG-capable GPU.
      type: bool
    entry:
      description: The config entry that selects the GPU, or C(null).
      type: str
    action:
      description: C(apply) when something is (or in check mode would be) done on the GPU, else C(none).
      type: str
    mig_mode:
      description: MIG mode C(current), C(pending) (after the next reset) and C(wanted) (C(null) when not managed).
      type: dict
    reset:
      description: Whether the wanted mode is already pending and only a GPU reset is missing.
      type: bool
    destroy:
      description: Profiles of the GPU instances to destroy.
      type: list
      elements: str
    create:
      description: Profiles of the GPU instances to create, in creation order.
      type: list
      elements: str
    keep:
      description: Profiles of the GPU instances that already match and stay untouched.
      type: list
      elements: str
    rebuild:
      description: Whether matching instances are destroyed too, because the missing ones would not fit around them.
      type: bool
    profiles_checked:
      description:
        - Whether the layout was checked against this GPU's profiles. C(false) while MIG is off on every GPU of its model;
          the check then runs after the mode change, before any instance is created.
      type: bool
reboot_required:
  description: Whether a MIG mode change waits for a reboot (the GPU could not be reset). The module never reboots.
  returned: always
  type: bool
  sample: false
commands:
  description: The commands that changed the GPUs, in order (empty in check mode and when nothing changed).
  returned: always
  type: list
  elements: str
  sample:
    - nvidia-smi mig -i 3 -dci -gi 9,10
    - nvidia-smi mig -i 3 -dgi -gi 9,10
    - nvidia-smi mig -i 3 -cgi 14 -C
errors:
  description: Every problem found when the layout is invalid or does not fit; nothing was changed then.
  returned: failure
  type: list
  elements: str
  sample:
    - "GPU 0 (NVIDIA H100 80GB HBM3), config 'seed' entry 1: profile '1g.5gb' is not offered by this GPU with driver 550.90.07 (...)"
"""


from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.gpu_inference.plugins.module_utils._mig_layout import ApplyError, LayoutError, apply_layout, load_document_text
from ansible_collections.llmops.gpu_inference.plugins.module_utils._nvidia_smi import NvidiaSmiError, module_runner


def main() -> None:
    module = AnsibleModule(
        argument_spec=dict(
            config=dict(type="dict"),
            config_path=dict(type="path"),
            config_name=dict(type="str", required=True),
            nvidia_smi_path=dict(type="path"),
            reset_ok=dict(type="bool", default=False),
            force=dict(type="bool", default=False),
        ),
        mutually_exclusive=[("config", "config_path")],
        required_one_of=[("config", "config_path")],
        supports_check_mode=True,
    )
    binary, run = module_runner(module)

    try:
        document = module.params["config"]
        if document is None:
            path = module.params["config_path"]
            try:
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
            except OSError as exc:
                module.fail_json(msg=f"Cannot read config_path {path}: {exc.strerror}.")
            document = load_document_text(text, path)
        result = apply_layout(
            binary,
            run,
            document,
            module.params["config_name"],
            reset_ok=module.params["reset_ok"],
            force=module.params["force"],
            check_mode=module.check_mode,
        )
    except LayoutError as exc:
        module.fail_json(msg=str(exc), errors=exc.errors, changed=False)
    except ApplyError as exc:
        for warning in exc.result.get("warnings", []):
            module.warn(warning)
        partial = {key: value for key, value in exc.result.items() if key not in ("diff", "warnings")}
        module.fail_json(msg=str(exc), **partial)
    except NvidiaSmiError as exc:
        module.fail_json(msg=str(exc), changed=False)

    for warning in result.pop("warnings"):
        module.warn(warning)
    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
