"""Validate every Kubernetes object in YAML files the way the API server would (tests/unit/k8s_schemas.py).

Usage: validate_manifests.py PATH...   (a file, or a directory whose *.yaml files are read)
Prints one line per file with the kinds it holds; exits 1 listing every problem of every object.
Used by molecule scenarios on what the roles render (vllm_render_dir, gpu_operator_render_dir, ...).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

import k8s_schemas  # found through the path set above


def manifests(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        files.extend(sorted(path.glob("*.yaml")) if path.is_dir() else [path])
    return files


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    failures: list[str] = []
    total = 0
    for path in manifests(argv):
        objects = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
        total += len(objects)
        print(f"{path.name}: {', '.join(obj.get('kind', '?') for obj in objects) or 'no objects'}")
        for obj in objects:
            where = f"{path.name}: {obj.get('kind', '?')} {obj.get('metadata', {}).get('name', '?')}"
            failures.extend(f"{where}: {problem}" for problem in k8s_schemas.problems(obj))
    if failures:
        print("\n".join(failures), file=sys.stderr)
        return 1
    print(f"{total} objects valid")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
