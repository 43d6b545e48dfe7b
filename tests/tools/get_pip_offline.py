"""Stand-in for the pip bootstrap script ansible-test downloads from its own CI file host.

That host is not reachable from the machines this collection is tested on. ansible-test runs the
file at ~/.ansible/test/cache/get_pip_<version>.py as __main__ inside each new virtual environment,
with pip-install arguments (the pinned pip and friends, plus --no-setuptools/--no-wheel, which only
get-pip.py knows). This does the same with the standard library's ensurepip and the package index.
"""

from __future__ import annotations

import ensurepip
import subprocess
import sys


def main() -> None:
    args = [arg for arg in sys.argv[1:] if arg not in ("--no-setuptools", "--no-wheel")]
    ensurepip.bootstrap(upgrade=True)
    raise SystemExit(subprocess.call([sys.executable, "-m", "pip", "install", *args]))


if __name__ == "__main__":
    main()
