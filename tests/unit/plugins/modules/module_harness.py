"""Run an Ansible module's main() in-process, the way community.general's tests do.

Arguments go in through ``basic._ANSIBLE_ARGS`` inside a context manager (never a global assignment);
exit_json/fail_json raise so the test gets the result dict back.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from unittest.mock import patch

import yaml
from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes


class ModuleExit(Exception):
    def __init__(self, result, failed):
        super().__init__(result.get("msg", ""))
        self.result = result
        self.failed = failed


def _exit_json(self, **kwargs):
    raise ModuleExit(kwargs, failed=False)


def _fail_json(self, msg, **kwargs):
    raise ModuleExit(dict(kwargs, msg=msg, failed=True), failed=True)


@contextmanager
def module_args(args, check_mode=False):
    payload = dict(args, _ansible_check_mode=check_mode, _ansible_remote_tmp="/tmp", _ansible_keep_remote_files=False)
    with (
        patch.object(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": payload}))),
        # ansible-core 2.19+ also wants the serialization profile the controller would send.
        patch.object(basic, "_ANSIBLE_PROFILE", "legacy"),
        patch.object(basic.AnsibleModule, "exit_json", _exit_json),
        patch.object(basic.AnsibleModule, "fail_json", _fail_json),
    ):
        yield


def run_module(main, args, check_mode=False):
    """Call ``main`` with ``args``; return ``ModuleExit`` (``.result``, ``.failed``, and ``.warned``: the
    warnings the module emitted through AnsibleModule.warn, recorded instead of added to the result)."""
    warned = []
    with module_args(args, check_mode=check_mode), patch.object(basic.AnsibleModule, "warn", lambda self, warning: warned.append(warning)):
        try:
            main()
        except ModuleExit as done:
            done.warned = warned
            return done
    raise AssertionError("the module returned without calling exit_json or fail_json")


def assert_options_documented(documentation: str, argument_spec: dict) -> None:
    """Every option of ``argument_spec`` is documented with the same type, default, choices, elements and
    required flag, and a description; and nothing else is documented."""
    documented = yaml.safe_load(documentation)["options"]
    assert set(documented) == set(argument_spec)
    for name, arg in argument_spec.items():
        doc = documented[name]
        assert doc["type"] == arg["type"], name
        for field in ("default", "choices", "elements"):
            assert doc.get(field) == arg.get(field), (name, field)
        assert doc.get("required", False) == arg.get("required", False), name
        assert doc["description"], name
