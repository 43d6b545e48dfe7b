# Copyright: (c) 2026, llmops.gpu_inference contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filter ``llmops.gpu_inference.vllm_manifests``: the vLLM objects of every model (docs: vllm_manifests.yml).

A thin wrapper: the work is done by ``plugins/module_utils/_vllm_manifests.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.llmops.gpu_inference.plugins.module_utils._vllm_manifests import VllmRenderError, render


def plain(value: Any) -> Any:
    """``value`` as plain Python data: Ansible passes lazily templated containers, whose deep copies (the core
    copies settings it merges) cost far more than the render itself."""
    if isinstance(value, Mapping):
        return {key if isinstance(key, (str, int)) else str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def vllm_manifests(models: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    """``render(models, config)``; every problem of every entry in one AnsibleFilterError."""
    try:
        return render(plain(models), plain(config))
    except VllmRenderError as exc:
        raise AnsibleFilterError(f"vllm_manifests: {len(exc.problems)} problem(s) in vllm_models / the vllm_ variables:\n{exc}") from exc


class FilterModule:
    """The vllm_manifests filter."""

    def filters(self) -> dict[str, Any]:
        return {"vllm_manifests": vllm_manifests}
