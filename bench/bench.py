"""make bench: what the collection costs, as ratios against a baseline measured in the same run.

Absolute times on a shared 2-core machine are noise; each figure here is a ratio against a baseline
run in the same invocation, interleaved with it, median of --repeat runs. Sections:

- facts: nvidia_smi_facts' parsing (the whole gather() with its joins) of the largest real ``-q -x``
  capture and of a simulated 8x H100 with 7 MIG devices each, against the simulator call that
  produced the 8x H100 output.
- mig: mutating nvidia-smi commands mig_layout runs to move an 8x H100 node (simulated) from one
  layout to another where one GPU differs, against destroying and recreating every GPU's instances
  (both run for real against the simulator and counted).
- sync: model_sync between two test hosts with a generated 4 GiB model (8 shards of 512 MiB of
  random, incompressible bytes): first sync against plain ``rsync -a -e ssh``, the role's copy step
  (model_rsync) and the whole run, each timed copy starting with the other copy deleted and no dirty
  pages; a no-change re-run of
  the whole role (with verification) against one no-change ansible.posix.synchronize task; 1 MiB
  changed in one shard: bytes sent per byte changed, and disk the new revision takes per shard size.
- fleet: the gpu_node role's second run (nothing to change) on 4, 8 and 16 test hosts against a
  playbook running ansible.builtin.ping as many times per host as the role runs tasks there.
- render: the vLLM manifests of 50 models (dense TP 1 with KEDA, TP 4 with the HPA, MIG slices, a
  legacy Ingress; 8 objects a model and the namespace's rule and dashboard): the render core per
  model against writing the same objects as YAML, their validation (Kubernetes 1.31 and 1.37
  schemas, CRD schemas) per model, and the vllm role in render mode on the controller (first run
  writing 50 files, then a re-run writing none) against a playbook that writes 50 files with one
  ansible.builtin.template loop.

Run as root (the fleet section starts test hosts with tests/testhosts/testhosts and removes them).
Writes bench/RESULTS.md and prints the same table. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / ".build"
SIM = ROOT / "tests" / "nvidia_smi_sim" / "nvidia_smi_sim.py"
FIXTURES = Path(os.environ.get("NVIDIA_SMI_FIXTURES", ROOT.parent / "shared" / "fixtures" / "nvidia-smi"))
TESTHOSTS = ROOT / "tests" / "testhosts" / "testhosts"
sys.path.insert(0, str(BUILD / "collections"))

from ansible_collections.llmops.gpu_inference.plugins.module_utils import _mig_layout, _nvidia_smi, _vllm_manifests  # noqa: E402

# Tasks that run on the controller only (no connection, no module sent to the host).
CONTROLLER_ACTIONS = {
    "ansible.builtin.assert",
    "ansible.builtin.fail",
    "ansible.builtin.debug",
    "ansible.builtin.set_fact",
    "ansible.builtin.meta",
    "ansible.builtin.validate_argument_spec",
    "validate_argument_spec",
    "assert",
    "fail",
    "debug",
    "meta",
}


def median_time(func, repeat: int) -> float:
    samples = []
    for _attempt in range(repeat):
        start = time.perf_counter()
        func()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


# --------------------------------------------------------------------------------------------
# facts
# --------------------------------------------------------------------------------------------


def simulator(config: dict, workdir: Path):
    """A runner for gather() that calls the simulator as a subprocess, plus its environment."""
    (workdir / "config.json").write_text(json.dumps(config))
    env = dict(os.environ, NVIDIA_SMI_SIM_CONFIG=str(workdir / "config.json"), NVIDIA_SMI_SIM_STATE=str(workdir / "state.json"))

    def run(argv):
        done = subprocess.run([sys.executable, str(SIM), *argv[1:]], capture_output=True, text=True, env=env, check=False)
        return done.returncode, done.stdout, done.stderr

    return run


def bench_facts(repeat: int) -> list[tuple[str, str, str]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run = simulator(
            {"model": "H100-80GB", "count": 8, "mig_enabled": list(range(8)), "mig_layout": {str(i): ["1g.10gb"] * 7 for i in range(8)}},
            Path(tmp),
        )
        recorded = {}

        def recording(argv):
            recorded[" ".join(argv[1:])] = result = run(argv)
            return result

        facts = _nvidia_smi.gather("nvidia-smi", recording)
        assert sum(len(gpu["mig_devices"]) for gpu in facts["gpus"]) == 56, "the simulated node must have 56 MIG devices"
        sim_call = median_time(lambda: run(["nvidia-smi", "-q", "-x"]), repeat)
        parse_mig = median_time(lambda: _nvidia_smi.gather("nvidia-smi", lambda argv: recorded[" ".join(argv[1:])]), repeat * 20)
        rows.append(("facts: parse 8x H100, 56 MIG devices (5 outputs)", f"{parse_mig * 1000:.2f} ms", f"{parse_mig / sim_call:.3f}x one simulator call"))

    if FIXTURES.is_dir():
        largest = max(FIXTURES.glob("*.xml"), key=lambda path: path.stat().st_size)
        text = largest.read_text()
        parse_real = median_time(lambda: _nvidia_smi.parse_query_xml(text), repeat * 20)
        what = f"facts: parse {largest.name} ({len(text) // 1024} KiB)"
        rows.append((what, f"{parse_real * 1000:.2f} ms", f"{parse_real / sim_call:.3f}x one simulator call"))
    rows.append(("facts: baseline, simulator `-q -x` call (8x H100, MIG)", f"{sim_call * 1000:.1f} ms", "1x"))
    return rows


# --------------------------------------------------------------------------------------------
# mig
# --------------------------------------------------------------------------------------------

MUTATING = {"-mig", "-r", "--gpu-reset", "-cgi", "-cci", "-dci", "-dgi", "-pm"}
BALANCED = {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}
ONE_DIFFERS = {"2g.20gb": 2, "3g.40gb": 1}


def layouts(changed_gpu: int | None) -> dict:
    """All eight GPUs balanced, or all but ``changed_gpu``, which gets another layout."""
    others = [index for index in range(8) if index != changed_gpu]
    entries = [{"devices": others, "mig-enabled": True, "mig-devices": BALANCED}]
    if changed_gpu is not None:
        entries.append({"devices": [changed_gpu], "mig-enabled": True, "mig-devices": ONE_DIFFERS})
    return {"version": "v1", "mig-configs": {"bench": entries}}


def bench_mig() -> list[tuple[str, str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        run = simulator({"model": "H100-80GB", "count": 8, "mig_enabled": list(range(8))}, Path(tmp))
        mutating: list[list[str]] = []

        def counting(argv):
            if MUTATING & set(argv):
                mutating.append(argv)
            return run(argv)

        _mig_layout.apply_layout("nvidia-smi", run, layouts(None), "bench")
        _mig_layout.apply_layout("nvidia-smi", counting, layouts(3), "bench")
        ours = len(mutating)
        # Baseline: back to the first layout, then every GPU loses all its instances and gets its layout again.
        _mig_layout.apply_layout("nvidia-smi", run, layouts(None), "bench")
        mutating.clear()
        for index in range(8):
            wanted = ONE_DIFFERS if index == 3 else BALANCED
            profiles = ",".join(name for name, count in wanted.items() for _copy in range(count))
            for argv in (["mig", "-i", str(index), "-dci"], ["mig", "-i", str(index), "-dgi"], ["mig", "-i", str(index), "-cgi", profiles, "-C"]):
                rc, out, err = counting(["nvidia-smi", *argv])
                if rc != 0:
                    raise SystemExit(f"baseline command {argv} failed: {out}{err}")
        assert _mig_layout.apply_layout("nvidia-smi", run, layouts(3), "bench", check_mode=True)["changed"] is False
        baseline = len(mutating)
    return [("mig: mutating nvidia-smi calls, 8x H100, one GPU's layout changes", f"{ours} vs {baseline}", f"{ours / baseline:.3f}x destroy-all-and-recreate")]


# --------------------------------------------------------------------------------------------
# fleet
# --------------------------------------------------------------------------------------------


def ansible_env() -> dict:
    return dict(
        os.environ,
        ANSIBLE_COLLECTIONS_PATH=str(BUILD / "collections"),
        ANSIBLE_HOME=str(BUILD / "ansible-home"),
        ANSIBLE_SSH_CONTROL_PATH_DIR=str(BUILD / "ssh-bench"),
        ANSIBLE_PIPELINING="True",
        ANSIBLE_INJECT_FACT_VARS="False",
        ANSIBLE_FORKS="5",
        ANSIBLE_NOCOLOR="1",
    )


def playbook(args: list[str], env: dict, callback: str = "ansible.builtin.default") -> subprocess.CompletedProcess:
    command = [str(BUILD / "venv" / "bin" / "ansible-playbook"), *args]
    done = subprocess.run(command, capture_output=True, text=True, env=dict(env, ANSIBLE_STDOUT_CALLBACK=callback), check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return done


def timed_playbook(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    playbook(args, env)
    return time.perf_counter() - start


def role_counts(inventory: list[str], env: dict) -> tuple[float, float]:
    """Tasks the role runs per host, and how many of them send a module to the host (JSON callback)."""
    result = json.loads(playbook([*inventory, "-e", "gpu_node_hosts=testhosts", "playbooks/gpu_node.yml"], env, "ansible.posix.json").stdout)
    tasks, remote = {}, {}
    for play in result["plays"]:
        for task in play["tasks"]:
            for host, outcome in task["hosts"].items():
                if outcome.get("skipped"):
                    continue
                tasks[host] = tasks.get(host, 0) + 1
                if outcome.get("action") not in CONTROLLER_ACTIONS:
                    remote[host] = remote.get(host, 0) + 1
    return statistics.mean(tasks.values()), statistics.mean(remote.values())


def bench_fleet(sizes: list[int], repeat: int) -> list[tuple[str, str, str]]:
    env = ansible_env()
    rows = []
    try:
        for count in sizes:
            subprocess.run([str(TESTHOSTS), "up", "--env", "bench", "--count", str(count)], check=True, capture_output=True)
            inventory = ["-i", str(BUILD / "hosts" / "bench" / "inventory.yml")]
            sim = ["-e", "nvidia_smi_sim_model=H100-80GB", "-e", "nvidia_smi_sim_count=8", "-e", '{"nvidia_smi_sim_extra": {"nvswitch": true}}']
            playbook([*inventory, *sim, "tests/playbooks/gpu_hosts.yml"], env)
            playbook([*inventory, "-e", "gpu_node_hosts=testhosts", "playbooks/gpu_node.yml"], env)  # first run: converge
            tasks, remote = role_counts(inventory, env)
            pings = round(tasks)
            ping_playbook = BUILD / "bench-ping.yml"
            ping_playbook.write_text(
                "- name: Ping baseline\n  hosts: testhosts\n  gather_facts: false\n  tasks:\n"
                + "".join(f"    - name: Ping {n}\n      ansible.builtin.ping:\n" for n in range(pings))
            )
            role_times, ping_times = [], []
            for _attempt in range(repeat):  # interleaved, so drift hits both alike
                ping_times.append(timed_playbook([*inventory, str(ping_playbook)], env))
                role_times.append(timed_playbook([*inventory, "-e", "gpu_node_hosts=testhosts", "playbooks/gpu_node.yml"], env))
            role, ping = statistics.median(role_times), statistics.median(ping_times)
            rows.append(
                (
                    f"fleet: gpu_node re-run, {count} hosts ({tasks:.0f} tasks/host, {remote:.0f} on the host)",
                    f"{role:.1f} s vs {ping:.1f} s",
                    f"{role / ping:.2f}x {pings} pings/host",
                )
            )
    finally:
        subprocess.run([str(TESTHOSTS), "down", "--env", "bench"], check=False, capture_output=True)
    return rows


# --------------------------------------------------------------------------------------------
# sync
# --------------------------------------------------------------------------------------------

SHARDS, SHARD_BYTES, CHANGED_BYTES = 8, 512 * 1024**2, 1024**2
MAKE_MODEL = r"""
import json, os, struct, sys
root, shards, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(root, exist_ok=True)
weight_map = {}
for n in range(1, shards + 1):
    name = f"model-{n:05d}-of-{shards:05d}.safetensors"
    tensor = f"model.layers.{n - 1}.weight"
    header = json.dumps({"__metadata__": {"format": "pt"}, tensor: {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(os.path.join(root, name), "wb") as out:
        out.write(struct.pack("<Q", len(header)) + header)
        for _chunk in range(size // (8 << 20)):
            out.write(os.urandom(8 << 20))
    weight_map[tensor] = name
files = {
    "model.safetensors.index.json": {"metadata": {"total_size": shards * size}, "weight_map": weight_map},
    "config.json": {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 3584, "num_hidden_layers": 28,
                    "num_attention_heads": 28, "num_key_value_heads": 4, "max_position_embeddings": 32768, "torch_dtype": "bfloat16",
                    "vocab_size": 152064},
    "tokenizer.json": {"version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []}},
    "tokenizer_config.json": {"model_max_length": 32768},
}
for name, content in files.items():
    with open(os.path.join(root, name), "w") as out:
        json.dump(content, out)
"""


def ssh(key: Path, address: str, command: str) -> str:
    done = subprocess.run(
        ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", f"root@{address}", command],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"ssh {address} {command!r} failed: {done.stderr}")
    return done.stdout


def rsync_stat(result: dict, key: str) -> int:
    """Sum of one of model_rsync's ``stats`` over every copy the role ran (JSON callback output)."""
    total = 0
    for play in result["plays"]:
        for task in play["tasks"]:
            for outcome in task["hosts"].values():
                for item in outcome.get("results", [outcome]):
                    total += item.get("stats", {}).get(key, 0)
    return total


def task_result(result: dict, name: str) -> dict:
    """The first task whose name contains ``name`` (JSON callback output): its seconds and its per-item results."""
    for play in result["plays"]:
        for task in play["tasks"]:
            if name in task["task"]["name"]:
                duration = task["task"]["duration"]
                seconds = (parse_time(duration["end"]) - parse_time(duration["start"])).total_seconds()
                outcome = next(iter(task["hosts"].values()))
                return {"seconds": seconds, "results": outcome.get("results", [outcome])}
    raise SystemExit(f"no task named {name!r} in the playbook's result")


def parse_time(text: str):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def first_syncs(key: Path, source: str, store: str, model_sync, repeat: int) -> list[tuple[str, str, str]]:
    """First syncs into empty targets, the role against plain rsync, interleaved; also the role's copy task alone."""

    def settle(remove: str) -> None:
        """The same start for every timed copy: the other copy deleted (its 4 GiB of page cache freed,
        not reclaimed during the next copy), no dirty pages left to flush, a moment for the kernel."""
        ssh(key, store, f"rm -rf {remove}; sync")
        subprocess.run(["sync"], check=True)
        time.sleep(2)

    plain_times, role_times, copy_times, streams = [], [], [], set()
    for attempt in range(repeat):
        settle("/srv/plain /srv/store-*")
        start = time.perf_counter()
        ssh(key, source, f"rsync -a -e ssh /srv/src/model/ root@{store}:/srv/plain/")
        plain_times.append(time.perf_counter() - start)
        settle("/srv/plain")
        start = time.perf_counter()
        result = json.loads(model_sync(f"/srv/store-{attempt}", "r1", "ansible.posix.json").stdout)
        role_times.append(time.perf_counter() - start)
        copy = task_result(result, "rsync | Copy each directory")
        copy_times.append(copy["seconds"])
        streams.update(item["streams"] for item in copy["results"])
        print(f"first sync {attempt + 1}: plain {plain_times[-1]:.1f} s, role {role_times[-1]:.1f} s, its copy {copy_times[-1]:.1f} s", file=sys.stderr)
    # The no-change rows compare against a synchronize of /srv/plain: put the copy back (untimed).
    ssh(key, source, f"rsync -a -e ssh /srv/src/model/ root@{store}:/srv/plain/")
    plain, first, copy_s = statistics.median(plain_times), statistics.median(role_times), statistics.median(copy_times)
    stream_counts = "/".join(map(str, sorted(streams)))
    return [
        (
            f"sync: first sync of 4 GiB (8 shards), the role's copy step (model_rsync, {stream_counts} streams, aes128-gcm) vs plain rsync -a -e ssh",
            f"{copy_s:.1f} s vs {plain:.1f} s",
            f"{copy_s / plain:.2f}x",
        ),
        (
            "sync: first sync, the whole model_sync run (validate, copy, verify, publish, prune) vs plain rsync -a -e ssh",
            f"{first:.1f} s vs {plain:.1f} s",
            f"{first / plain:.2f}x",
        ),
    ]


def bench_sync(repeat: int) -> list[tuple[str, str, str]]:
    env = ansible_env()
    hosts = BUILD / "hosts" / "bench-sync"
    try:
        subprocess.run([str(TESTHOSTS), "up", "--env", "bench-sync", "--count", "2"], check=True, capture_output=True)
        inventory = ["-i", str(hosts / "inventory.yml")]
        instances = json.loads((hosts / "instances.json").read_text())
        address = {entry["instance"]: entry["address"] for entry in instances}
        key = hosts / "id_ed25519"
        source, store = address["bench-sync-1"], address["bench-sync-2"]
        # The source host pushes to the store with the env's key, as model_sync's source_host does.
        ssh(key, source, "mkdir -p /root/.ssh && printf 'Host *\\n StrictHostKeyChecking no\\n UserKnownHostsFile /dev/null\\n' > /root/.ssh/config")
        subprocess.run(
            [
                "scp",
                "-q",
                "-i",
                str(key),
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                str(key),
                f"root@{source}:/root/.ssh/id_ed25519",
            ],
            check=True,
        )
        ssh(key, source, f"cat > /tmp/make_model.py <<'EOF'\n{MAKE_MODEL}\nEOF\npython3 /tmp/make_model.py /srv/src/model {SHARDS} {SHARD_BYTES}")

        def model_sync(store_path: str, revision: str, callback: str = "ansible.builtin.default") -> subprocess.CompletedProcess:
            models = [{"name": "bench-model", "source": "/srv/src/model", "revision": revision, "source_host": "bench-sync-1"}]
            extra = json.dumps({"model_sync_store_host": "bench-sync-2", "model_sync_store_path": store_path, "model_sync_models": models})
            return playbook([*inventory, "-e", extra, "playbooks/model_sync.yml"], env, callback)

        rows = first_syncs(key, source, store, model_sync, repeat)

        synchronize = BUILD / "bench-synchronize.yml"
        synchronize.write_text(
            "- name: Synchronize baseline\n  hosts: bench-sync-2\n  gather_facts: false\n  tasks:\n"
            "    - name: Push the model again\n      ansible.posix.synchronize:\n        src: /srv/src/model/\n        dest: /srv/plain/\n"
            "      delegate_to: bench-sync-1\n"
        )
        store_path = f"/srv/store-{repeat - 1}"
        rerun_times, bare_times, data_bytes = [], [], 0
        for _attempt in range(repeat):
            bare_times.append(timed_playbook([*inventory, str(synchronize)], env))
            start = time.perf_counter()
            result = json.loads(model_sync(store_path, "r1", "ansible.posix.json").stdout)
            rerun_times.append(time.perf_counter() - start)
            data_bytes += rsync_stat(result, "transferred_file_size")
        rerun, bare = statistics.median(rerun_times), statistics.median(bare_times)
        rows.append(
            (
                "sync: no-change re-run of model_sync (verify included) vs one synchronize task",
                f"{rerun:.1f} s vs {bare:.1f} s, {data_bytes} B of file data",
                f"{rerun / bare:.2f}x",
            )
        )

        before = int(ssh(key, store, f"du -sk {store_path}/bench-model").split()[0])
        ssh(key, source, f"dd if=/dev/urandom of=/srv/src/model/model-00003-of-{SHARDS:05d}.safetensors bs=1M count=1 seek=100 conv=notrunc status=none")
        result = json.loads(model_sync(store_path, "r2", "ansible.posix.json").stdout)
        sent = rsync_stat(result, "bytes_sent")
        after = int(ssh(key, store, f"du -sk {store_path}/bench-model").split()[0])
        rows.append(("sync: 1 MiB changed in one shard, bytes sent per byte changed", f"{sent} B sent", f"{sent / CHANGED_BYTES:.3f}x"))
        rows.append(("sync: disk the new revision takes per shard size", f"{after - before} KiB", f"{(after - before) * 1024 / SHARD_BYTES:.3f}x"))
        return rows
    finally:
        subprocess.run([str(TESTHOSTS), "down", "--env", "bench-sync"], check=False, capture_output=True)


# --------------------------------------------------------------------------------------------
# render
# --------------------------------------------------------------------------------------------

RENDER_CONFIG = {
    "namespace": "llm",
    "gateway": {"parent_refs": [{"name": "inference-gateway", "namespace": "gateway"}]},
    "ingress": {"host": "llm.example.internal"},
    "monitoring": {"labels": {"release": "kube-prometheus-stack"}},
}


def render_models(count: int) -> list[dict]:
    """``count`` models cycling through four shapes."""
    shapes = [
        {"autoscaling": {"type": "keda", "min_replicas": 2, "max_replicas": 6}, "max_model_len": 32768, "gpu_product_labels": ["NVIDIA-H100-80GB-HBM3"]},
        {"tensor_parallel_size": 4, "autoscaling": {"type": "hpa", "min_replicas": 1, "max_replicas": 8}, "weights_bytes": 141 * 2**30},
        {"gpu_resource": "nvidia.com/mig-3g.40gb", "replicas": 2, "autoscaling": {"type": "none"}, "max_model_len": 8192},
        {"routing": {"ingress": True, "gateway": False}, "autoscaling": {"type": "keda", "min_replicas": 1, "max_replicas": 3}},
    ]
    return [{"name": f"model-{index:02d}", **shapes[index % len(shapes)]} for index in range(count)]


def bench_render(repeat: int, count: int = 50) -> list[tuple[str, str, str]]:
    import yaml  # noqa: PLC0415  (the venv's; only this section needs it)

    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    import k8s_schemas  # noqa: PLC0415

    models = render_models(count)
    rendered = _vllm_manifests.render(models, RENDER_CONFIG)
    objects = [obj for model in rendered["models"] for obj in model["objects"]] + rendered["shared"]

    def render() -> None:
        _vllm_manifests.render(models, RENDER_CONFIG)

    def dump() -> None:
        for model in rendered["models"]:
            yaml.safe_dump_all(model["objects"], sort_keys=True)

    def validate() -> None:
        problems = [problem for obj in objects for problem in k8s_schemas.problems(obj)]
        if problems:
            raise SystemExit(f"rendered objects are invalid: {problems[:5]}")

    render_s, dump_s, validate_s = (median_time(func, repeat) for func in (render, dump, validate))
    per = 1000 / count
    rows = [
        (
            f"render: {count} models ({len(objects)} objects), vllm_manifests core",
            f"{render_s * per:.2f} ms/model",
            f"{render_s / dump_s:.2f}x writing them as YAML",
        ),
        ("render: baseline, yaml.safe_dump_all of the same objects", f"{dump_s * per:.2f} ms/model", "1x"),
        ("render: validation, Kubernetes 1.31 + 1.37 and CRD schemas", f"{validate_s * per:.2f} ms/model", f"{validate_s / dump_s:.2f}x writing them as YAML"),
    ]

    env = ansible_env()
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        work = Path(tmp)
        variables = {"vllm_models": models, "vllm_preflight": False, **{f"vllm_{key}": value for key, value in RENDER_CONFIG.items() if key != "namespace"}}
        (work / "vars.json").write_text(json.dumps(variables))
        (work / "role.yml").write_text(
            "- name: Render the models with the vllm role\n  hosts: localhost\n  gather_facts: false\n  roles:\n    - role: llmops.gpu_inference.vllm\n"
        )
        # The floor: one template task writing the same number of files (one small object each).
        (work / "object.j2").write_text("{{ item | to_nice_yaml }}\n")
        (work / "floor.yml").write_text(
            "- name: Write one file per model\n  hosts: localhost\n  gather_facts: false\n  tasks:\n"
            "    - name: Write the files\n      ansible.builtin.template:\n        src: object.j2\n"
            '        dest: "{{ render_dir }}/{{ item.name }}.yaml"\n        mode: "0644"\n'
            '      loop: "{{ vllm_models }}"\n'
        )
        first, rerun, floor_first, floor_rerun = [], [], [], []
        for attempt in range(repeat):
            out, floor_out = work / f"out-{attempt}", work / f"floor-{attempt}"
            floor_out.mkdir()
            role_args = ["-i", "localhost,", "-c", "local", "-e", f"@{work / 'vars.json'}", "-e", f"vllm_render_dir={out}", str(work / "role.yml")]
            floor_args = ["-i", "localhost,", "-c", "local", "-e", f"@{work / 'vars.json'}", "-e", f"render_dir={floor_out}", str(work / "floor.yml")]
            first.append(timed_playbook(role_args, env))
            floor_first.append(timed_playbook(floor_args, env))
            rerun.append(timed_playbook(role_args, env))
            floor_rerun.append(timed_playbook(floor_args, env))
        written = sorted(path.name for path in (work / "out-0" / "models").iterdir())
        if len(written) != count:
            raise SystemExit(f"the role wrote {len(written)} model files, not {count}")
    role_s, role_rerun_s = statistics.median(first), statistics.median(rerun)
    floor_s, floor_rerun_s = statistics.median(floor_first), statistics.median(floor_rerun)
    rows += [
        (
            f"render: vllm role, render mode, {count} models, first run",
            f"{role_s:.1f} s ({role_s * per:.0f} ms/model)",
            f"{role_s / floor_s:.2f}x a {count}-file template loop",
        ),
        (
            f"render: vllm role, render mode, {count} models, re-run (writes nothing)",
            f"{role_rerun_s:.1f} s",
            f"{role_rerun_s / floor_rerun_s:.2f}x the loop's re-run",
        ),
        (f"render: baseline, {count}-file template loop (first run, re-run)", f"{floor_s:.1f} s, {floor_rerun_s:.1f} s", "1x"),
    ]
    return rows


def timed_playbook_call(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="facts,mig,sync,fleet,render", help="comma-separated sections (facts, mig, sync, fleet, render)")
    parser.add_argument("--hosts", default="4,8,16", help="fleet sizes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", default=str(ROOT / "bench" / "RESULTS.md"))
    args = parser.parse_args()
    sections = args.only.split(",")
    rows = []
    if "facts" in sections:
        rows += bench_facts(args.repeat)
    if "mig" in sections:
        rows += bench_mig()
    if "sync" in sections:
        rows += bench_sync(args.repeat)
    if "fleet" in sections:
        rows += bench_fleet([int(n) for n in args.hosts.split(",")], args.repeat)
    if "render" in sections:
        rows += bench_render(args.repeat)

    lines = [
        "# make bench results",
        "",
        f"{time.strftime('%Y-%m-%d')}, {platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"median of {args.repeat} interleaved runs. Settings: pipelining on, forks 5, gather_facts off "
        "(the roles need no gathered facts, so no fact cache), inject_facts_as_vars off.",
        "",
        "| What | Measured | Ratio to baseline |",
        "|---|---|---|",
        *(f"| {what} | {measured} | {ratio} |" for what, measured, ratio in rows),
        "",
    ]
    Path(args.output).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
