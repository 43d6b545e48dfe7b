"""tests/nvidia_smi_sim/install.yml run by ansible-playbook on this machine, into a directory standing in for /."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sim_helpers import SIMULATOR

INSTALL = SIMULATOR.parent / "install.yml"
PLAYBOOK = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) or shutil.which("ansible-playbook")

pytestmark = pytest.mark.skipif(PLAYBOOK is None, reason="ansible-playbook is not installed next to this Python")


def install(root: Path, check: bool = False, **host_vars: object) -> dict[str, int]:
    """Run install.yml on localhost; the recap's counters."""
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)  # as on any host
    playbook = root.parent / "play.yml"
    playbook.write_text(
        f"- hosts: localhost\n  gather_facts: false\n  tasks:\n    - ansible.builtin.include_tasks: {INSTALL}\n",
        encoding="utf-8",
    )
    extra = json.dumps({"nvidia_smi_sim_root": str(root), "ansible_python_interpreter": sys.executable, **host_vars})
    argv = [PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", extra, str(playbook), *(["--check"] if check else [])]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    recap = done.stdout.rsplit("PLAY RECAP", 1)[1].split(":", 1)[1].split()
    return {key: int(value) for key, value in (item.split("=") for item in recap)}


def run_installed(root: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        NVIDIA_SMI_SIM_CONFIG=str(root / "etc/nvidia-smi-sim/config.json"),
        NVIDIA_SMI_SIM_STATE=str(root / "var/lib/nvidia-smi-sim/state.json"),
    )
    return subprocess.run([str(root / "usr/bin/nvidia-smi"), *argv], capture_output=True, text=True, env=env, check=False)


def test_install_copies_the_simulator_writes_its_config_and_resets_the_state_only_on_change(tmp_path):
    root = tmp_path / "root"
    assert install(root, check=True)["failed"] == 0  # a first --check run does not fail
    assert not (root / "usr/bin/nvidia-smi").exists()

    host_vars = {"nvidia_smi_sim_model": "H200", "nvidia_smi_sim_count": 2, "nvidia_smi_sim_extra": {"nvswitch": True}}
    assert install(root, **host_vars)["changed"] > 0
    binary = root / "usr/bin/nvidia-smi"
    source = SIMULATOR.read_text(encoding="utf-8")
    assert binary.read_text(encoding="utf-8") == "#!/usr/bin/python3\n" + source.split("\n", 1)[1]
    assert oct(binary.stat().st_mode & 0o777) == "0o755"
    config = json.loads((root / "etc/nvidia-smi-sim/config.json").read_text(encoding="utf-8"))
    assert config == {"model": "H200", "count": 2, "driver_version": "550.90.07", "nvswitch": True}
    assert run_installed(root, "-i", "0", "-mig", "1").returncode == 0
    state = root / "var/lib/nvidia-smi-sim/state.json"
    assert state.exists()

    assert install(root, **host_vars)["changed"] == 0  # idempotent, and the state stays
    assert run_installed(root, "--query-gpu=mig.mode.current", "--format=csv,noheader").stdout == "Enabled\nDisabled\n"

    install(root, **{**host_vars, "nvidia_smi_sim_extra": {"nvswitch": True, "persistence_mode": True}})
    assert not state.exists()
    assert run_installed(root, "-i", "0", "--query-gpu=mig.mode.current,persistence_mode", "--format=csv,noheader").stdout == "Disabled, Enabled\n"
