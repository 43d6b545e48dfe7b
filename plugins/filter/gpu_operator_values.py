# Copyright: (c) 2026, llmops.gpu_inference contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the gpu_operator role: the helm values and ConfigMaps, the helm/kubernetes.core check, the verification."""

from __future__ import annotations

from typing import Any

import yaml
from ansible.errors import AnsibleFilterError
from ansible.parsing.yaml.dumper import AnsibleDumper

from ansible_collections.llmops.gpu_inference.plugins.module_utils._gpu_operator import (
    GpuOperatorError,
    build,
    node_inputs,
    tool_check,
    verify_problems,
)

DOCUMENTATION = r"""
name: gpu_operator_values
short_description: Build the NVIDIA GPU Operator helm values and ConfigMaps from the gpu_operator role's inputs
version_added: 0.2.0
description:
  - Turns the role's inputs, the GPU nodes' C(ansible_facts.nvidia) and MIG layouts (from C(hostvars)) and the role's
    per-chart-version key table into the helm C(release_values), the MIG manager's mig-parted ConfigMap and the device
    plugin's time-slicing ConfigMap, and what every GPU node must advertise afterwards.
  - C(driver_enabled=auto) installs the operator's driver only when no GPU node has a working host driver; a fleet with
    both fails. Every key the role sets must be in the table for the chart version, and every key of C(values_overrides)
    must exist in the chart's C(values.yaml) (given as O(chart_values)) or, without it, in the table.
  - Fails listing every problem; the role calls it before anything changes, in apply and render mode alike.
options:
  _input:
    description: The role's inputs without their C(gpu_operator_) prefix (the role's C(__gpu_operator_spec)).
    type: dict
    required: true
  charts:
    description: The role's table C(__gpu_operator_charts) (chart version -> C(keys), C(repositories), C(pull_secret_components)).
    type: dict
    required: true
  hostvars:
    description: C(hostvars); of each GPU node it reads C(ansible_facts.nvidia), C(nvidia_smi_error), C(gpu_node_mig_configs), C(gpu_node_mig_config).
    type: dict
    required: true
  hosts:
    description: The GPU nodes' inventory names.
    type: list
    elements: str
    required: true
  node_names:
    description: Kubernetes node name by inventory name, where they differ.
    type: dict
    default: {}
  chart_values:
    description: The chart's own C(values.yaml), parsed; every override key is checked against it.
    type: dict
author:
  - llmops.gpu_inference maintainers (@llmops)
"""

EXAMPLES = r"""
- name: Build the release values
  ansible.builtin.set_fact:
    __gpu_operator_release: >-
      {{ __gpu_operator_spec | llmops.gpu_inference.gpu_operator_values(__gpu_operator_charts, hostvars,
         query('ansible.builtin.inventory_hostnames', gpu_operator_gpu_nodes)) }}
"""

RETURN = r"""
_value:
  description: The release.
  type: dict
  contains:
    chart_version:
      description: The chart version the values are for.
      type: str
      sample: v26.7.0
    values:
      description: The helm values (native types).
      type: dict
    config_maps:
      description: The ConfigMaps the values point at (MIG manager config, device plugin config).
      type: list
      elements: dict
    driver_enabled:
      description: Whether the operator installs the driver.
      type: bool
    nodes:
      description:
        - Per GPU node C(host), C(node_name), C(mig_config) (the C(nvidia.com/mig.config) label to set, or null),
          C(mig_layout_applied) (the GPUs already hold it) and C(expected) (GPU resources it must advertise).
      type: list
      elements: dict
"""


def _dump(document: Any) -> str:
    return yaml.dump(document, Dumper=AnsibleDumper, sort_keys=False, default_flow_style=False)


def gpu_operator_values(spec, charts, hostvars, hosts, *, node_names=None, chart_values=None):
    """The release values, ConfigMaps and node expectations (see DOCUMENTATION)."""
    for name, value in (("_input", spec), ("charts", charts)):
        if not isinstance(value, dict):
            raise AnsibleFilterError(f"gpu_operator_values: {name} must be a dict, got {type(value).__name__}")
    try:
        nodes = node_inputs(hostvars, list(hosts), dict(node_names or {}))
        return build(spec, charts, nodes, chart_values=chart_values, dump=_dump)
    except GpuOperatorError as exc:
        raise AnsibleFilterError(str(exc)) from None


def gpu_operator_tools(helm_short, kubernetes_core_version):
    """Parse ``helm version --short`` and judge it with the kubernetes.core version (see gpu_operator_tools.yml)."""
    return tool_check(str(helm_short), kubernetes_core_version)


def gpu_operator_verify(resources, kind, expected=None):
    """Problems left after an install: pods, clusterpolicy or nodes (see gpu_operator_verify.yml)."""
    try:
        return verify_problems(kind, list(resources or []), list(expected or []))
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from None


class FilterModule:
    """The gpu_operator role's filters."""

    def filters(self):
        return {
            "gpu_operator_values": gpu_operator_values,
            "gpu_operator_tools": gpu_operator_tools,
            "gpu_operator_verify": gpu_operator_verify,
        }
