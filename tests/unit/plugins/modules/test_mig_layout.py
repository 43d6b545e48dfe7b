"""mig_layout through AnsibleModule: options, check and diff mode, results and failures.

nvidia-smi is the simulator behind a wrapper script that logs every argv, and AnsibleModule.run_command runs it
for real, so these tests see exactly the commands a managed node would run.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from unittest.mock import patch

import pytest
from captures import FIXTURES
from module_harness import run_module

from ansible_collections.llmops.gpu_inference.plugins.module_utils._mig_layout import READ_ONLY
from ansible_collections.llmops.gpu_inference.plugins.modules import mig_layout

SIMULATOR = Path(__file__).resolve().parents[3] / "nvidia_smi_sim" / "nvidia_smi_sim.py"
MIG_PARTED = Path(os.environ.get("MIG_PARTED_FIXTURES", FIXTURES.parent / "mig-parted"))
BALANCED = {"version": "v1", "mig-configs": {"balanced": [{"devices": "all", "mig-enabled": True, "mig-devices": {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}}]}}


class Node:
    """A managed node whose nvidia-smi is the simulator; ``log()`` is every argv it was called with."""

    def __init__(self, directory: Path, monkeypatch: pytest.MonkeyPatch, **config) -> None:
        self.directory = directory
        self.binary = directory / "nvidia-smi"
        self.log_path = directory / "argv.log"
        (directory / "config.json").write_text(json.dumps({"hostname": "node1", **config}), encoding="utf-8")
        self.binary.write_text(f'#!/bin/sh\nprintf \'%s\\n\' "$*" >> "{self.log_path}"\nexec "{sys.executable}" -S "{SIMULATOR}" "$@"\n', encoding="utf-8")
        self.binary.chmod(0o755)
        monkeypatch.setenv("NVIDIA_SMI_SIM_CONFIG", str(directory / "config.json"))
        monkeypatch.setenv("NVIDIA_SMI_SIM_STATE", str(directory / "state.json"))

    def log(self) -> list[list[str]]:
        lines = self.log_path.read_text(encoding="utf-8").splitlines() if self.log_path.exists() else []
        self.log_path.unlink(missing_ok=True)
        return [line.split() for line in lines]

    def mutations(self) -> list[list[str]]:
        return [argv for argv in self.log() if tuple(argv) not in READ_ONLY]

    def run(self, check_mode=False, diff=False, **args):
        args.setdefault("nvidia_smi_path", str(self.binary))
        if diff:
            args["_ansible_diff"] = True
        return run_module(mig_layout.main, args, check_mode=check_mode)


@pytest.fixture
def node(tmp_path, monkeypatch):
    def make(**config) -> Node:
        return Node(tmp_path, monkeypatch, **config)

    return make


def test_check_mode_returns_the_plan_and_runs_no_mutating_command(node):
    n = node(model="H100-80GB", count=2)
    done = n.run(check_mode=True, diff=True, config=BALANCED, config_name="balanced")
    assert not done.failed
    result = done.result
    assert result["changed"] is True and result["commands"] == [] and result["reboot_required"] is False
    assert n.mutations() == []
    assert [(p["index"], p["action"], p["mig_mode"], p["create"]) for p in result["plan"]] == [
        (i, "apply", {"current": "disabled", "pending": "disabled", "wanted": "enabled"}, ["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]) for i in range(2)
    ]
    assert result["diff"]["before"] == "GPU 0 NVIDIA H100 80GB HBM3: MIG disabled\nGPU 1 NVIDIA H100 80GB HBM3: MIG disabled\n"
    assert result["diff"]["after"].startswith("GPU 0 NVIDIA H100 80GB HBM3: MIG enabled\n  1g.10gb\n")


def test_apply_diff_and_an_idempotent_second_run(node):
    n = node(model="H100-80GB", count=2)
    first = n.run(diff=True, config=BALANCED, config_name="balanced")
    assert not first.failed and first.result["changed"] is True
    assert n.mutations() == [
        ["-i", "0", "-mig", "1"],
        ["-i", "1", "-mig", "1"],
        ["mig", "-i", "0", "-cgi", "14,9,19,19", "-C"],
        ["mig", "-i", "1", "-cgi", "14,9,19,19", "-C"],
    ]
    assert first.result["commands"] == [f"{n.binary} -i 0 -mig 1", f"{n.binary} -i 1 -mig 1"] + [f"{n.binary} mig -i {i} -cgi 14,9,19,19 -C" for i in range(2)]
    assert first.result["diff"]["after"] == (
        "GPU 0 NVIDIA H100 80GB HBM3: MIG enabled\n  2g.20gb at 0:2\n  1g.10gb at 2:1\n  1g.10gb at 3:1\n  3g.40gb at 4:4\n"
        "GPU 1 NVIDIA H100 80GB HBM3: MIG enabled\n  2g.20gb at 0:2\n  1g.10gb at 2:1\n  1g.10gb at 3:1\n  3g.40gb at 4:4\n"
    )
    second = n.run(config=BALANCED, config_name="balanced")
    assert (second.failed, second.result["changed"], second.result["commands"]) == (False, False, [])
    assert "diff" not in second.result  # only in diff mode
    assert n.mutations() == []
    check = n.run(check_mode=True, config=BALANCED, config_name="balanced")
    assert check.result["changed"] is False


def test_every_command_is_an_argv_list_in_the_c_locale(node):
    n = node(model="H100-80GB", count=1)
    seen = []
    real = mig_layout.AnsibleModule.run_command

    def recording(self, args, **kwargs):
        seen.append((args, kwargs.get("environ_update")))
        return real(self, args, **kwargs)

    with patch.object(mig_layout.AnsibleModule, "run_command", recording):
        assert not n.run(config=BALANCED, config_name="balanced").failed
    assert seen and all(isinstance(args, list) and env == {"LC_ALL": "C"} for args, env in seen)
    assert [args[1:] for args, _env in seen][:2] == [["-q", "-x"], ["-i", "0", "-mig", "1"]]


def test_real_mig_parted_file_from_config_path(node):
    if not MIG_PARTED.is_dir():
        pytest.skip(f"real mig-parted layouts not found at {MIG_PARTED} (set MIG_PARTED_FIXTURES)")
    n = node(model="A100-SXM4-40GB", count=8, mig_enabled=[0, 1, 2, 3, 4, 5, 6, 7])
    done = n.run(config_path=str(MIG_PARTED / "examples-config.yaml"), config_name="custom-config")
    assert not done.failed, done.result["msg"]
    plan = {p["index"]: p for p in done.result["plan"]}
    assert [plan[i]["mig_mode"]["wanted"] for i in range(8)] == ["disabled"] * 4 + ["enabled"] * 4
    assert plan[4]["create"] == ["1g.5gb"] * 7 and plan[6]["create"] == ["3g.20gb", "3g.20gb"]
    assert [argv for argv in n.mutations() if "-mig" in argv] == [["-i", str(i), "-mig", "0"] for i in range(4)]
    again = n.run(config_path=str(MIG_PARTED / "examples-config.yaml"), config_name="custom-config")
    assert again.result["changed"] is False


def test_invalid_document_fails_with_every_error_and_changes_nothing(node):
    n = node(model="H100-80GB", count=1)
    document = {"version": "v1", "mig-configs": {"x": [{"devices": "all", "mig-enabled": "yes", "mig-device": {}}]}}
    done = n.run(config=document, config_name="x")
    assert done.failed and done.result["changed"] is False
    assert done.result["errors"] == [
        "config 'x' entry 1: unexpected field 'mig-device' (allowed: device-filter, devices, mig-enabled, mig-devices)",
        "config 'x' entry 1, field 'mig-enabled': must be true or false, got \"yes\"",
    ]
    assert done.result["msg"].startswith("The MIG layout document is invalid: (1) config 'x' entry 1: unexpected field")
    assert n.log() == []  # the document is checked before nvidia-smi runs


def test_a_layout_that_does_not_fit_fails_before_any_change(node):
    n = node(model="H100-80GB", count=2, mig_enabled=[0, 1])
    seed = {"version": "v1", "mig-configs": {"seed": [{"devices": "all", "mig-enabled": True, "mig-devices": {"1g.5gb": 7}}]}}
    done = n.run(config=seed, config_name="seed")
    assert done.failed and done.result["changed"] is False
    assert [e.split(": profile")[0] for e in done.result["errors"]] == [f"GPU {i} (NVIDIA H100 80GB HBM3), config 'seed' entry 1" for i in range(2)]
    assert all("'1g.5gb' is not offered by this GPU with driver 550.90.07" in e for e in done.result["errors"])
    assert n.mutations() == []


def test_missing_reset_ok_fails_naming_the_variables(node):
    n = node(model="H100-80GB", count=1, persistence_mode=True)
    done = n.run(config=BALANCED, config_name="balanced")
    assert done.failed
    assert "set reset_ok: true (role variable gpu_node_mig_reset_ok)" in done.result["msg"]
    assert "gpu_node_reboot_ok" in done.result["msg"]
    assert (done.result["changed"], done.result["reboot_required"]) == (True, True)
    assert done.result["commands"] == [f"{n.binary} -i 0 -mig 1"]
    assert "diff" not in done.result and "warnings" not in done.result


def test_processes_are_named_and_force_hands_the_refusal_to_the_driver(node):
    n = node(
        model="A100-SXM4-80GB",
        count=1,
        mig_enabled=[0],
        mig_layout={"0": ["3g.40gb", "3g.40gb"]},
        processes=[{"gpu": 0, "pid": 777, "name": "vllm", "gi": 1}],
    )
    document = {"version": "v1", "mig-configs": {"c": [{"devices": "all", "mig-enabled": True, "mig-devices": {"7g.80gb": 1}}]}}
    done = n.run(config=document, config_name="c")
    assert done.failed and done.result["changed"] is False
    assert "pid 777 (vllm); stop them (drain the node) or set force: true" in done.result["msg"]
    assert n.mutations() == []
    forced = n.run(config=document, config_name="c", force=True)
    assert forced.failed and forced.result["changed"] is True
    assert "'nvidia-smi" not in forced.result["msg"]  # the command is named by the path that ran
    assert f"GPU 0 (NVIDIA A100-SXM4-80GB): '{n.binary} mig -i 0 -dci -gi 1,2' failed with exit code 255" in forced.result["msg"]
    assert "In use by another client" in forced.result["msg"]
    assert forced.result["plan"][0]["destroy"] == ["3g.40gb", "3g.40gb"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"config_name": "x"}, "one of the following is required: config, config_path"),
        ({"config_name": "x", "config": BALANCED, "config_path": "/x.yaml"}, "parameters are mutually exclusive: config|config_path"),
        ({"config": BALANCED}, "missing required arguments: config_name"),
    ],
)
def test_option_rules(node, args, message):
    n = node(model="H100-80GB", count=1)
    done = n.run(**args)
    assert done.failed and message in done.result["msg"]
    assert n.log() == []


def test_unreadable_config_path_and_unknown_config_name(node, tmp_path):
    n = node(model="H100-80GB", count=1)
    done = n.run(config_path=str(tmp_path / "absent.yaml"), config_name="x")
    assert done.failed and done.result["msg"] == f"Cannot read config_path {tmp_path / 'absent.yaml'}: No such file or directory."
    done = n.run(config=BALANCED, config_name="all-balanced")
    assert done.failed and done.result["errors"] == ["config_name 'all-balanced' is not in mig-configs; the document has balanced"]


def test_nvidia_smi_missing_or_not_executable(node, tmp_path):
    n = node(model="H100-80GB", count=1)
    with patch.object(mig_layout.AnsibleModule, "get_bin_path", return_value=None):
        done = run_module(mig_layout.main, {"config": BALANCED, "config_name": "balanced"})
    assert done.failed and "is the NVIDIA driver installed" in done.result["msg"]
    done = n.run(config=BALANCED, config_name="balanced", nvidia_smi_path=str(tmp_path / "absent"))
    assert done.failed and done.result["msg"] == f"nvidia_smi_path {tmp_path / 'absent'} does not exist or is not executable."


def test_driver_not_loaded_is_a_sentence(node):
    n = node(model="H100-80GB", count=1, driver_loaded=False)
    done = n.run(config=BALANCED, config_name="balanced")
    assert done.failed and done.result["changed"] is False
    assert done.result["msg"].startswith("nvidia-smi could not talk to the NVIDIA driver")
