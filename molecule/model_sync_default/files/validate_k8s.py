"""Validate the Kubernetes objects model_sync rendered, strictly, against Kubernetes 1.31 and the newest schemas.

There is no API server in the test environment: kubernetes-validate's JSON schemas (strict: no unknown
field) stand in for it. Prints {"objects": [...], "versions": [...], "problems": [...]} and exits 1 on a problem.

    validate_k8s.py DIR     every *.yaml file in DIR, every document in it
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import kubernetes_validate
import yaml
from kubernetes_validate.utils import latest_version

VERSIONS = ["1.31.0", latest_version()]


def main() -> int:
    objects, problems = [], []
    for path in sorted(Path(sys.argv[1]).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            objects.append(f"{doc['kind']}/{doc['metadata']['name']}")
            for version in VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
                    problems.append(f"{path.name} (Kubernetes {version}): {getattr(exc, 'message', exc)}")
    print(json.dumps({"objects": objects, "versions": VERSIONS, "problems": problems}))
    return 1 if problems or not objects else 0


if __name__ == "__main__":
    sys.exit(main())
