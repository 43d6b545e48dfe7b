#!/usr/bin/env python
# Copyright: (c) 2026, llmops.gpu_inference contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A stateful ``nvidia-smi`` simulator: a test double for hosts without NVIDIA GPUs.

Installed on a test host as ``/usr/bin/nvidia-smi`` by ``install.yml`` beside this file (which makes the
first line ``#!/usr/bin/python3``: this copy keeps the shebang ansible-test's sanity checks allow), it
answers the commands the collection runs with output shaped like the real captures in
``shared/fixtures/nvidia-smi`` (same XML element names and nesting, same table columns and
spacing, same error texts and exit codes) and keeps MIG mode, GPU/compute instances and
persistence mode across calls, so modules can be tested end to end: enable MIG, see it pending,
reset, partition, tear down. Standard library only; Python 3.9 to 3.13.

Files
-----
``/etc/nvidia-smi-sim/config.json`` (env ``NVIDIA_SMI_SIM_CONFIG``): the simulated hardware and
environment, written by install.yml. Unknown keys are an error. Keys and defaults::

    model                  "H100-80GB"   one of MODELS (key, product name or PCI id): A100-SXM4-40GB,
                                         A100-SXM4-80GB, A30, H100-80GB, H100-NVL, H200, GH200-96GB, L40S
    count                  8             number of GPUs (0: "No devices were found")
    driver_version         "550.90.07"   selects the output schema: <535 power_readings era (DTD v11/v12),
                                         535-569 and 570-579 (v12), >=580 (v13), >=610 KMD/UMD renames
    cuda_version           derived       from the driver branch (reference table); any string, e.g. "N/A"
    driver_loaded          true          false: every command fails like a host whose kernel module is gone
    mig_capable_reset      true          false: GPU reset impossible (passthrough VM): MIG mode changes
                                         stay pending ("Not Supported") and -r fails
    persistence_mode       false         initial persistence mode of every GPU
    persistence_blocks_reset true        persistence mode holds the GPU like a client (as
                                         nvidia-persistenced does), so MIG activation and -r are refused
    busy_gpus              []            indices held by a client that is not a process (nvidia_drm, DCGM,
                                         fabric manager): MIG activation and -r are refused
    processes              []            [{"gpu": 0, "pid": 1234, "name": "python3", "used_memory_mib": 1024,
                                         "type": "C", "gi": null, "ci": null}]: compute apps; they block
                                         MIG activation, reset and destroying their compute instance
    nvswitch               false         true: fabric state Completed/Success (HGX), else N/A
    ecc_errors             {}            {"0": {"volatile_sbe": 0, "volatile_dbe": 0, "aggregate_sbe": 0,
                                         "aggregate_dbe": 0, "pending_remap": false, "remap_failure": false}}
    telemetry              {}            {"0": {"temperature_c": 85, "power_draw_w": 650.0,
                                         "utilization_gpu_pct": 100}} (defaults: idle values)
    mig_enabled            []            indices whose MIG mode starts Enabled (MIG-capable models only)
    mig_layout             {}            {"0": ["3g.40gb", "1g.10gb"]}: GPU instances (each with its full
                                         compute instance) present when the state is created
    hostname               this host     seeds the GPU/MIG UUIDs and serials (stable per host, distinct
                                         between hosts)
    pci_bus_ids            per model     ["00000000:18:00.0", ...] to override the bus ids
    xml_legacy_version_elements true     R610+ only: false drops <driver_version>/<cuda_version> from -q -x

``/var/lib/nvidia-smi-sim/state.json`` (env ``NVIDIA_SMI_SIM_STATE``): what commands changed (MIG
modes, instances, persistence). Created from the config on first use, rebuilt when the model or
GPU count no longer matches; written atomically (temp file + rename) under an exclusive
``flock`` on ``state.json.lock``. install.yml deletes it whenever the config changes.

Commands
--------
``--version``, ``-h``; no arguments (the summary table); ``-L``; ``-q -x``;
``--query-gpu=FIELDS --format=csv[,noheader][,nounits]`` (see QUERY_GPU_FIELDS);
``--query-compute-apps=FIELDS --format=...``; ``-pm 0|1``; ``-mig 0|1``; ``-r``/``--gpu-reset``;
``mig -lgip|-lgipp|-lgi|-lci``; ``mig -cgi LIST [-C]``; ``mig -cci [LIST] [-gi X]``;
``mig -dci [-gi X] [-ci Y]``; ``mig -dgi [-gi X]``. ``-i`` (index, UUID or bus id, comma lists)
selects GPUs everywhere. Simulator-only: ``sim state`` (print the state) and ``sim reboot``
(pending MIG modes take effect, instances vanish, persistence returns to the configured value).
Real options this double does not model print a message naming the simulator and exit 2.

Behaviour, and where it had to be chosen (the reference and captures leave it open)
-------------------------------------------------------------------------------------
* MIG mode change: takes effect at once when the GPU is idle and resettable (as on bare metal:
  "Enabled MIG Mode for GPU ..."); otherwise it stays pending with the real warning, reason
  "In use by another client" (processes, persistence, busy_gpus) or "Not Supported"
  (mig_capable_reset false). ``-r`` then applies it and destroys all instances. Disabling MIG
  while GPU instances exist is refused ("In use by another client"; guess).
* GPU instance placement: the lowest free valid start for the profile, in creation order.
  GI ids follow the placement, not a counter: id = (memory slices / size - 1) + start / size, a
  binary-heap numbering of the memory slices (7g = 0, halves 1-2, quarters 3-6, eighths 7-14).
  This matches the real H100, H100 NVL, H200, A30 and A100 (mig-parted) captures; some older
  A100 captures number the halves the other way round. Compute instance ids are the lowest free
  id within their GPU instance; the full compute instance has id 0.
* Exit codes (nvidia-smi(1)): 2 invalid argument (unknown option or ``--query-gpu`` field, unknown
  profile), 6 not found (the empty ``-lgi``/``-lci`` listings, "No MIG-enabled devices found.",
  a ``-i`` that matches no GPU), 9 driver not loaded, 255 other (Insufficient Resources, In use by
  another client, a failed reset, an option missing its value). ``-mig`` on a GPU without MIG is
  a warning (rc 0), as in the captures.
* ``-cgi`` stops at the first profile that does not fit; instances created before stay.
  ``-dgi``/``-dci`` stop at the first instance that cannot be destroyed.
* ``-r`` is all-or-nothing: when any selected GPU cannot be reset, none is.
* XML: tab indentation and element order as in the captures of each schema era. No real
  MIG-enabled v13 XML exists: ``<mig_device>`` keeps the v11 layout (the R590 ``-q`` text shows the
  same fields). R610+: ``<kmd_version>`` and ``<cuda_umd_version>`` follow ``<driver_version>`` and
  ``<cuda_version>`` (plain values, no deprecation suffix), DTD still v13 (no capture exists).
* ``mig -lgi``/``-lci``/``-lgip`` use the pre-R580 table widths of the captures for every driver.
* The summary table uses the R550+ layout (91 columns) for every driver.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

CONFIG_PATH = "/etc/nvidia-smi-sim/config.json"
STATE_PATH = "/var/lib/nvidia-smi-sim/state.json"

# Exit codes from nvidia-smi(1).
RC_OK = 0
RC_INVALID_ARGUMENT = 2
RC_NO_PERMISSION = 4
RC_NOT_FOUND = 6
RC_DRIVER_NOT_LOADED = 9
RC_OTHER = 255

DRIVER_NOT_LOADED = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n\n"
)
NO_DEVICES = "No devices were found\n"
NO_MIG_SUPPORTED = "No MIG-supported devices found.\n"
NO_MIG_ENABLED = "No MIG-enabled devices found.\n"
NO_GPU_INSTANCES = "No GPU instances found: Not Found\n"
NO_COMPUTE_INSTANCES = "No compute instances found: Not Found\n"
INVALID_COMBINATION = "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n"
IN_USE = "In use by another client"
NOT_SUPPORTED = "Not Supported"
INSUFFICIENT_RESOURCES = "Insufficient Resources"
INVALID_ARGUMENT = "Invalid Argument"
DEPRECATED = "Requested functionality has been deprecated"
NA = "N/A"


class SimError(Exception):
    """A command failed: ``text`` goes to stdout as nvidia-smi prints its errors (stderr for the simulator's own)."""

    def __init__(self, text: str, rc: int, stderr: bool = False) -> None:
        super().__init__(text)
        self.text = text
        self.rc = rc
        self.stderr = stderr


# ============================================================================================
# Model table
# ============================================================================================


@dataclass(frozen=True)
class Profile:
    """One GPU instance profile, as ``nvidia-smi mig -lgip`` and ``-lgipp`` list it."""

    name: str  # "3g.40gb"
    id: int  # the CLI id -cgi takes (not the NVML enum)
    compute_slices: int
    memory_slices: int  # the placement size
    max_instances: int
    starts: tuple[int, ...]  # valid placement starts
    memory_mib: int
    sm: int
    dec: int
    enc: int
    ce: int
    jpeg: int
    ofa: int
    default_ci_profile_id: int  # profile id of the compute instance spanning the whole GPU instance
    min_branch: int  # first driver branch that offers the profile

    @property
    def media_extension(self) -> bool:
        return self.name.endswith("+me")


# Per family: (id, compute slices, memory slices, max instances, starts, SM, DEC, ENC, CE, JPEG, OFA,
# default CI profile id, first driver branch), in -lgip order. Engine counts from the real -lgip of
# A100-40GB, GH200-96GB and A30 (reference/mig_profiles.yaml); CI profile ids from the -cgi -C captures.
_ALL_1G = (0, 1, 2, 3, 4, 5, 6)
_AMPERE_8_SLICES = (
    (19, 1, 1, 7, _ALL_1G, 14, 0, 0, 1, 0, 0, 0, 0),
    (20, 1, 1, 1, _ALL_1G, 14, 1, 0, 1, 1, 1, 0, 470),
    (15, 1, 2, 4, (0, 2, 4, 6), 14, 1, 0, 1, 0, 0, 7, 525),
    (14, 2, 2, 3, (0, 2, 4), 28, 1, 0, 2, 0, 0, 1, 0),
    (9, 3, 4, 2, (0, 4), 42, 2, 0, 3, 0, 0, 2, 0),
    (5, 4, 4, 1, (0,), 56, 2, 0, 4, 0, 0, 3, 0),
    (0, 7, 8, 1, (0,), 98, 5, 0, 7, 1, 1, 4, 0),
)
_HOPPER_8_SLICES = (
    (19, 1, 1, 7, _ALL_1G, 16, 1, 0, 1, 1, 0, 0, 0),
    (20, 1, 1, 1, _ALL_1G, 16, 1, 0, 1, 1, 1, 0, 0),
    (15, 1, 2, 4, (0, 2, 4, 6), 26, 1, 0, 1, 1, 0, 7, 0),
    (14, 2, 2, 3, (0, 2, 4), 32, 2, 0, 2, 2, 0, 1, 0),
    (9, 3, 4, 2, (0, 4), 60, 3, 0, 3, 3, 0, 2, 0),
    (5, 4, 4, 1, (0,), 64, 4, 0, 4, 4, 0, 3, 0),
    (0, 7, 8, 1, (0,), 132, 7, 0, 8, 7, 1, 4, 0),
)
_AMPERE_4_SLICES = (  # A30: other ids; 2g.12gb+me (R525+) is left out, its CLI id was never observed
    (14, 1, 1, 4, (0, 1, 2, 3), 14, 1, 0, 1, 0, 0, 0, 0),
    (21, 1, 1, 1, (0, 1, 2, 3), 14, 1, 0, 1, 1, 1, 0, 470),
    (5, 2, 2, 2, (0, 2), 28, 2, 0, 2, 0, 0, 1, 0),
    (0, 4, 4, 1, (0,), 56, 4, 0, 4, 1, 1, 3, 0),
)


def _profiles(family: tuple[tuple[Any, ...], ...], names: str, memory_mib: tuple[int, ...]) -> tuple[Profile, ...]:
    """One model's profiles: the family's ids, slices and engines with the model's names and sizes."""
    return tuple(
        Profile(name, pid, c, m, mx, starts, mem, sm, dec, enc, ce, jpeg, ofa, ci, branch)
        for name, mem, (pid, c, m, mx, starts, sm, dec, enc, ce, jpeg, ofa, ci, branch) in zip(names.split(), memory_mib, family)  # noqa: B905 (no strict= before Python 3.10)
    )


@dataclass(frozen=True)
class Mig:
    """A MIG-capable GPU's slices and GPU instance profiles."""

    memory_slices: int
    compute_slices: int
    profiles: tuple[Profile, ...]

    def sm_for(self, compute_slices: int) -> int:
        """SMs of a compute instance of ``compute_slices`` (that of the first profile that size)."""
        return next(p.sm for p in self.profiles if p.compute_slices == compute_slices)


@dataclass(frozen=True)
class Model:
    key: str
    product_name: str
    architecture: str
    pci_device_id: str  # "0x233010DE"; the XML prints it without the 0x
    pci_sub_system_id: str
    memory_mib: int
    reserved_mib: int
    bar1_mib: int
    power_limit_w: float
    power_min_w: float
    idle_power_w: float
    compute_cap: str
    pcie_gen: int
    vbios: str
    board_part_number: str
    gpu_part_number: str
    inforom_image: str
    max_graphics_mhz: int
    memory_mhz: int
    tlimit: bool  # temperatures reported against T.Limit (Hopper, Ada) from R535 on
    mig: Mig | None
    memory_temperature: bool = True  # HBM parts report it; the L40S's GDDR6 does not
    bus_ids: tuple[str, ...] = (
        "00000000:18:00.0",
        "00000000:2A:00.0",
        "00000000:3A:00.0",
        "00000000:5D:00.0",
        "00000000:9A:00.0",
        "00000000:AB:00.0",
        "00000000:BA:00.0",
        "00000000:DB:00.0",
    )


# Product names, PCI ids, memory, power and clocks from the captures where one exists (H100, H200,
# L40S, A100-40GB, H100 NVL, GH200); MIG names and sizes from mig_profiles.yaml and real -lgip tables.
MODELS: dict[str, Model] = {
    m.key: m
    for m in (
        Model(
            "A100-SXM4-40GB", "NVIDIA A100-SXM4-40GB", "Ampere", "0x20B010DE", "0x134F10DE", 40960, 605, 65536,
            400.0, 100.0, 56.0, "8.0", 4, "92.00.45.00.03", "692-2G506-0200-003", "20B0-884-A1", "G506.0200.00.04", 1410, 1215, False,
            Mig(8, 7, _profiles(_AMPERE_8_SLICES, "1g.5gb 1g.5gb+me 1g.10gb 2g.10gb 3g.20gb 4g.20gb 7g.40gb",
                                (4864, 4864, 9856, 9856, 19968, 19968, 40192))),
        ),
        Model(
            "A100-SXM4-80GB", "NVIDIA A100-SXM4-80GB", "Ampere", "0x20B210DE", "0x147F10DE", 81920, 637, 131072,
            400.0, 100.0, 62.0, "8.0", 4, "92.00.36.00.02", "692-2G506-0210-002", "20B2-895-A1", "G506.0210.00.03", 1410, 1593, False,
            Mig(8, 7, _profiles(_AMPERE_8_SLICES, "1g.10gb 1g.10gb+me 1g.20gb 2g.20gb 3g.40gb 4g.40gb 7g.80gb",
                                (9728, 9728, 19968, 19968, 40192, 40192, 80896))),
        ),
        Model(
            "A30", "NVIDIA A30", "Ampere", "0x20B710DE", "0x153210DE", 24576, 331, 32768,
            165.0, 90.0, 31.0, "8.0", 4, "92.00.66.00.01", "900-21001-0040-100", "20B7-895-A1", "G203.0201.00.01", 1440, 1215, False,
            Mig(4, 4, _profiles(_AMPERE_4_SLICES, "1g.6gb 1g.6gb+me 2g.12gb 4g.24gb", (5952, 5952, 11968, 24064))),
        ),
        Model(
            "H100-80GB", "NVIDIA H100 80GB HBM3", "Hopper", "0x233010DE", "0x16C110DE", 81559, 479, 131072,
            700.0, 200.0, 70.0, "9.0", 5, "96.00.A5.00.01", "692-2G520-0200-000", "2330-885-A1", "G520.0200.00.05", 1980, 2619, True,
            Mig(8, 7, _profiles(_HOPPER_8_SLICES, "1g.10gb 1g.10gb+me 1g.20gb 2g.20gb 3g.40gb 4g.40gb 7g.80gb",
                                (9984, 9984, 20096, 20096, 40448, 40448, 80896))),
        ),
        Model(
            "H100-NVL", "NVIDIA H100 NVL", "Hopper", "0x232110DE", "0x173910DE", 95830, 517, 131072,
            400.0, 200.0, 62.0, "9.0", 5, "96.00.74.00.11", "692-2G520-0280-000", "2321-886-A1", "G520.0280.00.02", 1785, 2619, True,
            Mig(8, 7, _profiles(_HOPPER_8_SLICES, "1g.12gb 1g.12gb+me 1g.24gb 2g.24gb 3g.47gb 4g.47gb 7g.94gb",
                                (11008, 11008, 22144, 22144, 47488, 47488, 95360))),
            bus_ids=("00000001:00:00.0", "00000002:00:00.0", "00000003:00:00.0", "00000004:00:00.0"),
        ),
        Model(
            "H200", "NVIDIA H200", "Hopper", "0x233510DE", "0x18BE10DE", 143771, 614, 262144,
            700.0, 200.0, 78.0, "9.0", 5, "96.00.A5.00.03", "692-2G520-0280-001", "2335-885-A1", "G520.0280.00.05", 1980, 3201, True,
            Mig(8, 7, _profiles(_HOPPER_8_SLICES, "1g.18gb 1g.18gb+me 1g.35gb 2g.35gb 3g.71gb 4g.71gb 7g.141gb",
                                (16384, 16384, 33024, 33024, 71168, 71168, 143104))),
        ),
        Model(
            "GH200-96GB", "NVIDIA GH200 480GB", "Hopper", "0x234210DE", "0x16EB10DE", 97871, 507, 131072,
            900.0, 200.0, 90.0, "9.0", 5, "96.00.8B.00.01", "699-2G530-0200-000", "2342-895-A1", "G530.0200.00.02", 1980, 2619, True,
            Mig(8, 7, _profiles(_HOPPER_8_SLICES, "1g.12gb 1g.12gb+me 1g.24gb 2g.24gb 3g.48gb 4g.48gb 7g.96gb",
                                (11264, 11264, 23552, 23552, 47616, 47616, 95232))),
            bus_ids=("00000009:01:00.0", "00000019:01:00.0", "00000029:01:00.0", "00000039:01:00.0"),
        ),
        Model(
            "L40S", "NVIDIA L40S", "Ada Lovelace", "0x26B910DE", "0x185110DE", 46068, 609, 65536,
            350.0, 100.0, 33.0, "8.9", 4, "95.02.66.00.02", "900-2G133-0080-000", "26B9-896-A1", "G133.0242.00.03", 2520, 9001, True,
            None, memory_temperature=False,
        ),
    )
}  # fmt: skip


def find_model(name: str) -> Model | None:
    """A model by key, product name (with or without "NVIDIA ") or PCI device id, ignoring case and punctuation."""

    def norm(text: str) -> str:
        return "".join(ch for ch in text.upper() if ch.isalnum())

    wanted = norm(name)
    for model in MODELS.values():
        names = (model.key, model.product_name, model.product_name.replace("NVIDIA ", ""), model.pci_device_id)
        if wanted in {norm(n) for n in names}:
            return model
    return None


# ============================================================================================
# Driver: version, CUDA, output schema era
# ============================================================================================

# Highest CUDA each driver branch supports, as nvidia-smi prints it (reference/nvidia-smi-and-mig.md).
_CUDA_BY_BRANCH = (
    (610, "13.3"), (595, "13.2"), (590, "13.1"), (580, "13.0"), (575, "12.9"), (570, "12.8"), (565, "12.7"),
    (560, "12.6"), (555, "12.5"), (550, "12.4"), (545, "12.3"), (535, "12.2"), (530, "12.1"), (525, "12.0"),
    (520, "11.8"), (515, "11.7"), (510, "11.6"), (495, "11.5"), (470, "11.4"), (465, "11.3"), (460, "11.2"),
    (455, "11.1"), (450, "11.0"),
)  # fmt: skip


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".") if part.isdigit())


@dataclass(frozen=True)
class Driver:
    version: str
    cuda: str

    @property
    def branch(self) -> int:
        return version_tuple(self.version)[0]

    @property
    def generation(self) -> int:
        """XML layout era: 1 <R535 (power_readings), 2 R535-R569, 3 R570-R579, 4 R580+ (DTD v13)."""
        return 1 if self.branch < 535 else 2 if self.branch < 570 else 3 if self.branch < 580 else 4

    @property
    def dtd(self) -> str:
        return "nvsmi_device_v11.dtd" if self.branch < 525 else "nvsmi_device_v12.dtd" if self.branch < 580 else "nvsmi_device_v13.dtd"

    @property
    def kmd(self) -> bool:
        """R610 renamed Driver Version / CUDA Version to KMD Version / CUDA UMD Version."""
        return self.branch >= 610

    @property
    def nvml_version(self) -> str:
        return ".".join(self.version.split(".")[:2])


def cuda_for_driver(version: str) -> str:
    branch = version_tuple(version)[0]
    return next((cuda for first, cuda in _CUDA_BY_BRANCH if branch >= first), NA)


# ============================================================================================
# Configuration (the simulated hardware) and state (what commands changed)
# ============================================================================================

CONFIG_DEFAULTS: dict[str, Any] = {
    "model": "H100-80GB",
    "count": 8,
    "driver_version": "550.90.07",
    "cuda_version": None,
    "driver_loaded": True,
    "mig_capable_reset": True,
    "persistence_mode": False,
    "persistence_blocks_reset": True,
    "busy_gpus": [],
    "processes": [],
    "nvswitch": False,
    "ecc_errors": {},
    "telemetry": {},
    "mig_enabled": [],
    "mig_layout": {},
    "hostname": None,
    "pci_bus_ids": None,
    "xml_legacy_version_elements": True,
}


class Process(NamedTuple):
    gpu: int
    pid: int
    name: str
    used_memory_mib: int
    type: str
    gi: int | None
    ci: int | None


@dataclass(frozen=True)
class Config:
    model: Model
    count: int
    driver: Driver
    driver_loaded: bool
    mig_capable_reset: bool
    persistence_mode: bool
    persistence_blocks_reset: bool
    busy_gpus: frozenset[int]
    processes: tuple[Process, ...]
    nvswitch: bool
    ecc_errors: dict[int, dict[str, Any]]
    telemetry: dict[int, dict[str, Any]]
    mig_enabled: frozenset[int]
    mig_layout: dict[int, list[str]]
    hostname: str
    bus_ids: tuple[str, ...]
    xml_legacy_version_elements: bool

    @classmethod
    def load(cls, path: str) -> Config:
        try:
            with open(path, encoding="utf-8") as handle:
                raw = json.load(handle)
        except FileNotFoundError:
            raise SimError(f"nvidia-smi-sim: configuration {path} not found (see tests/nvidia_smi_sim/install.yml)\n", RC_OTHER, stderr=True) from None
        except (OSError, ValueError) as exc:
            raise SimError(f"nvidia-smi-sim: cannot read configuration {path}: {exc}\n", RC_OTHER, stderr=True) from None
        if not isinstance(raw, dict):
            raise SimError(f"nvidia-smi-sim: configuration {path} must hold a JSON object\n", RC_OTHER, stderr=True)
        unknown = sorted(set(raw) - set(CONFIG_DEFAULTS))
        if unknown:
            raise SimError(f"nvidia-smi-sim: unknown configuration keys in {path}: {', '.join(unknown)}\n", RC_OTHER, stderr=True)
        try:
            return cls.from_dict({**CONFIG_DEFAULTS, **raw})
        except (KeyError, TypeError, ValueError) as exc:
            raise SimError(f"nvidia-smi-sim: invalid configuration {path}: {exc}\n", RC_OTHER, stderr=True) from None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Config:
        model = find_model(str(raw["model"]))
        if model is None:
            raise ValueError(f"unknown model {raw['model']!r}; known: {', '.join(MODELS)}")
        count = int(raw["count"])
        version = str(raw["driver_version"])
        if not version_tuple(version):
            raise ValueError(f"driver_version {version!r} is not a version")
        driver = Driver(version, str(raw["cuda_version"]) if raw["cuda_version"] is not None else cuda_for_driver(version))
        processes = tuple(
            Process(
                int(p["gpu"]),
                int(p["pid"]),
                str(p.get("name", "python3")),
                int(p.get("used_memory_mib", 1024)),
                str(p.get("type", "C")),
                None if p.get("gi") is None else int(p["gi"]),
                None if p.get("ci") is None else int(p["ci"]),
            )
            for p in raw["processes"]
        )
        bus_ids = tuple(raw["pci_bus_ids"] or model.bus_ids)
        # More GPUs than listed bus ids: continue on made-up buses.
        bus_ids += tuple(f"00000000:{0xE0 + n:02X}:00.0" for n in range(max(0, count - len(bus_ids))))
        mig_enabled = frozenset(int(i) for i in raw["mig_enabled"])
        mig_layout = {int(i): list(names) for i, names in raw["mig_layout"].items()}
        if model.mig is None and (mig_enabled or mig_layout):
            raise ValueError(f"{model.key} is not MIG-capable; mig_enabled and mig_layout must be empty")
        if not set(mig_layout) <= mig_enabled:
            raise ValueError("every GPU in mig_layout must be listed in mig_enabled")
        return cls(
            model=model,
            count=count,
            driver=driver,
            driver_loaded=bool(raw["driver_loaded"]),
            mig_capable_reset=bool(raw["mig_capable_reset"]),
            persistence_mode=bool(raw["persistence_mode"]),
            persistence_blocks_reset=bool(raw["persistence_blocks_reset"]),
            busy_gpus=frozenset(int(i) for i in raw["busy_gpus"]),
            processes=processes,
            nvswitch=bool(raw["nvswitch"]),
            ecc_errors={int(i): dict(v) for i, v in raw["ecc_errors"].items()},
            telemetry={int(i): dict(v) for i, v in raw["telemetry"].items()},
            mig_enabled=mig_enabled,
            mig_layout=mig_layout,
            hostname=str(raw["hostname"] or socket.gethostname()),
            bus_ids=bus_ids[:count],
            xml_legacy_version_elements=bool(raw["xml_legacy_version_elements"]),
        )


def _digest(*parts: object) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()


def gpu_uuid(config: Config, index: int) -> str:
    h = _digest("gpu", config.hostname, index, config.model.key)
    return f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def mig_uuid(config: Config, index: int, gi: dict[str, Any], ci: dict[str, Any]) -> str:
    """Version-5 UUID like the driver's, stable for the same host, GPU, instance ids and placement."""
    name = f"{gpu_uuid(config, index)}/{gi['id']}/{gi['profile_id']}/{gi['start']}/{ci['id']}/{ci['slices']}"
    return "MIG-" + str(uuid.uuid5(uuid.NAMESPACE_OID, name))


def new_state(config: Config) -> dict[str, Any]:
    """The state of freshly booted GPUs as the config describes them."""
    gpus: list[dict[str, Any]] = []
    for index in range(config.count):
        mode = None if config.model.mig is None else "Enabled" if index in config.mig_enabled else "Disabled"
        gpus.append({"mig_current": mode, "mig_pending": mode, "persistence": config.persistence_mode, "gpu_instances": []})
    state = {"hardware": {"model": config.model.key, "count": config.count}, "gpus": gpus}
    for index, names in config.mig_layout.items():
        for name in names:
            profile = find_profile(config, name)
            if profile is None:
                raise SimError(f"nvidia-smi-sim: invalid configuration: no MIG profile {name!r} on {config.model.key}\n", RC_OTHER, stderr=True)
            gi = create_gpu_instance(config, gpus[index], profile)
            if isinstance(gi, str):
                raise SimError(f"nvidia-smi-sim: invalid configuration: mig_layout of GPU {index} does not fit ({name}: {gi})\n", RC_OTHER, stderr=True)
            create_compute_instance(config, gi, profile.compute_slices)
    return state


class StateStore:
    """The JSON state file: created from the config on first use, written atomically under a lock."""

    def __init__(self, path: str) -> None:
        self.path = path

    @contextlib.contextmanager
    def open(self, config: Config) -> Iterator[dict[str, Any]]:
        """Yield the state under an exclusive lock; write it back when it is new or the caller changed it.

        Without write access (a user other than root) queries still work; changes are refused, as
        nvidia-smi refuses them with "Insufficient Permissions".
        """
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            lock = open(self.path + ".lock", "a", encoding="utf-8")  # noqa: SIM115 - held for the whole block
        except PermissionError:
            state = self._read(config)[0]
            before = json.dumps(state, sort_keys=True)
            yield state
            if json.dumps(state, sort_keys=True) != before:
                raise SimError(f"nvidia-smi-sim: cannot change {self.path}: Insufficient Permissions (run as root)\n", RC_NO_PERMISSION, stderr=True) from None
            return
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state, fresh = self._read(config)
            before = json.dumps(state, sort_keys=True)
            yield state
            if fresh or json.dumps(state, sort_keys=True) != before:
                self._write(state)

    def _read(self, config: Config) -> tuple[dict[str, Any], bool]:
        """The stored state and False, or a new one and True (no file yet, or the hardware changed)."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                state = json.load(handle)
        except FileNotFoundError:
            return new_state(config), True
        except (OSError, ValueError) as exc:
            raise SimError(f"nvidia-smi-sim: cannot read state {self.path}: {exc}\n", RC_OTHER, stderr=True) from None
        if state.get("hardware") != {"model": config.model.key, "count": config.count}:
            return new_state(config), True
        return state, False

    def _write(self, state: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".state-", dir=os.path.dirname(self.path) or ".")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(state, handle, indent=1, sort_keys=True)
                handle.write("\n")
            os.chmod(tmp, 0o644)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


# ============================================================================================
# MIG: profiles, placement, GPU and compute instances
# ============================================================================================

# NVML compute instance profile ids by compute slices (1_SLICE=0 ... 7_SLICE=4).
_CI_PROFILE_ID = {1: 0, 2: 1, 3: 2, 4: 3, 7: 4}


def available_profiles(config: Config) -> tuple[Profile, ...]:
    """The GPU instance profiles this model offers with this driver (A100 1g.10gb needs R525, +me R470)."""
    mig = config.model.mig
    return () if mig is None else tuple(p for p in mig.profiles if config.driver.branch >= p.min_branch)


def find_profile(config: Config, token: str) -> Profile | None:
    """A profile by CLI id (``9``), name (``3g.40gb``) or full name (``MIG 3g.40gb``), resolved on this model."""
    token = token.strip()
    if token.upper().startswith("MIG "):
        token = token[4:].strip()
    return next((p for p in available_profiles(config) if token in (str(p.id), p.name)), None)


def profile_by_id(config: Config, profile_id: int) -> Profile:
    return next(p for p in available_profiles(config) if p.id == profile_id)


def gi_id_for(mig: Mig, start: int, size: int) -> int:
    """The driver's GI id for a placement: a binary heap over the memory slices (7g 0, halves 1-2, ...)."""
    return mig.memory_slices // size - 1 + start // size


def _occupied(config: Config, gpu: dict[str, Any]) -> set[int]:
    return {s for gi in gpu["gpu_instances"] for s in range(gi["start"], gi["start"] + profile_by_id(config, gi["profile_id"]).memory_slices)}


def _compute_slices_used(config: Config, gpu: dict[str, Any]) -> int:
    return sum(profile_by_id(config, gi["profile_id"]).compute_slices for gi in gpu["gpu_instances"])


def free_instances(config: Config, gpu: dict[str, Any], profile: Profile) -> int:
    """How many more instances of ``profile`` fit (the "Free" of ``-lgip``)."""
    assert config.model.mig is not None
    existing = sum(1 for gi in gpu["gpu_instances"] if gi["profile_id"] == profile.id)
    budget = min(profile.max_instances - existing, (config.model.mig.compute_slices - _compute_slices_used(config, gpu)) // profile.compute_slices)
    occupied = _occupied(config, gpu)
    fitting = 0
    for start in profile.starts:
        span = set(range(start, start + profile.memory_slices))
        if not span & occupied:
            fitting += 1
            occupied |= span
    return max(0, min(budget, fitting))


def create_gpu_instance(config: Config, gpu: dict[str, Any], profile: Profile) -> dict[str, Any] | str:
    """Place ``profile`` at its lowest free start; the new GI, or the NVML error when it does not fit."""
    assert config.model.mig is not None
    if free_instances(config, gpu, profile) == 0:
        return INSUFFICIENT_RESOURCES
    occupied = _occupied(config, gpu)
    start = next(s for s in profile.starts if not set(range(s, s + profile.memory_slices)) & occupied)
    gi = {"id": gi_id_for(config.model.mig, start, profile.memory_slices), "profile_id": profile.id, "start": start, "compute_instances": []}
    gpu["gpu_instances"] = sorted([*gpu["gpu_instances"], gi], key=lambda g: g["id"])
    return gi


def ci_sizes(compute_slices: int) -> tuple[int, ...]:
    """Compute instance sizes a GPU instance of ``compute_slices`` offers (4g: 1c, 2c, 4g; 7g: 1c-4c, 7g)."""
    return (1, 2, 4) if compute_slices == 4 else tuple(k for k in (1, 2, 3, 4, 7) if k <= compute_slices)


def ci_profile(config: Config, gi: dict[str, Any], slices: int) -> tuple[int, str]:
    """(CI profile id, name) of a compute instance of ``slices`` in ``gi``: ``3g.40gb`` or ``1c.3g.40gb``."""
    profile = profile_by_id(config, gi["profile_id"])
    if slices == profile.compute_slices:
        return profile.default_ci_profile_id, profile.name
    return _CI_PROFILE_ID[slices], f"{slices}c.{profile.name}"


def find_ci_slices(config: Config, gi: dict[str, Any], token: str | None) -> int | None:
    """The size named by a -cci token (CI profile id or name); the full GI when ``token`` is None."""
    profile = profile_by_id(config, gi["profile_id"])
    if token is None:
        return profile.compute_slices
    token = token.strip()
    if token.upper().startswith("MIG "):
        token = token[4:].strip()
    for slices in ci_sizes(profile.compute_slices):
        ci_id, name = ci_profile(config, gi, slices)
        if token in (str(ci_id), name):
            return slices
    return None


def create_compute_instance(config: Config, gi: dict[str, Any], slices: int) -> dict[str, Any] | str:
    """Add a compute instance of ``slices`` at its lowest free start with the lowest free id."""
    size = profile_by_id(config, gi["profile_id"]).compute_slices
    cis = gi["compute_instances"]
    used = {s for ci in cis for s in range(ci["start"], ci["start"] + ci["slices"])}
    start = next((s for s in range(size - slices + 1) if not set(range(s, s + slices)) & used), None)
    if start is None or sum(ci["slices"] for ci in cis) + slices > size:
        return INSUFFICIENT_RESOURCES
    ids = {ci["id"] for ci in cis}
    ci = {"id": next(i for i in range(len(ids) + 1) if i not in ids), "slices": slices, "start": start}
    gi["compute_instances"] = sorted([*cis, ci], key=lambda c: c["id"])
    return ci


# ============================================================================================
# A read-only view of one GPU for the renderers
# ============================================================================================


class MigDevice(NamedTuple):
    device: int  # the MIG device index -L prints
    gi_id: int
    ci_id: int
    name: str  # compute instance name: "3g.40gb" or "1c.3g.40gb"
    profile: Profile  # of the GPU instance
    sm: int
    memory_mib: int
    used_mib: int
    bar1_mib: int
    uuid: str


class Gpu:
    """One simulated GPU: the model and config, the state, and everything derived from them."""

    def __init__(self, config: Config, index: int, state: dict[str, Any]) -> None:
        self.config = config
        self.model = config.model
        self.index = index
        self.state = state
        self.bus_id = config.bus_ids[index]
        self.uuid = gpu_uuid(config, index)
        digest = _digest("serial", config.hostname, index)
        self.serial = str(int(digest[:12], 16))[:13].rjust(13, "1")
        self.processes = [p for p in config.processes if p.gpu == index]
        self.ecc = {"volatile_sbe": 0, "volatile_dbe": 0, "aggregate_sbe": 0, "aggregate_dbe": 0, "pending_remap": False, "remap_failure": False}
        self.ecc.update(config.ecc_errors.get(index, {}))
        self.telemetry = config.telemetry.get(index, {})

    # Modes -----------------------------------------------------------------------------------
    @property
    def mig_capable(self) -> bool:
        return self.model.mig is not None

    @property
    def mig_enabled(self) -> bool:
        return self.state["mig_current"] == "Enabled"

    @property
    def persistence(self) -> bool:
        return bool(self.state["persistence"])

    def busy(self) -> bool:
        """Whether a client holds the GPU, which blocks MIG mode activation and reset."""
        return bool(self.processes) or self.index in self.config.busy_gpus or (self.persistence and self.config.persistence_blocks_reset)

    # Telemetry -------------------------------------------------------------------------------
    @property
    def temperature_c(self) -> int:
        return int(self.telemetry.get("temperature_c", 30 + (self.index * 3) % 7))

    @property
    def power_draw_w(self) -> float:
        return float(self.telemetry.get("power_draw_w", round(self.model.idle_power_w + (self.index * 0.73) % 5, 2)))

    @property
    def utilization_pct(self) -> int | None:
        """None on MIG-enabled GPUs: nvidia-smi cannot report GPU utilization there."""
        return None if self.mig_enabled else int(self.telemetry.get("utilization_gpu_pct", 0))

    @property
    def memory_used_mib(self) -> int:
        if self.mig_enabled:
            return sum(self._gi_used_mib(gi) for gi in self.gpu_instances())
        return sum(p.used_memory_mib for p in self.processes)

    @property
    def memory_free_mib(self) -> int:
        # Every capture prints one MiB more than total - reserved - used (H100, H200, L40S; idle and in MIG mode).
        return max(0, self.model.memory_mib - self.model.reserved_mib - self.memory_used_mib + 1)

    @property
    def memory_temperature_c(self) -> int | None:
        return self.temperature_c + 6 if self.model.memory_temperature else None

    @property
    def ecc_uncorrected_volatile(self) -> int:
        return int(self.ecc["volatile_dbe"])

    # MIG -------------------------------------------------------------------------------------
    def gpu_instances(self) -> list[dict[str, Any]]:
        return list(self.state["gpu_instances"]) if self.mig_enabled else []

    def _gi_used_mib(self, gi: dict[str, Any]) -> int:
        """Memory in use in a GPU instance: the driver's share (grows with the size) plus its processes."""
        memory_slices = profile_by_id(self.config, gi["profile_id"]).memory_slices
        return 4 + 6 * memory_slices + sum(p.used_memory_mib for p in self.processes if p.gi == gi["id"])

    def mig_devices(self) -> list[MigDevice]:
        """One device per compute instance, numbered in (GI id, CI id) order like the driver."""
        devices: list[MigDevice] = []
        mig = self.model.mig
        for gi in self.gpu_instances():
            assert mig is not None
            profile = profile_by_id(self.config, gi["profile_id"])
            for ci in gi["compute_instances"]:
                name = ci_profile(self.config, gi, ci["slices"])[1]
                devices.append(
                    MigDevice(
                        device=len(devices),
                        gi_id=gi["id"],
                        ci_id=ci["id"],
                        name=name,
                        profile=profile,
                        sm=profile.sm if ci["slices"] == profile.compute_slices else mig.sm_for(ci["slices"]),
                        memory_mib=profile.memory_mib,
                        used_mib=self._gi_used_mib(gi),
                        bar1_mib=self.model.bar1_mib * profile.memory_slices // mig.memory_slices - 1,
                        uuid=mig_uuid(self.config, self.index, gi, ci),
                    )
                )
        return devices

    # Texts -----------------------------------------------------------------------------------
    @property
    def mig_mode_current(self) -> str:
        return self.state["mig_current"] or NA

    @property
    def mig_mode_pending(self) -> str:
        return self.state["mig_pending"] or NA

    @property
    def fabric(self) -> tuple[str, str]:
        return ("Completed", "Success") if self.config.nvswitch else (NA, NA)


# ============================================================================================
# nvidia-smi -q -x
# ============================================================================================


class Text(str):
    """Element text printed on its own line (``<mig_devices>`` then ``None`` then ``</mig_devices>``)."""


def _mib(value: int) -> str:
    return f"{value} MiB"


def _watts(value: float) -> str:
    return f"{value:.2f} W"


def _enabled(flag: bool) -> str:
    return "Enabled" if flag else "Disabled"


def _xml_lines(node: Any, depth: int, out: list[str]) -> None:
    """Append one element as nvidia-smi prints it. ``node`` is (tag, text) or (tag, [child nodes]);
    the tag may carry attributes (``gpu id="..."``)."""
    tag, content = node
    pad = "\t" * depth
    name = tag.split(" ", 1)[0]
    if isinstance(content, Text):
        out += [f"{pad}<{tag}>", f"{pad}\t{escape_xml(content)}", f"{pad}</{name}>"]
    elif isinstance(content, str):
        out.append(f"{pad}<{tag}>{escape_xml(content)}</{name}>")
    else:
        out.append(f"{pad}<{tag}>")
        for child in content:
            _xml_lines(child, depth + 1, out)
        out.append(f"{pad}</{name}>")


def escape_xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_query_xml(config: Config, gpus: Sequence[Gpu]) -> str:
    """``nvidia-smi -q -x``: the document with one ``<gpu>`` per selected GPU."""
    drv = config.driver
    lines = ['<?xml version="1.0" ?>', f'<!DOCTYPE nvidia_smi_log SYSTEM "{drv.dtd}">', "<nvidia_smi_log>"]
    header: list[Any] = [("timestamp", time.asctime())]
    if not drv.kmd or config.xml_legacy_version_elements:
        header += [("driver_version", drv.version), ("cuda_version", drv.cuda)]
    if drv.kmd:
        header += [("kmd_version", drv.version), ("cuda_umd_version", drv.cuda)]
    header.append(("attached_gpus", str(config.count)))
    for node in header:
        _xml_lines(node, 1, lines)
    for gpu in gpus:
        _xml_lines((f'gpu id="{gpu.bus_id}"', xml_gpu(gpu)), 1, lines)
        lines.append("")
    lines.append("</nvidia_smi_log>")
    return "\n".join(lines) + "\n"


def xml_gpu(g: Gpu) -> list[Any]:
    """The children of one ``<gpu>``, in the element order of the capture of this driver's era.

    Eras (Driver.generation): 1 = R510 A100 capture (v11), 2 = R535/536 (v12, gpu_power_readings with
    power_draw), 3 = R570 (v12, average/instant power, platformInfo, SRAM parity/SEC-DED), 4 = R580+
    (v13 as R590/R595: display_attached, pdi, clocks_event_reasons_counters, repair flags, no voltage).
    """
    gen = g.config.driver.generation
    return [
        *xml_identity(g, gen),
        ("pci", xml_pci(g, gen)),
        *xml_activity(g, gen),
        *xml_health(g, gen),
        *xml_power(g, gen),
        *xml_clocks(g, gen),
        *xml_fabric_and_processes(g, gen),
    ]


def xml_identity(g: Gpu, gen: int) -> list[Any]:
    """From ``<product_name>`` to ``<ibmnpu>``: names, modes, MIG devices, ids, firmware."""
    model = g.model
    nodes: list[Any] = [
        ("product_name", model.product_name),
        ("product_brand", "NVIDIA"),
        ("product_architecture", model.architecture),
        ("display_mode", DEPRECATED if gen >= 4 else "Disabled"),
    ]
    if gen >= 4:
        nodes.append(("display_attached", "Yes"))
    nodes += [("display_active", "Disabled"), ("persistence_mode", _enabled(g.persistence))]
    if gen >= 2:
        nodes.append(("addressing_mode", "None"))
    nodes += [
        ("mig_mode", [("current_mig", g.mig_mode_current), ("pending_mig", g.mig_mode_pending)]),
        ("mig_devices", [("mig_device", xml_mig_device(dev)) for dev in g.mig_devices()] or Text("None")),
        ("accounting_mode", "Disabled"),
        ("accounting_mode_buffer_size", "4000"),
        ("driver_model", [("current_dm", NA), ("pending_dm", NA)]),
        ("serial", g.serial),
        ("uuid", g.uuid),
    ]
    if gen >= 4:
        nodes.append(("pdi", "0x" + _digest("pdi", g.uuid)[:16]))
    nodes += [
        ("minor_number", str(g.index)),
        ("vbios_version", model.vbios),
        ("multigpu_board", "No"),
        ("board_id", f"0x{int(g.bus_id.split(':')[1], 16) << 8:x}"),
    ]
    if gen >= 2:
        nodes.append(("board_part_number", model.board_part_number))
    nodes.append(("gpu_part_number", model.gpu_part_number))
    if gen >= 2:
        nodes.append(("gpu_fru_part_number", NA))
    if gen <= 2:
        nodes.append(("gpu_module_id", str(g.index + 1)))
    else:
        platform = [(tag, NA) for tag in ("chassis_serial_number", "slot_number", "tray_index", "host_id", "peer_type")]
        nodes.append(("platformInfo", [*platform, ("module_id", str(g.index + 1)), ("gpu_fabric_guid", NA)]))
    inforom = [("img_version", model.inforom_image), ("oem_object", "2.1"), ("ecc_object", "7.16"), ("pwr_object", NA)]
    nodes.append(("inforom_version", inforom))
    if gen >= 3:
        nodes.append(("inforom_bbx_flush", [("latest_timestamp", NA), ("latest_duration", NA)]))
    nodes.append(("gpu_operation_mode", [("current_gom", NA), ("pending_gom", NA)]))
    if gen >= 3:
        nodes.append(("c2c_mode", "Disabled"))
    gsp = ("gsp_firmware_version", g.config.driver.version)
    if gen <= 2:
        nodes.append(gsp)
    virtualization = [("virtualization_mode", "None" if g.config.mig_capable_reset else "Pass-Through"), ("host_vgpu_mode", NA)]
    if gen >= 3:
        virtualization.append(("vgpu_heterogeneous_mode", NA))
    nodes.append(("gpu_virtualization_mode", virtualization))
    if gen in (2, 3):
        nodes.append(("gpu_reset_status", [("reset_required", "No"), ("drain_and_reset_recommended", "No")]))
    if gen >= 3:
        nodes += [("gpu_recovery_action", "None"), gsp]
    return [*nodes, ("ibmnpu", [("relaxed_ordering_mode", NA)])]


def xml_activity(g: Gpu, gen: int) -> list[Any]:
    """From ``<fan_speed>`` to ``<dram_encryption_mode>``: clock reasons, memory, utilization."""
    model = g.model
    reasons: tuple[str, ...] = ("gpu_idle", "applications_clocks_setting", "sw_power_cap", "hw_slowdown", "hw_thermal_slowdown")
    reasons += ("hw_power_brake_slowdown", "sync_boost", "sw_thermal_slowdown", "display_clocks_setting")
    kind = "throttle" if gen == 1 else "event"
    nodes: list[Any] = [
        ("fan_speed", NA),
        ("performance_state", "P0"),
        (f"clocks_{kind}_reasons", [(f"clocks_{kind}_reason_{r}", "Active" if r == "gpu_idle" else "Not Active") for r in reasons]),
    ]
    if gen >= 4:
        counters = ("sw_power_cap", "sync_boost", "sw_therm_slowdown", "hw_therm_slowdown", "hw_power_brake")
        nodes.append(("clocks_event_reasons_counters", [(f"clocks_event_reasons_counters_{c}", "0 us") for c in counters]))
    if gen >= 3:
        nodes.append(("sparse_operation_mode", "Disabled"))
    fb = [("total", _mib(model.memory_mib)), ("reserved", _mib(model.reserved_mib)), ("used", _mib(g.memory_used_mib)), ("free", _mib(g.memory_free_mib))]
    nodes += [
        ("fb_memory_usage", fb),
        ("bar1_memory_usage", [("total", _mib(model.bar1_mib)), ("used", _mib(1)), ("free", _mib(model.bar1_mib - 1))]),
    ]
    if gen >= 2:
        nodes.append(("cc_protected_memory_usage", [("total", _mib(0)), ("used", _mib(0)), ("free", _mib(0))]))
    engines = ["gpu_util", "memory_util", "encoder_util", "decoder_util"] + (["jpeg_util", "ofa_util"] if gen >= 2 else [])
    busy = NA if g.utilization_pct is None else f"{g.utilization_pct} %"
    idle = NA if g.mig_enabled else "0 %"
    stats = [("session_count", "0"), ("average_fps", "0"), ("average_latency", "0")]
    nodes += [
        ("compute_mode", "Default"),
        ("utilization", [(engine, busy if engine == "gpu_util" else idle) for engine in engines]),
        ("encoder_stats", stats),
        ("fbc_stats", stats),
    ]
    if gen >= 3:
        nodes.append(("dram_encryption_mode", [("current_dram_encryption", NA), ("pending_dram_encryption", NA)]))
    return nodes


def xml_health(g: Gpu, gen: int) -> list[Any]:
    """ECC, retired pages, remapped rows (N/A while MIG is on, as in the captures), temperatures."""
    retirement = [("retired_count", NA), ("retired_pagelist", NA)]
    return [
        ("ecc_mode", [("current_ecc", "Enabled"), ("pending_ecc", "Enabled")]),
        ("ecc_errors", xml_ecc_errors(g, gen)),
        (
            "retired_pages",
            [
                ("multiple_single_bit_retirement", retirement),
                ("double_bit_retirement", retirement),
                ("pending_blacklist", NA),
                ("pending_retirement", NA),
            ],
        ),
        ("remapped_rows", NA if g.mig_enabled else xml_remapped_rows(g, gen)),
        ("temperature", xml_temperature(g, gen)),
        ("supported_gpu_target_temp", [("gpu_target_temp_min", NA), ("gpu_target_temp_max", NA)]),
    ]


def xml_clocks(g: Gpu, gen: int) -> list[Any]:
    model = g.model
    memory, top = f"{model.memory_mhz} MHz", f"{model.max_graphics_mhz} MHz"
    applications = [("graphics_clock", DEPRECATED), ("mem_clock", DEPRECATED)] if gen >= 4 else [("graphics_clock", top), ("mem_clock", memory)]
    nodes: list[Any] = [
        ("clocks", [("graphics_clock", "345 MHz"), ("sm_clock", "345 MHz"), ("mem_clock", memory), ("video_clock", "765 MHz")]),
        ("applications_clocks", applications),
        ("default_applications_clocks", applications),
    ]
    if gen >= 2:
        nodes.append(("deferred_clocks", [("mem_clock", NA)]))
    nodes += [
        ("max_clocks", [("graphics_clock", top), ("sm_clock", top), ("mem_clock", memory), ("video_clock", "1545 MHz")]),
        ("max_customer_boost_clocks", [("graphics_clock", top)]),
        ("clock_policy", [("auto_boost", NA), ("auto_boost_default", NA)]),
    ]
    if gen <= 3:
        nodes.append(("voltage", [("graphics_volt", NA)]))
    return nodes


def xml_fabric_and_processes(g: Gpu, gen: int) -> list[Any]:
    top = g.model.max_graphics_mhz
    graphics = [("supported_graphics_clock", f"{mhz} MHz") for mhz in (top, top - 15, 345)]
    nodes: list[Any] = [("fabric", xml_fabric(g, gen))] if gen >= 2 else []
    nodes += [
        ("supported_clocks", [("supported_mem_clock", [("value", f"{g.model.memory_mhz} MHz"), *graphics])]),
        ("processes", [("process_info", xml_process(g, p)) for p in g.processes]),
        ("accounted_processes", []),
    ]
    if gen >= 3:
        nodes.append(("capabilities", [("egm", "disabled")]))
    return nodes


def xml_mig_device(dev: MigDevice) -> list[Any]:
    """The v11 ``<mig_device>`` of the A100 capture (kept for later drivers: the R590 -q text has the same fields)."""
    p = dev.profile
    shared = [
        ("multiprocessor_count", str(dev.sm)),
        ("copy_engine_count", str(p.ce)),
        ("encoder_count", str(p.enc)),
        ("decoder_count", str(p.dec)),
        ("ofa_count", str(p.ofa)),
        ("jpg_count", str(p.jpeg)),
    ]
    free = dev.memory_mib - dev.used_mib
    return [
        ("index", str(dev.device)),
        ("gpu_instance_id", str(dev.gi_id)),
        ("compute_instance_id", str(dev.ci_id)),
        ("device_attributes", [("shared", shared)]),
        ("ecc_error_count", [("volatile_count", [("sram_uncorrectable", "0")])]),
        ("fb_memory_usage", [("total", _mib(dev.memory_mib)), ("reserved", _mib(0)), ("used", _mib(dev.used_mib)), ("free", _mib(free))]),
        ("bar1_memory_usage", [("total", _mib(dev.bar1_mib)), ("used", _mib(0)), ("free", _mib(dev.bar1_mib))]),
    ]


def xml_pci(g: Gpu, gen: int) -> list[Any]:
    domain, bus, device_function = g.bus_id.split(":")
    nodes: list[Any] = [("pci_bus", bus), ("pci_device", device_function.split(".")[0]), ("pci_domain", domain[-4:])]
    if gen >= 3:
        nodes += [("pci_base_class", "3"), ("pci_sub_class", "2")]
    gen_nodes = [("max_link_gen", str(g.model.pcie_gen)), ("current_link_gen", str(g.model.pcie_gen))]
    if gen >= 2:
        gen_nodes += [("device_current_link_gen", str(g.model.pcie_gen)), ("max_device_link_gen", str(g.model.pcie_gen)), ("max_host_link_gen", NA)]
    nodes += [
        ("pci_device_id", g.model.pci_device_id[2:]),
        ("pci_bus_id", g.bus_id),
        ("pci_sub_system_id", g.model.pci_sub_system_id[2:]),
        ("pci_gpu_link_info", [("pcie_gen", gen_nodes), ("link_widths", [("max_link_width", "16x"), ("current_link_width", "16x")])]),
        ("pci_bridge_chip", [("bridge_chip_type", NA), ("bridge_chip_fw", NA)]),
        ("replay_counter", "0"),
        ("replay_rollover_counter", "0"),
        ("tx_util", "0 KB/s"),
        ("rx_util", "0 KB/s"),
    ]
    if gen == 2:
        nodes += [("atomic_caps_inbound", NA), ("atomic_caps_outbound", NA)]
    elif gen >= 3:
        nodes += [("atomic_caps_outbound", NA), ("atomic_caps_inbound", NA)]
    return nodes


def xml_ecc_errors(g: Gpu, gen: int) -> list[Any]:
    """DRAM counters carry the configured ECC errors; SRAM ones stay 0."""

    def scope(name: str) -> list[Any]:
        sbe, dbe = str(g.ecc[f"{name}_sbe"]), str(g.ecc[f"{name}_dbe"])
        if gen <= 2:
            return [("sram_correctable", "0"), ("sram_uncorrectable", "0"), ("dram_correctable", sbe), ("dram_uncorrectable", dbe)]
        nodes = [("sram_correctable", "0"), ("sram_uncorrectable_parity", "0"), ("sram_uncorrectable_secded", "0")]
        nodes += [("dram_correctable", sbe), ("dram_uncorrectable", dbe)]
        return nodes + ([("sram_threshold_exceeded", "No")] if name == "aggregate" else [])

    nodes: list[Any] = [("volatile", scope("volatile")), ("aggregate", scope("aggregate"))]
    if gen >= 3:
        sources = ("sram_l2", "sram_sm", "sram_microcontroller", "sram_pcie", "sram_other")
        nodes.append(("aggregate_uncorrectable_sram_sources", [(s, "0") for s in sources]))
    if gen >= 4:
        nodes += [("channel_repair_pending", "No"), ("tpc_repair_pending", "No"), ("unrepairable_memory", "No")]
    return nodes


def xml_remapped_rows(g: Gpu, gen: int) -> list[Any]:
    pending, failure = bool(g.ecc["pending_remap"]), bool(g.ecc["remap_failure"])
    unc = str(int(g.ecc["aggregate_dbe"]))
    nodes: list[Any] = [("remapped_row_corr", "0")]
    if gen >= 2:
        nodes.append(("remapped_row_corr_inactive", "0"))
    nodes.append(("remapped_row_unc", unc))
    if gen >= 2:
        nodes.append(("remapped_row_unc_inactive", "0"))
    histogram = [("row_remapper_histogram_max", "2560 bank(s)")]
    histogram += [(f"row_remapper_histogram_{level}", "0 bank(s)") for level in ("high", "partial", "low", "none")]
    nodes += [("remapped_row_pending", "Yes" if pending else "No"), ("remapped_row_failure", "Yes" if failure else "No")]
    return [*nodes, ("row_remapper_histogram", histogram)]


def xml_temperature(g: Gpu, gen: int) -> list[Any]:
    """Old absolute thresholds, or (Hopper/Ada from R535) thresholds relative to T.Limit."""
    nodes: list[Any] = [("gpu_temp", f"{g.temperature_c} C")]
    if gen >= 2:
        nodes.append(("gpu_temp_tlimit", f"{87 - g.temperature_c} C" if g.model.tlimit else NA))
    if gen >= 2 and g.model.tlimit:
        nodes += [("gpu_temp_max_tlimit_threshold", "-8 C"), ("gpu_temp_slow_tlimit_threshold", "-2 C"), ("gpu_temp_max_gpu_tlimit_threshold", "0 C")]
        tail = ("gpu_temp_max_mem_tlimit_threshold", "0 C")
    else:
        nodes += [("gpu_temp_max_threshold", "92 C"), ("gpu_temp_slow_threshold", "89 C"), ("gpu_temp_max_gpu_threshold", "85 C")]
        tail = ("gpu_temp_max_mem_threshold", "95 C")
    memory = NA if g.memory_temperature_c is None else f"{g.memory_temperature_c} C"
    return [*nodes, ("gpu_target_temperature", NA), ("memory_temp", memory), tail]


def xml_power(g: Gpu, gen: int) -> list[Any]:
    limit, low = _watts(g.model.power_limit_w), _watts(g.model.power_min_w)
    draw = _watts(g.power_draw_w)
    if gen == 1:
        return [
            (
                "power_readings",
                [
                    ("power_state", "P0"),
                    ("power_management", "Supported"),
                    ("power_draw", draw),
                    ("power_limit", limit),
                    ("default_power_limit", limit),
                    ("enforced_power_limit", limit),
                    ("min_power_limit", low),
                    ("max_power_limit", limit),
                ],
            )
        ]
    state = DEPRECATED if gen >= 4 else "P0"
    readings = [("power_draw", draw)] if gen == 2 else [("average_power_draw", draw), ("instant_power_draw", draw)]
    limits = [("current_power_limit", limit), ("requested_power_limit", limit), ("default_power_limit", limit)]
    limits += [("min_power_limit", low), ("max_power_limit", limit)]
    nodes: list[Any] = [("gpu_power_readings", [("power_state", state), *readings, *limits])]
    if gen >= 3:
        nodes.append(("gpu_memory_power_readings", [("average_power_draw", NA), ("instant_power_draw", NA)]))
    nodes.append(("module_power_readings", [("power_state", state), *((tag, NA) for tag, _value in [*readings, *limits])]))
    if gen >= 3:
        nodes += [
            ("power_smoothing", NA),
            ("power_profiles", [("power_profile_requested_profiles", NA), ("power_profile_enforced_profiles", NA)]),
        ]
    if gen >= 4:
        nodes.append(("edpp_multiplier", NA))
    return nodes


def xml_fabric(g: Gpu, gen: int) -> list[Any]:
    state, status = g.fabric
    nodes: list[Any] = [("state", state), ("status", status)]
    if gen >= 3:
        health = ["bandwidth", "route_recovery_in_progress", "route_unhealthy", "access_timeout_recovery"]
        if gen >= 4:
            health = ["summary", *health, "incorrect_configuration"]
            if g.config.driver.branch >= 595:
                health.append("partition_assigned")
        clique, cluster = ("0", "00000000-0000-0000-0000-000000000000") if g.config.nvswitch else (NA, NA)
        nodes += [("cliqueId", clique), ("clusterUuid", cluster), ("health", [(h, NA) for h in health])]
    return nodes


def xml_process(g: Gpu, p: Process) -> list[Any]:
    in_mig = g.mig_enabled and p.gi is not None
    return [
        ("gpu_instance_id", str(p.gi) if in_mig else NA),
        ("compute_instance_id", str(p.ci if p.ci is not None else 0) if in_mig else NA),
        ("pid", str(p.pid)),
        ("type", p.type),
        ("process_name", p.name),
        ("used_memory", _mib(p.used_memory_mib)),
    ]


# ============================================================================================
# -L, --version, -h
# ============================================================================================


def render_list(gpus: Sequence[Gpu]) -> str:
    lines = []
    for g in gpus:
        lines.append(f"GPU {g.index}: {g.model.product_name} (UUID: {g.uuid})")
        lines += [f"  {'MIG ' + dev.name:<16}Device {dev.device:>2}: (UUID: {dev.uuid})" for dev in g.mig_devices()]
    return "".join(line + "\n" for line in lines)


def render_version(driver: Driver) -> str:
    if driver.kmd:
        lines = [
            f"NVIDIA-SMI version  : {driver.version}",
            f"NVML version        : {driver.nvml_version}",
            'DRIVER version      : Deprecated, see "KMD version" instead',
            'CUDA version        : Deprecated, see "CUDA UMD version" instead',
            f"KMD version         : {driver.version}",
            f"CUDA UMD version    : {driver.cuda}",
        ]
    else:
        lines = [
            f"NVIDIA-SMI version  : {driver.version}",
            f"NVML version        : {driver.nvml_version}",
            f"DRIVER version      : {driver.version}",
            f"CUDA Version        : {driver.cuda}",
        ]
    return "\n".join(lines) + "\n"


def render_help(driver: Driver) -> str:
    return f"""NVIDIA System Management Interface -- v{driver.version}

(nvidia-smi-sim: a simulator for tests; only these options are modelled.)

nvidia-smi [OPTION1 [ARG1]] [OPTION2 [ARG2]] ...

    -h,   --help                Print usage information and exit.
          --version             Print version information and exit.
    -L,   --list-gpus           Display a list of GPUs connected to the system.
    -q,   --query               Display GPU or Unit info (with -x only).
    -x,   --xml-format          Produce XML output.
    -i,   --id=                 Target a specific GPU.
    --query-gpu                 Information about GPU.
    --query-compute-apps        List of currently active compute processes.
    --format=                   csv[,noheader][,nounits]
    -pm,  --persistence-mode=   Set persistence mode: 0/DISABLED, 1/ENABLED
    -r    --gpu-reset           Trigger reset of the GPU.
    -mig  --multi-instance-gpu= Enable or disable Multi Instance GPU: 0/DISABLED, 1/ENABLED
    mig                         -lgip, -lgipp, -lgi, -lci, -cgi [-C], -cci, -dci, -dgi [-i] [-gi] [-ci]
    sim                         Simulator only: "sim state", "sim reboot".
"""


# ============================================================================================
# --query-gpu and --query-compute-apps
# ============================================================================================


class Field(NamedTuple):
    unit: str  # printed in the header as "name [unit]" and after each value unless nounits
    value: Callable[[Any], Any]  # of a Gpu (--query-gpu) or an App (--query-compute-apps); None prints [N/A]


def _mig_mode(mode: str) -> str | None:
    return None if mode == NA else mode


def _ecc_field(kind: str, scope: str, part: str) -> Field:
    """An ECC counter: the configured errors are DRAM errors; SRAM stays clean."""
    key = f"{scope}_{'sbe' if kind == 'corrected' else 'dbe'}"
    return Field("", lambda g: 0 if part == "sram" else int(g.ecc[key]))


def _remapped(g: Gpu, value: Any) -> Any:
    return None if g.mig_enabled else value


def _deprecated_from_r580(g: Gpu, value: Any) -> Any:
    """What R580+ prints for settings NVIDIA retired (display mode, power management, application clocks)."""
    return f"[{DEPRECATED}]" if g.config.driver.generation >= 4 else value


# The common --query-gpu fields, keyed by their canonical name (the header prints it).
QUERY_GPU_FIELDS: dict[str, Field] = {
    "timestamp": Field("", lambda g: csv_timestamp()),
    "driver_version": Field("", lambda g: g.config.driver.version),
    "count": Field("", lambda g: g.config.count),
    "name": Field("", lambda g: g.model.product_name),
    "serial": Field("", lambda g: g.serial),
    "uuid": Field("", lambda g: g.uuid),
    "pci.bus_id": Field("", lambda g: g.bus_id),
    "pci.domain": Field("", lambda g: "0x" + g.bus_id.split(":")[0][-4:]),
    "pci.bus": Field("", lambda g: "0x" + g.bus_id.split(":")[1]),
    "pci.device": Field("", lambda g: "0x" + g.bus_id.split(":")[2].split(".")[0]),
    "pci.device_id": Field("", lambda g: g.model.pci_device_id),
    "pci.sub_device_id": Field("", lambda g: g.model.pci_sub_system_id),
    "pcie.link.gen.current": Field("", lambda g: g.model.pcie_gen),
    "pcie.link.gen.max": Field("", lambda g: g.model.pcie_gen),
    "pcie.link.width.current": Field("", lambda g: 16),
    "pcie.link.width.max": Field("", lambda g: 16),
    "pci.baseClass": Field("", lambda g: "0x3"),
    "pci.subClass": Field("", lambda g: "0x2"),
    "pcie.link.gen.gpucurrent": Field("", lambda g: g.model.pcie_gen),
    "pcie.link.gen.gpumax": Field("", lambda g: g.model.pcie_gen),
    "pcie.link.gen.hostmax": Field("", lambda g: None),
    "index": Field("", lambda g: g.index),
    "display_mode": Field("", lambda g: _deprecated_from_r580(g, "Disabled")),
    "display_attached": Field("", lambda g: "Yes"),  # what the H100, H200 and L40S captures say
    "display_active": Field("", lambda g: "Disabled"),
    "persistence_mode": Field("", lambda g: _enabled(g.persistence)),
    "addressing_mode": Field("", lambda g: "None"),
    "accounting.mode": Field("", lambda g: "Disabled"),
    "accounting.buffer_size": Field("", lambda g: 4000),
    "driver_model.current": Field("", lambda g: None),
    "driver_model.pending": Field("", lambda g: None),
    "vbios_version": Field("", lambda g: g.model.vbios),
    "inforom.img": Field("", lambda g: g.model.inforom_image),
    "gpu_recovery_action": Field("", lambda g: "None"),
    "gom.current": Field("", lambda g: None),
    "gom.pending": Field("", lambda g: None),
    "fan.speed": Field("%", lambda g: None),
    "pstate": Field("", lambda g: "P0"),
    "memory.total": Field("MiB", lambda g: g.model.memory_mib),
    "memory.reserved": Field("MiB", lambda g: g.model.reserved_mib),
    "memory.used": Field("MiB", lambda g: g.memory_used_mib),
    "memory.free": Field("MiB", lambda g: g.memory_free_mib),
    "compute_mode": Field("", lambda g: "Default"),
    "compute_cap": Field("", lambda g: g.model.compute_cap),
    "utilization.gpu": Field("%", lambda g: g.utilization_pct),
    "utilization.memory": Field("%", lambda g: None if g.mig_enabled else 0),
    "utilization.encoder": Field("%", lambda g: None if g.mig_enabled else 0),
    "utilization.decoder": Field("%", lambda g: None if g.mig_enabled else 0),
    "utilization.jpeg": Field("%", lambda g: None if g.mig_enabled else 0),
    "utilization.ofa": Field("%", lambda g: None if g.mig_enabled else 0),
    "ecc.mode.current": Field("", lambda g: "Enabled"),
    "ecc.mode.pending": Field("", lambda g: "Enabled"),
    **{
        f"ecc.errors.{kind}.{scope}.{part}": _ecc_field(kind, scope, part)
        for kind in ("corrected", "uncorrected")
        for scope in ("volatile", "aggregate")
        for part in ("device_memory", "dram", "sram", "total")
    },
    "retired_pages.single_bit_ecc.count": Field("", lambda g: None),
    "retired_pages.double_bit.count": Field("", lambda g: None),
    "retired_pages.pending": Field("", lambda g: None),
    "remapped_rows.correctable": Field("", lambda g: _remapped(g, 0)),
    "remapped_rows.uncorrectable": Field("", lambda g: _remapped(g, int(g.ecc["aggregate_dbe"]))),
    "remapped_rows.pending": Field("", lambda g: _remapped(g, "Yes" if g.ecc["pending_remap"] else "No")),
    "remapped_rows.failure": Field("", lambda g: _remapped(g, "Yes" if g.ecc["remap_failure"] else "No")),
    "temperature.gpu": Field("", lambda g: g.temperature_c),
    "temperature.gpu.tlimit": Field("", lambda g: 87 - g.temperature_c if g.model.tlimit else None),
    "temperature.memory": Field("", lambda g: NA if g.memory_temperature_c is None else g.memory_temperature_c),  # N/A, no brackets
    "power.management": Field("", lambda g: _deprecated_from_r580(g, "Supported")),
    "power.draw": Field("W", lambda g: g.power_draw_w),
    "power.draw.average": Field("W", lambda g: g.power_draw_w),
    "power.draw.instant": Field("W", lambda g: g.power_draw_w),
    "power.limit": Field("W", lambda g: g.model.power_limit_w),
    "enforced.power.limit": Field("W", lambda g: g.model.power_limit_w),
    "power.default_limit": Field("W", lambda g: g.model.power_limit_w),
    "power.min_limit": Field("W", lambda g: g.model.power_min_w),
    "power.max_limit": Field("W", lambda g: g.model.power_limit_w),
    "clocks.current.graphics": Field("MHz", lambda g: 345),
    "clocks.current.sm": Field("MHz", lambda g: 345),
    "clocks.current.memory": Field("MHz", lambda g: g.model.memory_mhz),
    "clocks.current.video": Field("MHz", lambda g: 765),
    "clocks.applications.graphics": Field("MHz", lambda g: _deprecated_from_r580(g, g.model.max_graphics_mhz)),
    "clocks.applications.memory": Field("MHz", lambda g: _deprecated_from_r580(g, g.model.memory_mhz)),
    "clocks.default_applications.graphics": Field("MHz", lambda g: _deprecated_from_r580(g, g.model.max_graphics_mhz)),
    "clocks.default_applications.memory": Field("MHz", lambda g: _deprecated_from_r580(g, g.model.memory_mhz)),
    "clocks.max.graphics": Field("MHz", lambda g: g.model.max_graphics_mhz),
    "clocks.max.sm": Field("MHz", lambda g: g.model.max_graphics_mhz),
    "clocks.max.memory": Field("MHz", lambda g: g.model.memory_mhz),
    "mig.mode.current": Field("", lambda g: _mig_mode(g.mig_mode_current)),
    "mig.mode.pending": Field("", lambda g: _mig_mode(g.mig_mode_pending)),
    "gsp.mode.current": Field("", lambda g: "Enabled"),
    "gsp.mode.default": Field("", lambda g: "Enabled"),
    "c2c.mode": Field("", lambda g: "Disabled" if g.model.architecture == "Hopper" else None),
    "protected_memory.total": Field("MiB", lambda g: 0),
    "protected_memory.used": Field("MiB", lambda g: 0),
    "protected_memory.free": Field("MiB", lambda g: 0),
    "fabric.state": Field("", lambda g: g.fabric[0]),
    "fabric.status": Field("", lambda g: g.fabric[1]),
    "fabric.cliqueId": Field("", lambda g: "0" if g.config.nvswitch else NA),
    "fabric.clusterUuid": Field("", lambda g: "00000000-0000-0000-0000-000000000000" if g.config.nvswitch else NA),
}
# Real --query-gpu fields this double does not model (the R590-R610 field lists): refused with a message
# naming the simulator, not with nvidia-smi's "not a valid field" that would send a developer astray.
UNSIMULATED_GPU_FIELD_PREFIXES = (
    "bbx.", "clocks_event_reasons", "dramEncryption.", "ecc.errors.", "edpp_multiplier", "encoder.stats.", "fabric.health.", "gpu.base.",
    "hostname", "inforom.", "module.", "platform.", "power_smoothing.", "remapped_rows.", "vgpu_",
)  # fmt: skip
# What --help-query-gpu lists as `"a" or "b"`: the header prints the first name.
QUERY_GPU_ALIASES = {"gpu_name": "name", "gpu_serial": "serial", "gpu_uuid": "uuid", "gpu_bus_id": "pci.bus_id"}


class App(NamedTuple):
    gpu: Gpu
    process: Process


QUERY_APPS_FIELDS: dict[str, Field] = {
    "timestamp": Field("", lambda a: csv_timestamp()),
    "gpu_name": Field("", lambda a: a.gpu.model.product_name),
    "gpu_bus_id": Field("", lambda a: a.gpu.bus_id),
    "gpu_serial": Field("", lambda a: a.gpu.serial),
    "gpu_uuid": Field("", lambda a: a.gpu.uuid),
    "pid": Field("", lambda a: a.process.pid),
    "process_name": Field("", lambda a: a.process.name),
    "used_gpu_memory": Field("MiB", lambda a: a.process.used_memory_mib),
}
QUERY_APPS_ALIASES = {"name": "process_name", "used_memory": "used_gpu_memory"}


def csv_timestamp() -> str:
    now = datetime.datetime.now()
    return now.strftime("%Y/%m/%d %H:%M:%S.") + f"{now.microsecond // 1000:03d}"


def _csv_value(value: Any, unit: str, units: bool) -> str:
    """A number gets its unit unless nounits; None prints [N/A]; words print as they are."""
    if value is None:
        return "[N/A]"
    if not isinstance(value, (int, float)):
        return str(value)
    text = f"{value:.2f}" if isinstance(value, float) else str(value)
    return f"{text} {unit}" if unit and units else text


def parse_format(spec: str | None) -> tuple[bool, bool]:
    """``--format=csv,noheader,nounits`` -> (header, units). csv is mandatory."""
    options = [o.strip() for o in (spec or "").split(",") if o.strip()]
    if "csv" not in options or set(options) - {"csv", "noheader", "nounits"}:
        raise SimError(INVALID_COMBINATION, RC_INVALID_ARGUMENT)
    return "noheader" not in options, "nounits" not in options


def render_csv(fields: str, known: dict[str, Field], aliases: dict[str, str], rows: Sequence[Any], fmt: str | None, unsimulated: tuple[str, ...] = ()) -> str:
    """The CSV of a --query-* command: "name [unit]" headers, ", " separators, [N/A] for missing values."""
    header, units = parse_format(fmt)
    names = []
    for raw in fields.split(","):
        name = aliases.get(raw.strip(), raw.strip())
        if name not in known and name.startswith(unsimulated):
            raise _not_simulated(f"field {name}")
        if name not in known:
            raise SimError(f'Field "{raw.strip()}" is not a valid field to query.\n\n', RC_INVALID_ARGUMENT)
        names.append(name)
    lines = []
    if header:
        lines.append(", ".join(f"{n} [{known[n].unit}]" if known[n].unit else n for n in names))
    for row in rows:
        lines.append(", ".join(_csv_value(known[n].value(row), known[n].unit, units) for n in names))
    return "".join(line + "\n" for line in lines)


def query_gpu_fields(driver: Driver) -> dict[str, Field]:
    """R610 adds kmd_version (driver_version stays, deprecated)."""
    if not driver.kmd:
        return QUERY_GPU_FIELDS
    return {**QUERY_GPU_FIELDS, "kmd_version": Field("", lambda g: g.config.driver.version)}


# ============================================================================================
# nvidia-smi mig listings
# ============================================================================================

_LGI_RULE = "+" + "-" * 52 + "+"
_LCI_RULE = "+" + "-" * 68 + "+"
_LGIP_RULE = "+" + "-" * 77 + "+"


class GiRow(NamedTuple):
    gpu: int
    name: str
    profile_id: int
    gi_id: int
    start: int
    size: int


class CiRow(NamedTuple):
    gpu: int
    gi_id: int
    name: str
    profile_id: int
    ci_id: int
    start: int
    size: int


def render_lgi(rows: Sequence[GiRow]) -> str:
    lines = [
        _LGI_RULE,
        "| GPU instances:                                     |",
        "| GPU   Name          Profile  Instance   Placement  |",
        "|                       ID       ID       Start:Size |",
        "|" + "=" * 52 + "|",
    ]
    for r in rows:
        lines += [f"|{r.gpu:>4}  {'MIG ' + r.name:<14}{r.profile_id:>5}{r.gi_id:>9}{f'{r.start}:{r.size}':>13}     |", _LGI_RULE]
    return "".join(line + "\n" for line in lines)


def render_lci(rows: Sequence[CiRow]) -> str:
    lines = [
        _LCI_RULE,
        "| Compute instances:                                                 |",
        "| GPU     GPU       Name             Profile   Instance   Placement  |",
        "|       Instance                       ID        ID       Start:Size |",
        "|         ID                                                         |",
        "|" + "=" * 68 + "|",
    ]
    for r in rows:
        lines += [f"|{r.gpu:>4}{r.gi_id:>7}       {'MIG ' + r.name:<17}{r.profile_id:>5}{r.ci_id:>10}{f'{r.start}:{r.size}':>13}     |", _LCI_RULE]
    return "".join(line + "\n" for line in lines)


def render_lgip(rows: Sequence[tuple[int, Profile, int]]) -> str:
    """``-lgip`` rows: (GPU index, profile, free instances); two lines per profile."""
    lines = [
        _LGIP_RULE,
        "| GPU instance profiles:                                                      |",
        "| GPU   Name             ID    Instances   Memory     P2P    SM    DEC   ENC  |",
        "|                              Free/Total   GiB              CE    JPEG  OFA  |",
        "|" + "=" * 77 + "|",
    ]
    for gpu, p, free in rows:
        memory = f"{p.memory_mib / 1024:.2f}"
        lines += [
            f"|{gpu:>4}  {'MIG ' + p.name:<15}{p.id:>5}{f'{free}/{p.max_instances}':>8}        {memory:<11}{'No':<7}{p.sm:<7}{p.dec:<6}{p.enc:<4}|",
            "|" + " " * 60 + f"{p.ce:>2}{p.jpeg:>6}{p.ofa:>6}   |",
            _LGIP_RULE,
        ]
    return "".join(line + "\n" for line in lines)


def render_lgipp(rows: Sequence[tuple[int, Profile]]) -> str:
    lines = []
    for gpu, p in rows:
        label = "Placements:" if len(p.starts) > 1 else "Placement :"
        lines.append(f"GPU {gpu:>2} Profile ID {p.id:>2} {label} {{{','.join(map(str, p.starts))}}}:{p.memory_slices}")
    return "".join(line + "\n" for line in lines)


# ============================================================================================
# The summary table (nvidia-smi without arguments)
# ============================================================================================

_WIDE_RULE = "+" + "-" * 89 + "+"
_GPU_RULE = "+" + "-" * 41 + "+" + "-" * 24 + "+" + "-" * 22 + "+"
_MIG_RULE = "+" + "-" * 18 + "+" + "-" * 34 + "+" + "-" * 11 + "+" + "-" * 23 + "+"


def render_summary(config: Config, gpus: Sequence[Gpu]) -> str:
    drv = config.driver
    if drv.kmd:
        title = f"| NVIDIA-SMI {drv.version:<23}KMD Version: {drv.version:<14}CUDA UMD Version: {drv.cuda:<9}|"
    else:
        title = f"| NVIDIA-SMI {drv.version:<23}Driver Version: {drv.version:<15}CUDA Version: {drv.cuda:<9}|"
    lines = [
        f"{time.asctime()}       ",
        _WIDE_RULE,
        title,
        ("+" if drv.branch >= 590 else "|") + _GPU_RULE[1:],
        "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |",
        "| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |",
        "|                                         |                        |               MIG M. |",
        "|" + "=" * 41 + "+" + "=" * 24 + "+" + "=" * 22 + "|",
    ]
    for g in gpus:
        name = g.model.product_name if len(g.model.product_name) <= 29 else g.model.product_name[:26] + "..."
        ecc = "On" if g.mig_enabled else str(g.ecc_uncorrected_volatile)
        util = NA if g.utilization_pct is None else f"{g.utilization_pct}%"
        lines += [
            f"| {g.index:>3}  {name:<29}{'On' if g.persistence else 'Off':>4}  |   {g.bus_id} {'Off':>3} |{ecc:>21} |",
            f"| {'N/A'}{g.temperature_c:>5}C{'P0':>6}{round(g.power_draw_w):>15}W / {round(g.model.power_limit_w):>4}W |"
            f"{g.memory_used_mib:>8}MiB / {g.model.memory_mib:>6}MiB |{util:>8}{'Default':>13} |",
            f"|{' ' * 41}|{' ' * 24}|{g.mig_mode_current:>21} |",
            _GPU_RULE,
        ]
    devices = [(g, dev) for g in gpus for dev in g.mig_devices()]
    if devices:
        shared = "Shared " if drv.branch >= 580 else ""  # R580+ headings say "Shared Memory-Usage"
        lines += [
            "",
            _WIDE_RULE,
            "| MIG devices:" + " " * 76 + "|",
            _MIG_RULE,
            f"| GPU  GI  CI  MIG |{shared + 'Memory-Usage':>33} |        Vol|        Shared         |",
            f"|      ID  ID  Dev |{shared + 'BAR1-Usage':>33} | SM     Unc| CE ENC  DEC  OFA  JPG |",
            "|                  |                                  |        ECC|                       |",
            "|" + "=" * 18 + "+" + "=" * 34 + "+" + "=" * 11 + "+" + "=" * 23 + "|",
        ]
        for g, dev in devices:
            engines = dev.profile
            lines += [
                f"| {g.index:>2}{dev.gi_id:>5}{dev.ci_id:>4}{dev.device:>4}  |{dev.used_mib:>16}MiB / {dev.memory_mib:>5}MiB    |"
                f" {dev.sm:>2}{0:>7} |{engines.ce:>3}{engines.enc:>4}{engines.dec:>5}{engines.ofa:>5}{engines.jpeg:>5} |",
                f"|{' ' * 18}|{0:>16}MiB / {dev.bar1_mib:>5}MiB    |{' ' * 11}|{' ' * 23}|",
                _MIG_RULE,
            ]
    wide_pid = drv.branch >= 580
    lines += [
        "",
        _WIDE_RULE,
        "| Processes:" + " " * 78 + "|",
        "|  GPU   GI   CI              PID   Type   Process name                        GPU Memory |"
        if wide_pid
        else "|  GPU   GI   CI        PID   Type   Process name                              GPU Memory |",
        "|        ID   ID                                                               Usage      |",
        "|" + "=" * 89 + "|",
    ]
    processes = [(g, p) for g in gpus for p in g.processes]
    if not processes:
        lines.append(f"|  {'No running processes found':<87}|")
    for g, p in processes:
        gi, ci = (str(p.gi), str(p.ci or 0)) if g.mig_enabled and p.gi is not None else (NA, NA)
        name_width = 36 if wide_pid else 42
        name = p.name if len(p.name) <= name_width else "..." + p.name[-(name_width - 3) :]
        lines.append(f"| {g.index:>4}{gi:>6}{ci:>5}{p.pid:>{16 if wide_pid else 10}}{p.type:>7}   {name:<{name_width}}{p.used_memory_mib:>7}MiB |")
    lines.append(_WIDE_RULE)
    return "".join(line + "\n" for line in lines)


# ============================================================================================
# Commands
# ============================================================================================

# Option -> (key, arity): "flag", "value" (required) or "optional" (a value unless the next word is an option).
TOP_OPTIONS: dict[str, tuple[str, str]] = {
    "-h": ("help", "flag"),
    "--help": ("help", "flag"),
    "--version": ("version", "flag"),
    "-L": ("list", "flag"),
    "--list-gpus": ("list", "flag"),
    "-q": ("query", "flag"),
    "--query": ("query", "flag"),
    "-x": ("xml", "flag"),
    "--xml-format": ("xml", "flag"),
    "-i": ("id", "value"),
    "--id": ("id", "value"),
    "--query-gpu": ("query_gpu", "value"),
    "--query-compute-apps": ("query_apps", "value"),
    "--format": ("format", "value"),
    "-pm": ("pm", "value"),
    "--persistence-mode": ("pm", "value"),
    "-mig": ("mig", "value"),
    "--multi-instance-gpu": ("mig", "value"),
    "-r": ("reset", "flag"),
    "--gpu-reset": ("reset", "flag"),
}
MIG_OPTIONS: dict[str, tuple[str, str]] = {
    "-h": ("help", "flag"),
    "--help": ("help", "flag"),
    "-i": ("id", "value"),
    "--id": ("id", "value"),
    "-gi": ("gi", "value"),
    "--gpu-instance-id": ("gi", "value"),
    "-ci": ("ci", "value"),
    "--compute-instance-id": ("ci", "value"),
    "-lgip": ("lgip", "flag"),
    "--list-gpu-instance-profiles": ("lgip", "flag"),
    "-lgipp": ("lgipp", "flag"),
    "--list-gpu-instance-possible-placements": ("lgipp", "flag"),
    "-lgi": ("lgi", "flag"),
    "--list-gpu-instances": ("lgi", "flag"),
    "-lci": ("lci", "flag"),
    "--list-compute-instances": ("lci", "flag"),
    "-cgi": ("cgi", "value"),
    "--create-gpu-instance": ("cgi", "value"),
    "-C": ("default_ci", "flag"),
    "--default-compute-instance": ("default_ci", "flag"),
    "-cci": ("cci", "optional"),
    "--create-compute-instance": ("cci", "optional"),
    "-dci": ("dci", "flag"),
    "--destroy-compute-instance": ("dci", "flag"),
    "-dgi": ("dgi", "flag"),
    "--destroy-gpu-instance": ("dgi", "flag"),
}
MIG_ACTIONS = ("lgip", "lgipp", "lgi", "lci", "cgi", "cci", "dci", "dgi")
# Real options and subcommands this double does not model: say so instead of pretending they are wrong.
_UNSIMULATED_WORDS = """
    -d --display -l --loop -lms --loop-ms -u --unit -f --filename --dtd -e --ecc-config -p --reset-ecc-errors -c --compute-mode
    --gom -vm --virt-mode -lgc --lock-gpu-clocks -m --mode -rgc --reset-gpu-clocks -lmc --lock-memory-clocks -rmc
    --reset-memory-clocks -ac --applications-clocks -rac --reset-applications-clocks -pl --power-limit -sc --scope -cc
    --cuda-clocks -am --accounting-mode -caa --clear-accounted-apps -gtt --gpu-target-temp -den --dram-encryption
    -eow --error-on-warning -B --list-excluded-gpus -col --columns --query-supported-clocks --query-accounted-apps
    --query-retired-pages --query-remapped-rows --help-query-gpu --help-query-compute-apps -lcip -lcipp
    --list-compute-instance-profiles --list-compute-instance-possible-placements
    topo nvlink dmon pmon daemon replay drain c2c clocks encodersessions fbcsessions vgpu compute-policy boost-slider
    power-hint base-clocks conf-compute gpm pci power-smoothing power-profiles rusd prm soc
"""
UNSIMULATED = frozenset(_UNSIMULATED_WORDS.split())
PERSISTENCE_WARNING = (
    "Warning: persistence mode is disabled on device {bus}. See the Known Issues section of the nvidia-smi(1) man page "
    "for more information. Run with [--help | -h] switch to get more information on how to enable persistence mode."
)
IN_USE_MIG = (
    "{bus} is currently being used by one or more other processes (e.g. CUDA application or a monitoring application such as "
    "another instance of nvidia-smi). Please first kill all processes using the device and retry the command or reboot the "
    "system to make MIG mode effective."
)
IN_USE_RESET = (
    "{count} currently being used by one or more other processes (e.g., Fabric Manager, CUDA application, graphics "
    "application such as an X server, or a monitoring application such as another instance of nvidia-smi). Please first "
    "kill all processes using this device and all compute applications running in the system."
)


def _not_simulated(what: str) -> SimError:
    return SimError(f"nvidia-smi-sim: {what} exists in the real nvidia-smi but is not simulated\n", RC_INVALID_ARGUMENT, stderr=True)


def parse_options(args: Sequence[str], table: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """nvidia-smi's option syntax: ``-i 0``, ``--id=0``, ``--query-gpu=a,b``, ``-mig 1``."""
    opts: dict[str, Any] = {}
    position = 0
    while position < len(args):
        arg = args[position]
        name, has_value, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name not in table:
            if name in UNSIMULATED:
                raise _not_simulated(f"option {name}")
            raise SimError(f"ERROR: Option {arg} is not recognized. Please run 'nvidia-smi -h' for help.\n\n", RC_INVALID_ARGUMENT)
        key, arity = table[name]
        following = args[position + 1] if position + 1 < len(args) else None
        if has_value:
            opts[key] = inline
        elif arity == "value":
            if following is None:
                raise SimError(f"ERROR: Option {arg} is missing its value. Please run 'nvidia-smi -h' for help.\n\n", RC_OTHER)
            opts[key] = following
            position += 1
        elif arity == "optional" and following is not None and not following.startswith("-"):
            opts[key] = following
            position += 1
        else:
            opts[key] = True
        position += 1
    return opts


def select_gpus(gpus: Sequence[Gpu], spec: str | None) -> list[Gpu]:
    """``-i``: comma-separated indices, UUIDs or PCI bus ids."""
    if spec is None:
        return list(gpus)
    selected = []
    for token in (t.strip() for t in spec.split(",")):
        match = next((g for g in gpus if token in (str(g.index), g.uuid) or (":" in token and g.bus_id.upper().endswith(token.upper()))), None)
        if match is None:
            raise SimError(NO_DEVICES, RC_NOT_FOUND)
        selected.append(match)
    return selected


def _ids(spec: Any) -> set[int] | None:
    """A ``-gi``/``-ci`` filter: comma-separated ids, or None for all."""
    if spec is None:
        return None
    try:
        return {int(part) for part in str(spec).split(",")}
    except ValueError:
        raise SimError(INVALID_COMBINATION, RC_INVALID_ARGUMENT) from None


def _on_off(value: str) -> bool:
    choice = {"0": False, "disabled": False, "1": True, "enabled": True}.get(str(value).lower())
    if choice is None:
        raise SimError(INVALID_COMBINATION, RC_INVALID_ARGUMENT)
    return choice


def _text(lines: Sequence[str]) -> str:
    return "".join(line + "\n" for line in lines)


def reset_gpu(g: Gpu) -> None:
    """What a GPU reset does to MIG: the pending mode takes effect and every instance is gone."""
    g.state["mig_current"] = g.state["mig_pending"]
    g.state["gpu_instances"] = []


def cmd_persistence(config: Config, gpus: Sequence[Gpu], value: str) -> tuple[str, int]:
    enable = _on_off(value)
    lines = []
    for g in gpus:
        if g.persistence == enable:
            lines.append(f"Persistence mode is already {_enabled(enable)} for GPU {g.bus_id}.")
            continue
        g.state["persistence"] = enable
        legacy = " Legacy" if enable and config.driver.branch >= 580 else ""
        lines.append(f"{_enabled(enable)}{legacy} persistence mode for GPU {g.bus_id}.")
    return _text([*lines, "All done."]), RC_OK


def cmd_mig_mode(config: Config, gpus: Sequence[Gpu], value: str) -> tuple[str, int]:
    """``-mig 0|1``: set the pending mode, then activate it at once when the GPU can be reset now."""
    enable = _on_off(value)
    mode, verb = _enabled(enable), ("enable" if enable else "disable")
    lines: list[str] = []
    for g in gpus:
        if not g.mig_capable:
            lines += [f"Unable to {verb} MIG Mode for GPU {g.bus_id}: {NOT_SUPPORTED}", "Treating as warning and moving on."]
            continue
        if not enable and g.state["gpu_instances"]:
            lines += [f"Unable to {verb} MIG Mode for GPU {g.bus_id}: {IN_USE}", "Terminating early due to previous errors."]
            return _text(lines), RC_OTHER
        g.state["mig_pending"] = mode
        if g.state["mig_current"] != mode and not config.mig_capable_reset:
            lines += [
                f"Warning: MIG mode is in pending {verb} state for GPU {g.bus_id}:{NOT_SUPPORTED}",
                f"Reboot the system or try nvidia-smi --gpu-reset to make MIG mode effective on GPU {g.bus_id}",
            ]
            continue
        if g.state["mig_current"] != mode and g.busy():
            lines += [f"Warning: MIG mode is in pending {verb} state for GPU {g.bus_id}:{IN_USE}", IN_USE_MIG.format(bus=g.bus_id)]
            continue
        if g.state["mig_current"] != mode:
            reset_gpu(g)  # the driver resets an idle GPU itself; nothing to do when the mode is already current
        lines.append(f"{mode} MIG Mode for GPU {g.bus_id}")
        if not g.persistence:
            lines += ["", PERSISTENCE_WARNING.format(bus=g.bus_id)]
    return _text([*lines, "All done."]), RC_OK


def cmd_reset(config: Config, gpus: Sequence[Gpu]) -> tuple[str, int]:
    """``-r``: all selected GPUs or none; refused for held GPUs and where reset is impossible."""
    failures = [(g, NOT_SUPPORTED if not config.mig_capable_reset else IN_USE) for g in gpus if not config.mig_capable_reset or g.busy()]
    if failures:
        lines = ["The following GPUs could not be reset:", *(f"  GPU {g.bus_id}: {reason}" for g, reason in failures)]
        in_use = sum(1 for _gpu, reason in failures if reason == IN_USE)
        if in_use:
            lines += ["", IN_USE_RESET.format(count="1 device is" if in_use == 1 else f"{in_use} devices are")]
        return _text(lines), RC_OTHER
    for g in gpus:
        reset_gpu(g)
    return _text([f"GPU {g.bus_id} was successfully reset." for g in gpus]), RC_OK


def _mig_gpus(gpus: Sequence[Gpu], opts: dict[str, Any]) -> list[Gpu]:
    selected = select_gpus(gpus, opts.get("id"))
    if not any(g.mig_capable for g in selected):
        raise SimError(NO_MIG_SUPPORTED, RC_NOT_FOUND)
    enabled = [g for g in selected if g.mig_enabled]
    if not enabled:
        raise SimError(NO_MIG_ENABLED, RC_NOT_FOUND)
    return enabled


def _gpu_instances(gpus: Sequence[Gpu], opts: dict[str, Any]) -> list[tuple[Gpu, dict[str, Any]]]:
    wanted = _ids(opts.get("gi"))
    return [(g, gi) for g in gpus for gi in g.gpu_instances() if wanted is None or gi["id"] in wanted]


def _compute_instances(gpus: Sequence[Gpu], opts: dict[str, Any]) -> list[tuple[Gpu, dict[str, Any], dict[str, Any]]]:
    wanted = _ids(opts.get("ci"))
    return [(g, gi, ci) for g, gi in _gpu_instances(gpus, opts) for ci in gi["compute_instances"] if wanted is None or ci["id"] in wanted]


def cmd_mig(config: Config, gpus: Sequence[Gpu], args: Sequence[str]) -> tuple[str, int]:
    opts = parse_options(args, MIG_OPTIONS)
    actions = [a for a in MIG_ACTIONS if a in opts]
    if "help" in opts or not actions:
        return _text(["nvidia-smi mig: -lgip -lgipp -lgi -lci -cgi <ids|names>[ -C] -cci [<ids|names>] -dci -dgi [-i <gpu>] [-gi <ids>] [-ci <ids>]"]), RC_OK
    if len(actions) > 1 or ("default_ci" in opts and "cgi" not in opts):
        raise SimError(INVALID_COMBINATION, RC_INVALID_ARGUMENT)
    action = actions[0]
    targets = _mig_gpus(gpus, opts)
    if action == "lgip":
        return render_lgip([(g.index, p, free_instances(config, g.state, p)) for g in targets for p in available_profiles(config)]), RC_OK
    if action == "lgipp":
        return render_lgipp([(g.index, p) for g in targets for p in available_profiles(config)]), RC_OK
    if action == "lgi":
        rows = []
        for g, gi in _gpu_instances(targets, opts):
            p = profile_by_id(config, gi["profile_id"])
            rows.append(GiRow(g.index, p.name, p.id, gi["id"], gi["start"], p.memory_slices))
        if not rows:
            raise SimError(NO_GPU_INSTANCES, RC_NOT_FOUND)
        return render_lgi(rows), RC_OK
    if action == "lci":
        ci_rows = []
        for g, gi, ci in _compute_instances(targets, opts):
            ci_profile_id, name = ci_profile(config, gi, ci["slices"])
            ci_rows.append(CiRow(g.index, gi["id"], name, ci_profile_id, ci["id"], ci["start"], ci["slices"]))
        if not ci_rows:
            raise SimError(NO_COMPUTE_INSTANCES, RC_NOT_FOUND)
        return render_lci(ci_rows), RC_OK
    if action == "cgi":
        return _create_gpu_instances(config, targets, str(opts["cgi"]), "default_ci" in opts)
    if action == "cci":
        return _create_compute_instances(config, targets, opts)
    if action == "dci":
        return _destroy_compute_instances(targets, opts)
    return _destroy_gpu_instances(targets, opts)


def _create_gpu_instances(config: Config, targets: Sequence[Gpu], spec: str, with_ci: bool) -> tuple[str, int]:
    lines: list[str] = []
    for g in targets:
        for token in (t.strip() for t in spec.split(",")):
            profile = find_profile(config, token)
            created = INVALID_ARGUMENT if profile is None else create_gpu_instance(config, g.state, profile)
            if isinstance(created, str):
                lines += [f"Unable to create a GPU instance on GPU {g.index:>2} using profile {token}: {created}", f"Failed to create GPU instances: {created}"]
                return _text(lines), RC_INVALID_ARGUMENT if created == INVALID_ARGUMENT else RC_OTHER
            assert profile is not None
            lines.append(f"Successfully created GPU instance ID {created['id']:>2} on GPU {g.index:>2} using profile MIG {profile.name} (ID {profile.id:>2})")
            if with_ci:
                ci = create_compute_instance(config, created, profile.compute_slices)
                assert not isinstance(ci, str)  # a new GPU instance always has room for its full compute instance
                lines.append(
                    f"Successfully created compute instance ID {ci['id']:>2} on GPU {g.index:>2} GPU instance ID {created['id']:>2} "
                    f"using profile MIG {profile.name} (ID {profile.default_ci_profile_id:>2})"
                )
    return _text(lines), RC_OK


def _create_compute_instances(config: Config, targets: Sequence[Gpu], opts: dict[str, Any]) -> tuple[str, int]:
    instances = _gpu_instances(targets, opts)
    if not instances:
        raise SimError(NO_GPU_INSTANCES, RC_NOT_FOUND)
    tokens: list[str | None] = [None] if opts["cci"] is True else [t.strip() for t in str(opts["cci"]).split(",")]
    lines: list[str] = []
    for g, gi in instances:
        for token in tokens:
            slices = find_ci_slices(config, gi, token)
            created = INVALID_ARGUMENT if slices is None else create_compute_instance(config, gi, slices)
            if isinstance(created, str):
                where = f"on GPU {g.index:>2} GPU instance ID {gi['id']:>2} using profile {token}"
                lines += [f"Unable to create a compute instance {where}: {created}", f"Failed to create compute instances: {created}"]
                return _text(lines), RC_INVALID_ARGUMENT if created == INVALID_ARGUMENT else RC_OTHER
            ci_id, name = ci_profile(config, gi, created["slices"])
            where = f"on GPU {g.index:>2} GPU instance ID {gi['id']:>2} using profile MIG {name} (ID {ci_id:>2})"
            lines.append(f"Successfully created compute instance ID {created['id']:>2} {where}")
    return _text(lines), RC_OK


def _destroy_compute_instances(targets: Sequence[Gpu], opts: dict[str, Any]) -> tuple[str, int]:
    instances = _compute_instances(targets, opts)
    if not instances:
        raise SimError(NO_COMPUTE_INSTANCES, RC_NOT_FOUND)
    lines: list[str] = []
    for g, gi, ci in instances:
        where = f"compute instance ID {ci['id']:>2} from GPU {g.index:>2} GPU instance ID {gi['id']:>2}"
        if any(p.gi == gi["id"] and (p.ci or 0) == ci["id"] for p in g.processes):
            lines += [f"Unable to destroy {where}: {IN_USE}", f"Failed to destroy compute instances: {IN_USE}"]
            return _text(lines), RC_OTHER
        gi["compute_instances"] = [c for c in gi["compute_instances"] if c["id"] != ci["id"]]
        lines.append(f"Successfully destroyed {where}")
    return _text(lines), RC_OK


def _destroy_gpu_instances(targets: Sequence[Gpu], opts: dict[str, Any]) -> tuple[str, int]:
    instances = _gpu_instances(targets, opts)
    if not instances:
        raise SimError(NO_GPU_INSTANCES, RC_NOT_FOUND)
    lines: list[str] = []
    for g, gi in instances:
        where = f"GPU instance ID {gi['id']:>2} from GPU {g.index:>2}"
        if gi["compute_instances"]:
            lines += [f"Unable to destroy {where}: {IN_USE}", f"Failed to destroy GPU instances: {IN_USE}"]
            return _text(lines), RC_OTHER
        g.state["gpu_instances"] = [other for other in g.state["gpu_instances"] if other["id"] != gi["id"]]
        lines.append(f"Successfully destroyed {where}")
    return _text(lines), RC_OK


def cmd_sim(config: Config, state: dict[str, Any], args: Sequence[str]) -> tuple[str, int]:
    """Simulator-only controls: ``sim state`` prints the state, ``sim reboot`` power-cycles the GPUs."""
    if list(args) == ["state"]:
        return json.dumps(state, indent=1, sort_keys=True) + "\n", RC_OK
    if list(args) == ["reboot"]:
        for gpu in state["gpus"]:
            gpu.update(mig_current=gpu["mig_pending"], gpu_instances=[], persistence=config.persistence_mode)
        return "nvidia-smi-sim: rebooted: pending MIG modes applied, MIG instances gone, persistence mode as configured\n", RC_OK
    raise SimError("nvidia-smi-sim: usage: nvidia-smi sim state|reboot\n", RC_INVALID_ARGUMENT, stderr=True)


def run(argv: Sequence[str], config: Config, state: dict[str, Any]) -> tuple[str, int]:
    """Execute one command line against the config and the (mutable) state."""
    gpus = [Gpu(config, index, state["gpus"][index]) for index in range(config.count)]
    if argv and argv[0] == "sim":
        return cmd_sim(config, state, argv[1:])
    if not gpus:
        raise SimError(NO_DEVICES, RC_NOT_FOUND)
    if argv and argv[0] == "mig":
        return cmd_mig(config, gpus, argv[1:])
    if argv and argv[0] in UNSIMULATED:
        raise _not_simulated(f"subcommand {argv[0]}")
    opts = parse_options(argv, TOP_OPTIONS)
    selected = select_gpus(gpus, opts.get("id"))
    if "version" in opts:
        return render_version(config.driver), RC_OK
    actions = [a for a in ("list", "query", "query_gpu", "query_apps", "pm", "mig", "reset") if a in opts]
    if len(actions) > 1 or ("xml" in opts and actions != ["query"]) or ("format" in opts and actions not in (["query_gpu"], ["query_apps"])):
        raise SimError(INVALID_COMBINATION, RC_INVALID_ARGUMENT)
    action = actions[0] if actions else "summary"
    if action == "summary":
        return render_summary(config, selected), RC_OK
    if action == "list":
        return render_list(selected), RC_OK
    if action == "query":
        if "xml" not in opts:
            raise _not_simulated("-q without -x (the text report)")
        return render_query_xml(config, selected), RC_OK
    if action == "query_gpu":
        fields = query_gpu_fields(config.driver)
        return render_csv(opts["query_gpu"], fields, QUERY_GPU_ALIASES, selected, opts.get("format"), UNSIMULATED_GPU_FIELD_PREFIXES), RC_OK
    if action == "query_apps":
        apps = [App(g, p) for g in selected for p in g.processes if "C" in p.type]
        return render_csv(opts["query_apps"], QUERY_APPS_FIELDS, QUERY_APPS_ALIASES, apps, opts.get("format")), RC_OK
    if action == "pm":
        return cmd_persistence(config, selected, opts["pm"])
    if action == "mig":
        return cmd_mig_mode(config, selected, opts["mig"])
    return cmd_reset(config, selected)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        config = Config.load(os.environ.get("NVIDIA_SMI_SIM_CONFIG", CONFIG_PATH))
        if argv and argv[0] in ("-h", "--help"):
            out, rc = render_help(config.driver), RC_OK
        elif not config.driver_loaded:
            raise SimError(DRIVER_NOT_LOADED, RC_DRIVER_NOT_LOADED)
        else:
            with StateStore(os.environ.get("NVIDIA_SMI_SIM_STATE", STATE_PATH)).open(config) as state:
                out, rc = run(argv, config, state)
    except SimError as exc:
        (sys.stderr if exc.stderr else sys.stdout).write(exc.text)
        return exc.rc
    sys.stdout.write(out)
    return rc


if __name__ == "__main__":
    sys.exit(main())
