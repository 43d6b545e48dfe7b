# Copyright: (c) 2026, llmops.gpu_inference contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The option of every module that runs nvidia-smi (module_utils/_nvidia_smi.py finds it).
    DOCUMENTATION = r"""
options:
  nvidia_smi_path:
    description:
      - Path to the nvidia-smi binary.
      - When not set, nvidia-smi is looked up on E(PATH) and in the usual system directories.
    type: path
"""
