"""make bench: what the collection costs, as ratios against a baseline measured in the same run.

Absolute times on a shared 2-core machine are noise; each figure here is a ratio against a baseline
run in the same invocation, interleaved with it, median of --repeat runs. Sections:

- facts: nvidia_smi_facts' parsing (the whole gather() with its joins) of the largest real ``-q -x``
  capture and of a simulated 8x H100 with 7 MIG devices each, against the simulator call that
  produced the 8x H100 output.
- mig: mutating nvidia-smi commands mig_layout runs to move an 8x H100 node (simulated) from one
  layout to another where one GPU differs, against destroying and recreating every GPU's instances
  (both run for real against the simulator and counted).
- fleet: the gpu_node role's second run (nothing to change) on 4, 8 and 16 test hosts against a
  playbook running ansible.builtin.ping as many times per host as the role runs tasks there.

Run as root (the fleet section starts test hosts with tests/testhosts/testhosts and removes them).
Writes bench/RESULTS.md and prints the same table. Not part of `make test`.
"""

from __future__ import annotations

import argparse
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

from ansible_collections.llmops.gpu_inference.plugins.module_utils import _mig_layout, _nvidia_smi  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="facts,mig,fleet", help="comma-separated sections (facts, mig, fleet)")
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
    if "fleet" in sections:
        rows += bench_fleet([int(n) for n in args.hosts.split(",")], args.repeat)

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
