"""Fixtures for the nvidia-smi simulator tests: the simulator module and a ``sim`` host that runs it in-process."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from sim_helpers import Sim, load_simulator


@pytest.fixture(scope="session")
def simulator() -> ModuleType:
    return load_simulator()


@pytest.fixture
def sim(simulator: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Sim:
    return Sim(simulator, tmp_path, monkeypatch)


@pytest.fixture
def make_sim(simulator: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Several hosts in one test: each ``make_sim("h1")`` has its own config and state files."""

    def make(name: str) -> Sim:
        directory = tmp_path / name
        directory.mkdir()
        return Sim(simulator, directory, monkeypatch)

    return make
