"""The model_rsync core against the real rsync: streams, their split, and a result equal to one rsync's.

Remote copies go through a stand-in for ssh that runs the remote command on this machine with sh,
as sshd does with the login shell, so the ``--rsync-path`` each stream uses is run for real.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ansible_collections.llmops.gpu_inference.plugins.module_utils import _model_rsync
from ansible_collections.llmops.gpu_inference.plugins.module_utils._model_rsync import RsyncError, excluded, large_files, partition

pytestmark = pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed (make host-deps installs it)")
MIB = 1024 * 1024
FILES = {
    "config.json": 300,
    "model-00001-of-00004.safetensors": 5000,
    "model-00002-of-00004.safetensors": 4000,
    "model-00003-of-00004.safetensors": 3500,
    "model-00004-of-00004.safetensors": 1500,
    "original/consolidated.pth": 2500,
    "tokenizer.json": 700,
    ".cache/huggingface/blob": 9000,
}


@pytest.fixture(autouse=True)
def small_streams(monkeypatch):
    """A stream's minimum scaled down so a test model of a few KiB splits like a 4 GiB one."""
    monkeypatch.setattr(_model_rsync, "STREAM_MIN_BYTES", 1000)


@pytest.fixture
def fake_ssh(tmp_path):
    """``ssh [-l user] host cmd...``: runs ``cmd`` here through sh, as sshd runs it through the login shell."""
    path = tmp_path / "fake-ssh"
    path.write_text('#!/bin/sh\nwhile [ "$#" -gt 0 ]; do case "$1" in -l) shift 2;; -*) shift;; *) break;; esac; done\nshift\nexec sh -c "$*"\n')
    path.chmod(0o755)
    return str(path)


def run_at_once(argvs):
    """What the module hands the core (run_command in threads), with subprocess."""

    def run(argv):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        return done.returncode, done.stdout, done.stderr

    with ThreadPoolExecutor(max_workers=len(argvs)) as pool:
        return list(pool.map(run, argvs))


def transfer(arguments):
    return _model_rsync.transfer(arguments, run_at_once)


def make_tree(root, files=None, seed=0):
    for name, size in (files or FILES).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes((index * 7 + seed + len(name)) % 251 for index in range(size)))
        os.utime(path, (1700000000, 1700000000))
    return root


def snapshot(root):
    """Every path below root with its type, mode, size, mtime and content."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            content = open(path, "rb").read() if stat.S_ISREG(info.st_mode) else None  # noqa: SIM115
            mtime = int(info.st_mtime) if stat.S_ISREG(info.st_mode) else None
            found[os.path.relpath(path, root)] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), info.st_size, mtime, content)
    return found


def params(src, dest, **extra):
    return dict({"src": str(src), "dest": str(dest), "excludes": ["/.cache/"], "chmod": "D0755,F0644"}, **extra)


def single_rsync(src, dest):
    """What the module's copy must equal: one rsync with the same options."""
    argv = [*_model_rsync.base_command(params(src, dest)), "--delete", *_model_rsync.endpoints(params(src, dest))]
    subprocess.run(argv, check=True, capture_output=True)


# ------------------------------------------------------------------------------------------------
# The split
# ------------------------------------------------------------------------------------------------


def test_partition_balances_largest_first():
    files = [(5000, "a"), (4000, "b"), (3500, "c"), (1500, "d"), (2500, "e")]
    plan = partition(files, 2)
    sizes = [sum(size for size, name in files if name in paths) for paths in plan]
    # LPT: 5000 and 4000 apart, 3500 joins 4000, 2500 joins 5000, 1500 the first of the tied two.
    assert sorted(sizes) == [7500, 9000]
    assert sorted(name for paths in plan for name in paths) == ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize(
    ("files", "streams", "count"),
    [
        ([(5000, "a"), (4000, "b"), (3000, "c")], 8, 3),  # no more streams than files
        ([(1000, "a"), (1000, "b"), (1000, "c")], 4, 3),
        ([(1500, "a"), (1000, "b")], 4, 2),  # 2500 bytes: two streams of at least 1000
        ([(1200, "a"), (1000, "b"), (1000, "c")], 4, 3),
        ([(9000, "a")], 4, 0),  # one file: one rsync
        ([(1000, "a"), (900, "b")], 4, 0),  # 1900 bytes: less than two streams' worth
        ([(5000, "a"), (4000, "b")], 1, 0),
        ([], 4, 0),
    ],
)
def test_partition_stream_count(files, streams, count):
    assert len(partition(files, streams)) == count


@pytest.mark.parametrize(
    ("path", "is_dir", "patterns", "expected"),
    [
        (".git", True, ["/.git/"], True),
        (".git", False, ["/.git/"], False),  # a dir pattern never matches a file
        ("sub/.git", True, ["/.git/"], False),  # anchored at the top
        ("sub/.git", True, [".git/"], True),  # unanchored: at any depth
        ("a.bin", False, ["*.bin"], True),
        ("sub/a.bin", False, ["*.bin"], True),
        ("sub/a.bin", False, ["sub/*.bin"], True),
        ("x/sub/a.bin", False, ["sub/*.bin"], True),
        ("x/sub/a.bin", False, ["/sub/*.bin"], False),
        (".sha256sums", False, ["/.sha256sums"], True),
        ("model.safetensors", False, ["/.git/", "/.cache/"], False),
    ],
)
def test_excluded(path, is_dir, patterns, expected):
    assert excluded(path, is_dir, patterns) is expected


def test_large_files_follow_links_and_skip_excluded(tmp_path):
    src = make_tree(tmp_path / "src")
    (tmp_path / "blob").write_bytes(b"x" * 6000)
    (src / "linked.safetensors").symlink_to(tmp_path / "blob")
    (src / "dangling.safetensors").symlink_to(tmp_path / "missing")
    found = dict((path, size) for size, path in large_files(str(src), ["/.cache/"]))
    assert found == {
        "model-00001-of-00004.safetensors": 5000,
        "model-00002-of-00004.safetensors": 4000,
        "model-00003-of-00004.safetensors": 3500,
        "model-00004-of-00004.safetensors": 1500,
        "original/consolidated.pth": 2500,
        "linked.safetensors": 6000,
    }


# ------------------------------------------------------------------------------------------------
# Copies
# ------------------------------------------------------------------------------------------------


def test_streams_make_what_one_rsync_makes(tmp_path):
    src = make_tree(tmp_path / "src")
    expected_dest = tmp_path / "expected"
    single_rsync(src, expected_dest)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "stale.bin").write_bytes(b"old")
    (dest / ".model-00002-of-00004.safetensors.Ab12Cd").write_bytes(b"left by a crashed rsync")

    result = transfer(params(src, dest, streams=3))

    assert result["streams"] == 3
    assert len(result["commands"]) == 4  # three streams, then the pass that deletes
    assert snapshot(dest) == snapshot(expected_dest)
    assert not (dest / ".cache").exists()
    assert "*deleting   stale.bin" in result["changes"]
    assert any(line.endswith(" model-00001-of-00004.safetensors") for line in result["changes"])
    copied = sum(size for name, size in FILES.items() if not name.startswith(".cache"))
    assert result["stats"]["files_transferred"] == 7
    assert result["stats"]["transferred_file_size"] == copied
    assert result["stats"]["total_file_size"] == copied
    assert result["changed"]


def test_each_large_file_goes_to_one_stream(tmp_path):
    src = make_tree(tmp_path / "src")
    result = transfer(params(src, tmp_path / "dest", streams=3))
    first, *others, final = result["commands"]
    assert "--delete" not in first and "--delete" in final
    excluded_by_first = {arg.split("=/", 1)[1] for arg in first if arg.startswith("--exclude=/") and arg != "--exclude=/.cache/"}
    included = [arg.split("=/", 1)[1] for argv in others for arg in argv if arg.startswith("--include=/")]
    assert sorted(included) == sorted(excluded_by_first)
    assert len(included) == len(set(included))
    # The caller's excludes come before a stream's own rules, so they still win.
    for argv in others:
        assert argv.index("--exclude=/.cache/") < argv.index("--include=*/") < argv.index("--exclude=*")


def test_a_second_run_changes_nothing(tmp_path):
    src = make_tree(tmp_path / "src")
    transfer(params(src, tmp_path / "dest", streams=4))
    again = transfer(params(src, tmp_path / "dest", streams=4))
    assert again["changes"] == []
    assert not again["changed"]
    assert again["stats"]["files_transferred"] == 0


def test_remote_streams_create_the_destination_without_racing(tmp_path, fake_ssh):
    src = make_tree(tmp_path / "src")
    expected_dest = tmp_path / "expected"
    single_rsync(src, expected_dest)
    for attempt in range(5):
        dest = tmp_path / f"store {attempt}" / "model" / ".staging-r1"
        result = transfer(params(src, f"root@store.example:{dest}", rsh=fake_ssh, streams=4))
        assert result["streams"] == 4
        assert snapshot(dest) == snapshot(expected_dest)
        # Every stream makes the destination itself first (quoted for the remote shell).
        assert all(any(arg.startswith("--rsync-path=mkdir -p '") for arg in argv) for argv in result["commands"][:-1])


def test_link_dest_links_unchanged_files_and_sends_the_changed_one(tmp_path):
    src = make_tree(tmp_path / "src")
    transfer(params(src, tmp_path / "r1", streams=3))
    changed = src / "model-00002-of-00004.safetensors"
    changed.write_bytes(b"\x01" * 4000)
    result = transfer(params(src, tmp_path / "r2", streams=3, link_dest=[str(tmp_path / "r1")]))
    for name in FILES:
        if name.startswith(".cache"):
            continue
        same = os.stat(tmp_path / "r1" / name).st_ino == os.stat(tmp_path / "r2" / name).st_ino
        assert same is (name != changed.name), name
    assert result["stats"]["files_transferred"] == 1


def test_names_rsync_reads_as_patterns_use_one_rsync(tmp_path):
    src = make_tree(tmp_path / "src", dict(FILES, **{"weights[1].bin": 3000}))
    result = transfer(params(src, tmp_path / "dest", streams=4))
    assert result["streams"] == 1
    assert (tmp_path / "dest" / "weights[1].bin").read_bytes() == (src / "weights[1].bin").read_bytes()


@pytest.mark.parametrize("extra", ["--rsync-path=rsync", "--bwlimit=200M"])
def test_a_callers_rsync_path_or_bandwidth_limit_uses_one_rsync(tmp_path, extra):
    src = make_tree(tmp_path / "src")
    result = transfer(params(src, tmp_path / "dest", streams=4, extra_args=[extra]))
    assert result["streams"] == 1
    assert len(result["commands"]) == 1


def test_small_models_use_one_rsync(tmp_path, monkeypatch):
    monkeypatch.setattr(_model_rsync, "STREAM_MIN_BYTES", 64 * MIB)
    src = make_tree(tmp_path / "src")
    result = transfer(params(src, tmp_path / "dest", streams=4))
    assert result["streams"] == 1
    assert len(result["commands"]) == 1


def test_auto_streams_follow_the_cpus(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert _model_rsync.auto_streams() == 2
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert _model_rsync.auto_streams() == 4
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert _model_rsync.auto_streams() == 1


def test_dry_run_lists_and_writes_nothing(tmp_path):
    src = make_tree(tmp_path / "src")
    dest = tmp_path / "dest"
    result = transfer(params(src, dest, streams=4, dry_run=True))
    assert not dest.exists()
    assert len(result["commands"]) == 1
    assert "--dry-run" in result["commands"][0]
    assert sum(1 for line in result["changes"] if line.startswith(">f")) == 7


def test_a_failed_stream_names_its_command_and_error(tmp_path):
    src = make_tree(tmp_path / "src")
    with pytest.raises(RsyncError, match=r"^rsync --rsh=false .* failed with exit code \d+: rsync"):
        transfer(params(src, "root@store.example:/srv/x", rsh="false", streams=3))


def test_streams_make_a_local_destination_and_its_parents_first(tmp_path):
    src = make_tree(tmp_path / "src")
    result = transfer(params(src, tmp_path / "new" / "store" / "dest", streams=3))
    assert result["streams"] == 3
    assert (tmp_path / "new" / "store" / "dest" / "config.json").is_file()
    (tmp_path / "a-file").write_text("not a directory")
    with pytest.raises(RsyncError, match=r"could not create .*a-file/dest"):
        transfer(params(src, tmp_path / "a-file" / "dest", streams=3))


def test_one_rsync_needs_the_parent(tmp_path):
    src = make_tree(tmp_path / "src")
    # rsync makes the destination, not its parents.
    with pytest.raises(RsyncError, match=r"failed with exit code \d+: .*mkdir .*missing/dest"):
        transfer(params(src, tmp_path / "missing" / "dest", streams=1))


def test_the_timeout_stops_every_rsync(tmp_path):
    src = make_tree(tmp_path / "src")
    hanging = tmp_path / "hanging-ssh"
    marker = tmp_path / "started"
    hanging.write_text(f"#!/bin/sh\ntouch {marker}\nexec sleep 60\n")
    hanging.chmod(0o755)
    start = time.monotonic()
    with pytest.raises(RsyncError, match="did not finish within 1 seconds and was stopped"):
        transfer(params(src, "root@store.example:/srv/x", rsh=str(hanging), streams=3, timeout=1))
    assert time.monotonic() - start < 30
    assert marker.exists()
    leftover = subprocess.run(["pgrep", "-f", f"{hanging}"], capture_output=True, text=True, check=False)
    assert leftover.stdout == ""


@pytest.mark.parametrize(
    ("dest", "expected"),
    [
        ("root@store:/srv/models/m/.staging-r1", "/srv/models/m/.staging-r1"),
        ("store:/srv/x", "/srv/x"),
        ("store:", "."),
        ("/srv/local/dir", None),
        ("./a:b/c", None),  # a local path with a colon after a slash
    ],
)
def test_remote_path(dest, expected):
    assert _model_rsync.remote_path(dest) == expected


def test_parse_output_reads_changes_and_stats():
    text = (
        "created directory /srv/x\n"
        "cd+++++++++ sub/\n"
        "<f+++++++++ model.safetensors\n"
        "*deleting   stale.json\n"
        "Number of files: 5 (reg: 4, dir: 1)\n"
        "Number of regular files transferred: 1\n"
        "Total file size: 1,234 bytes\n"
        "Total transferred file size: 1000 bytes\n"
        "Literal data: 1000 bytes\n"
        "Matched data: 0 bytes\n"
        "Total bytes sent: 1100\n"
        "Total bytes received: 35\n"
    )
    parsed = _model_rsync.parse_output(text)
    assert parsed["changes"] == ["created directory /srv/x", "cd+++++++++ sub/", "<f+++++++++ model.safetensors", "*deleting   stale.json"]
    assert parsed["stats"] == {
        "files_transferred": 1,
        "total_file_size": 1234,
        "transferred_file_size": 1000,
        "literal_data": 1000,
        "matched_data": 0,
        "bytes_sent": 1100,
        "bytes_received": 35,
    }
