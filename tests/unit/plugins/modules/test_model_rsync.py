"""model_rsync through AnsibleModule: input checks, check mode, dry runs and results, with the real rsync."""

from __future__ import annotations

import shutil

import pytest
import yaml
from module_harness import assert_options_documented, run_module

from ansible_collections.llmops.gpu_inference.plugins.module_utils import _model_rsync
from ansible_collections.llmops.gpu_inference.plugins.modules import model_rsync

pytestmark = pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed (make host-deps installs it)")
RETURNED = yaml.safe_load(model_rsync.RETURN)


@pytest.fixture
def src(tmp_path, monkeypatch):
    monkeypatch.setattr(_model_rsync, "STREAM_MIN_BYTES", 1000)
    root = tmp_path / "src"
    root.mkdir()
    for index, size in enumerate([4000, 3000, 2000, 200]):
        (root / f"model-{index}.safetensors").write_bytes(bytes([index]) * size)
    return root


def run(args, check_mode=False):
    return run_module(model_rsync.main, args, check_mode=check_mode)


def test_options_documented():
    assert_options_documented(model_rsync.DOCUMENTATION, model_rsync.ARGUMENT_SPEC)


def test_copy_returns_every_documented_key(src, tmp_path):
    done = run({"src": str(src), "dest": str(tmp_path / "dest"), "streams": 2})
    assert not done.failed, done.result
    assert done.result["changed"]
    assert done.result["streams"] == 2
    assert set(RETURNED) <= set(done.result)
    assert sorted(path.name for path in (tmp_path / "dest").iterdir()) == sorted(path.name for path in src.iterdir())
    again = run({"src": str(src), "dest": str(tmp_path / "dest"), "streams": 2})
    assert not again.result["changed"]


def test_check_mode_lists_what_would_change_and_copies_nothing(src, tmp_path):
    done = run({"src": str(src), "dest": str(tmp_path / "dest"), "streams": 2}, check_mode=True)
    assert done.result["changed"]
    assert done.result["dry_run"]
    assert len(done.result["changes"]) == 6  # the destination made, its attributes, four files
    assert not (tmp_path / "dest").exists()


def test_a_dry_run_compares_and_reports_no_change(src, tmp_path):
    done = run({"src": str(src), "dest": str(tmp_path / "dest"), "dry_run": True})
    assert not done.result["changed"]
    assert len(done.result["changes"]) == 6
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"streams": 0}, "streams must be 1 or more, not 0"),
        ({"timeout": -5}, "timeout must be 0 (no limit) or more seconds, not -5"),
        ({"dest": "store::models/m"}, "is an rsync daemon address"),
        ({"dest": "rsync://store/models/m"}, "is an rsync daemon address"),
        ({"src": "/nonexistent/model"}, "src /nonexistent/model is not a directory on this host"),
    ],
)
def test_bad_input_fails_before_any_copy(src, tmp_path, args, message):
    done = run(dict({"src": str(src), "dest": str(tmp_path / "dest")}, **args))
    assert done.failed
    assert message in done.result["msg"]
    assert not (tmp_path / "dest").exists()


def test_a_failed_rsync_is_a_sentence_not_a_traceback(src, tmp_path):
    done = run({"src": str(src), "dest": "root@store.example:/srv/models/m", "rsh": "false"})
    assert done.failed
    assert "failed with exit code" in done.result["msg"]
