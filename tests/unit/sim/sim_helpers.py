"""Helpers for the nvidia-smi simulator tests (importable as ``sim_helpers``: pytest puts this folder on the path).

The simulator is one file meant to be installed as /usr/bin/nvidia-smi, not a package: it is loaded
from its path. A ``Sim`` runs its ``main()`` in-process with its own config and state files.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import pytest

SIMULATOR = Path(__file__).resolve().parents[2] / "nvidia_smi_sim" / "nvidia_smi_sim.py"


def load_simulator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nvidia_smi_sim", SIMULATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["nvidia_smi_sim"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


class Result(NamedTuple):
    rc: int
    out: str
    err: str


class Sim:
    """One simulated host: ``configure(**keys)`` writes its config, calling it runs one nvidia-smi command."""

    def __init__(self, module: ModuleType, directory: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.module = module
        self.config_path = directory / "config.json"
        self.state_path = directory / "state.json"
        self.monkeypatch = monkeypatch

    def configure(self, **config: Any) -> Sim:
        config.setdefault("hostname", "testhost")
        self.config_path.write_text(json.dumps(config), encoding="utf-8")
        return self

    def __call__(self, *argv: str) -> Result:
        self.monkeypatch.setenv("NVIDIA_SMI_SIM_CONFIG", str(self.config_path))
        self.monkeypatch.setenv("NVIDIA_SMI_SIM_STATE", str(self.state_path))
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = self.module.main(list(argv))
        return Result(rc, out.getvalue(), err.getvalue())

    def ok(self, *argv: str) -> str:
        """Run a command that must succeed; its stdout."""
        result = self(*argv)
        assert result.rc == 0, result
        return result.out

    def query(self, fields: str, gpu: int = 0) -> list[str]:
        """``--query-gpu`` values of one GPU, without header and units."""
        return self.ok("-i", str(gpu), f"--query-gpu={fields}", "--format=csv,noheader,nounits").strip().split(", ")

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_path.read_text(encoding="utf-8"))
