"""The simulator's state machine: MIG mode, reset, GPU/compute instances, identities, failures."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys

import pytest
from sim_helpers import SIMULATOR

BUS0 = "00000000:18:00.0"
IN_USE_RESET = (
    "1 device is currently being used by one or more other processes (e.g., Fabric Manager, CUDA application, graphics "
    "application such as an X server, or a monitoring application such as another instance of nvidia-smi). Please first "
    "kill all processes using this device and all compute applications running in the system.\n"
)


def modes(sim, gpu=0):
    return sim.query("mig.mode.current,mig.mode.pending", gpu)


# --------------------------------------------------------------------------------------------
# MIG mode and reset
# --------------------------------------------------------------------------------------------


def test_mig_enable_on_an_idle_gpu_takes_effect_at_once(sim):
    sim.configure(model="H100-80GB", count=2)
    assert sim.ok("-i", "0", "-mig", "1") == (
        f"Enabled MIG Mode for GPU {BUS0}\n\n"
        f"Warning: persistence mode is disabled on device {BUS0}. See the Known Issues section of the nvidia-smi(1) man page for more "
        "information. Run with [--help | -h] switch to get more information on how to enable persistence mode.\nAll done.\n"
    )
    assert modes(sim, 0) == ["Enabled", "Enabled"]
    assert modes(sim, 1) == ["Disabled", "Disabled"]


def test_mig_enable_stays_pending_while_the_gpu_is_held_and_reset_applies_it(sim):
    sim.configure(model="H100-80GB", count=1, persistence_mode=True)
    out = sim.ok("-i", "0", "-mig", "1")
    assert out.startswith(f"Warning: MIG mode is in pending enable state for GPU {BUS0}:In use by another client\n{BUS0} is currently being used")
    assert out.endswith("reboot the system to make MIG mode effective.\nAll done.\n")
    assert modes(sim) == ["Disabled", "Enabled"]

    refused = sim("-i", "0", "-r")  # persistence mode holds the GPU like nvidia-persistenced does
    assert (refused.rc, refused.out) == (255, f"The following GPUs could not be reset:\n  GPU {BUS0}: In use by another client\n\n{IN_USE_RESET}")
    assert modes(sim) == ["Disabled", "Enabled"]

    assert sim.ok("-i", "0", "-pm", "0") == f"Disabled persistence mode for GPU {BUS0}.\nAll done.\n"
    assert sim.ok("-i", "0", "-r") == f"GPU {BUS0} was successfully reset.\n"
    assert modes(sim) == ["Enabled", "Enabled"]


def test_reset_is_refused_while_processes_run_and_changes_nothing(sim):
    sim.configure(model="A100-SXM4-80GB", count=1, processes=[{"gpu": 0, "pid": 4242, "name": "python3", "used_memory_mib": 2048}])
    assert "pending enable state" in sim.ok("-mig", "1")
    before = sim.state()
    refused = sim("-r")
    assert refused.rc == 255
    assert refused.out == f"The following GPUs could not be reset:\n  GPU {BUS0}: In use by another client\n\n{IN_USE_RESET}"
    assert sim.state() == before


def test_reset_is_all_or_nothing(sim):
    sim.configure(model="H100-80GB", count=2, busy_gpus=[1], mig_enabled=[0, 1], mig_layout={"0": ["7g.80gb"]})
    result = sim("-r")
    assert result.rc == 255
    assert "GPU 00000000:2A:00.0: In use by another client" in result.out
    assert "GPU 00000000:18:00.0" not in result.out
    assert sim.ok("mig", "-i", "0", "-lgi").count("7g.80gb") == 1  # GPU 0 was not reset either


def test_passthrough_vm_keeps_mig_pending_until_a_reboot(sim):
    sim.configure(model="A100-SXM4-40GB", count=1, mig_capable_reset=False)
    assert sim.ok("-mig", "1") == (
        f"Warning: MIG mode is in pending enable state for GPU {BUS0}:Not Supported\n"
        f"Reboot the system or try nvidia-smi --gpu-reset to make MIG mode effective on GPU {BUS0}\nAll done.\n"
    )
    result = sim("-r")
    assert (result.rc, result.out) == (255, f"The following GPUs could not be reset:\n  GPU {BUS0}: Not Supported\n")
    assert modes(sim) == ["Disabled", "Enabled"]
    assert sim.ok("sim", "reboot").startswith("nvidia-smi-sim: rebooted")
    assert modes(sim) == ["Enabled", "Enabled"]


def test_mig_disable_is_refused_while_gpu_instances_exist(sim):
    sim.configure(model="H100-80GB", count=1, mig_enabled=[0], mig_layout={"0": ["3g.40gb"]})
    result = sim("-mig", "0")
    assert (result.rc, result.out) == (255, f"Unable to disable MIG Mode for GPU {BUS0}: In use by another client\nTerminating early due to previous errors.\n")
    sim.ok("mig", "-dci")
    sim.ok("mig", "-dgi")
    assert sim.ok("-mig", "0").startswith(f"Disabled MIG Mode for GPU {BUS0}\n")
    assert modes(sim) == ["Disabled", "Disabled"]


def test_enabling_mig_again_keeps_the_instances(sim):
    sim.configure(model="H100-80GB", count=1, mig_enabled=[0], mig_layout={"0": ["3g.40gb"]})
    assert sim.ok("-mig", "1").startswith(f"Enabled MIG Mode for GPU {BUS0}\n")
    assert gpu_instances(sim) == [("3g.40gb", 1, "0:4")]


def test_reverting_a_pending_change_needs_no_reset(sim):
    sim.configure(model="H100-80GB", count=1, busy_gpus=[0])
    sim.ok("-mig", "1")
    assert modes(sim) == ["Disabled", "Enabled"]
    assert sim.ok("-mig", "0").startswith(f"Disabled MIG Mode for GPU {BUS0}\n")
    assert modes(sim) == ["Disabled", "Disabled"]


def test_mig_on_a_gpu_without_mig_is_a_warning(sim):
    sim.configure(model="L40S", count=1)
    assert sim.ok("-mig", "1") == f"Unable to enable MIG Mode for GPU {BUS0}: Not Supported\nTreating as warning and moving on.\nAll done.\n"
    assert sim("--query-gpu=mig.mode.current,mig.mode.pending", "--format=csv,noheader").out == "[N/A], [N/A]\n"
    assert sim("mig", "-lgip") == (6, "No MIG-supported devices found.\n", "")


def test_reset_destroys_instances_and_keeps_the_mode(sim):
    sim.configure(model="H100-80GB", count=1, mig_enabled=[0], mig_layout={"0": ["3g.40gb", "3g.40gb"]})
    sim.ok("-r")
    assert modes(sim) == ["Enabled", "Enabled"]
    assert sim("mig", "-lgi") == (6, "No GPU instances found: Not Found\n", "")


def test_persistence_mode_reports_what_it_changed(sim):
    sim.configure(model="H100-80GB", count=1)
    assert sim.ok("-pm", "1") == f"Enabled persistence mode for GPU {BUS0}.\nAll done.\n"
    assert sim.ok("-pm", "ENABLED") == f"Persistence mode is already Enabled for GPU {BUS0}.\nAll done.\n"
    assert sim.query("persistence_mode") == ["Enabled"]
    sim.configure(model="H100-80GB", count=1, driver_version="590.48.01")
    assert sim.ok("-pm", "0") == f"Disabled persistence mode for GPU {BUS0}.\nAll done.\n"
    assert sim.ok("-pm", "1") == f"Enabled Legacy persistence mode for GPU {BUS0}.\nAll done.\n"


# --------------------------------------------------------------------------------------------
# GPU and compute instances
# --------------------------------------------------------------------------------------------


def gpu_instances(sim, *args):
    """(profile, GI id, placement) of each -lgi row."""
    rows = [line.strip("|").split() for line in sim.ok("mig", "-lgi", *args).splitlines() if " MIG " in line]
    return [(cells[2], int(cells[4]), cells[5]) for cells in rows]


def test_cgi_places_each_profile_at_its_lowest_free_start_and_numbers_gis_by_placement(sim):
    # H100 NVL capture after -cgi 9,15,19 -C: GI ids 1, 5 and 13.
    sim.configure(model="H100-NVL", count=1, mig_enabled=[0])
    out = sim.ok("mig", "-cgi", "9,15,19", "-C")
    assert [line.split()[5] for line in out.splitlines() if "GPU instance ID" in line and "compute" not in line] == ["1", "5", "13"]
    assert gpu_instances(sim) == [("3g.47gb", 1, "0:4"), ("1g.24gb", 5, "4:2"), ("1g.12gb", 13, "6:1")]


def test_cgi_in_the_real_h100_order_gives_the_real_gi_ids(sim):
    # The H100 MIG capture shows 3g.40gb, 2g.20gb and 2x 1g.10gb as GI 2, 3, 9 and 10.
    sim.configure(model="H100-80GB", count=1, mig_enabled=[0])
    sim.ok("mig", "-cgi", "14,19,19,9", "-C")
    assert gpu_instances(sim) == [("3g.40gb", 2, "4:4"), ("2g.20gb", 3, "0:2"), ("1g.10gb", 9, "2:1"), ("1g.10gb", 10, "3:1")]


def test_seven_1g_instances_get_gi_ids_7_to_13(sim):
    sim.configure(model="A100-SXM4-40GB", count=1, mig_enabled=[0])
    sim.ok("mig", "-cgi", ",".join(["1g.5gb"] * 7))
    assert [(gi, placement) for _profile, gi, placement in gpu_instances(sim)] == [(7 + n, f"{n}:1") for n in range(7)]


def test_a30_numbers_its_four_slices_the_same_way(sim):
    sim.configure(model="A30", count=1, mig_enabled=[0])
    # A real A30 answers -cgi 14 -C on an empty GPU with "GPU instance ID  3".
    assert sim.ok("mig", "-cgi", "14", "-C").splitlines()[0] == "Successfully created GPU instance ID  3 on GPU  0 using profile MIG 1g.6gb (ID 14)"
    assert sim("mig", "-cgi", "4g.24gb").rc == 255  # the full profile needs an empty GPU
    assert "GPU instance ID  2 " in sim.ok("mig", "-cgi", "2g.12gb")


def test_insufficient_resources_stops_at_the_failing_profile_and_keeps_the_earlier_ones(sim):
    sim.configure(model="GH200-96GB", count=1, mig_enabled=[0])
    result = sim("mig", "-cgi", "20,20,20", "-C")
    assert result.rc == 255
    assert result.out.splitlines()[2:] == [
        "Unable to create a GPU instance on GPU  0 using profile 20: Insufficient Resources",
        "Failed to create GPU instances: Insufficient Resources",
    ]
    assert gpu_instances(sim) == [("1g.12gb+me", 7, "0:1")]


def test_a_3g_created_first_blocks_a_4g(sim):
    sim.configure(model="A100-SXM4-80GB", count=1, mig_enabled=[0])
    sim.ok("mig", "-cgi", "3g.40gb")
    assert sim("mig", "-cgi", "4g.40gb").rc == 255
    sim.ok("mig", "-dgi")
    sim.ok("mig", "-cgi", "4g.40gb,3g.40gb")
    assert gpu_instances(sim) == [("4g.40gb", 1, "0:4"), ("3g.40gb", 2, "4:4")]


def test_profile_names_resolve_per_gpu_model(sim):
    sim.configure(model="A100-SXM4-40GB", count=1, mig_enabled=[0])
    assert "(ID 15)" in sim.ok("mig", "-cgi", "1g.10gb")
    sim.configure(model="H100-80GB", count=1, mig_enabled=[0])
    assert "(ID 19)" in sim.ok("mig", "-cgi", "MIG 1g.10gb")


def test_profiles_follow_the_driver_branch(sim):
    sim.configure(model="A100-SXM4-40GB", count=1, mig_enabled=[0], driver_version="510.47.03")
    assert "1g.10gb" not in sim.ok("mig", "-lgip")
    result = sim("mig", "-cgi", "15")
    assert (result.rc, result.out.splitlines()[0]) == (2, "Unable to create a GPU instance on GPU  0 using profile 15: Invalid Argument")


def test_unknown_profile_is_an_invalid_argument(sim):
    sim.configure(model="H100-80GB", count=1, mig_enabled=[0])
    result = sim("mig", "-cgi", "3g.99gb")
    assert result == (
        2,
        "Unable to create a GPU instance on GPU  0 using profile 3g.99gb: Invalid Argument\nFailed to create GPU instances: Invalid Argument\n",
        "",
    )


def test_dgi_is_refused_while_compute_instances_exist(sim):
    sim.configure(model="H100-80GB", count=1, mig_enabled=[0])
    sim.ok("mig", "-cgi", "9", "-C")
    result = sim("mig", "-dgi", "-gi", "1")
    assert result == (
        255,
        "Unable to destroy GPU instance ID  1 from GPU  0: In use by another client\nFailed to destroy GPU instances: In use by another client\n",
        "",
    )
    assert sim.ok("mig", "-dci", "-gi", "1", "-ci", "0") == "Successfully destroyed compute instance ID  0 from GPU  0 GPU instance ID  1\n"
    assert sim.ok("mig", "-dgi", "-gi", "1") == "Successfully destroyed GPU instance ID  1 from GPU  0\n"
    assert sim("mig", "-dgi") == (6, "No GPU instances found: Not Found\n", "")


def test_dci_is_refused_for_a_compute_instance_a_process_runs_on(sim):
    process = {"gpu": 0, "pid": 77, "name": "vllm", "used_memory_mib": 30000, "gi": 1, "ci": 0}
    sim.configure(model="H100-80GB", count=1, mig_enabled=[0], mig_layout={"0": ["3g.40gb"]}, processes=[process])
    result = sim("mig", "-dci")
    assert result.rc == 255
    assert result.out.splitlines()[0] == "Unable to destroy compute instance ID  0 from GPU  0 GPU instance ID  1: In use by another client"


def test_compute_instance_ids_are_the_lowest_free_within_their_gpu_instance(sim):
    sim.configure(model="H200", count=1, mig_enabled=[0])
    sim.ok("mig", "-cgi", "3g.71gb")
    assert sim.ok("mig", "-gi", "1", "-cci", "1c.3g.71gb").endswith("using profile MIG 1c.3g.71gb (ID  0)\n")
    assert "compute instance ID  1 " in sim.ok("mig", "-gi", "1", "-cci", "1")  # CI profile 1 = 2 slices
    assert sim("mig", "-gi", "1", "-cci", "1").rc == 255  # 3 slices are used up
    sim.ok("mig", "-gi", "1", "-ci", "0", "-dci")
    assert "compute instance ID  0 " in sim.ok("mig", "-gi", "1", "-cci", "0")
    listed = [line.split()[:4] for line in sim.ok("-L").splitlines()[1:]]
    assert listed == [["MIG", "1c.3g.71gb", "Device", "0:"], ["MIG", "2c.3g.71gb", "Device", "1:"]]


def test_cci_without_a_profile_creates_the_full_compute_instance(sim):
    sim.configure(model="A100-SXM4-40GB", count=1, mig_enabled=[0])
    sim.ok("mig", "-cgi", "19")
    assert sim.ok("mig", "-gi", "7", "-cci") == "Successfully created compute instance ID  0 on GPU  0 GPU instance ID  7 using profile MIG 1g.5gb (ID  0)\n"


def test_listings_on_gpus_without_instances_say_not_found(sim):
    sim.configure(model="H100-80GB", count=2, mig_enabled=[1])
    assert sim("mig", "-i", "0", "-lgi") == (6, "No MIG-enabled devices found.\n", "")
    assert sim("mig", "-lgi") == (6, "No GPU instances found: Not Found\n", "")
    assert sim("mig", "-lci") == (6, "No compute instances found: Not Found\n", "")
    sim.ok("mig", "-cgi", "9")
    assert sim("mig", "-lci") == (6, "No compute instances found: Not Found\n", "")


def test_lgip_free_counts_follow_the_instances(sim):
    sim.configure(model="A30", count=1, mig_enabled=[0], mig_layout={"0": ["1g.6gb", "1g.6gb"]})
    free = {line.split()[3]: line.split()[5] for line in sim.ok("mig", "-lgip").splitlines() if " MIG " in line}
    assert free == {"1g.6gb": "2/4", "1g.6gb+me": "1/1", "2g.12gb": "1/2", "4g.24gb": "0/1"}


# --------------------------------------------------------------------------------------------
# Identity
# --------------------------------------------------------------------------------------------


def test_uuids_are_stable_per_host_and_differ_between_hosts(make_sim):
    one, again, other = make_sim("one"), make_sim("again"), make_sim("other")
    for host, sim in (("h1", one), ("h1", again), ("h2", other)):
        sim.configure(model="H100-80GB", count=2, hostname=host, mig_enabled=[0], mig_layout={"0": ["3g.40gb"]})
    listing = one.ok("-L")
    assert listing == one.ok("-L") == again.ok("-L")
    assert listing != other.ok("-L")
    uuids = {word.rstrip(")") for word in listing.split() if word.startswith(("GPU-", "MIG-"))}
    assert len(uuids) == 3
    assert not uuids & {word.rstrip(")") for word in other.ok("-L").split()}


def test_mig_uuid_is_kept_for_the_same_placement(sim):
    sim.configure(model="H100-80GB", count=1, mig_enabled=[0])
    sim.ok("mig", "-cgi", "9", "-C")
    first = sim.ok("-L")
    sim.ok("mig", "-dci")
    sim.ok("mig", "-dgi")
    sim.ok("mig", "-cgi", "9", "-C")
    assert sim.ok("-L") == first


# --------------------------------------------------------------------------------------------
# Failures
# --------------------------------------------------------------------------------------------

DRIVER_NOT_LOADED = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n\n"
)


@pytest.mark.parametrize("argv", [["-L"], ["-q", "-x"], ["--query-gpu=name", "--format=csv"], ["mig", "-lgi"], ["-r"], []])
def test_driver_not_loaded(sim, argv):
    sim.configure(driver_loaded=False)
    assert sim(*argv) == (9, DRIVER_NOT_LOADED, "")


def test_unknown_query_field(sim):
    sim.configure(count=1)
    assert sim("--query-gpu=name,cuda_version", "--format=csv") == (2, 'Field "cuda_version" is not a valid field to query.\n\n', "")


def test_kmd_version_is_a_field_from_r610_on(sim):
    sim.configure(count=1)
    assert sim("--query-gpu=kmd_version", "--format=csv").rc == 2
    sim.configure(count=1, driver_version="610.57.04")
    assert sim.query("driver_version,kmd_version") == ["610.57.04", "610.57.04"]


def test_unknown_option_and_missing_value(sim):
    sim.configure(count=1)
    assert sim("--frobnicate") == (2, "ERROR: Option --frobnicate is not recognized. Please run 'nvidia-smi -h' for help.\n\n", "")
    assert sim("-i") == (255, "ERROR: Option -i is missing its value. Please run 'nvidia-smi -h' for help.\n\n", "")
    assert sim("--query-gpu=name") == (2, "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n", "")
    assert sim("-L", "-r").rc == 2


def test_real_options_the_simulator_does_not_model_say_so(sim):
    sim.configure(count=1)
    result = sim("-q", "-d", "MEMORY")
    assert result.rc == 2
    assert result.out == ""
    assert "nvidia-smi-sim: option -d exists in the real nvidia-smi but is not simulated" in result.err


def test_unknown_gpu_and_no_gpus(sim):
    sim.configure(count=2)
    assert sim("-i", "2", "-L") == (6, "No devices were found\n", "")
    sim.configure(count=0)
    assert sim("-L") == (6, "No devices were found\n", "")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"modle": "H100-80GB"}, "unknown configuration keys in"),
        ({"model": "B300"}, "unknown model 'B300'"),
        ({"model": "L40S", "mig_enabled": [0]}, "L40S is not MIG-capable"),
        ({"mig_enabled": [0], "mig_layout": {"0": ["7g.80gb", "1g.10gb"]}}, "mig_layout of GPU 0 does not fit"),
    ],
)
def test_bad_configuration_is_reported(sim, config, message):
    sim.configure(**config)
    result = sim("-L")
    assert (result.rc, result.out) == (255, "")
    assert message in result.err


def test_missing_configuration_is_reported(sim):
    result = sim("-L")
    assert result.rc == 255
    assert "nvidia-smi-sim: configuration" in result.err
    assert "not found" in result.err


# --------------------------------------------------------------------------------------------
# State file
# --------------------------------------------------------------------------------------------


def test_state_is_created_on_first_use_and_kept_between_calls(sim):
    sim.configure(model="H100-80GB", count=2, persistence_mode=True)
    assert not sim.state_path.exists()
    sim.ok("-L")
    assert sim.state()["gpus"][0] == {"gpu_instances": [], "mig_current": "Disabled", "mig_pending": "Disabled", "persistence": True}
    sim.ok("-i", "1", "-pm", "0")
    assert sim.query("persistence_mode", 1) == ["Disabled"]
    assert sim.query("persistence_mode", 0) == ["Enabled"]


def test_state_is_rebuilt_when_the_config_describes_other_hardware(sim):
    sim.configure(model="H100-80GB", count=2)
    sim.ok("-mig", "1")
    sim.configure(model="H100-80GB", count=2, processes=[{"gpu": 0, "pid": 1}])  # same hardware: state kept
    assert modes(sim) == ["Enabled", "Enabled"]
    sim.configure(model="H200", count=2)
    assert modes(sim) == ["Disabled", "Disabled"]


def test_state_writes_are_atomic_and_leave_no_temporary_files(sim):
    sim.configure(model="H100-80GB", count=1, mig_enabled=[0])
    for _attempt in range(3):
        sim.ok("mig", "-cgi", "19", "-C")
    assert sorted(p.name for p in sim.state_path.parent.iterdir()) == ["config.json", "state.json", "state.json.lock"]
    assert len(sim.state()["gpus"][0]["gpu_instances"]) == 3


def test_concurrent_commands_are_serialized(sim):
    sim.configure(model="H100-80GB", count=8, mig_enabled=list(range(8)))
    env = dict(os.environ, NVIDIA_SMI_SIM_CONFIG=str(sim.config_path), NVIDIA_SMI_SIM_STATE=str(sim.state_path))
    commands = [[sys.executable, str(SIMULATOR), "mig", "-i", str(gpu % 8), "-cgi", "1g.10gb", "-C"] for gpu in range(16)]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL) for argv in commands]
    assert [p.wait(timeout=60) for p in procs] == [0] * 16
    assert [len(gpu["gpu_instances"]) for gpu in sim.state()["gpus"]] == [2] * 8


def test_sim_state_prints_the_state(sim):
    sim.configure(model="H100-80GB", count=1)
    assert json.loads(sim.ok("sim", "state"))["hardware"] == {"model": "H100-80GB", "count": 1}


# --------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------


def test_query_gpu_csv_with_units_header_and_na(sim):
    sim.configure(model="H100-80GB", count=2, mig_enabled=[1], telemetry={"0": {"utilization_gpu_pct": 97, "power_draw_w": 612.5}})
    fields = "index,name,pci.bus_id,pci.device_id,memory.total,utilization.gpu,power.draw,mig.mode.current"
    assert sim.ok(f"--query-gpu={fields}", "--format=csv") == (
        "index, name, pci.bus_id, pci.device_id, memory.total [MiB], utilization.gpu [%], power.draw [W], mig.mode.current\n"
        "0, NVIDIA H100 80GB HBM3, 00000000:18:00.0, 0x233010DE, 81559 MiB, 97 %, 612.50 W, Disabled\n"
        "1, NVIDIA H100 80GB HBM3, 00000000:2A:00.0, 0x233010DE, 81559 MiB, [N/A], 70.73 W, Enabled\n"
    )
    assert sim.ok("-i", "1", "--query-gpu=memory.total,utilization.gpu", "--format=csv,noheader,nounits") == "81559, [N/A]\n"


def test_query_gpu_by_uuid_and_bus_id(sim):
    sim.configure(model="H100-80GB", count=3)
    uuid = sim.query("uuid", 2)[0]
    assert sim.ok("-i", uuid, "--query-gpu=index", "--format=csv,noheader") == "2\n"
    assert sim.ok("-i", "00000000:2A:00.0", "--query-gpu=index", "--format=csv,noheader") == "1\n"


def test_ecc_errors_and_remapping_from_the_config(sim):
    sim.configure(model="A100-SXM4-80GB", count=2, ecc_errors={"1": {"volatile_dbe": 3, "aggregate_dbe": 5, "pending_remap": True}})
    assert sim.query("ecc.errors.uncorrected.volatile.total,remapped_rows.pending", 1) == ["3", "Yes"]
    assert sim.query("ecc.errors.uncorrected.volatile.total,remapped_rows.pending", 0) == ["0", "No"]


def test_query_compute_apps_prints_canonical_headers(sim):
    processes = [{"gpu": 0, "pid": 1234, "name": "python3", "used_memory_mib": 1024}, {"gpu": 1, "pid": 99, "name": "Xorg", "type": "G"}]
    sim.configure(model="H100-80GB", count=2, processes=processes)
    assert sim.ok("--query-compute-apps=pid,name,used_memory", "--format=csv") == "pid, process_name, used_gpu_memory [MiB]\n1234, python3, 1024 MiB\n"
    assert sim.ok("--query-compute-apps=pid", "--format=csv,noheader") == "1234\n"


def test_version_and_r610_renames(sim):
    sim.configure(count=1, driver_version="595.58.03")
    assert sim.ok("--version") == "NVIDIA-SMI version  : 595.58.03\nNVML version        : 595.58\nDRIVER version      : 595.58.03\nCUDA Version        : 13.2\n"
    sim.configure(count=1, driver_version="610.57.04")
    assert sim.ok("--version").splitlines()[2:] == [
        'DRIVER version      : Deprecated, see "KMD version" instead',
        'CUDA version        : Deprecated, see "CUDA UMD version" instead',
        "KMD version         : 610.57.04",
        "CUDA UMD version    : 13.3",
    ]
    assert "KMD Version: 610.57.04     CUDA UMD Version: 13.3" in sim.ok()


def test_cuda_version_can_be_set(sim):
    sim.configure(count=1, cuda_version="N/A")
    assert "<cuda_version>N/A</cuda_version>" in sim.ok("-q", "-x")


# --------------------------------------------------------------------------------------------
# The file itself
# --------------------------------------------------------------------------------------------


def test_simulator_source_is_python_3_9_syntax():
    ast.parse(SIMULATOR.read_text(encoding="utf-8"), feature_version=(3, 9))


def test_simulator_runs_as_an_executable_with_the_system_python(sim, tmp_path):
    python = shutil.which("python3", path="/usr/bin") or sys.executable
    sim.configure(model="H200", count=1)
    env = dict(os.environ, NVIDIA_SMI_SIM_CONFIG=str(sim.config_path), NVIDIA_SMI_SIM_STATE=str(tmp_path / "exe-state.json"))
    done = subprocess.run([python, "-I", str(SIMULATOR), "-L"], env=env, capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith("GPU 0: NVIDIA H200 (UUID: GPU-")
    assert SIMULATOR.read_text(encoding="utf-8").startswith("#!/usr/bin/env python\n")  # install.yml makes it /usr/bin/python3
