# Copyright: (c) 2026, llmops.gpu_inference contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Parse nvidia-smi output into the ``ansible_facts.nvidia`` contract (DESIGN.md).

Private to this collection: no AnsibleModule import, no I/O. The module calls
:func:`gather` with a function that runs nvidia-smi; everything else is pure parsing,
unit-tested against real captures from many GPUs and drivers.

Sources of each fact:
- ``nvidia-smi -q -x``: driver, CUDA, every GPU's identity, modes, memory, power, ECC,
  processes, and (when MIG is on) the MIG devices' GI/CI ids and memory.
- ``nvidia-smi -L``: MIG device UUIDs and names by device index (the XML has no UUID).
- ``nvidia-smi mig -lgi``: GPU instance profile and placement by GI id.
- ``nvidia-smi mig -lci``: compute instance profile by (GI id, CI id).
- ``nvidia-smi mig -lgip``: the MIG profiles each GPU offers.

The XML schema drifted from DTD v9 to v13 (``power_readings`` became ``gpu_power_readings``,
``power_draw`` became ``instant_power_draw``/``average_power_draw``; old drivers lack
``cuda_version`` or print ``Not Found``), and R610 renamed "Driver Version"/"CUDA Version" to
"KMD Version"/"CUDA UMD Version". Missing elements become ``None``, never an exception.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from typing import Any, Callable, List, Tuple

# Values nvidia-smi prints when it has nothing to report.
_ABSENT = frozenset({"", "n/a", "[n/a]", "not found", "[not supported]", "not supported", "unknown", "err!", "[unknown error]"})

# What a failing nvidia-smi says, mapped to a sentence an operator can act on.
_FAILURES = (
    (
        "couldn't communicate with the nvidia driver",
        "nvidia-smi could not talk to the NVIDIA driver: the kernel module is not loaded or does not match the "
        "user-space driver. Check 'lsmod | grep nvidia' and 'dmesg', reinstall the driver or reboot after an upgrade.",
    ),
    (
        "driver/library version mismatch",
        "The NVIDIA kernel module and user-space libraries have different versions (usually a driver upgrade "
        "without a reboot). Reboot the node or reload the nvidia kernel modules.",
    ),
    (
        "no devices were found",
        "nvidia-smi found no NVIDIA GPU. Check that the GPUs are visible on the PCI bus ('lspci -d 10de:') and that the driver supports them.",
    ),
    (
        "insufficient permissions",
        "nvidia-smi was not allowed to read the GPUs. Run the task with become: true.",
    ),
)

Runner = Callable[[List[str]], Tuple[int, str, str]]


class NvidiaSmiError(Exception):
    """nvidia-smi failed or printed something this parser cannot read; the message is for a person."""


# --------------------------------------------------------------------------------------------
# Scalars
# --------------------------------------------------------------------------------------------


def _clean(value: str | None) -> str | None:
    """Strip padding and R610 ``[Deprecated; ...]`` suffixes; map N/A-like values to None."""
    if value is None:
        return None
    value = re.sub(r"\s*\[Deprecated[^\]]*\]\s*$", "", " ".join(value.split()))
    return None if value.lower() in _ABSENT else value


def _number(value: str | None) -> float | None:
    """First number in ``value`` (``"66.84 W"`` -> 66.84, ``" 40 % "`` -> 40.0), None when absent."""
    value = _clean(value)
    if value is None:
        return None
    match = re.match(r"^(-?\d+(?:\.\d+)?)", value)
    return float(match.group(1)) if match else None


def _int(value: str | None) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _mode(value: str | None) -> str | None:
    """``Enabled``/``Disabled`` -> ``enabled``/``disabled``; anything else (N/A) -> None."""
    value = _clean(value)
    if value is None:
        return None
    value = value.lower()
    return value if value in ("enabled", "disabled") else None


def _yes_no(value: str | None) -> bool | None:
    value = _clean(value)
    if value is None:
        return None
    return {"yes": True, "no": False, "enabled": True, "disabled": False}.get(value.lower())


def _pci_device_id(value: str | None) -> str | None:
    """``20B010DE`` or ``0x20B010DE`` -> ``0x20B010DE`` (the form mig-parted's device-filter uses)."""
    value = _clean(value)
    if value is None:
        return None
    digits = value[2:] if value.lower().startswith("0x") else value
    return "0x" + digits.upper() if re.fullmatch(r"[0-9A-Fa-f]{8}", digits) else None


def version_tuple(version: str | None) -> tuple[int, ...]:
    """``"550.90.07"`` -> (550, 90, 7); ``"595.84"`` -> (595, 84). Empty tuple when unknown."""
    if not version:
        return ()
    return tuple(int(part) for part in re.findall(r"\d+", version))


# --------------------------------------------------------------------------------------------
# nvidia-smi -q -x
# --------------------------------------------------------------------------------------------


def _find(elem: ET.Element | None, *paths: str) -> str | None:
    """Text of the first of ``paths`` present under ``elem`` (schemas renamed elements over time)."""
    if elem is None:
        return None
    for path in paths:
        found = elem.find(path)
        if found is not None and found.text is not None:
            return found.text
    return None


# Uncorrectable ECC counters per schema: v9-v11 ``double_bit/total``; v12 ``sram_uncorrectable`` +
# ``dram_uncorrectable``; v13 splits SRAM into ``sram_uncorrectable_parity`` and ``_secded``.
_ECC_UNCORRECTABLE = (
    "double_bit/total",
    "sram_uncorrectable",
    "sram_uncorrectable_parity",
    "sram_uncorrectable_secded",
    "dram_uncorrectable",
)


def _ecc_sum(gpu: ET.Element, scope: str) -> int | None:
    """Sum of the uncorrectable ECC counters of ``scope`` (volatile|aggregate); None when none is reported."""
    node = gpu.find(f"ecc_errors/{scope}")
    counts = [_int(_find(node, path)) for path in _ECC_UNCORRECTABLE]
    known = [count for count in counts if count is not None]
    return sum(known) if known else None


def _processes(gpu: ET.Element) -> list[dict[str, Any]]:
    processes = []
    for proc in gpu.findall("processes/process_info"):
        pid = _int(_find(proc, "pid"))
        if pid is None:
            continue
        processes.append(
            {
                "pid": pid,
                "name": _clean(_find(proc, "process_name")),
                "type": _clean(_find(proc, "type")),
                "used_memory_mib": _int(_find(proc, "used_memory")),
                "gi_id": _int(_find(proc, "gpu_instance_id")),
                "ci_id": _int(_find(proc, "compute_instance_id")),
            }
        )
    return processes


def _xml_mig_devices(gpu: ET.Element) -> list[dict[str, Any]]:
    devices = []
    for dev in gpu.findall("mig_devices/mig_device"):
        devices.append(
            {
                "index": _int(_find(dev, "index")),
                "gi_id": _int(_find(dev, "gpu_instance_id")),
                "ci_id": _int(_find(dev, "compute_instance_id")),
                "profile": None,
                "placement_start": None,
                "placement_size": None,
                "memory_mib": _int(_find(dev, "fb_memory_usage/total")),
                "multiprocessor_count": _int(_find(dev, "device_attributes/shared/multiprocessor_count")),
                "uuid": None,
            }
        )
    return devices


def _parse_gpu(index: int, gpu: ET.Element) -> dict[str, Any]:
    power = gpu.find("gpu_power_readings")
    if power is None:
        power = gpu.find("power_readings")
    remapped = gpu.find("remapped_rows")
    return {
        "index": index,
        "uuid": _clean(_find(gpu, "uuid")),
        "name": _clean(_find(gpu, "product_name")),
        "architecture": _clean(_find(gpu, "product_architecture")),
        "pci_bus_id": _clean(_find(gpu, "pci/pci_bus_id")) or _clean(gpu.get("id")),
        "pci_device_id": _pci_device_id(_find(gpu, "pci/pci_device_id")),
        "pci_sub_system_id": _pci_device_id(_find(gpu, "pci/pci_sub_system_id")),
        "memory_total_mib": _int(_find(gpu, "fb_memory_usage/total")),
        "memory_used_mib": _int(_find(gpu, "fb_memory_usage/used")),
        "mig_mode_current": _mode(_find(gpu, "mig_mode/current_mig")),
        "mig_mode_pending": _mode(_find(gpu, "mig_mode/pending_mig")),
        "persistence_mode": _yes_no(_find(gpu, "persistence_mode")),
        "ecc_mode_current": _mode(_find(gpu, "ecc_mode/current_ecc")),
        "ecc_uncorrected_volatile": _ecc_sum(gpu, "volatile"),
        "ecc_uncorrected_aggregate": _ecc_sum(gpu, "aggregate"),
        "retired_pages_pending": _yes_no(_find(gpu, "retired_pages/pending_retirement")),
        "remapped_rows_pending": _yes_no(_find(remapped, "remapped_row_pending")),
        "remapped_rows_failure": _yes_no(_find(remapped, "remapped_row_failure")),
        "fabric_state": _clean(_find(gpu, "fabric/state")),
        "temperature_c": _int(_find(gpu, "temperature/gpu_temp")),
        # v13 reports instant and average draw; old schemas a single power_draw.
        "power_draw_w": _number(_find(power, "instant_power_draw", "power_draw", "average_power_draw")),
        "power_limit_w": _number(_find(power, "current_power_limit", "power_limit", "enforced_power_limit")),
        "utilization_gpu_pct": _int(_find(gpu, "utilization/gpu_util")),
        "processes": _processes(gpu),
        "mig_devices": _xml_mig_devices(gpu),
        "mig_profiles": [],
    }


def parse_query_xml(text: str) -> dict[str, Any]:
    """Parse ``nvidia-smi -q -x`` into the facts dict (MIG joins are done by :func:`merge_mig`)."""
    if not text or not text.strip():
        raise NvidiaSmiError("nvidia-smi -q -x printed nothing; the driver may be hung or the command was killed.")
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as exc:
        raise NvidiaSmiError(
            f"nvidia-smi -q -x printed output that is not valid XML ({exc}); it may have been truncated. "
            "Run 'nvidia-smi -q -x' on the node to see what it prints."
        ) from None
    if root.tag != "nvidia_smi_log":
        raise NvidiaSmiError(f"nvidia-smi -q -x printed XML with root element <{root.tag}>, expected <nvidia_smi_log>.")
    gpus = [_parse_gpu(index, gpu) for index, gpu in enumerate(root.findall("gpu"))]
    return {
        # R610+ adds kmd_version/cuda_umd_version and deprecates the old names (kept with a suffix).
        "driver_version": _clean(_find(root, "kmd_version", "driver_version")),
        "cuda_version": _clean(_find(root, "cuda_umd_version", "cuda_version")),
        "gpu_count": len(gpus),
        "gpus": gpus,
    }


# --------------------------------------------------------------------------------------------
# nvidia-smi -L and the MIG listings
# --------------------------------------------------------------------------------------------

_L_GPU = re.compile(r"^GPU (?P<index>\d+): (?P<name>.+?) \(UUID: (?P<uuid>[^)]+)\)\s*$")
_L_MIG = re.compile(r"^\s+MIG (?P<profile>\S+)\s+Device\s+(?P<index>\d+): \(UUID: (?P<uuid>[^)]+)\)\s*$")


def parse_list_gpus(text: str) -> list[dict[str, Any]]:
    """``nvidia-smi -L``: GPUs with their MIG devices (both ``MIG-<uuid>`` and R450's ``MIG-GPU-<uuid>/gi/ci``)."""
    gpus: list[dict[str, Any]] = []
    for line in text.splitlines():
        gpu = _L_GPU.match(line)
        if gpu:
            gpus.append({"index": int(gpu["index"]), "name": gpu["name"], "uuid": gpu["uuid"], "mig_devices": []})
            continue
        mig = _L_MIG.match(line)
        if mig and gpus:
            gpus[-1]["mig_devices"].append({"index": int(mig["index"]), "profile": mig["profile"], "uuid": mig["uuid"]})
    return gpus


def _table_rows(text: str) -> list[list[str]]:
    """Data rows of an nvidia-smi box table: the cells of ``|  0  MIG 3g.20gb  9  1  4:4  |`` lines after ``|===|``."""
    rows = []
    in_body = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|=") or stripped.startswith("+="):
            in_body = True
            continue
        if in_body and stripped.startswith("|") and stripped.endswith("|"):
            rows.append(stripped.strip("|").split())
    return rows


def _placement(cell: str) -> tuple[int | None, int | None]:
    match = re.match(r"^(\d+):(\d+)$", cell)
    return (int(match.group(1)), int(match.group(2))) if match else (None, None)


def _profile_name(cells: list[str]) -> tuple[str, list[str]]:
    """``["MIG", "3g.20gb", "9", ...]`` -> ("3g.20gb", rest). The name is one token after ``MIG``."""
    if len(cells) >= 2 and cells[0] == "MIG":
        return cells[1], cells[2:]
    return cells[0], cells[1:]


def parse_mig_gpu_instances(text: str) -> list[dict[str, Any]]:
    """``nvidia-smi mig -lgi``: one record per GPU instance."""
    instances = []
    for cells in _table_rows(text):
        if len(cells) < 5 or not cells[0].isdigit():
            continue
        profile, rest = _profile_name(cells[1:])
        start, size = _placement(rest[2]) if len(rest) > 2 else (None, None)
        instances.append(
            {
                "gpu": int(cells[0]),
                "profile": profile,
                "profile_id": int(rest[0]),
                "gi_id": int(rest[1]),
                "placement_start": start,
                "placement_size": size,
            }
        )
    return instances


def parse_mig_compute_instances(text: str) -> list[dict[str, Any]]:
    """``nvidia-smi mig -lci``: one record per compute instance (profile may be ``1c.3g.20gb``)."""
    instances = []
    for cells in _table_rows(text):
        if len(cells) < 6 or not (cells[0].isdigit() and cells[1].isdigit()):
            continue
        profile, rest = _profile_name(cells[2:])
        start, size = _placement(rest[2]) if len(rest) > 2 else (None, None)
        instances.append(
            {
                "gpu": int(cells[0]),
                "gi_id": int(cells[1]),
                "profile": profile,
                "profile_id": int(rest[0]),
                "ci_id": int(rest[1]),
                "placement_start": start,
                "placement_size": size,
            }
        )
    return instances


def _gib_to_mib(gib: str) -> int:
    """-lgip prints GiB with two decimals; MIG memory comes in 1/16 GiB steps, so round back to them."""
    return round(float(gib) * 16) * 64


def parse_mig_gpu_instance_profiles(text: str) -> list[dict[str, Any]]:
    """``nvidia-smi mig -lgip``: the profiles each GPU offers (two table lines per profile)."""
    profiles = []
    for cells in _table_rows(text):
        # The second line of a profile holds only CE/JPEG/OFA counts.
        if len(cells) < 8 or not cells[0].isdigit() or cells[1] != "MIG":
            continue
        name, rest = _profile_name(cells[1:])
        free, total = rest[1].split("/")
        slices = re.match(r"^(?:\d+c\.)?(\d+)g\.", name)
        profiles.append(
            {
                "gpu": int(cells[0]),
                "name": name,
                "id": int(rest[0]),
                "slices": int(slices.group(1)) if slices else None,
                "memory_mib": _gib_to_mib(rest[2]),
                "max_instances": int(total),
                "free_instances": int(free),
                "multiprocessor_count": int(rest[4]) if len(rest) > 4 and rest[4].isdigit() else None,
            }
        )
    return profiles


_LGIPP = re.compile(r"^GPU\s+(?P<gpu>\d+)\s+Profile ID\s+(?P<id>\d+)\s+Placements?\s*:\s*\{(?P<starts>[\d,]*)\}:(?P<size>\d+)")


def parse_mig_placements(text: str) -> list[dict[str, Any]]:
    """``nvidia-smi mig -lgipp``: the valid placements (start slots and size) of each profile id."""
    placements = []
    for line in text.splitlines():
        match = _LGIPP.match(line.strip())
        if match:
            placements.append(
                {
                    "gpu": int(match["gpu"]),
                    "profile_id": int(match["id"]),
                    "starts": [int(s) for s in match["starts"].split(",") if s],
                    "size": int(match["size"]),
                }
            )
    return placements


def merge_mig(
    facts: dict[str, Any],
    listed: list[dict[str, Any]],
    gpu_instances: list[dict[str, Any]],
    compute_instances: list[dict[str, Any]],
    profiles: list[dict[str, Any]],
) -> dict[str, Any]:
    """Join -L, -lgi, -lci and -lgip into each MIG-enabled GPU's ``mig_devices`` and ``mig_profiles``.

    MIG devices are matched by (GPU index, GI id, CI id), never by position: the driver numbers
    devices in its own order and GI ids differ between hosts for the same layout.
    """
    by_gpu_listed = {gpu["index"]: gpu for gpu in listed}
    gi_by_key = {(gi["gpu"], gi["gi_id"]): gi for gi in gpu_instances}
    ci_by_key = {(ci["gpu"], ci["gi_id"], ci["ci_id"]): ci for ci in compute_instances}
    for gpu in facts["gpus"]:
        if gpu["mig_mode_current"] != "enabled":
            gpu["mig_devices"] = []
            continue
        index = gpu["index"]
        listed_devices = {dev["index"]: dev for dev in by_gpu_listed.get(index, {}).get("mig_devices", [])}
        for dev in gpu["mig_devices"]:
            gi = gi_by_key.get((index, dev["gi_id"]), {})
            ci = ci_by_key.get((index, dev["gi_id"], dev["ci_id"]), {})
            listed_dev = listed_devices.get(dev["index"], {})
            dev["profile"] = gi.get("profile") or listed_dev.get("profile")
            if ci.get("profile") and ci["profile"] != dev["profile"]:
                dev["ci_profile"] = ci["profile"]
            dev["placement_start"] = gi.get("placement_start")
            dev["placement_size"] = gi.get("placement_size")
            dev["uuid"] = listed_dev.get("uuid")
        gpu["mig_profiles"] = [{key: value for key, value in profile.items() if key != "gpu"} for profile in profiles if profile["gpu"] == index]
    return facts


# --------------------------------------------------------------------------------------------
# Running nvidia-smi
# --------------------------------------------------------------------------------------------


def explain_failure(args: list[str], rc: int, out: str, err: str) -> str:
    """A sentence for a failed nvidia-smi call: known causes get advice, the rest the tool's own words."""
    said = " ".join((err or out or "").split())
    for needle, advice in _FAILURES:
        if needle in said.lower():
            return f"{advice} (nvidia-smi said: {said})"
    return f"'{' '.join(args)}' failed with exit code {rc}: {said or 'no output'}"


def no_instances_listed(rc: int, out: str, err: str) -> bool:
    """-lgi/-lci exit non-zero with 'No GPU instances found' / 'No compute instances found' when empty."""
    return rc != 0 and re.search(r"No (GPU|compute) instances? found", (out or "") + (err or "")) is not None


def gather(binary: str, run: Runner) -> dict[str, Any]:
    """Run nvidia-smi through ``run(argv) -> (rc, stdout, stderr)`` and return ``ansible_facts.nvidia``."""

    def call(*args: str, empty_ok: bool = False) -> str:
        argv = [binary, *args]
        rc, out, err = run(argv)
        if rc == 0:
            return out
        if empty_ok and no_instances_listed(rc, out, err):
            return ""
        raise NvidiaSmiError(explain_failure(argv, rc, out, err))

    facts = parse_query_xml(call("-q", "-x"))
    if any(gpu["mig_mode_current"] == "enabled" for gpu in facts["gpus"]):
        merge_mig(
            facts,
            parse_list_gpus(call("-L")),
            parse_mig_gpu_instances(call("mig", "-lgi", empty_ok=True)),
            parse_mig_compute_instances(call("mig", "-lci", empty_ok=True)),
            parse_mig_gpu_instance_profiles(call("mig", "-lgip")),
        )
    return facts


def module_runner(module: Any) -> tuple[str, Runner]:
    """The nvidia-smi a module should run, and a runner for it; fails the module when there is none.

    ``module`` is the calling AnsibleModule (duck-typed, so this file stays free of it), with an
    ``nvidia_smi_path`` option: the given path, else nvidia-smi on PATH. The runner passes argv as
    a list (no shell) in the C locale, so numbers and messages are never localised.
    """
    binary = module.params["nvidia_smi_path"]
    if binary is None:
        binary = module.get_bin_path("nvidia-smi")
        if binary is None:
            module.fail_json(
                msg="nvidia-smi was not found on PATH: is the NVIDIA driver installed on this node? "
                "If the GPU Operator's driver container provides it, set nvidia_smi_path."
            )
    elif not os.access(binary, os.X_OK):
        module.fail_json(msg=f"nvidia_smi_path {binary} does not exist or is not executable.")

    def run(argv: list[str]) -> tuple[int, str, str]:
        return module.run_command(argv, environ_update={"LC_ALL": "C"})

    return binary, run
