"""Check a gpu_operator render directory on the controller: every values key exists in the chart version's key list
(../shared/schemas/gpu-operator), and every ConfigMap passes the Kubernetes schemas (tests/unit/k8s_schemas.py).

Usage: check_render.py RENDER_DIR CHART_VERSION. Prints a JSON summary; exits 1 listing every problem.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
sys.path[:0] = [str(REPO / "tests" / "unit"), str(REPO / ".build" / "collections")]

import k8s_schemas  # noqa: E402

from ansible_collections.llmops.gpu_inference.plugins.module_utils._gpu_operator import value_paths  # noqa: E402


def main() -> int:
    render, version = Path(sys.argv[1]), sys.argv[2]
    key_file = k8s_schemas.CRD_SCHEMAS / "gpu-operator" / f"gpu-operator-values-keys-{version}.yaml"
    keys = yaml.safe_load(key_file.read_text())["keys"]
    values = yaml.safe_load((render / "values.yaml").read_text())
    paths = value_paths(values, keys)
    problems = [f"values.yaml sets {path}, which chart {version} does not have" for path in paths if path not in keys]
    maps = [yaml.safe_load(path.read_text()) for path in sorted(render.glob("configmap-*.yaml"))]
    for cm in maps:
        problems += [f"{cm['metadata']['name']}: {p}" for p in k8s_schemas.problems(cm)]
    print(json.dumps({"keys_checked": len(paths), "config_maps": [cm["metadata"]["name"] for cm in maps], "problems": problems}))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
