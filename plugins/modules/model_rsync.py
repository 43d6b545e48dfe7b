#!/usr/bin/python
# Copyright: (c) 2026, llmops.gpu_inference contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: model_rsync
short_description: Copy a model directory with rsync, its large files over parallel streams
version_added: 0.1.0
description:
  - Runs on the host that holds the files and copies the directory O(src) to O(dest) with rsync, usually over SSH to
    another host. The destination ends up exactly like O(src) (extraneous files deleted), as with one
    C(rsync --recursive --delete).
  - One rsync over SSH is bound by one CPU core on each end (the SSH cipher and rsync's own copies). With O(streams) above 1,
    the files of at least 64 MiB are split over up to O(streams) rsync processes that run at the same time (largest file
    first, each to the stream with the fewest bytes so far, at least 64 MiB a stream). The first stream copies everything
    except the other streams' files; each other stream copies only its own files, after the O(excludes). Then one full
    rsync with C(--delete) finds every file in place and deletes extraneous files. A small model or change is copied by
    that one rsync alone.
  - Every copy uses C(--recursive --times --omit-dir-times --copy-links --partial --itemize-changes --stats), so
    symbolic links (a Hugging Face cache snapshot) become the files they point to, and an interrupted transfer keeps what
    arrived so the next run resumes from it.
  - With O(link_dest), files unchanged from those directories on the receiving side are hard-linked instead of copied,
    and changed ones are sent as deltas against them.
  - C(changed) comes from rsync's itemized changes; RV(changes) lists them. With O(dry_run), C(changed) is always false.
options:
  src:
    description:
      - The directory to copy, on the host the module runs on.
    type: path
    required: true
  dest:
    description:
      - The directory to copy to, as rsync takes it, C(user@host:/path) for a remote host.
      - Created if missing. One rsync needs its parent to exist; split over streams, its missing parents are created too.
    type: str
    required: true
  rsh:
    description:
      - The remote shell rsync runs, for example C(ssh -c aes128-gcm@openssh.com -p 22 -o BatchMode=yes).
      - Choose a cipher the CPUs accelerate; model weights are incompressible, so do not enable SSH compression.
    type: str
  link_dest:
    description:
      - Directories on the receiving host whose unchanged files are hard-linked into O(dest) (C(--link-dest)).
    type: list
    elements: str
    default: []
  excludes:
    description:
      - rsync exclude patterns, each passed as C(--exclude); a leading C(/) anchors a pattern at O(src).
    type: list
    elements: str
    default: []
  chmod:
    description:
      - Permissions of the copies, as rsync's C(--chmod) takes them, for example C(D0755,F0644).
    type: str
  extra_args:
    description:
      - More rsync options, added to every rsync the module runs.
    type: list
    elements: str
    default: []
  streams:
    description:
      - The most rsync processes that copy files at the same time. V(1) runs a single rsync.
      - Each stream is one SSH connection and up to two busy cores (one on each end). Raise it for links faster than one
        core's cipher throughput (about 0.5 to 1 GB/s); lower it on hosts short of CPU.
      - Unset, one per CPU of the host the module runs on, at most 4.
      - With a C(--rsync-path) in O(extra_args), one rsync does the whole copy (each stream needs its own to create O(dest)).
      - With a C(--bwlimit) in O(extra_args), one rsync does the whole copy, so the limit holds for the transfer as a whole.
    type: int
  timeout:
    description:
      - Seconds the whole copy may take; rsync and its SSH are then stopped (SIGTERM, then SIGKILL 10 seconds later, through
        coreutils C(timeout)) and the module fails. What arrived stays in O(dest) and the next run resumes from it.
      - V(0) waits as long as the copy takes.
    type: int
    default: 0
  dry_run:
    description:
      - Only list what the copy would change (C(rsync --dry-run)); nothing is sent or changed. Check mode does the same.
    type: bool
    default: false
extends_documentation_fragment:
  - llmops.gpu_inference.attributes
attributes:
  check_mode:
    support: full
    details:
      - Runs one C(rsync --dry-run) and reports what would change.
  diff_mode:
    support: none
notes:
  - Each file is copied by exactly one stream, so the same file is never written by two processes.
  - A large file whose name holds a wildcard (C(*), C(?), C([)) or a backslash makes one rsync do the whole copy, as rsync would
    read its name as a pattern.
  - Remote destinations are C([user@]host:path) over O(rsh); rsync daemon destinations (C(host::module), C(rsync://)) are
    not supported.
requirements:
  - rsync 3.1 or later on both hosts, and the remote shell O(rsh) names.
  - coreutils C(timeout) on the host the module runs on, when O(timeout) is set.
seealso:
  - module: llmops.gpu_inference.model_check
  - module: ansible.posix.synchronize
author:
  - llmops.gpu_inference maintainers (@llmops)
"""

EXAMPLES = r"""
- name: Copy a model to the store's staging directory over four streams
  llmops.gpu_inference.model_rsync:
    src: /data/hf/qwen2-5-7b-instruct
    dest: root@store1.example.internal:/srv/models/qwen2-5-7b-instruct/.staging-2026-05-01
    rsh: ssh -c aes128-gcm@openssh.com -o BatchMode=yes
    link_dest: [/srv/models/qwen2-5-7b-instruct/current]
    excludes: [/.git/, /.cache/]
    chmod: D0755,F0644
    streams: 4
    timeout: 7200

- name: List how a published revision differs from its source
  llmops.gpu_inference.model_rsync:
    src: /data/hf/qwen2-5-7b-instruct
    dest: root@store1.example.internal:/srv/models/qwen2-5-7b-instruct/2026-05-01
    rsh: ssh -o BatchMode=yes
    dry_run: true
  register: __compare
"""

RETURN = r"""
changes:
  description: The lines rsync itemized as changes (files sent or linked, attributes set, directories made, files deleted).
  returned: always
  type: list
  elements: str
  sample: ["<f+++++++++ model-00001-of-00004.safetensors", "cd+++++++++ original/", "*deleting stale.json"]
stats:
  description:
    - rsync's C(--stats) figures summed over the streams (each file is in exactly one stream's C(total_file_size)).
  returned: always
  type: dict
  sample: {files_transferred: 4, total_file_size: 15231233024, transferred_file_size: 15231233024,
           literal_data: 15231233024, matched_data: 0, bytes_sent: 15233094843, bytes_received: 1204}
streams:
  description: How many rsync processes ran at the same time (1 when one rsync did the whole copy).
  returned: always
  type: int
  sample: 4
commands:
  description: Every rsync command line run, in order.
  returned: always
  type: list
  elements: list
stdout:
  description: The output of each rsync, one after another.
  returned: always
  type: str
dry_run:
  description: Whether nothing was sent (O(dry_run) or check mode).
  returned: always
  type: bool
  sample: false
"""

import os
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.llmops.gpu_inference.plugins.module_utils._model_rsync import RsyncError, transfer

ARGUMENT_SPEC = {
    "src": {"type": "path", "required": True},
    "dest": {"type": "str", "required": True},
    "rsh": {"type": "str"},
    "link_dest": {"type": "list", "elements": "str", "default": []},
    "excludes": {"type": "list", "elements": "str", "default": []},
    "chmod": {"type": "str"},
    "extra_args": {"type": "list", "elements": "str", "default": []},
    "streams": {"type": "int"},
    "timeout": {"type": "int", "default": 0},
    "dry_run": {"type": "bool", "default": False},
}


def concurrently(module):
    """Run argvs at the same time, each with run_command in its own thread; (rc, stdout, stderr) of each, in order."""

    def run(argvs: list) -> list:
        with ThreadPoolExecutor(max_workers=len(argvs)) as pool:
            return list(pool.map(lambda argv: module.run_command(argv, errors="surrogate_then_replace"), argvs))

    return run


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    params = dict(module.params)
    if params["streams"] is not None and params["streams"] < 1:
        module.fail_json(msg=f"streams must be 1 or more, not {params['streams']}")
    if params["timeout"] < 0:
        module.fail_json(msg=f"timeout must be 0 (no limit) or more seconds, not {params['timeout']}")
    if not module.get_bin_path("rsync"):
        module.fail_json(msg="rsync is not installed on this host (or not on its PATH); install the rsync package")
    if params["timeout"] and not module.get_bin_path("timeout"):
        module.fail_json(msg="timeout is not installed on this host (or not on its PATH); install coreutils, or set no timeout")
    if "::" in params["dest"] or params["dest"].startswith("rsync://"):
        module.fail_json(msg=f"dest {params['dest']} is an rsync daemon address; give [user@]host:path (over rsh) or a local path")
    if not os.path.isdir(params["src"]):
        module.fail_json(msg=f"src {params['src']} is not a directory on this host")
    asked_dry_run = params["dry_run"]
    params["dry_run"] = asked_dry_run or module.check_mode
    try:
        result = transfer(params, concurrently(module))
    except RsyncError as error:
        module.fail_json(msg=str(error))
    if asked_dry_run:
        # A comparison changes nothing; check mode reports what the copy would change.
        result["changed"] = False
    module.exit_json(**result)


if __name__ == "__main__":
    main()
