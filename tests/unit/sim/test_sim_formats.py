"""The simulator's output against the real captures in ../shared/fixtures/nvidia-smi.

Three kinds of checks: the same structure (XML element paths and order, CSV headers, table
frames and column positions); byte-for-byte equality where the simulator can reach the captured
state; and the project's parser reading simulator and capture into records of the same shape.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from captures import read_capture


@pytest.fixture(scope="module")
def smi():
    """The project's parser; the tests that compare through it skip while it is missing."""
    return pytest.importorskip(
        "ansible_collections.llmops.gpu_inference.plugins.module_utils._nvidia_smi",
        reason="the parser plugins/module_utils/_nvidia_smi.py is not there yet",
    )


H100_MIG_BUNDLE = "nvidia_gpu_exporter-capture-linux-x86_64--nvidia-h100-mig--590.48.01.txt"
H200_MIG_BUNDLE = "nvidia_gpu_exporter-capture-linux-x86_64--nvidia-h200-mig--590.48.01.txt"
# The H100 MIG capture's layout (GI 2, 3, 9, 10) comes out of this creation order.
H100_LAYOUT = ["2g.20gb", "1g.10gb", "1g.10gb", "3g.40gb"]
A_PROCESS = [{"gpu": 0, "pid": 4937, "name": "python", "used_memory_mib": 160}]


def body(name: str) -> list[str]:
    """A small capture's lines without the shell prompt line that starts some of them."""
    lines = read_capture(name).replace("\r\n", "\n").rstrip("\n").split("\n")
    return lines[1:] if lines[0].startswith(("$ ", "[root@", "root@", "a10-")) else lines


def bundle_section(name: str, title: str) -> str:
    """One section of an nvidia_gpu_exporter capture bundle, e.g. ``capabilities :: list (-L)``."""
    text = read_capture(name)
    rule = "#" * 80 + "\n"
    start = text.index(rule, text.index(f"# {title}")) + len(rule)
    return text[start : text.index("\n\n\n" + rule, start)]


def mask_uuids(text: str) -> str:
    return re.sub(r"(GPU|MIG)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", r"\1-<uuid>", text)


def mask_numbers(text: str) -> str:
    return re.sub(r"\d+", "#", text)


# --------------------------------------------------------------------------------------------
# -q -x: element paths under <gpu>, in order
# --------------------------------------------------------------------------------------------


def element_paths(text: str) -> list[str]:
    """Paths of the elements under the first <gpu>, each once, in document order."""
    paths: list[str] = []

    def walk(elem: ET.Element, prefix: str) -> None:
        for child in elem:
            path = f"{prefix}/{child.tag}"
            if path not in paths:
                paths.append(path)
            walk(child, path)

    gpu = ET.fromstring(text).find("gpu")
    assert gpu is not None
    walk(gpu, "gpu")
    return paths


REMAPPED = {
    f"gpu/remapped_rows/{tag}"
    for tag in (
        "remapped_row_corr",
        "remapped_row_corr_inactive",
        "remapped_row_unc",
        "remapped_row_unc_inactive",
        "remapped_row_pending",
        "remapped_row_failure",
        "row_remapper_histogram",
        *(f"row_remapper_histogram/row_remapper_histogram_{level}" for level in ("max", "high", "partial", "low", "none")),
    )
}
OLD_TEMPERATURES = {
    f"gpu/temperature/{t}" for t in ("gpu_temp_max_threshold", "gpu_temp_slow_threshold", "gpu_temp_max_gpu_threshold", "gpu_temp_max_mem_threshold")
}
TLIMIT_TEMPERATURES = {
    f"gpu/temperature/{t}"
    for t in ("gpu_temp_max_tlimit_threshold", "gpu_temp_slow_tlimit_threshold", "gpu_temp_max_gpu_tlimit_threshold", "gpu_temp_max_mem_tlimit_threshold")
}
MIG_2X3G = {"mig_enabled": [0], "mig_layout": {"0": ["3g.20gb", "3g.20gb"]}}

# (simulated model, driver, extra config, capture, paths only the simulator prints, paths only the capture prints).
# The differences are the GPUs': GeForce/RTX cards have no row remapper; Ampere reports absolute temperature
# thresholds where Ada/Hopper report them against T.Limit.
XML_CASES = [
    pytest.param("A100-SXM4-40GB", "510.47.03", MIG_2X3G, "netdata-a100-sxm4-mig-q-x.xml", set(), set(), id="A100-R510-MIG"),
    pytest.param(
        "H100-80GB", "510.47.03", {"mig_enabled": [0], "mig_layout": {"0": H100_LAYOUT}}, "netdata-a100-sxm4-mig-q-x.xml", set(), set(), id="H100-v11-MIG"
    ),
    pytest.param(
        "H200", "510.47.03", {"mig_enabled": [0], "mig_layout": {"0": ["7g.141gb"]}}, "netdata-a100-sxm4-mig-q-x.xml", set(), set(), id="H200-v11-MIG"
    ),
    pytest.param("A100-SXM4-80GB", "536.40", {"processes": A_PROCESS}, "telegraf-rtx-3080-v12-q-x.xml", REMAPPED, set(), id="A100-R536"),
    pytest.param("A100-SXM4-80GB", "570.124.04", {}, "telegraf-rtx-3060-v12-q-x.xml", REMAPPED, set(), id="A100-R570"),
    pytest.param("A30", "590.44.01", {}, "telegraf-pr-3090-v13-q-x.xml", REMAPPED, set(), id="A30-R590"),
    *(
        pytest.param(model, "595.84", {"processes": A_PROCESS}, "telegraf-rtx-4000-sff-ada-v13-q-x.xml", set(), set(), id=f"{model}-R595")
        for model in ("H100-80GB", "H200", "H100-NVL", "GH200-96GB", "L40S")
    ),
    *(
        pytest.param(
            model, "595.84", {"processes": A_PROCESS}, "telegraf-rtx-4000-sff-ada-v13-q-x.xml", OLD_TEMPERATURES, TLIMIT_TEMPERATURES, id=f"{model}-R595"
        )
        for model in ("A100-SXM4-40GB", "A100-SXM4-80GB", "A30")
    ),
]


@pytest.mark.parametrize(("model", "driver", "extra", "capture", "only_sim", "only_capture"), XML_CASES)
def test_xml_has_the_captures_elements_in_the_same_order(sim, model, driver, extra, capture, only_sim, only_capture):
    sim.configure(model=model, count=1, driver_version=driver, **extra)
    ours, theirs = element_paths(sim.ok("-q", "-x")), element_paths(read_capture(capture))
    assert (set(ours) - set(theirs), set(theirs) - set(ours)) == (only_sim, only_capture)
    assert [p for p in ours if p in theirs] == [p for p in theirs if p in ours]


@pytest.mark.parametrize(("model", "driver", "extra", "capture"), [case.values[:4] for case in XML_CASES])
def test_xml_document_frame_matches_the_capture(sim, model, driver, extra, capture):
    sim.configure(model=model, count=1, driver_version=driver, **extra)
    ours, theirs = sim.ok("-q", "-x"), read_capture(capture)
    assert ours.startswith('<?xml version="1.0" ?>\n')  # as all captures but one (hand-edited) print it
    assert ours.splitlines()[1] == theirs.splitlines()[1]  # the DOCTYPE names the era's DTD
    assert [e.tag for e in ET.fromstring(ours)] == [e.tag for e in ET.fromstring(theirs)]
    assert ours.endswith("\t</gpu>\n\n</nvidia_smi_log>\n")
    if "\t<" in theirs:  # captures that kept nvidia-smi's tab indentation
        assert re.findall(r"^\t*<mig_devices>", ours, re.M)[0] == re.findall(r"^\t*<mig_devices>", theirs, re.M)[0]


@pytest.mark.parametrize(("model", "driver", "extra", "capture"), [case.values[:4] for case in XML_CASES])
def test_the_parser_reads_simulator_and_capture_xml_alike(smi, sim, model, driver, extra, capture):
    sim.configure(model=model, count=1, driver_version=driver, **extra)
    ours, theirs = smi.parse_query_xml(sim.ok("-q", "-x")), smi.parse_query_xml(read_capture(capture))
    assert set(ours) == set(theirs)
    assert ours["driver_version"] == driver
    mine, real = ours["gpus"][0], theirs["gpus"][0]
    assert set(mine) == set(real)
    for key, value in real.items():
        if value is not None and not (isinstance(value, list) and not value):
            assert type(mine[key]) is type(value), key
        if isinstance(value, list) and value and mine[key]:
            assert set(mine[key][0]) == set(value[0]), key
    for key in ("uuid", "name", "pci_bus_id", "pci_device_id", "memory_total_mib", "temperature_c", "power_draw_w", "power_limit_w"):
        assert mine[key] is not None, key


@pytest.mark.parametrize("driver", ["510.47.03", "535.161.08", "550.90.07", "570.124.04", "590.48.01", "595.84", "610.57.04"])
@pytest.mark.parametrize("model", ["A100-SXM4-40GB", "A100-SXM4-80GB", "A30", "H100-80GB", "H100-NVL", "H200", "GH200-96GB", "L40S"])
def test_every_model_and_driver_parses_to_the_facts_contract(smi, sim, model, driver):
    sim.configure(model=model, count=2, driver_version=driver, processes=A_PROCESS)
    facts = smi.parse_query_xml(sim.ok("-q", "-x"))
    assert (facts["driver_version"], facts["gpu_count"]) == (driver, 2)
    gpu = facts["gpus"][0]
    assert gpu["pci_device_id"] == sim.module.MODELS[model].pci_device_id
    assert gpu["mig_mode_current"] == (None if model == "L40S" else "disabled")
    assert gpu["processes"][0]["pid"] == 4937
    assert isinstance(gpu["power_draw_w"], float)


def test_r610_xml_carries_kmd_and_umd_versions(smi, sim):
    sim.configure(count=1, driver_version="610.57.04")
    root = ET.fromstring(sim.ok("-q", "-x"))
    assert [e.tag for e in root][:5] == ["timestamp", "driver_version", "cuda_version", "kmd_version", "cuda_umd_version"]
    sim.configure(count=1, driver_version="610.57.04", xml_legacy_version_elements=False)
    facts = smi.parse_query_xml(sim.ok("-q", "-x"))
    assert (facts["driver_version"], facts["cuda_version"]) == ("610.57.04", "13.3")


# --------------------------------------------------------------------------------------------
# -L
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "commands", "capture"),
    [
        pytest.param("H100-80GB", [["mig", "-cgi", ",".join(H100_LAYOUT), "-C"]], ("bundle", H100_MIG_BUNDLE), id="H100-3g-2g-1g-1g"),
        pytest.param(
            "H200",
            [["mig", "-cgi", "14,19,19", "-C"], ["mig", "-cgi", "9"], ["mig", "-gi", "2", "-cci", "1c.3g.71gb,2c.3g.71gb"]],
            ("bundle", H200_MIG_BUNDLE),
            id="H200-with-1c-and-2c",
        ),
        pytest.param("H100-80GB", [["mig", "-cgi", ",".join(["19"] * 7), "-C"]], ("file", "h100-80gb-550-nvidia-smi-L-mig-7x1g10gb.txt"), id="H100-7x1g"),
        pytest.param("GH200-96GB", [["mig", "-cgi", "15,15,15,19", "-C"]], ("file", "gh200-96gb-550-nvidia-smi-L-mig.txt"), id="GH200"),
    ],
)
def test_list_gpus_matches_the_capture_except_uuids(smi, sim, model, commands, capture):
    sim.configure(model=model, count=1, mig_enabled=[0])
    for argv in commands:
        sim.ok(*argv)
    kind, name = capture
    expected = bundle_section(name, "capabilities :: list (-L)") if kind == "bundle" else "\n".join(body(name))
    ours = sim.ok("-L")
    assert mask_uuids(ours) == mask_uuids(expected.strip("\n") + "\n")
    assert [sorted(gpu) for gpu in smi.parse_list_gpus(ours)] == [sorted(gpu) for gpu in smi.parse_list_gpus(expected)]


# --------------------------------------------------------------------------------------------
# --query-gpu and --query-compute-apps against the capture bundles
# --------------------------------------------------------------------------------------------

BUNDLES = [
    pytest.param("nvidia_gpu_exporter-capture-linux-x86_64--nvidia-h100-80gb-hbm3--590.48.01.txt", "H100-80GB", {"nvswitch": True}, id="H100"),
    pytest.param(H100_MIG_BUNDLE, "H100-80GB", {"nvswitch": True, "mig_enabled": [0], "mig_layout": {"0": H100_LAYOUT}}, id="H100-MIG"),
    pytest.param("nvidia_gpu_exporter-capture-linux-x86_64--nvidia-h200--590.48.01.txt", "H200", {"nvswitch": True}, id="H200"),
    pytest.param(H200_MIG_BUNDLE, "H200", {"nvswitch": True, "mig_enabled": [0], "mig_layout": {"0": ["3g.71gb"]}}, id="H200-MIG"),
    pytest.param("nvidia_gpu_exporter-capture-linux-x86_64--nvidia-l40s--595.80.txt", "L40S", {}, id="L40S"),
]
# Values that must equal the capture's (the rest are readings: only [N/A]-ness and units must agree).
SAME_VALUES = (
    "count",
    "index",
    "name",
    "pci.device_id",
    "pci.sub_device_id",
    "persistence_mode",
    "memory.total",
    "memory.reserved",
    "compute_cap",
    "vbios_version",
    "fan.speed",
    "pstate",
    "ecc.mode.current",
    "display_mode",
    "power.management",
    "power.limit",
    "power.min_limit",
    "power.max_limit",
    "clocks.max.graphics",
    "mig.mode.current",
    "mig.mode.pending",
    "fabric.state",
    "fabric.status",
)


def bundle_csv(name: str, section: str) -> tuple[list[str], list[str]]:
    header, row = bundle_section(name, section).split("\n")[:2]
    return header.split(", "), row.split(", ")


@pytest.mark.parametrize(("bundle", "model", "extra"), BUNDLES)
def test_query_gpu_headers_units_and_na_match_the_capture(sim, bundle, model, extra):
    header, row = bundle_csv(bundle, "idle :: query-gpu")
    captured = {h.split(" [")[0]: (h, v) for h, v in zip(header, row, strict=True)}
    driver = re.search(r"--([\d.]+)\.txt$", bundle).group(1)
    sim.configure(model=model, count=1, driver_version=driver, persistence_mode=captured["persistence_mode"][1] == "Enabled", **extra)
    fields = [f for f in captured if f in sim.module.QUERY_GPU_FIELDS]
    assert len(fields) >= 60
    out = sim.ok(f"--query-gpu={','.join(fields)}", "--format=csv").splitlines()
    assert out[0] == ", ".join(captured[f][0] for f in fields)
    differences = []
    for field, value in zip(fields, out[1].split(", "), strict=True):
        expected = captured[field][1]
        if (value == "[N/A]") != (expected == "[N/A]") or unit(value) != unit(expected) or (field in SAME_VALUES and value != expected):
            differences.append((field, value, expected))
    assert differences == []


def unit(value: str) -> str | None:
    """The unit a CSV value carries ("81559 MiB" -> "MiB"); None for words and [N/A]."""
    match = re.fullmatch(r"-?[\d.]+ (\S+)", value)
    return match.group(1) if match else None


@pytest.mark.parametrize(("bundle", "model", "extra"), BUNDLES)
def test_query_compute_apps_matches_the_capture(sim, bundle, model, extra):
    section = bundle_section(bundle, "load :: query-compute-apps").split("\n")
    captured = [line.split(", ") for line in section[1:] if line]
    processes = [{"gpu": 0, "pid": int(row[5]), "name": row[6], "used_memory_mib": int(row[7].split()[0])} for row in captured]
    sim.configure(model=model, count=1, processes=processes, **{k: v for k, v in extra.items() if k == "nvswitch"})
    ours = sim.ok(f"--query-compute-apps={section[0].replace(' [MiB]', '').replace(', ', ',')}", "--format=csv").splitlines()
    assert ours[0] == section[0]
    assert [row.split(", ")[1:2] + row.split(", ")[5:] for row in ours[1:]] == [row[1:2] + row[5:] for row in captured]


def test_query_mig_mode_matches_the_esxi_capture(sim):
    sim.configure(model="A100-SXM4-40GB", count=1, mig_enabled=[0], pci_bus_ids=["00000000:0F:00.0"])
    expected = body("a100-pcie-40gb-esxi-510-query-mig-mode-csv.txt")
    assert sim.ok("-i", "0", "--query-gpu=pci.bus_id,mig.mode.current", "--format=csv").splitlines() == expected


# --------------------------------------------------------------------------------------------
# mig listings: byte-for-byte where the state can be reproduced, else through the renderers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "driver", "layout", "capture"),
    [
        pytest.param("A100-SXM4-40GB", "535.183.01", [], "a100-40gb-mig-lgip.txt", id="A100-40GB"),
        pytest.param("GH200-96GB", "550.90.07", [], "gh200-96gb-550-mig-lgip.txt", id="GH200"),
        pytest.param("A30", "515.105.01", ["1g.6gb"] * 4, "a30-24gb-mig-lgip-all-used.txt", id="A30-all-used"),
    ],
)
def test_lgip_is_byte_for_byte_the_capture(smi, sim, model, driver, layout, capture):
    sim.configure(model=model, count=1, driver_version=driver, mig_enabled=[0], mig_layout={"0": layout})
    ours = sim.ok("mig", "-lgip")
    assert ours.splitlines() == body(capture)
    assert smi.parse_mig_gpu_instance_profiles(ours) == smi.parse_mig_gpu_instance_profiles("\n".join(body(capture)))


def test_lgip_on_r510_has_no_1g_10gb_and_the_capture_layout(sim):
    # R510 printed other memory sizes (9.75 for 2g.10gb): compare with the numbers masked.
    sim.configure(model="A100-SXM4-40GB", count=1, driver_version="510.47.03", mig_enabled=[0], mig_layout={"0": ["2g.10gb", "1g.5gb", "1g.5gb", "3g.20gb"]})
    assert mask_numbers(sim.ok("mig", "-lgip")).splitlines() == mask_numbers("\n".join(body("a100-pcie-40gb-esxi-510-mig-lgip-free-0.txt"))).splitlines()


@pytest.mark.parametrize(("model", "capture"), [("H100-NVL", "h100-nvl-94gb-560-mig-lgipp.txt"), ("A30", "a30-24gb-mig-lgipp.txt")])
def test_lgipp_is_byte_for_byte_the_capture(smi, sim, model, capture):
    sim.configure(model=model, count=1, mig_enabled=[0])
    ours = sim.ok("mig", "-lgipp")
    assert ours.splitlines() == body(capture)
    assert smi.parse_mig_placements(ours) == smi.parse_mig_placements("\n".join(body(capture)))


def test_lgi_of_seven_1g_instances_is_the_mig_parted_capture(smi, sim):
    sim.configure(model="A100-SXM4-40GB", count=1, mig_enabled=[0], mig_layout={"0": ["1g.5gb"] * 7})
    ours, theirs = sim.ok("mig", "-lgi"), "\n".join(body("a100-40gb-mig-lgi-7x1g5gb-after-mig-parted.txt"))
    assert ours.startswith(theirs + "\n")  # the capture stops after six of the seven rows
    assert smi.parse_mig_gpu_instances(ours)[:6] == smi.parse_mig_gpu_instances(theirs)


def test_lgi_renders_the_capture_values_byte_for_byte(simulator):
    rows = [simulator.GiRow(0, "3g.20gb", 9, 1, 4, 4), simulator.GiRow(0, "3g.20gb", 9, 2, 0, 4)]
    assert simulator.render_lgi(rows).splitlines() == body("a100-40gb-mig-lgi.txt")


def test_lci_renders_the_capture_values_byte_for_byte(simulator):
    rows = [
        simulator.CiRow(0, 11, "1g.5gb", 0, 0, 0, 1),
        simulator.CiRow(0, 12, "1g.5gb", 0, 0, 0, 1),
        simulator.CiRow(0, 6, "1c.2g.10gb", 0, 0, 0, 1),
        simulator.CiRow(0, 1, "1c.3g.20gb", 0, 0, 0, 1),
    ]
    theirs = body("a100-pcie-40gb-esxi-510-mig-lci-with-1c-profiles.txt")
    assert simulator.render_lci(rows).splitlines()[: len(theirs)] == theirs  # the capture ends without the last rule


def test_lci_reads_like_the_capture(smi, sim):
    sim.configure(model="A100-SXM4-40GB", count=1, driver_version="510.47.03", mig_enabled=[0])
    sim.ok("mig", "-cgi", "14,19,19,9")
    for gi, profile in (("9", "0"), ("10", "1g.5gb"), ("3", "1c.2g.10gb"), ("2", "1c.3g.20gb")):
        sim.ok("mig", "-gi", gi, "-cci", profile)
    ours = smi.parse_mig_compute_instances(sim.ok("mig", "-lci"))
    theirs = smi.parse_mig_compute_instances("\n".join(body("a100-pcie-40gb-esxi-510-mig-lci-with-1c-profiles.txt")))
    assert sorted((r["gi_id"], r["profile"]) for r in ours) == [(2, "1c.3g.20gb"), (3, "1c.2g.10gb"), (9, "1g.5gb"), (10, "1g.5gb")]
    assert sorted(r["profile"] for r in ours) == sorted(r["profile"] for r in theirs)
    assert [set(r) for r in ours] == [set(r) for r in theirs]
    assert {r["profile_id"] for r in ours} == {r["profile_id"] for r in theirs} == {0}


# --------------------------------------------------------------------------------------------
# Messages of the mutating commands
# --------------------------------------------------------------------------------------------


def test_cgi_with_default_compute_instances_reads_like_the_captures(sim):
    sim.configure(model="A100-SXM4-40GB", count=1, mig_enabled=[0])
    assert mask_numbers(sim.ok("mig", "-cgi", "9,3g.20gb", "-C")).splitlines() == mask_numbers("\n".join(body("a100-40gb-mig-cgi-9-3g20gb-C.txt"))).splitlines()
    sim.configure(model="GH200-96GB", count=1, mig_enabled=[0])
    ours = sim.ok("mig", "-cgi", "15,15,15", "-C")
    assert mask_numbers(ours).splitlines() == mask_numbers("\n".join(body("gh200-96gb-550-mig-cgi-success.txt"))).splitlines()
    assert "using profile MIG 1g.24gb (ID  7)" in ours  # the 2-memory-slice 1g's compute instance profile


def test_insufficient_resources_is_byte_for_byte_the_capture(sim):
    sim.configure(model="GH200-96GB", count=1, mig_enabled=[0], mig_layout={"0": ["1g.12gb+me"]})
    assert sim("mig", "-cgi", "20,20,20", "-C") == (255, "\n".join(body("gh200-96gb-550-mig-cgi-error-insufficient-resources.txt")) + "\n", "")


def test_cci_is_byte_for_byte_the_capture(sim):
    sim.configure(model="A100-SXM4-40GB", count=1, driver_version="510.47.03", mig_enabled=[0], mig_layout={"0": ["1g.5gb"] * 4})
    sim.ok("mig", "-dci")
    sim.ok("mig", "-cgi", "19")  # GI 11 at 4:1
    assert sim.ok("mig", "-gi", "11", "-cci", "0").splitlines() == body("a100-pcie-40gb-esxi-510-mig-cci.txt")
    assert sim("mig", "-gi", "10", "-lci") == (6, "\n".join(body("a100-pcie-40gb-esxi-510-mig-lci-not-found.txt")) + "\n", "")


def test_mig_enable_is_byte_for_byte_the_gh200_capture(sim):
    sim.configure(model="GH200-96GB", count=1)
    assert sim.ok("-mig", "1").splitlines() == body("gh200-96gb-550-mig-enable-output.txt")


def test_pending_enable_warning_is_byte_for_byte_the_capture(sim):
    sim.configure(model="A100-SXM4-40GB", count=1, mig_capable_reset=False, pci_bus_ids=["00000000:00:03.0"])
    assert sim.ok("-i", "0", "-mig", "1").splitlines() == body("a100-40gb-mig-enable-pending-not-supported-warning.txt")


# --------------------------------------------------------------------------------------------
# The summary table
# --------------------------------------------------------------------------------------------


def frame(line: str) -> str:
    """A table line with its contents blanked: where the column separators are."""
    return re.sub(r"[^|+=\-]", " ", line) if line.startswith(("|", "+")) else ""


@pytest.mark.parametrize(
    ("model", "driver", "extra", "capture"),
    [
        pytest.param("H100-80GB", "590.48.01", {"mig_enabled": [0], "mig_layout": {"0": H100_LAYOUT}}, ("bundle", H100_MIG_BUNDLE), id="H100-MIG-R590"),
        pytest.param("H100-80GB", "550.90.07", {"count": 8}, ("file", "gpud-8x-h100-550.90.07-default-table.txt"), id="8xH100-R550"),
        pytest.param("L40S", "550.127.05", {}, ("file", "thamada-l40s-default-table.txt"), id="L40S-R550"),
    ],
)
def test_summary_table_has_the_captures_frame_and_headings(sim, model, driver, extra, capture):
    sim.configure(model=model, driver_version=driver, persistence_mode=True, **{"count": 1, **extra})
    kind, name = capture
    theirs = (bundle_section(name, "idle :: nvidia-smi (default table)") if kind == "bundle" else read_capture(name)).splitlines()
    theirs = [line for line in theirs if line.startswith(("|", "+"))]
    ours = [line for line in sim.ok().splitlines() if line.startswith(("|", "+"))]
    assert [frame(line) for line in ours[: len(theirs)]] == [frame(line) for line in theirs]
    headings = [line for line in theirs if not re.search(r"\d", line)]
    assert headings == [line for line in ours[: len(theirs)] if not re.search(r"\d", line)]
    assert all(len(line) == 91 for line in ours)


@pytest.mark.parametrize(
    ("model", "driver", "layout", "capture"),
    [
        pytest.param(
            "H100-NVL", "560.35.03", ["3g.47gb", "1g.24gb", "1g.12gb"], ("file", "h100-nvl-94gb-560-nvidia-smi-mig-3g-1g24-1g12-table.txt"), id="H100-NVL"
        ),
        pytest.param("H100-80GB", "590.48.01", H100_LAYOUT, ("bundle", H100_MIG_BUNDLE), id="H100"),
    ],
)
def test_summary_mig_device_rows_match_the_capture(sim, model, driver, layout, capture):
    # The captures' layouts: SMs, engines and memory sizes agree; the used memory is masked.
    sim.configure(model=model, count=1, driver_version=driver, persistence_mode=True, mig_enabled=[0], mig_layout={"0": layout})

    def device_rows(lines):
        return [re.sub(r" +\d+MiB /", " #MiB /", line) for line in lines if re.match(r"^\|\s+0\s+\d+\s+0\s+\d\s+\|", line)]

    kind, name = capture
    lines = bundle_section(name, "idle :: nvidia-smi (default table)").splitlines() if kind == "bundle" else body(name)
    theirs = device_rows(lines)
    assert len(theirs) == len(layout)
    assert device_rows(sim.ok().splitlines()) == theirs


# --------------------------------------------------------------------------------------------
# The parser's gather() against the simulator: every listing joins
# --------------------------------------------------------------------------------------------


def test_gather_joins_the_simulators_mig_listings(smi, sim):
    sim.configure(model="H200", count=2, driver_version="590.48.01", mig_enabled=[0])
    sim.ok("mig", "-i", "0", "-cgi", "14,19,19", "-C")
    sim.ok("mig", "-i", "0", "-cgi", "9")
    sim.ok("mig", "-i", "0", "-gi", "2", "-cci", "1c.3g.71gb,2c.3g.71gb")
    facts = smi.gather("nvidia-smi", lambda argv: tuple(sim(*argv[1:])))
    mig_gpu, plain_gpu = facts["gpus"]
    devices = [(d["gi_id"], d["ci_id"], d["profile"], d.get("ci_profile"), d["placement_start"], d["placement_size"]) for d in mig_gpu["mig_devices"]]
    assert devices == [
        (2, 0, "3g.71gb", "1c.3g.71gb", 4, 4),
        (2, 1, "3g.71gb", "2c.3g.71gb", 4, 4),
        (3, 0, "2g.35gb", None, 0, 2),
        (9, 0, "1g.18gb", None, 2, 1),
        (10, 0, "1g.18gb", None, 3, 1),
    ]
    assert all(d["uuid"].startswith("MIG-") for d in mig_gpu["mig_devices"])
    assert [(p["name"], p["id"], p["memory_mib"], p["max_instances"]) for p in mig_gpu["mig_profiles"]][-1] == ("7g.141gb", 0, 143104, 1)
    assert (plain_gpu["mig_mode_current"], plain_gpu["mig_devices"], plain_gpu["mig_profiles"]) == ("disabled", [], [])
