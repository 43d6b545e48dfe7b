"""nvidia_smi_facts through AnsibleModule: argv, environment, facts and failures."""

from __future__ import annotations

from unittest.mock import patch

import pytest
from captures import read_capture
from module_harness import run_module

from ansible_collections.llmops.gpu_inference.plugins.modules import nvidia_smi_facts


class RunCommand:
    """Stands in for AnsibleModule.run_command: answers by argv and records argv and environment."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, args, environ_update=None, **kwargs):
        self.calls.append((list(args), environ_update))
        return self.answers[" ".join(args[1:])]


def run(args, answers, bin_path="/usr/bin/nvidia-smi", check_mode=False):
    fake = RunCommand(answers)
    with (
        patch.object(nvidia_smi_facts.AnsibleModule, "run_command", fake),
        patch.object(nvidia_smi_facts.AnsibleModule, "get_bin_path", return_value=bin_path),
    ):
        return run_module(nvidia_smi_facts.main, args, check_mode=check_mode), fake


@pytest.mark.parametrize("check_mode", [False, True])
def test_sets_facts_and_never_changes(check_mode):
    done, fake = run({}, {"-q -x": (0, read_capture("telegraf-tesla-t4-q-x.xml"), "")}, check_mode=check_mode)
    assert not done.failed
    assert done.result["changed"] is False
    nvidia = done.result["ansible_facts"]["nvidia"]
    assert (nvidia["driver_version"], nvidia["gpu_count"], nvidia["gpus"][0]["name"]) == ("515.105.01", 1, "Tesla T4")
    # One call, an argv list (no shell), in the C locale so numbers and messages are not localised.
    assert fake.calls == [(["/usr/bin/nvidia-smi", "-q", "-x"], {"LC_ALL": "C"})]


def test_nvidia_smi_path_is_used_as_given(tmp_path):
    binary = tmp_path / "nvidia-smi"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    done, fake = run({"nvidia_smi_path": str(binary)}, {"-q -x": (0, read_capture("telegraf-a10g-q-x.xml"), "")}, bin_path=None)
    assert not done.failed
    assert fake.calls[0][0][0] == str(binary)


def test_missing_binary_fails_with_advice():
    done, fake = run({}, {}, bin_path=None)
    assert done.failed and "is the NVIDIA driver installed" in done.result["msg"]
    assert fake.calls == []


def test_nvidia_smi_path_that_does_not_exist_fails_before_running(tmp_path):
    done, fake = run({"nvidia_smi_path": str(tmp_path / "absent")}, {})
    assert done.failed and "does not exist or is not executable" in done.result["msg"]
    assert fake.calls == []


def test_driver_not_loaded_is_a_sentence_not_a_traceback():
    text = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n"
    done = run({}, {"-q -x": (9, text, "")})[0]
    assert done.failed
    assert done.result["msg"].startswith("nvidia-smi could not talk to the NVIDIA driver")


def test_truncated_output_fails_clearly():
    text = read_capture("telegraf-tesla-t4-q-x.xml")[:5000]
    done = run({}, {"-q -x": (0, text, "")})[0]
    assert done.failed and "may have been truncated" in done.result["msg"]
