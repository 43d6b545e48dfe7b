# Copyright: (c) 2026, llmops.gpu_inference contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""rsync of one model directory, the large files split over parallel streams.

One rsync over SSH is bound by one core on each end (the cipher in ssh and sshd, rsync's own
copies). Model weights are a few large, incompressible files, so with ``streams`` above 1:

- the files of at least ``STREAM_MIN_BYTES`` under the source (read locally, symbolic links
  followed as ``--copy-links`` does) are split over up to ``streams`` rsync processes, largest
  first, each to the stream with the fewest bytes so far, as long as every stream gets at least
  ``STREAM_MIN_BYTES``;
- all streams start at once. The first copies everything except the large files of the other
  streams; each other stream copies only its own files (``--include`` rules after the caller's
  excludes, so those still win). Each creates the destination first (``mkdir -p`` in
  ``--rsync-path``; a local one is made before they start), so no two race to create it (rsync
  fails when another process made its destination between its check and its mkdir);
- then one full rsync with ``--delete`` finds every file in place, deletes extraneous files (a
  temporary file a crashed run left behind included) and copies anything left, so the result is
  exactly what one ``rsync --recursive --delete`` makes.

With one stream, a small model, a name rsync would read as a pattern, or a caller's own
``--rsync-path`` or ``--bwlimit`` (which would apply to each stream), one rsync does the whole copy. ``dry_run`` always runs one ``rsync --dry-run``.

The options every copy uses live here (``BASE_ARGS``), so sync, backup, restore and the
comparison of a published revision run the same command line. Pure Python; the module
``model_rsync`` is its shell.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
import shlex
import time

# Copy options shared by every transfer.
BASE_ARGS = (
    "--recursive",
    "--times",
    # Dates of directories are not kept: a revision's directory dates from its sync (prune keeps the newest).
    "--omit-dir-times",
    # Symbolic links (a Hugging Face cache snapshot) become the files they point to.
    "--copy-links",
    # An interrupted transfer keeps what arrived; the next run resumes from it.
    "--partial",
    "--itemize-changes",
    "--stats",
    "--no-human-readable",
)
# A file smaller than this is never split off, and no stream carries less: below it, another SSH
# connection and rsync cost more than they save.
STREAM_MIN_BYTES = 64 * 1024 * 1024
# Streams when the caller does not say: one per CPU of the sending host, at most this many.
AUTO_STREAMS_MAX = 4
# An itemized line that is a change: a file sent or linked, an attribute changed, a directory made, a file deleted.
CHANGE_RE = re.compile(r"^(created directory |\*deleting |[<>ch.][fdLDS])")
# Characters that make an rsync filter rule a pattern rather than a name.
PATTERN_CHARS = re.compile(r"[*?\[\\\n]")
STATS = {
    "Number of regular files transferred": "files_transferred",
    "Total file size": "total_file_size",
    "Total transferred file size": "transferred_file_size",
    "Literal data": "literal_data",
    "Matched data": "matched_data",
    "Total bytes sent": "bytes_sent",
    "Total bytes received": "bytes_received",
}


# Exit statuses of coreutils timeout: the command timed out (SIGTERM), or had to be killed (128 + SIGKILL).
TIMED_OUT = (124, 137)


class RsyncError(Exception):
    """A transfer that failed; the message says which command and why."""


def base_command(params: dict, dry_run: bool = False) -> list:
    """The rsync command line up to the caller's extra arguments (no source, destination, --delete or stream rules)."""
    argv = ["rsync"]
    if params.get("rsh"):
        argv.append("--rsh=" + params["rsh"])
    if dry_run:
        argv.append("--dry-run")
    argv.extend("--link-dest=" + path.rstrip("/") + "/" for path in params.get("link_dest") or [])
    argv.extend(BASE_ARGS)
    if params.get("chmod"):
        argv.append("--chmod=" + params["chmod"])
    argv.extend("--exclude=" + pattern for pattern in params.get("excludes") or [])
    argv.extend(params.get("extra_args") or [])
    return argv


def endpoints(params: dict) -> list:
    return [params["src"].rstrip("/") + "/", params["dest"].rstrip("/") + "/"]


def remote_path(dest: str) -> str | None:
    """The path part of ``[user@]host:path``; None for a local destination."""
    head, sep, tail = dest.partition(":")
    if not sep or "/" in head:
        return None
    return tail or "."


def parse_output(text: str) -> dict:
    """Change lines and --stats figures of one rsync run."""
    changes, stats = [], {}
    for line in text.splitlines():
        if CHANGE_RE.match(line):
            changes.append(line)
            continue
        label, sep, value = line.partition(": ")
        if sep and label in STATS:
            number = value.split()[0].replace(",", "")
            if number.isdigit():
                stats[STATS[label]] = int(number)
    return {"changes": changes, "stats": stats}


def excluded(path: str, is_dir: bool, patterns: list) -> bool:
    """Whether an rsync --exclude pattern matches ``path`` (relative to the source), closely enough to balance streams.

    Only the split uses it: every stream still passes the patterns to rsync, which decides. A file
    wrongly taken as excluded stays with the first stream (which copies all but the other streams'
    files); one wrongly taken as included is left out by rsync as it should be.
    """
    for pattern in patterns:
        if pattern.endswith("/") and not is_dir:
            continue
        rule = pattern.rstrip("/")
        if rule.startswith("/"):
            matched = fnmatch.fnmatchcase(path, rule[1:])
        elif "/" in rule:
            matched = fnmatch.fnmatchcase(path, rule) or fnmatch.fnmatchcase(path, "*/" + rule)
        else:
            matched = fnmatch.fnmatchcase(os.path.basename(path), rule)
        if matched:
            return True
    return False


def large_files(src: str, excludes: list) -> list:
    """(size, path relative to src) of every file of at least STREAM_MIN_BYTES, links followed as --copy-links does."""
    found = []
    for root, dirs, files in os.walk(src, followlinks=True):
        relative = os.path.relpath(root, src)
        prefix = "" if relative == "." else relative + "/"
        dirs[:] = [name for name in dirs if not excluded(prefix + name, True, excludes)]
        for name in files:
            if excluded(prefix + name, False, excludes):
                continue
            try:
                size = os.stat(os.path.join(root, name)).st_size
            except OSError:
                continue  # a dangling link: rsync reports it
            if size >= STREAM_MIN_BYTES:
                found.append((size, prefix + name))
    return found


def partition(files: list, streams: int) -> list:
    """Split (size, path) pairs into at most ``streams`` lists of paths of near-equal bytes.

    Largest file first, each to the stream with the fewest bytes so far (LPT); no stream gets less
    than STREAM_MIN_BYTES on average. Returns [] when fewer than two streams would carry data.
    """
    total = sum(size for size, _path in files)
    count = max(1, min(streams, len(files), total // STREAM_MIN_BYTES))
    if count < 2:
        return []
    loads = [0] * count
    plans: list[list[str]] = [[] for _index in range(count)]
    for size, path in sorted(files, key=lambda entry: (-entry[0], entry[1])):
        lightest = loads.index(min(loads))
        loads[lightest] += size
        plans[lightest].append(path)
    return [sorted(paths) for paths in plans]


def stream_commands(params: dict, plan: list) -> list:
    """One rsync per stream: the first copies everything but the other streams' files, each other only its own."""
    base = base_command(params)
    path = remote_path(params["dest"])
    if path is not None:
        # Every stream makes the destination before its rsync starts: none races another to create it.
        base.append("--rsync-path=mkdir -p " + shlex.quote(path.rstrip("/") or "/") + " && rsync")
    others = ["--exclude=/" + name for paths in plan[1:] for name in paths]
    argvs = [[*base, *others, *endpoints(params)]]
    for paths in plan[1:]:
        argvs.append([*base, "--include=*/", *("--include=/" + name for name in paths), "--exclude=*", *endpoints(params)])
    return argvs


def plan_streams(params: dict, streams: int) -> list:
    """The files of each stream, or [] for one rsync."""
    # A caller's --rsync-path would lose the mkdir each stream needs; a --bwlimit would apply to each stream.
    if streams < 2 or any(arg.startswith(("--rsync-path", "--bwlimit")) for arg in params.get("extra_args") or []):
        return []
    files = large_files(params["src"], params.get("excludes") or [])
    if any(PATTERN_CHARS.search(path) for _size, path in files):
        return []
    return partition(files, streams)


class Runner:
    """Runs rsync commands through ``run`` with one deadline for all of them, and records them.

    ``run(argvs)`` starts every argv at the same time and returns ``(rc, stdout, stderr)`` for each,
    in order (the module passes AnsibleModule.run_command in threads). With a timeout, each command
    runs under coreutils ``timeout``, which stops rsync and its ssh (its process group) with SIGTERM,
    and SIGKILL 10 seconds later.
    """

    def __init__(self, run, timeout: int | None):
        self.execute = run
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout if timeout else None
        self.commands: list[list[str]] = []

    def run(self, argvs: list) -> list:
        """Run argvs at once; returns their stdout. Fails naming the first that failed."""
        limit: list[str] = []
        if self.deadline is not None:
            remaining = math.ceil(self.deadline - time.monotonic())
            if remaining <= 0:
                raise RsyncError(self.timed_out())
            limit = ["timeout", "--signal=TERM", "--kill-after=10", str(remaining)]
        self.commands.extend(argvs)
        results = self.execute([[*limit, *argv] for argv in argvs])
        for argv, (rc, stdout, stderr) in zip(argvs, results):
            if limit and rc in TIMED_OUT:
                raise RsyncError(self.timed_out())
            if rc != 0:
                raise RsyncError(f"{' '.join(argv)} failed with exit code {rc}: {stderr.strip() or stdout[-2000:]}")
        return [stdout for _rc, stdout, _stderr in results]

    def timed_out(self) -> str:
        return (
            f"rsync did not finish within {self.timeout} seconds and was stopped; what arrived stays in the destination "
            "(partial files included) and the next run resumes from it"
        )


def auto_streams() -> int:
    return max(1, min(AUTO_STREAMS_MAX, os.cpu_count() or 1))


def transfer(params: dict, run) -> dict:
    """Copy (or with ``dry_run``, compare) ``src`` to ``dest``; returns changes, summed stats and the commands run.

    params: src, dest, rsh, link_dest, excludes, chmod, extra_args, streams (None: auto_streams()), timeout, dry_run.
    run: starts a list of argvs at the same time, returns (rc, stdout, stderr) of each (see Runner).
    """
    runner = Runner(run, params.get("timeout"))
    dry_run = bool(params.get("dry_run"))
    plan = [] if dry_run else plan_streams(params, params.get("streams") or auto_streams())
    if plan and remote_path(params["dest"]) is None:
        # A local destination is made here, before the streams start, as each remote stream makes its own.
        try:
            os.makedirs(params["dest"], exist_ok=True)
        except OSError as error:
            raise RsyncError(f"could not create {params['dest']}: {error.strerror}") from None
    outputs = runner.run(stream_commands(params, plan)) if plan else []
    # The whole copy, or after the streams the pass that deletes extraneous files and checks every file is in place.
    outputs.extend(runner.run([[*base_command(params, dry_run), "--delete", *endpoints(params)]]))
    changes: list[str] = []
    stats: dict[str, int] = {}
    seen: set[str] = set()
    runs = [parse_output(output) for output in outputs]
    for parsed in runs:
        # Streams may each report making the same directory.
        changes.extend(line for line in parsed["changes"] if line not in seen)
        seen.update(parsed["changes"])
        for key, value in parsed["stats"].items():
            stats[key] = stats.get(key, 0) + value
    # "Total file size" describes the source: the last, full pass's figure.
    stats["total_file_size"] = runs[-1]["stats"].get("total_file_size", 0)
    return {
        "changed": bool(changes),
        "changes": changes,
        "stats": stats,
        "streams": len(plan) or 1,
        "commands": runner.commands,
        "stdout": "".join(outputs),
        "dry_run": dry_run,
    }
