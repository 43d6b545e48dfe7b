"""Parser tests over the real nvidia-smi captures in ../shared/fixtures/nvidia-smi."""

from __future__ import annotations

import pytest
from captures import all_captures, read_capture

from ansible_collections.llmops.gpu_inference.plugins.module_utils import _nvidia_smi as smi

GPU_KEYS = {
    "index",
    "uuid",
    "name",
    "pci_bus_id",
    "pci_device_id",
    "memory_total_mib",
    "mig_mode_current",
    "mig_mode_pending",
    "persistence_mode",
    "ecc_mode_current",
    "temperature_c",
    "power_draw_w",
    "power_limit_w",
    "utilization_gpu_pct",
    "processes",
    "mig_devices",
    "mig_profiles",
}


@pytest.mark.parametrize("name", all_captures("*.xml"))
def test_every_real_xml_capture_parses_to_the_contract(name):
    facts = smi.parse_query_xml(read_capture(name))
    assert set(facts) == {"driver_version", "cuda_version", "gpu_count", "gpus"}
    assert facts["gpu_count"] == len(facts["gpus"]) >= 1
    for index, gpu in enumerate(facts["gpus"]):
        assert set(gpu) >= GPU_KEYS, GPU_KEYS - set(gpu)
        assert gpu["index"] == index
        assert gpu["uuid"] is None or gpu["uuid"].startswith("GPU-")
        assert gpu["mig_mode_current"] in ("enabled", "disabled", None)
        assert gpu["pci_device_id"] is None or len(gpu["pci_device_id"]) == 10
        for key in ("memory_total_mib", "temperature_c", "utilization_gpu_pct"):
            assert gpu[key] is None or isinstance(gpu[key], int)
        for key in ("power_draw_w", "power_limit_w"):
            assert gpu[key] is None or isinstance(gpu[key], float)


# driver, cuda, gpu count, first GPU's name, memory MiB, MIG mode, process count: read off each file by hand.
EXPECTED = [
    ("netdata-a100-sxm4-mig-q-x.xml", "510.47.03", "11.6", 1, "NVIDIA A100-SXM4-40GB", 40960, "enabled", 0),
    ("netdata-rtx-2080-win-q-x.xml", "516.59", "11.7", 1, "NVIDIA GeForce RTX 2080", 8192, None, 26),
    ("netdata-tesla-p100-q-x.xml", "510.47.03", "11.6", 1, "Tesla P100-PCIE-16GB", 16384, None, 0),
    ("openpai-nvidia-smi-outdated-gpu-q-x.xml", "384.111", None, 1, "GeForce GT 730", None, None, 0),
    ("openpai-nvidia-smi-sample-q-x.xml", "384.66", None, 2, "GeForce GTX 1070", 8112, None, 3),
    ("openpai-nvidia-smi-sample-ecc-unsupported-q-x.xml", "410.73", "10.0", 2, "GeForce RTX 2080 Ti", 10989, None, 0),
    ("telegraf-a10g-q-x.xml", "515.105.01", "11.7", 1, "NVIDIA A10G", 23028, None, 1),
    ("telegraf-gtx-1070-ti-q-x.xml", None, None, 1, "GeForce GTX 1070 Ti", 4096, None, 0),
    ("telegraf-pr-dual-2070-v13-q-x.xml", "590.44.01", "13.1", 2, "NVIDIA GeForce RTX 2070", 8192, None, 0),
    ("telegraf-pr-gt-1030-q-x.xml", "470.74", "11.4", 1, "NVIDIA GeForce GT 1030", 1998, None, 10),
    ("telegraf-pr-tesla-p4-windows-q-x.xml", "513.46", "11.6", 1, "GRID P4-1Q", 1024, None, 13),
    ("telegraf-quadro-p400-q-x.xml", "418.43", "10.1", 1, "Quadro P400", 1998, None, 0),
    ("telegraf-rtx-3060-v12-q-x.xml", "570.124.04", "12.8", 1, "NVIDIA GeForce RTX 3060", 12288, None, 0),
    ("telegraf-rtx-3080-v13-q-x.xml", "595.58.03", "13.2", 1, "NVIDIA GeForce RTX 3080", 10240, None, 0),
    ("telegraf-rtx-4000-sff-ada-v13-q-x.xml", "595.84", "13.2", 1, "NVIDIA RTX 4000 SFF Ada Generation", 20475, None, 4),
    ("telegraf-tesla-t4-q-x.xml", "515.105.01", "11.7", 1, "Tesla T4", 15360, None, 2),
]


@pytest.mark.parametrize(("name", "driver", "cuda", "count", "gpu_name", "memory", "mig", "processes"), EXPECTED)
def test_real_capture_values(name, driver, cuda, count, gpu_name, memory, mig, processes):
    facts = smi.parse_query_xml(read_capture(name))
    gpu = facts["gpus"][0]
    assert (facts["driver_version"], facts["cuda_version"], facts["gpu_count"]) == (driver, cuda, count)
    assert (gpu["name"], gpu["memory_total_mib"], gpu["mig_mode_current"]) == (gpu_name, memory, mig)
    assert len(gpu["processes"]) == processes


def test_power_readings_old_and_new_schema():
    old = smi.parse_query_xml(read_capture("netdata-a100-sxm4-mig-q-x.xml"))["gpus"][0]
    assert (old["power_draw_w"], old["power_limit_w"]) == (66.92, 400.0)
    new = smi.parse_query_xml(read_capture("telegraf-rtx-3080-v13-q-x.xml"))["gpus"][0]
    assert (new["power_draw_w"], new["power_limit_w"]) == (142.33, 320.0)
    # R580 excerpt: power_draw is " N/A " but instant_power_draw is set.
    excerpt = smi.parse_query_xml(read_capture("netdata-rtx-pro-6000-driver-580-q-x-excerpt.xml"))["gpus"][0]
    assert excerpt["power_draw_w"] == 66.84
    assert excerpt["temperature_c"] == 37


def test_mig_enabled_xml_lists_devices_by_gi_and_ci():
    gpu = smi.parse_query_xml(read_capture("netdata-a100-sxm4-mig-q-x.xml"))["gpus"][0]
    assert (gpu["pci_device_id"], gpu["pci_sub_system_id"]) == ("0x20B010DE", "0x134F10DE")
    assert gpu["utilization_gpu_pct"] is None  # N/A on MIG-enabled GPUs
    assert [(d["index"], d["gi_id"], d["ci_id"], d["memory_mib"]) for d in gpu["mig_devices"]] == [(0, 1, 0, 19968), (1, 2, 0, 19968)]


def test_processes_carry_pid_name_and_memory():
    gpu = smi.parse_query_xml(read_capture("telegraf-tesla-t4-q-x.xml"))["gpus"][0]
    assert all(isinstance(p["pid"], int) and p["name"] for p in gpu["processes"])
    assert all(isinstance(p["used_memory_mib"], int) for p in gpu["processes"])


def test_ecc_counters_across_schemas():
    a100 = smi.parse_query_xml(read_capture("netdata-a100-sxm4-mig-q-x.xml"))["gpus"][0]
    assert (a100["ecc_mode_current"], a100["ecc_uncorrected_volatile"], a100["ecc_uncorrected_aggregate"]) == ("enabled", None, 0)
    unsupported = smi.parse_query_xml(read_capture("openpai-nvidia-smi-sample-ecc-unsupported-q-x.xml"))["gpus"][0]
    assert (unsupported["ecc_mode_current"], unsupported["ecc_uncorrected_aggregate"]) == (None, None)
    a10g = smi.parse_query_xml(read_capture("telegraf-a10g-q-x.xml"))["gpus"][0]
    assert (a10g["remapped_rows_pending"], a10g["remapped_rows_failure"]) == (False, False)


def test_redacted_or_zero_device_ids_are_not_invented():
    assert smi.parse_query_xml(read_capture("telegraf-rtx-3090-v12-q-x.xml"))["gpus"][0]["pci_device_id"] is None


def test_fabric_state_is_null_without_nvswitch():
    assert smi.parse_query_xml(read_capture("telegraf-pr-3090-v13-q-x.xml"))["gpus"][0]["fabric_state"] is None


@pytest.mark.parametrize("name", ["gpud-h100-535.183.01-q-truncated-invalid.txt", "gpud-8x-h100-80gb-hbm3-535.161.08-q.txt"])
def test_non_xml_output_is_a_clear_error(name):
    with pytest.raises(smi.NvidiaSmiError, match="not valid XML"):
        smi.parse_query_xml(read_capture(name))


def test_truncated_xml_is_a_clear_error():
    text = read_capture("telegraf-tesla-t4-q-x.xml")
    with pytest.raises(smi.NvidiaSmiError, match="may have been truncated"):
        smi.parse_query_xml(text[: len(text) // 2])


@pytest.mark.parametrize("text", ["", "   \n"])
def test_empty_output_is_a_clear_error(text):
    with pytest.raises(smi.NvidiaSmiError, match="printed nothing"):
        smi.parse_query_xml(text)


def test_wrong_root_element_is_rejected():
    with pytest.raises(smi.NvidiaSmiError, match="expected <nvidia_smi_log>"):
        smi.parse_query_xml("<log><gpu/></log>")


def test_r610_kmd_and_umd_versions_win_and_deprecation_suffixes_are_stripped():
    # R610 keeps "Driver Version" with a "[Deprecated; ...]" suffix and adds KMD/UMD versions
    # (nvidia_gpu_exporter 610.57.04 text capture); no R610 XML capture exists, so the element names are assumed.
    xml = (
        "<nvidia_smi_log><driver_version>610.57.04 [Deprecated; will be removed in CUDA 14.0. Use KMD Version instead]"
        "</driver_version><cuda_version>13.3 [Deprecated; will be removed in CUDA 14.0. Use CUDA UMD Version instead]</cuda_version>"
        "<kmd_version>610.57.04</kmd_version><cuda_umd_version>13.3</cuda_umd_version></nvidia_smi_log>"
    )
    assert smi.parse_query_xml(xml)["driver_version"] == "610.57.04"
    assert smi.parse_query_xml(xml.replace("<kmd_version>610.57.04</kmd_version>", ""))["driver_version"] == "610.57.04"


def test_unknown_elements_are_ignored_and_missing_ones_are_null():
    facts = smi.parse_query_xml("<nvidia_smi_log><gpu id='0000:01:00.0'><future_thing>x</future_thing></gpu></nvidia_smi_log>")
    gpu = facts["gpus"][0]
    assert gpu["pci_bus_id"] == "0000:01:00.0"
    assert gpu["name"] is None and gpu["memory_total_mib"] is None and gpu["processes"] == []


# --- MIG listings ------------------------------------------------------------------------------


def test_list_gpus_modern_mig_uuids():
    gpus = smi.parse_list_gpus(read_capture("h100-80gb-550-nvidia-smi-L-mig-7x1g10gb.txt"))
    assert [(g["index"], g["name"]) for g in gpus] == [(0, "NVIDIA H100 80GB HBM3")]
    assert [d["profile"] for d in gpus[0]["mig_devices"]] == ["1g.10gb"] * 7
    assert gpus[0]["mig_devices"][6] == {"index": 6, "profile": "1g.10gb", "uuid": "MIG-981c86e9-3607-57d7-9426-295347e4b925"}


def test_list_gpus_legacy_r450_mig_uuids():
    gpus = smi.parse_list_gpus(read_capture("a100-40gb-r450-nvidia-smi-L-mig-legacy-uuid-format.txt"))
    assert gpus[0]["name"] == "A100-SXM4-40GB"
    assert gpus[0]["mig_devices"][0]["uuid"] == "MIG-GPU-4200ccc0-2667-d4cb-9137-f932c716232a/7/0"
    assert len(gpus[0]["mig_devices"]) == 7


def test_list_gpus_compute_instance_sub_profiles():
    text = read_capture("nvidia_gpu_exporter-capture-linux-x86_64--nvidia-h200-mig--590.48.01.txt")
    gpus = smi.parse_list_gpus(text)
    assert gpus[0]["name"] == "NVIDIA H200"
    assert [d["profile"] for d in gpus[0]["mig_devices"]] == ["1c.3g.71gb", "2c.3g.71gb", "2g.35gb", "1g.18gb", "1g.18gb"]


def test_gpu_instances_with_placements():
    instances = smi.parse_mig_gpu_instances(read_capture("a100-40gb-mig-lgi.txt"))
    assert instances == [
        {"gpu": 0, "profile": "3g.20gb", "profile_id": 9, "gi_id": 1, "placement_start": 4, "placement_size": 4},
        {"gpu": 0, "profile": "3g.20gb", "profile_id": 9, "gi_id": 2, "placement_start": 0, "placement_size": 4},
    ]


def test_gpu_instances_ids_follow_the_driver_not_the_placement():
    # After mig-parted's all-1g.5gb the driver numbered the GIs 7.. (the docs excerpt holds six of the seven rows).
    instances = smi.parse_mig_gpu_instances(read_capture("a100-40gb-mig-lgi-7x1g5gb-after-mig-parted.txt"))
    assert [(i["gi_id"], i["placement_start"], i["placement_size"]) for i in instances] == [(7 + n, n, 1) for n in range(6)]


def test_compute_instances_with_sub_profiles():
    instances = smi.parse_mig_compute_instances(read_capture("a100-pcie-40gb-esxi-510-mig-lci-with-1c-profiles.txt"))
    assert [(c["gi_id"], c["profile"], c["ci_id"]) for c in instances] == [(11, "1g.5gb", 0), (12, "1g.5gb", 0), (6, "1c.2g.10gb", 0), (1, "1c.3g.20gb", 0)]


def test_compute_instances_not_found_is_empty():
    assert smi.parse_mig_compute_instances(read_capture("a100-pcie-40gb-esxi-510-mig-lci-not-found.txt")) == []


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # name -> (id, slices, memory MiB, max instances, free instances) of the first and last profile.
        ("a100-40gb-mig-lgip.txt", [("1g.5gb", 19, 1, 4864, 7, 7), ("7g.40gb", 0, 7, 40192, 1, 1)]),
        ("a30-24gb-mig-lgip-all-used.txt", [("1g.6gb", 14, 1, 5952, 4, 0), ("4g.24gb", 0, 4, 24064, 1, 0)]),
        ("gh200-96gb-550-mig-lgip.txt", [("1g.12gb", 19, 1, None, 7, None), ("7g.96gb", 0, 7, None, 1, None)]),
    ],
)
def test_gpu_instance_profiles(name, expected):
    profiles = smi.parse_mig_gpu_instance_profiles(read_capture(name))
    for profile, (pname, pid, slices, memory, total, free) in zip((profiles[0], profiles[-1]), expected, strict=True):
        assert (profile["name"], profile["id"], profile["slices"], profile["max_instances"]) == (pname, pid, slices, total)
        if memory is not None:
            assert profile["memory_mib"] == memory
        if free is not None:
            assert profile["free_instances"] == free


def test_gpu_instance_profile_memory_rounds_back_to_64_mib_steps():
    profiles = {p["name"]: p["memory_mib"] for p in smi.parse_mig_gpu_instance_profiles(read_capture("a100-40gb-mig-lgip.txt"))}
    # -lgip prints 9.62 and 19.50 GiB; the XML of the same GPU reports a 3g.20gb device as 19968 MiB.
    assert profiles["1g.10gb"] == 9856
    assert profiles["3g.20gb"] == 19968


def test_placements():
    placements = smi.parse_mig_placements(read_capture("h100-nvl-94gb-560-mig-lgipp.txt"))
    assert placements[0] == {"gpu": 0, "profile_id": 19, "starts": [0, 1, 2, 3, 4, 5, 6], "size": 1}
    assert placements[-1] == {"gpu": 0, "profile_id": 0, "starts": [0], "size": 8}
    a30 = smi.parse_mig_placements(read_capture("a30-24gb-mig-lgipp.txt"))
    assert [(p["profile_id"], p["starts"], p["size"]) for p in a30] == [(14, [0, 1, 2, 3], 1), (21, [0, 1, 2, 3], 1), (5, [0, 2], 2), (0, [0], 4)]


# --- gather: the joins and the failures ------------------------------------------------------

A100_L = (
    "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-27b94a00-ed54-5c24-b1fd-1054085de32a)\n"
    "  MIG 3g.20gb     Device  0: (UUID: MIG-aaaaaaaa-0000-5000-8000-000000000000)\n"
    "  MIG 3g.20gb     Device  1: (UUID: MIG-bbbbbbbb-0000-5000-8000-000000000000)\n"
)


class FakeSmi:
    """Answers argv with canned (rc, out, err) and records every call."""

    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv[1:])
        return self.answers[" ".join(argv[1:])]


def test_gather_joins_mig_listings_by_gi_and_ci_ids():
    run = FakeSmi(
        {
            "-q -x": (0, read_capture("netdata-a100-sxm4-mig-q-x.xml"), ""),
            "-L": (0, A100_L, ""),
            "mig -lgi": (0, read_capture("a100-40gb-mig-lgi.txt"), ""),
            "mig -lci": (6, "No compute instances found: Not Found\n", ""),
            "mig -lgip": (0, read_capture("a100-40gb-mig-lgip.txt"), ""),
        }
    )
    facts = smi.gather("/usr/bin/nvidia-smi", run)
    assert run.calls == [["-q", "-x"], ["-L"], ["mig", "-lgi"], ["mig", "-lci"], ["mig", "-lgip"]]
    devices = facts["gpus"][0]["mig_devices"]
    # GI 1 sits at 4:4 and GI 2 at 0:4 (-lgi); devices keep the XML's order and get the -L UUID of their index.
    assert [(d["gi_id"], d["profile"], d["placement_start"], d["placement_size"], d["uuid"][:12]) for d in devices] == [
        (1, "3g.20gb", 4, 4, "MIG-aaaaaaaa"),
        (2, "3g.20gb", 0, 4, "MIG-bbbbbbbb"),
    ]
    assert [p["name"] for p in facts["gpus"][0]["mig_profiles"]][:3] == ["1g.5gb", "1g.5gb+me", "1g.10gb"]
    assert "gpu" not in facts["gpus"][0]["mig_profiles"][0]


def test_gather_without_mig_runs_only_the_xml_query():
    run = FakeSmi({"-q -x": (0, read_capture("telegraf-tesla-t4-q-x.xml"), "")})
    facts = smi.gather("nvidia-smi", run)
    assert run.calls == [["-q", "-x"]]
    assert facts["gpus"][0]["mig_devices"] == [] and facts["gpus"][0]["mig_profiles"] == []


DRIVER_NOT_LOADED = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n"
)


@pytest.mark.parametrize(
    ("rc", "out", "match"),
    [
        (9, DRIVER_NOT_LOADED, "kernel module is not loaded"),
        (18, "Failed to initialize NVML: Driver/library version mismatch\n", "Reboot the node"),
        (6, "No devices were found\n", "found no NVIDIA GPU"),
        (4, "Insufficient Permissions\n", "become: true"),
        (3, "something new\n", r"'nvidia-smi -q -x' failed with exit code 3: something new"),
    ],
)
def test_gather_explains_nvidia_smi_failures(rc, out, match):
    with pytest.raises(smi.NvidiaSmiError, match=match):
        smi.gather("nvidia-smi", FakeSmi({"-q -x": (rc, out, "")}))


def test_gather_fails_when_a_mig_listing_fails():
    run = FakeSmi(
        {
            "-q -x": (0, read_capture("netdata-a100-sxm4-mig-q-x.xml"), ""),
            "-L": (0, A100_L, ""),
            "mig -lgi": (0, read_capture("a100-40gb-mig-lgi.txt"), ""),
            "mig -lci": (0, read_capture("a100-pcie-40gb-esxi-510-mig-lci-with-1c-profiles.txt"), ""),
            "mig -lgip": (4, "", "Insufficient Permissions"),
        }
    )
    with pytest.raises(smi.NvidiaSmiError, match="become: true"):
        smi.gather("nvidia-smi", run)


@pytest.mark.parametrize(("version", "expected"), [("550.90.07", (550, 90, 7)), ("595.84", (595, 84)), (None, ()), ("", ())])
def test_version_tuple(version, expected):
    assert smi.version_tuple(version) == expected
