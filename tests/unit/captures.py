"""Where the real nvidia-smi captures live (importable as `captures`: pyproject puts tests/unit on the path).

The captures are read from ../shared/fixtures/nvidia-smi (override with NVIDIA_SMI_FIXTURES) and are never
copied into this repository. Tests that need them skip, saying why, only where that folder is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("NVIDIA_SMI_FIXTURES", REPO_ROOT.parent / "shared" / "fixtures" / "nvidia-smi"))


def read_capture(name: str) -> str:
    """Text of one real capture; skips the test when the shared fixtures folder is absent."""
    if not FIXTURES.is_dir():
        pytest.skip(f"real nvidia-smi captures not found at {FIXTURES} (set NVIDIA_SMI_FIXTURES)")
    return (FIXTURES / name).read_text(encoding="utf-8")


def all_captures(pattern: str) -> list[str]:
    """Names of the captures matching ``pattern`` (empty when the folder is absent: the test then skips)."""
    return sorted(path.name for path in FIXTURES.glob(pattern)) if FIXTURES.is_dir() else []
