# Copyright: (c) 2026, llmops.gpu_inference contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Declarative, per-GPU MIG partitioning from mig-parted ``version: v1`` layouts.

Private to this collection: no AnsibleModule import. Everything reaches nvidia-smi through a
``run(argv) -> (rc, stdout, stderr)`` callable, as :func:`._nvidia_smi.gather` does, so the same
core serves the module, a boot-time re-apply and the unit tests.

1. **Document.** :func:`parse_document` reads a mig-parted ``version: v1`` document with
   mig-parted's rules (``api/spec/v1/spec.go``): version ``v1``; no unknown fields; every config has
   at least one entry; ``devices`` (``all`` or indices) and ``mig-enabled`` are required;
   ``mig-devices`` is required when MIG is enabled and must be empty when it is not;
   ``device-filter`` is one or a list of ``0xDEVICEVENDOR`` ids, optionally ``:0xSUBSYSTEM``.
   Every problem is reported, each naming the config, the entry and the field.

   One extension pins placements: a ``mig-devices`` value may be ``{count: N, placements: [starts]}``
   instead of a count (``len(placements) == N``; the starts are memory-slice indices as
   ``nvidia-smi mig -lgipp`` lists them). Documents without pins are exactly mig-parted's, and
   :func:`mig_parted_document` turns a pinned one back into one mig-parted (and the GPU
   Operator's MIG manager) accepts.

2. **Selection and validation.** Each GPU gets the one entry whose ``devices`` and
   ``device-filter`` (against the facts' ``pci_device_id``) select it. Profile names resolve to
   IDs through that GPU's own ``nvidia-smi mig -lgip`` (``1g.10gb`` is ID 15 on A100-40GB and 19
   on H100), never a built-in table; placements come from ``mig -lgipp``. A layout is rejected
   before anything changes when a profile is unknown on that GPU and driver, a count exceeds the
   profile's instance limit, the compute or memory slices exceed the GPU's, more than one ``+me``
   profile is asked for, or no placement holds the set (a backtracking search over the
   ``-lgipp`` starts). nvidia-smi lists profiles only for GPUs whose MIG mode is on; a GPU that
   is still off borrows the listing of an enabled GPU of the same PCI id, and otherwise is
   checked right after MIG mode is enabled, before any instance is created.

3. **Plan.** Current and wanted layouts are compared by profile multiset (by profile and start
   for pinned profiles), never by GPU/compute instance ids, which differ between hosts. Instances
   that match are kept; only the rest is destroyed. The planner predicts where nvidia-smi will
   place new instances (each at the lowest free valid start, in creation order: the simulator's
   rule, and what the A100 ``-cgi 9,9`` capture shows), keeps as many matching instances as
   still leave room for the missing ones, and falls back to rebuilding the GPU when none can stay.
   Instances that run processes are never destroyed, and the MIG mode of a GPU with processes is
   never changed, unless ``force``; among plans that fit, one that spares busy instances wins.

4. **Apply.** MIG mode first (``-i N -mig 0|1``; ``-r -i N`` for a mode left pending, only with
   ``reset_ok``; ``reboot_required`` when the driver cannot reset the GPU), then per GPU
   ``mig -i N -dci -gi IDS``, ``mig -i N -dgi -gi IDS`` and one ``mig -i N -cgi ID,ID,... -C``.
   The state is read back after creating. Real drivers do not always place instances where
   predicted (the captures show both low-first and high-first choices): when the remainder still
   fits it is created by another call; otherwise the instances this run created are destroyed
   and other creation orders are tried, as mig-parted does (at most ``CREATE_ATTEMPTS``). The
   end state is verified against the plan, because a driver can report success without creating
   instances. Failures say which GPU, which command and what was and was not done.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Optional, Sequence, Tuple

from ansible_collections.llmops.gpu_inference.plugins.module_utils._nvidia_smi import (
    NvidiaSmiError,
    Runner,
    explain_failure,
    gather,
    no_instances_listed,
    parse_mig_compute_instances,
    parse_mig_gpu_instances,
    parse_mig_placements,
)

VERSION = "v1"
ENTRY_FIELDS = ("device-filter", "devices", "mig-enabled", "mig-devices")
PIN_FIELDS = ("count", "placements")
# mig-parted's profile grammar: [<C>c.]<G>g.<GB>gb[+attr[,attr]]; newer drivers add -me / +me.all.
_PROFILE_NAME = re.compile(r"^(?:(?P<c>\d+)c\.)?(?P<g>\d+)g\.(?P<gb>\d+)gb(?P<attrs>[+-][A-Za-z][A-Za-z0-9.]*(?:,[A-Za-z][A-Za-z0-9.]*)*)?$")
_SLICE_SIZES = (1, 2, 3, 4, 6, 7, 8)
_DEVICE_ID = re.compile(r"^0x([0-9A-Fa-f]{8})(?::0x([0-9A-Fa-f]{8}))?$")
# Creation orders tried on one GPU before giving up (mig-parted tries every order; each costs a few commands).
CREATE_ATTEMPTS = 12
# Commands whose output only describes the GPUs (everything else changes them).
READ_ONLY = (("-q", "-x"), ("-L",), ("mig", "-lgi"), ("mig", "-lci"), ("mig", "-lgip"), ("mig", "-lgipp"))
# What holds a GPU so that a reset or MIG mode change is refused (reference: mig-parted hooks, issues).
GPU_CLIENTS = "nvidia-persistenced, nvidia-dcgm / dcgm-exporter, nvsm, the device plugin, fabric manager on NVSwitch systems, or a loaded nvidia_drm module"


class LayoutError(Exception):
    """The layout is invalid or does not fit; nothing was changed. ``errors`` lists every problem."""

    def __init__(self, errors: Sequence[str], headline: str = "The MIG layout cannot be applied") -> None:
        self.errors = list(errors)
        super().__init__(
            f"{headline}: " + " ".join(f"({n}) {e}" for n, e in enumerate(self.errors, 1)) if len(self.errors) > 1 else f"{headline}: {self.errors[0]}"
        )


class ApplyError(Exception):
    """Applying failed part way; ``result`` says what was done (commands, plan, state reached)."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


# ============================================================================================
# 1. The layout document
# ============================================================================================


@dataclass(frozen=True)
class Want:
    """``count`` instances of ``profile``; ``placements`` pins their starts (empty: anywhere)."""

    profile: str
    count: int
    placements: tuple[int, ...] = ()


@dataclass(frozen=True)
class Entry:
    """One entry of a named config: which GPUs it selects and the layout it wants on them."""

    config: str
    number: int  # 1-based position in the config's list
    devices: tuple[int, ...] | None  # None: all
    device_filter: tuple[str, ...]  # "0xDDDDVVVV" or "0xDDDDVVVV:0xSSSSVVVV", upper-case hex
    mig_enabled: bool
    mig_devices: tuple[Want, ...]  # counts of 0 dropped

    def describe(self) -> str:
        return f"config '{self.config}' entry {self.number}"

    def matches(self, gpu: GpuState) -> tuple[bool, str | None]:
        """(selected, problem): whether the entry selects ``gpu``; a problem when it cannot tell."""
        if self.devices is not None and gpu.index not in self.devices:
            return False, None
        if not self.device_filter:
            return True, None
        device = (gpu.pci_device_id or "").upper().replace("0X", "0x")
        for wanted in self.device_filter:
            primary, subsystem = [*wanted.split(":", 1), ""][:2]
            if primary != device:
                continue
            if not subsystem:
                return True, None
            if gpu.pci_subsystem_id is None:
                return False, (
                    f"{self.describe()}: device-filter '{wanted}' names a PCI subsystem, but the facts of {gpu.label} carry no subsystem id to compare"
                )
            if subsystem == gpu.pci_subsystem_id.upper().replace("0X", "0x"):
                return True, None
        return False, None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value: Any) -> str:
    return json.dumps(value, default=str)


def _profile_problem(name: Any) -> str | None:
    if not isinstance(name, str):
        return f"profile names are strings, got {_show(name)}"
    match = _PROFILE_NAME.match(name)
    if not match:
        return f"'{name}' is not a MIG profile name such as 1g.10gb, 3g.40gb or 1g.10gb+me"
    for part in ("c", "g"):
        if match.group(part) is not None and int(match.group(part)) not in _SLICE_SIZES:
            return f"'{name}' has {match.group(part)} {'compute' if part == 'c' else 'GPU instance'} slices; MIG sizes are 1, 2, 3, 4, 6, 7 or 8"
    return None


def _parse_want(where: str, name: str, value: Any, errors: list[str]) -> Want | None:
    if _is_int(value):
        if value < 0:
            errors.append(f"{where}: the count of '{name}' must be 0 or more, got {value}")
            return None
        return Want(name, value)
    if not isinstance(value, dict):
        errors.append(f"{where}: the count of '{name}' must be a whole number or a mapping with count and placements, got {_show(value)}")
        return None
    unknown = sorted(str(k) for k in value if k not in PIN_FIELDS)
    if unknown:
        errors.append(f"{where}: '{name}' has unexpected field(s) {', '.join(unknown)} (allowed: count, placements)")
        return None
    placements = value.get("placements", [])
    if not isinstance(placements, list) or not all(_is_int(s) and s >= 0 for s in placements):
        errors.append(f"{where}: placements of '{name}' must be a list of memory-slice start indices, got {_show(placements)}")
        return None
    if len(set(placements)) != len(placements):
        errors.append(f"{where}: placements of '{name}' repeat a start: {_show(placements)}")
        return None
    count = value.get("count", len(placements))
    if not _is_int(count) or count < 0:
        errors.append(f"{where}: the count of '{name}' must be a whole number 0 or more, got {_show(count)}")
        return None
    if placements and count != len(placements):
        errors.append(f"{where}: '{name}' has count {count} but {len(placements)} placement(s); pin every instance of a profile or none")
        return None
    return Want(name, count, tuple(sorted(placements)))


def _parse_entry(config: str, number: int, raw: Any, errors: list[str]) -> Entry | None:
    where = f"config '{config}' entry {number}"
    if not isinstance(raw, dict):
        errors.append(f"{where}: must be a mapping with devices, mig-enabled and mig-devices, got {_show(raw)}")
        return None
    before = len(errors)
    for key in raw:
        if key not in ENTRY_FIELDS:
            errors.append(f"{where}: unexpected field '{key}' (allowed: {', '.join(ENTRY_FIELDS)})")
    for key in ("devices", "mig-enabled"):
        if key not in raw:
            errors.append(f"{where}: missing required field '{key}'")

    devices: tuple[int, ...] | None = None
    value = raw.get("devices", "all")
    if isinstance(value, list) and all(_is_int(i) and i >= 0 for i in value):
        devices = tuple(value)
    elif value != "all":
        errors.append(f"{where}, field 'devices': must be 'all' or a list of GPU indices, got {_show(value)}")

    enabled = raw.get("mig-enabled", False)
    if not isinstance(enabled, bool):
        errors.append(f"{where}, field 'mig-enabled': must be true or false, got {_show(enabled)}")
        enabled = False

    filters: list[str] = []
    value = raw.get("device-filter")
    candidates = [value] if isinstance(value, str) else value if isinstance(value, list) else None
    if value is not None and candidates is None:
        errors.append(f"{where}, field 'device-filter': must be a PCI id or a list of them, got {_show(value)}")
    for candidate in candidates or []:
        match = _DEVICE_ID.match(candidate) if isinstance(candidate, str) else None
        if candidate == "":
            continue  # mig-parted: an empty filter matches every GPU
        if match is None:
            errors.append(
                f"{where}, field 'device-filter': {_show(candidate)} is not a PCI id of the form 0xDEVICEVENDOR (e.g. 0x233010DE), "
                "optionally followed by :0xSUBSYSTEM"
            )
            continue
        filters.append("0x" + match.group(1).upper() + (":0x" + match.group(2).upper() if match.group(2) else ""))

    wants: list[Want] = []
    value = raw.get("mig-devices")
    if enabled and value is None:
        errors.append(f"{where}: missing required field 'mig-devices' when 'mig-enabled' is true (use {{}} for MIG on without instances)")
    elif value is not None and not isinstance(value, dict):
        errors.append(f"{where}, field 'mig-devices': must be a mapping of profile names to counts, got {_show(value)}")
    elif value:
        if not enabled and isinstance(raw.get("mig-enabled"), bool):
            errors.append(f"{where}, field 'mig-devices': MIG devices are listed although 'mig-enabled' is false")
        for name, count in value.items():
            problem = _profile_problem(name)
            if problem:
                errors.append(f"{where}, field 'mig-devices': {problem}")
                continue
            want = _parse_want(f"{where}, field 'mig-devices'", name, count, errors)
            if want is not None and want.count > 0:
                wants.append(want)
    if len(errors) > before:
        return None
    return Entry(config, number, devices, tuple(filters), enabled, tuple(wants))


def parse_document(document: Any) -> dict[str, tuple[Entry, ...]]:
    """Validate a whole ``version: v1`` document; its configs by name. Raises LayoutError with every problem."""
    if not isinstance(document, dict):
        raise LayoutError([f"a layout is a mapping with 'version: v1' and 'mig-configs', got {_show(document)}"], "The MIG layout document is invalid")
    errors: list[str] = []
    for key in document:
        if key not in ("version", "mig-configs"):
            errors.append(f"unexpected top-level field '{key}' (a v1 document has version and mig-configs)")
    if "version" not in document:
        errors.append("missing 'version' field (mig-parted's format is 'version: v1')")
    elif document["version"] != VERSION:
        errors.append(f"unknown version {_show(document['version'])}: only mig-parted's 'v1' format is supported")
    configs = document.get("mig-configs")
    result: dict[str, tuple[Entry, ...]] = {}
    if not isinstance(configs, dict) or not configs:
        errors.append(f"'mig-configs' must be a non-empty mapping of config names to lists of entries, got {_show(configs)}")
        configs = {}
    for name, entries in configs.items():
        if not isinstance(name, str):
            errors.append(f"config names are strings, got {_show(name)}")
            continue
        if not isinstance(entries, list) or not entries:
            errors.append(f"config '{name}': at least one entry is required (a list of mappings), got {_show(entries)}")
            continue
        parsed = [_parse_entry(name, number, raw, errors) for number, raw in enumerate(entries, 1)]
        result[name] = tuple(entry for entry in parsed if entry is not None)
    if errors:
        raise LayoutError(errors, "The MIG layout document is invalid")
    return result


def select_config(configs: dict[str, tuple[Entry, ...]], name: str) -> tuple[Entry, ...]:
    if name not in configs:
        raise LayoutError([f"config_name '{name}' is not in mig-configs; the document has {', '.join(sorted(configs))}"], "The MIG layout cannot be applied")
    return configs[name]


def load_document_text(text: str, source: str) -> Any:
    """A layout file's content: JSON, else YAML (PyYAML is needed only for YAML)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        import yaml  # noqa: PLC0415 - only needed for YAML files, and absent on some managed nodes
    except ImportError:
        raise LayoutError([f"{source} is not JSON, and reading YAML needs PyYAML (python3-yaml) on this node"], "Cannot read the MIG layout") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LayoutError([f"{source} is not valid YAML: {exc}"], "Cannot read the MIG layout") from None


def mig_parted_document(document: dict[str, Any]) -> dict[str, Any]:
    """The document with placement pins replaced by counts: what mig-parted and the GPU Operator accept."""
    parse_document(document)
    configs = {}
    for name, entries in document["mig-configs"].items():
        converted = []
        for raw in entries:
            entry = dict(raw)
            if entry.get("mig-devices"):
                entry["mig-devices"] = {
                    profile: (value.get("count", len(value.get("placements", []))) if isinstance(value, dict) else value)
                    for profile, value in entry["mig-devices"].items()
                }
            converted.append(entry)
        configs[name] = converted
    return {"version": VERSION, "mig-configs": configs}


# ============================================================================================
# 2. What the GPUs offer and hold
# ============================================================================================


@dataclass(frozen=True)
class Profile:
    """A GPU instance profile as this GPU's ``-lgip`` and ``-lgipp`` list it."""

    name: str
    id: int
    compute_slices: int
    memory_slices: int
    max_instances: int
    starts: tuple[int, ...]

    @property
    def media_extensions(self) -> bool:
        return _media_extensions(self.name)

    def span(self, start: int) -> range:
        return range(start, start + self.memory_slices)


def _media_extensions(name: str) -> bool:
    """Whether a profile takes the GPU's media engines (``+me``, ``+me.all``)."""
    attrs = name.partition("+")[2]
    return any(attr.split(".")[0] == "me" for attr in attrs.split(",")) if attrs else False


@dataclass(frozen=True)
class Instance:
    """A GPU instance and its compute instances, as ``-lgi`` and ``-lci`` list them."""

    gi_id: int
    profile: str
    profile_id: int
    start: int
    size: int
    compute: tuple[str, ...] = ()  # compute instance profile names ("3g.40gb" or "1c.3g.40gb")
    ci_ids: tuple[int, ...] = ()

    @property
    def complete(self) -> bool:
        """One compute instance spanning the whole GPU instance: a usable MIG device of this profile."""
        return self.compute == (self.profile,)

    @property
    def span(self) -> range:
        return range(self.start, self.start + self.size)

    def describe(self) -> str:
        extra = "" if self.complete else " without a compute instance" if not self.compute else f" split into {', '.join(self.compute)}"
        return f"{self.profile} at {self.start}:{self.size} (GPU instance {self.gi_id}{extra})"


@dataclass
class GpuState:
    index: int
    name: str
    pci_device_id: str | None
    pci_subsystem_id: str | None
    mig_current: str | None  # enabled|disabled|None (not MIG-capable)
    mig_pending: str | None
    instances: list[Instance] = field(default_factory=list)
    processes: list[dict[str, Any]] = field(default_factory=list)
    profiles: dict[str, Profile] = field(default_factory=dict)
    profiles_from: int | None = None  # index of the GPU whose listing ``profiles`` came from

    @property
    def label(self) -> str:
        return f"GPU {self.index} ({self.name})"

    @property
    def mig_capable(self) -> bool:
        return self.mig_current is not None

    @property
    def compute_slices(self) -> int:
        return max((p.compute_slices for p in self.profiles.values()), default=0)

    @property
    def memory_slices(self) -> int:
        return max((s + p.memory_slices for p in self.profiles.values() for s in p.starts), default=0)


def build_gpu(
    fact: dict[str, Any],
    gpu_instances: Sequence[dict[str, Any]] = (),
    compute_instances: Sequence[dict[str, Any]] = (),
    profiles: Sequence[dict[str, Any]] | None = None,
    placements: Sequence[dict[str, Any]] = (),
) -> GpuState:
    """One GPU from its ``ansible_facts.nvidia.gpus`` entry and the parsed MIG listings of the host.

    ``profiles`` defaults to the fact's ``mig_profiles``; the listings may hold every GPU's rows
    (``-lgi``, ``-lci``, ``-lgipp`` of the whole host), the GPU's own are picked by index.
    """
    index = fact["index"]
    starts = {(p["gpu"], p["profile_id"]): p for p in placements}
    offered: dict[str, Profile] = {}
    listed = (fact.get("mig_profiles") or []) if profiles is None else [p for p in profiles if p.get("gpu", index) == index]
    for p in listed:
        placement = starts.get((index, p["id"]))
        offered[p["name"]] = Profile(
            name=p["name"],
            id=p["id"],
            compute_slices=p["slices"] or 0,
            memory_slices=placement["size"] if placement else 0,
            max_instances=p["max_instances"],
            starts=tuple(placement["starts"]) if placement else (),
        )
    cis: dict[int, list[dict[str, Any]]] = {}
    for ci in compute_instances:
        if ci["gpu"] == index:
            cis.setdefault(ci["gi_id"], []).append(ci)
    instances = [
        Instance(
            gi_id=gi["gi_id"],
            profile=gi["profile"],
            profile_id=gi["profile_id"],
            start=gi["placement_start"],
            size=gi["placement_size"],
            compute=tuple(ci["profile"] for ci in sorted(cis.get(gi["gi_id"], []), key=lambda c: c["ci_id"])),
            ci_ids=tuple(sorted(ci["ci_id"] for ci in cis.get(gi["gi_id"], []))),
        )
        for gi in gpu_instances
        if gi["gpu"] == index
    ]
    return GpuState(
        index=index,
        name=fact.get("name") or "unknown GPU",
        pci_device_id=fact.get("pci_device_id"),
        pci_subsystem_id=fact.get("pci_sub_system_id"),
        mig_current=fact.get("mig_mode_current"),
        mig_pending=fact.get("mig_mode_pending"),
        instances=sorted(instances, key=lambda i: i.start),
        processes=list(fact.get("processes") or []),
        profiles=offered,
    )


def borrow_profiles(gpus: Sequence[GpuState]) -> None:
    """Give MIG-capable GPUs without a listing (MIG off) the listing of an enabled twin (same PCI id and name)."""
    for gpu in gpus:
        if gpu.profiles or not gpu.mig_capable:
            continue
        twin = next((g for g in gpus if g.profiles and g.profiles_from is None and (g.pci_device_id, g.name) == (gpu.pci_device_id, gpu.name)), None)
        if twin is not None:
            gpu.profiles = dict(twin.profiles)
            gpu.profiles_from = twin.index


def read_state(binary: str, run: Runner) -> tuple[dict[str, Any], list[GpuState]]:
    """The facts (``gather``) and every GPU's MIG state; each listing command runs once."""
    answers: dict[tuple[str, ...], tuple[int, str, str]] = {}

    def once(argv: list[str]) -> tuple[int, str, str]:
        key = tuple(argv)
        if key not in answers:
            answers[key] = run(list(argv))
        return answers[key]

    def listing(*args: str) -> str:
        argv = [binary, *args]
        rc, out, err = once(argv)
        if rc == 0:
            return out
        if no_instances_listed(rc, out, err):
            return ""
        raise NvidiaSmiError(explain_failure(argv, rc, out, err))

    facts = gather(binary, once)
    gis: list[dict[str, Any]] = []
    cis: list[dict[str, Any]] = []
    placements: list[dict[str, Any]] = []
    if any(gpu["mig_mode_current"] == "enabled" for gpu in facts["gpus"]):
        gis = parse_mig_gpu_instances(listing("mig", "-lgi"))
        cis = parse_mig_compute_instances(listing("mig", "-lci"))
        placements = parse_mig_placements(listing("mig", "-lgipp"))
    gpus = [build_gpu(fact, gis, cis, None, placements) for fact in facts["gpus"]]
    borrow_profiles(gpus)
    return facts, gpus


# ============================================================================================
# 3. Selection, validation, placement and the plan
# ============================================================================================

Item = Tuple[Profile, Optional[int]]  # a profile to create, pinned to a start or not


def select_entries(entries: Sequence[Entry], gpus: Sequence[GpuState]) -> tuple[dict[int, Entry], list[str], list[str]]:
    """Which entry applies to each GPU; (choice by index, errors, warnings)."""
    chosen: dict[int, Entry] = {}
    errors: list[str] = []
    warnings: list[str] = []
    indices = sorted(g.index for g in gpus)
    for entry in entries:
        absent = sorted(set(entry.devices or ()) - set(indices))
        if absent:
            warnings.append(
                f"{entry.describe()} names GPU(s) {', '.join(map(str, absent))}, which this host does not have "
                f"(it has {len(indices)} GPU(s)); they are ignored, as mig-parted does"
            )
        for gpu in gpus:
            selected, problem = entry.matches(gpu)
            if problem:
                errors.append(problem)
            if not selected:
                continue
            if not gpu.mig_capable:
                if entry.mig_enabled and entry.devices is not None:
                    errors.append(f"{gpu.label} is not MIG-capable, but {entry.describe()} enables MIG on it")
                continue
            other = chosen.get(gpu.index)
            if other is not None:
                errors.append(f"{gpu.label} is selected by both {other.describe()} and {entry.describe()}; a GPU may match only one entry")
                continue
            chosen[gpu.index] = entry
    if not chosen and not errors and entries:
        warnings.append(f"config '{entries[0].config}' selects no MIG-capable GPU on this host; nothing is managed")
    return chosen, errors, warnings


def _summary(names: Sequence[str]) -> str:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{n}x {name}" for name, n in counts.items()) or "nothing"


def _flatten(wants: Sequence[Want], profiles: dict[str, Profile]) -> list[Item]:
    items: list[Item] = []
    for want in wants:
        profile = profiles[want.profile]
        if want.placements:
            items += [(profile, start) for start in want.placements]
        else:
            items += [(profile, None)] * want.count
    return items


def find_placement(items: Sequence[Item], occupied: Sequence[int] = ()) -> list[int] | None:
    """Starts for ``items`` (in their order) that overlap neither each other nor ``occupied``; None if none exists.

    Backtracking over the ``-lgipp`` starts, most constrained profiles first (7 slots at most).
    """
    order = sorted(range(len(items)), key=lambda i: (items[i][1] is None, len(items[i][0].starts), -items[i][0].memory_slices))
    used = set(occupied)
    chosen: dict[int, int] = {}

    def place(position: int) -> bool:
        if position == len(order):
            return True
        profile, pin = items[order[position]]
        for start in (pin,) if pin is not None else profile.starts:
            if start not in profile.starts:
                continue
            span = set(profile.span(start))
            if span & used:
                continue
            used.update(span)
            chosen[order[position]] = start
            if place(position + 1):
                return True
            used.difference_update(span)
        return False

    return [chosen[i] for i in range(len(items))] if place(0) else None


def predict_placements(order: Sequence[Item], occupied: Sequence[int] = ()) -> list[int] | None:
    """Where nvidia-smi puts each GPU instance created in ``order``: its lowest free valid start.

    None when one does not fit or lands elsewhere than its pin.
    """
    used = set(occupied)
    starts = []
    for profile, pin in order:
        start = next((s for s in profile.starts if not set(profile.span(s)) & used), None)
        if start is None or (pin is not None and start != pin):
            return None
        used.update(profile.span(start))
        starts.append(start)
    return starts


def _orders(items: Sequence[Item]) -> Iterator[list[Item]]:
    """Every distinct creation order, largest profiles first (mig-parted also tries each ordering)."""
    ranked = sorted(items, key=lambda it: (-it[0].memory_slices, -it[0].compute_slices, it[0].name, -1 if it[1] is None else it[1]))
    keys = [(it[0].name, it[1]) for it in ranked]
    ids = [keys.index(key) for key in keys]  # equal items share a rank: only distinct orders are produced
    while True:
        yield [ranked[i] for i in ids]
        # Next lexicographic permutation of ids (distinct permutations of a multiset).
        pivot = len(ids) - 2
        while pivot >= 0 and ids[pivot] >= ids[pivot + 1]:
            pivot -= 1
        if pivot < 0:
            return
        swap = len(ids) - 1
        while ids[swap] <= ids[pivot]:
            swap -= 1
        ids[pivot], ids[swap] = ids[swap], ids[pivot]
        ids[pivot + 1 :] = reversed(ids[pivot + 1 :])


def creation_order(items: Sequence[Item], occupied: Sequence[int] = ()) -> list[tuple[Profile, int]] | None:
    """An order in which nvidia-smi creates every item where it fits (pins honoured), with the predicted starts."""
    if not items:
        return []
    if find_placement(items, occupied) is None:
        return None
    for order in _orders(items):
        starts = predict_placements(order, occupied)
        if starts is not None:
            return [(item[0], start) for item, start in zip(order, starts)]
    return None


def check_layout(gpu: GpuState, entry: Entry, driver_version: str | None) -> list[str]:
    """Everything that makes ``entry``'s layout impossible on ``gpu``, each naming the GPU, the profile and why."""
    errors: list[str] = []
    where = f"{gpu.label}, {entry.describe()}"
    driver = f"driver {driver_version}" if driver_version else "this driver"
    me = [w for w in entry.mig_devices if _media_extensions(w.profile)]
    if sum(w.count for w in me) > 1:
        errors.append(
            f"{where}: {_summary([name for w in me for name in [w.profile] * w.count])} ask for {sum(w.count for w in me)} media-extension (+me) "
            "instances; a GPU has one set of media engines, so at most one +me instance fits"
        )
    plain: list[Want] = []
    for want in entry.mig_devices:
        match = _PROFILE_NAME.match(want.profile)
        if match and match.group("c") is not None and match.group("c") != match.group("g"):
            errors.append(
                f"{where}: '{want.profile}' is a compute-instance profile (a GPU instance split into compute instances); mig_layout "
                f"creates one compute instance per GPU instance, so ask for the GPU instance profile '{want.profile.split('.', 1)[1]}'"
            )
        else:
            plain.append(want)
    if not gpu.profiles:
        return errors
    offered = ", ".join(gpu.profiles)
    known: list[Want] = []
    for want in plain:
        profile = gpu.profiles.get(want.profile)
        if profile is None:
            errors.append(f"{where}: profile '{want.profile}' is not offered by this GPU with {driver} (nvidia-smi mig -lgip lists {offered})")
            continue
        if want.count > profile.max_instances:
            errors.append(f"{where}: {want.count}x '{want.profile}' is more than the {profile.max_instances} instance(s) this GPU allows of that profile")
            continue
        if not profile.starts:
            errors.append(f"{where}: nvidia-smi mig -lgipp lists no placement for '{want.profile}' (profile ID {profile.id})")
            continue
        bad = [s for s in want.placements if s not in profile.starts]
        if bad:
            errors.append(
                f"{where}: '{want.profile}' cannot start at memory slice {', '.join(map(str, bad))}; "
                f"nvidia-smi mig -lgipp lists {{{','.join(map(str, profile.starts))}}}:{profile.memory_slices}"
            )
            continue
        known.append(want)
    if len(known) != len(entry.mig_devices) or errors:
        return errors
    items = _flatten(known, gpu.profiles)
    profiles = [item[0] for item in items]
    names = [p.name for p in profiles]
    compute = sum(p.compute_slices for p in profiles)
    memory = sum(p.memory_slices for p in profiles)
    if compute > gpu.compute_slices:
        errors.append(f"{where}: the layout ({_summary(names)}) needs {compute} compute slices; this GPU has {gpu.compute_slices}")
    if memory > gpu.memory_slices:
        errors.append(f"{where}: the layout ({_summary(names)}) needs {memory} memory slices; this GPU has {gpu.memory_slices}")
    if not errors and find_placement(items) is None:
        starts = "; ".join(f"{p.name} {{{','.join(map(str, p.starts))}}}:{p.memory_slices}" for p in {p.name: p for p in profiles}.values())
        pins = " with the pinned starts" if any(item[1] is not None for item in items) else ""
        errors.append(f"{where}: no placement holds {_summary(names)} together{pins} (valid starts from nvidia-smi mig -lgipp: {starts})")
    return errors


@dataclass
class GpuPlan:
    """What to do on one GPU."""

    gpu: GpuState
    entry: Entry | None = None
    wanted_mode: str | None = None  # enabled|disabled; None: the config does not manage this GPU
    set_mode: bool = False  # run -mig
    reset: bool = False  # the wanted mode is already pending: only a reset is missing
    keep: list[Instance] = field(default_factory=list)
    destroy: list[Instance] = field(default_factory=list)
    create: list[tuple[str, Profile | None, int | None]] = field(default_factory=list)  # (name, profile, predicted start)
    wants: list[Item] = field(default_factory=list)
    rebuild: bool = False
    profiles_checked: bool = True
    errors: list[str] = field(default_factory=list)  # what forbids applying it

    @property
    def action(self) -> str:
        return "apply" if (self.set_mode or self.reset or self.destroy or self.create) else "none"

    def as_result(self) -> dict[str, Any]:
        gpu = self.gpu
        return {
            "index": gpu.index,
            "name": gpu.name,
            "pci_device_id": gpu.pci_device_id,
            "managed": self.wanted_mode is not None,
            "entry": self.entry.describe() if self.entry else None,
            "action": self.action,
            "mig_mode": {"current": gpu.mig_current, "pending": gpu.mig_pending, "wanted": self.wanted_mode},
            "reset": self.reset,
            "destroy": [i.profile for i in self.destroy],
            "create": [entry[0] for entry in self.create],
            "keep": [i.profile for i in self.keep],
            "rebuild": self.rebuild,
            "profiles_checked": self.profiles_checked,
        }

    def layout_after(self) -> list[tuple[str, int | None, int | None]]:
        """The predicted instances after applying: (profile, start, size)."""
        if self.wanted_mode == "disabled":
            return []
        if self.wanted_mode is None:
            return [(i.profile, i.start, i.size) for i in self.gpu.instances]
        created = [(name, start, profile.memory_slices if profile else None) for name, profile, start in self.create]
        return sorted([(i.profile, i.start, i.size) for i in self.keep] + created, key=lambda x: (x[1] is None, x[1] or 0, x[0]))


def _choose_keep(gpu: GpuState, items: list[Item]) -> tuple[list[Instance], list[tuple[Profile, int]], bool] | None:
    """The instances to keep and the creation order of the rest: (keep, order, rebuild), or None.

    Tries every subset of the matching instances; prefers destroying no instance that runs
    processes, then keeping as many as possible.
    """
    wanted: dict[str, int] = {}
    pins: dict[str, set] = {}
    for profile, pin in items:
        wanted[profile.name] = wanted.get(profile.name, 0) + 1
        if pin is not None:
            pins.setdefault(profile.name, set()).add(pin)
    candidates = [i for i in gpu.instances if i.complete and i.profile in wanted and (i.profile not in pins or i.start in pins[i.profile])]
    busy = {p.get("gi_id") for p in gpu.processes}
    best: tuple[tuple[int, int], list[Instance], list[tuple[Profile, int]]] | None = None
    orders: dict[tuple[Any, ...], list[tuple[Profile, int]] | None] = {}
    possible = sum(min(wanted[name], sum(1 for i in candidates if i.profile == name)) for name in wanted)
    for mask in range(1 << len(candidates)):
        keep = [c for bit, c in enumerate(candidates) if mask >> bit & 1]
        counts: dict[str, int] = {}
        for instance in keep:
            counts[instance.profile] = counts.get(instance.profile, 0) + 1
        if any(n > wanted[name] for name, n in counts.items()):
            continue
        kept_starts = {(i.profile, i.start) for i in keep}
        remaining: list[Item] = []
        for name in wanted:
            if name in pins:
                remaining += [(p, s) for p, s in items if p.name == name and (name, s) not in kept_starts]
            else:
                remaining += [(item[0], None) for item in items if item[0].name == name][: wanted[name] - counts.get(name, 0)]
        occupied = tuple(sorted(s for i in keep for s in i.span))
        key = (occupied, tuple(sorted((p.name, s if s is not None else -1) for p, s in remaining)))
        if key not in orders:
            orders[key] = creation_order(remaining, occupied)
        order = orders[key]
        if order is None:
            continue
        kept_ids = {i.gi_id for i in keep}
        rank = (sum(1 for i in gpu.instances if i.gi_id not in kept_ids and i.gi_id in busy), -len(keep))
        if best is None or rank < best[0]:
            best = (rank, keep, order)
    if best is None:
        return None
    return best[1], best[2], len(best[1]) < possible


def _process_problems(plan: GpuPlan) -> list[str]:
    """Processes the plan would disturb: all of them for a mode change or reset, else those on destroyed instances."""
    gpu = plan.gpu
    if not gpu.processes:
        return []
    pids = ", ".join(f"{p.get('pid')} ({p.get('name') or 'unknown'})" for p in gpu.processes)
    if plan.set_mode or plan.reset:
        return [
            f"{gpu.label}: changing MIG mode to {plan.wanted_mode} resets the GPU, and processes run on it: pid {pids}; "
            "stop them (drain the node) or set force: true"
        ]
    problems = []
    for instance in plan.destroy:
        on_it = [p for p in gpu.processes if p.get("gi_id") in (instance.gi_id, None)]
        if on_it:
            listed = ", ".join(f"{p.get('pid')} ({p.get('name') or 'unknown'})" for p in on_it)
            problems.append(
                f"{gpu.label}: the layout destroys {instance.describe()}, where processes run: pid {listed}; stop them (drain the node) or set force: true"
            )
    return problems


def plan_gpu(gpu: GpuState, entry: Entry | None, driver_version: str | None = None, force: bool = False) -> GpuPlan:
    """The plan for one GPU; its ``errors`` say what forbids it (empty when it may be applied)."""
    plan = GpuPlan(gpu=gpu, entry=entry)
    if entry is None or not gpu.mig_capable:
        return plan
    wanted = "enabled" if entry.mig_enabled else "disabled"
    plan.wanted_mode = wanted
    if gpu.mig_pending != wanted:
        plan.set_mode = True
    elif gpu.mig_current != wanted:
        plan.reset = True
    errors: list[str] = []
    if wanted == "disabled":
        plan.destroy = list(gpu.instances)
    else:
        errors = check_layout(gpu, entry, driver_version)
        if not errors and not gpu.profiles:
            # MIG is off here and no enabled twin lists the profiles: checked once MIG mode is on.
            plan.profiles_checked = False
            plan.create = [(w.profile, None, s) for w in entry.mig_devices for s in (w.placements or (None,) * w.count)]
        elif not errors:
            plan.wants = _flatten(entry.mig_devices, gpu.profiles)
            chosen = _choose_keep(gpu, plan.wants)
            if chosen is None:
                errors.append(
                    f"{gpu.label}, {entry.describe()}: nvidia-smi places each new GPU instance at the lowest free start, and no creation order "
                    f"puts {_summary([item[0].name for item in plan.wants])} on the pinned starts; pin other starts or none"
                )
            else:
                plan.keep, order, plan.rebuild = chosen
                kept = {i.gi_id for i in plan.keep}
                plan.destroy = [i for i in gpu.instances if i.gi_id not in kept]
                plan.create = [(p.name, p, start) for p, start in order]
    if not force:
        errors += _process_problems(plan)
    plan.errors = errors
    return plan


@dataclass
class HostPlan:
    gpus: list[GpuPlan]
    errors: list[str]
    warnings: list[str]

    @property
    def changed(self) -> bool:
        return any(p.action == "apply" for p in self.gpus)

    def as_result(self) -> list[dict[str, Any]]:
        return [p.as_result() for p in self.gpus]


def make_plan(entries: Sequence[Entry], gpus: Sequence[GpuState], driver_version: str | None = None, force: bool = False) -> HostPlan:
    chosen, errors, warnings = select_entries(entries, gpus)
    plans = []
    for gpu in gpus:
        plan = plan_gpu(gpu, chosen.get(gpu.index), driver_version, force)
        plans.append(plan)
        errors += plan.errors
        if force and plan.action == "apply" and gpu.processes:
            warnings.append(f"{gpu.label}: force is set; the driver may still refuse to change a GPU that runs processes")
    unchecked = [p.gpu for p in plans if not p.profiles_checked]
    if unchecked:
        warnings.append(
            f"MIG is off on GPU {', '.join(str(g.index) for g in unchecked)} and on every GPU of the same model, so nvidia-smi cannot "
            "list their profiles yet: the layout is checked against them right after MIG mode is enabled, before any instance is created"
        )
    return HostPlan(plans, errors, warnings)


# ============================================================================================
# 4. Apply
# ============================================================================================


def render(rows: Sequence[tuple[GpuState, str, Sequence[tuple[str, int | None, int | None]]]]) -> str:
    """Text for diff mode: per GPU a mode line, then one line per GPU instance (``3g.40gb at 4:4``)."""
    lines = []
    for gpu, mode, layout in rows:
        lines.append(f"GPU {gpu.index} {gpu.name}: MIG {mode}")
        for profile, start, size in layout:
            lines.append(f"  {profile}" + (f" at {start}:{size}" if start is not None else ""))
    return "".join(line + "\n" for line in lines)


def _mode_text(gpu: GpuState) -> str:
    current = gpu.mig_current or "n/a"
    return current if gpu.mig_pending in (None, gpu.mig_current) else f"{current} (pending {gpu.mig_pending} after a GPU reset)"


def _layout(gpu: GpuState) -> list[tuple[str, int | None, int | None]]:
    return [(i.profile if i.complete else f"{i.profile} [{', '.join(i.compute) or 'no compute instance'}]", i.start, i.size) for i in gpu.instances]


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


class _Run:
    """Runs mutating nvidia-smi commands and records them."""

    def __init__(self, binary: str, run: Runner) -> None:
        self.binary = binary
        self.run = run
        self.commands: list[list[str]] = []

    def __call__(self, gpu: GpuState, *args: str, check: bool = True) -> tuple[int, str, str]:
        argv = [self.binary, *args]
        self.commands.append(argv)
        rc, out, err = self.run(argv)
        if rc != 0 and check:
            raise _Failed(f"{gpu.label}: {explain_failure(argv, rc, out, err)}")
        return rc, out, err


class _Failed(Exception):
    """A command failed; the message names the GPU and the command."""


def _present(gpu: GpuState, wants: Sequence[Item]) -> tuple[list[Item], list[Instance]]:
    """(wanted items not on the GPU, instances on it that are not wanted) after matching by profile / pinned start."""
    free = [i for i in gpu.instances if i.complete]
    missing: list[Item] = []
    for profile, pin in sorted(wants, key=lambda it: it[1] is None):
        match = next((i for i in free if i.profile == profile.name and (pin is None or i.start == pin)), None)
        if match is None:
            missing.append((profile, pin))
        else:
            free.remove(match)
    extra = free + [i for i in gpu.instances if not i.complete]
    return missing, extra


def _label(items: Sequence[Instance]) -> str:
    return ", ".join(i.describe() for i in items) or "none"


class Applier:
    """Plans one config on one host and applies it; every mutating command goes through ``self.mutate``."""

    def __init__(self, binary: str, run: Runner, entries: Sequence[Entry], reset_ok: bool = False, force: bool = False) -> None:
        self.binary = binary
        self.run = run
        self.entries = entries
        self.reset_ok = reset_ok
        self.force = force
        self.mutate = _Run(binary, run)
        self.driver: str | None = None
        self.before: list[GpuState] = []
        self.plan = HostPlan([], [], [])
        self.final_plan: HostPlan | None = None  # planned again after the MIG mode changes
        self.reboot: dict[int, str] = {}  # GPUs whose mode change waits for a reboot, and why
        self.need_reset_ok: list[GpuState] = []
        self.warnings: list[str] = []

    def state(self) -> list[GpuState]:
        facts, gpus = read_state(self.binary, self.run)
        self.driver = facts.get("driver_version")
        return gpus

    def prepare(self) -> HostPlan:
        """Read, select, validate and plan; raises LayoutError (nothing changed) with every problem."""
        self.before = self.state()
        self.plan = make_plan(self.entries, self.before, self.driver, self.force)
        if self.plan.errors:
            raise LayoutError(self.plan.errors)
        return self.plan

    def result(self, after: list[GpuState] | None = None) -> dict[str, Any]:
        """The module's result; the diff's after is the predicted layout when ``after`` (the state read back) is None."""
        managed = [p for p in self.plan.gpus if p.wanted_mode is not None]
        before = render([(p.gpu, _mode_text(p.gpu), _layout(p.gpu)) for p in managed])
        if after is None:
            after_text = render([(p.gpu, p.wanted_mode or "", p.layout_after()) for p in managed])
        else:
            after_text = render([(after[p.gpu.index], _mode_text(after[p.gpu.index]), _layout(after[p.gpu.index])) for p in managed])
        return {
            "changed": bool(self.mutate.commands) if (after is not None or self.mutate.commands) else self.plan.changed,
            "plan": self.plan.as_result(),
            "reboot_required": bool(self.reboot or self.need_reset_ok),
            "commands": [" ".join(argv) for argv in self.mutate.commands],
            "warnings": self.plan.warnings + self.warnings,
            "diff": {"before": before, "after": after_text},
        }

    def apply(self) -> dict[str, Any]:
        if not self.prepare().changed:
            return self.result()
        try:
            final = self._instances(self._modes())
        except (_Failed, NvidiaSmiError, LayoutError) as exc:
            raise ApplyError(f"{exc} {self._progress()}", self._partial()) from None
        result = self.result(final)
        problems = self._verify(final)
        if problems:
            raise ApplyError("The GPUs do not hold the layout after applying it: " + " ".join(problems) + f" {self._progress()}", result)
        if self.need_reset_ok:
            raise ApplyError(
                f"The MIG mode change of {', '.join(g.label for g in self.need_reset_ok)} is pending until a GPU reset, which this task "
                "may not do: set reset_ok: true (role variable gpu_node_mig_reset_ok) to let it reset the GPU, or reboot the node "
                "(role variable gpu_node_reboot_ok). The other GPUs were configured.",
                result,
            )
        return result

    # MIG mode ------------------------------------------------------------------------------------
    def _modes(self) -> list[GpuState]:
        """Destroy what disabling MIG needs gone, set the modes, reset where allowed; the state afterwards."""
        moving = [p for p in self.plan.gpus if p.set_mode or p.reset]
        if not moving:
            return self.before
        said: dict[int, str] = {}
        for p in moving:
            if p.wanted_mode == "disabled" and p.destroy:
                self._destroy(p.gpu, p.destroy)  # the driver refuses to disable MIG while GPU instances exist
            if p.set_mode:
                answer = self.mutate(p.gpu, "-i", str(p.gpu.index), "-mig", "1" if p.wanted_mode == "enabled" else "0")
                said[p.gpu.index] = answer[1] + answer[2]
        gpus = self.state()
        resets: list[tuple[GpuPlan, GpuState]] = []
        for p in moving:
            gpu = gpus[p.gpu.index]
            if gpu.mig_current == gpu.mig_pending == p.wanted_mode:
                continue
            if "notsupported" in _squash(said.get(gpu.index, "")):
                self._reboot(gpu, "nvidia-smi cannot reset this GPU (Not Supported, as in a passthrough VM)")
            elif self.reset_ok:
                resets.append((p, gpu))
            else:
                self.need_reset_ok.append(gpu)
        for gpu in [pair[1] for pair in resets]:
            rc, out, err = self.mutate(gpu, "-r", "-i", str(gpu.index), check=False)
            if rc == 0:
                continue
            if "notsupported" in _squash(out + err):
                self._reboot(gpu, "nvidia-smi cannot reset this GPU (Not Supported, as in a passthrough VM)")
                continue
            self.reboot[gpu.index] = "the GPU reset was refused"
            pids = ", ".join(f"{proc.get('pid')} ({proc.get('name')})" for proc in gpu.processes) or "none that nvidia-smi lists"
            raise _Failed(
                f"{gpu.label}: the GPU reset that makes the MIG mode change effective was refused: "
                f"{explain_failure([self.binary, '-r', '-i', str(gpu.index)], rc, out, err)} Processes on the GPU: {pids}. "
                f"Stop the GPU's clients ({GPU_CLIENTS}) and run again, or reboot the node (gpu_node_reboot_ok)."
            )
        if not resets:
            return gpus
        gpus = self.state()
        for p, gpu in resets:
            now = gpus[gpu.index]
            if gpu.index not in self.reboot and not now.mig_current == now.mig_pending == p.wanted_mode:
                self._reboot(now, "its MIG mode is still pending after a successful GPU reset")
        return gpus

    def _reboot(self, gpu: GpuState, why: str) -> None:
        self.reboot[gpu.index] = why
        self.warnings.append(f"{gpu.label}: the MIG mode change waits for a reboot: {why}. reboot_required is set; no instance was created on it.")

    # GPU instances -------------------------------------------------------------------------------
    def _instances(self, gpus: list[GpuState]) -> list[GpuState]:
        """Plan again on the state after the mode changes, destroy and create per GPU, read back once; the final state."""
        waiting = set(self.reboot) | {g.index for g in self.need_reset_ok}
        plan = make_plan(self.entries, gpus, self.driver, self.force)
        self.final_plan = plan
        errors = [e for p in plan.gpus if p.gpu.index not in waiting for e in p.errors]
        if errors:
            raise LayoutError(errors, "With MIG mode now on, the layout turned out not to fit")
        work = [p for p in plan.gpus if p.gpu.index not in waiting and p.action == "apply"]
        ran_before = len(self.mutate.commands)
        answers: dict[int, tuple[list[Profile], tuple[int, str, str]]] = {}
        for p in work:
            if p.set_mode or p.reset:
                raise _Failed(f"{p.gpu.label}: MIG mode is {_mode_text(p.gpu)} after setting it to {p.wanted_mode}")
            if p.destroy:
                self._destroy(p.gpu, p.destroy)
            order = [entry[1] for entry in p.create if entry[1] is not None]
            if order:
                answers[p.gpu.index] = (order, self._cgi(p.gpu, order))
        if len(self.mutate.commands) == ran_before:
            return gpus
        final = self.state()
        more = False
        for p in work:
            if p.gpu.index in answers:
                more = self._complete(p, final[p.gpu.index], *answers[p.gpu.index]) or more
        return self.state() if more else final

    def _destroy(self, gpu: GpuState, instances: Sequence[Instance]) -> None:
        index = str(gpu.index)
        with_cis = sorted(i.gi_id for i in instances if i.ci_ids)
        if with_cis:
            self.mutate(gpu, "mig", "-i", index, "-dci", "-gi", ",".join(map(str, with_cis)))
        self.mutate(gpu, "mig", "-i", index, "-dgi", "-gi", ",".join(str(i) for i in sorted(i.gi_id for i in instances)))

    def _cgi(self, gpu: GpuState, order: Sequence[Profile]) -> tuple[int, str, str]:
        return self.mutate(gpu, "mig", "-i", str(gpu.index), "-cgi", ",".join(str(profile.id) for profile in order), "-C", check=False)

    def _complete(self, p: GpuPlan, now: GpuState, order: list[Profile], answer: tuple[int, str, str]) -> bool:
        """Check what ``-cgi`` created on one GPU and finish the job; whether more commands ran.

        The driver chooses placements. When it placed something elsewhere than predicted and the
        rest still fits, the rest is created by another call; when it does not fit, the instances
        this run created (new, unused) are destroyed and another creation order is tried, as
        mig-parted does, at most ``CREATE_ATTEMPTS`` orders in all.
        """
        kept = {i.gi_id for i in p.keep}
        todo = _present(replace(p.gpu, instances=list(p.keep)), p.wants)[0]
        alternatives = ([item[0] for item in o] for o in _orders(todo))
        tried = {tuple(profile.id for profile in order)}
        more = False
        while True:
            missing, extra = _present(now, p.wants)
            if not missing and not extra:
                return more
            fresh = [i for i in now.instances if i.gi_id not in kept]
            rest = creation_order(missing, [s for i in now.instances for s in i.span]) if missing and not extra and len(missing) < len(order) else None
            if rest is not None:
                self.warnings.append(
                    f"{p.gpu.label}: the driver created fewer GPU instances than asked or placed them elsewhere; creating the other {len(rest)}"
                )
                order = [item[0] for item in rest]
            else:
                argv = [self.binary, "mig", "-i", str(p.gpu.index), "-cgi", ",".join(str(profile.id) for profile in order), "-C"]
                said = explain_failure(argv, *answer) if answer[0] else f"'{' '.join(argv)}' reported success"
                failure = (
                    f"{p.gpu.label}: not every GPU instance was created: {said}. On the GPU now: {_label(fresh)} (created by this run), "
                    f"{_label([i for i in now.instances if i.gi_id in kept])} (kept); not created: {_summary([item[0].name for item in missing])}; "
                    f"not in the layout: {_label(extra)}. Creation orders tried: {len(tried)}."
                )
                following = next((o for o in alternatives if tuple(pr.id for pr in o) not in tried), None)
                if not fresh or following is None or len(tried) >= CREATE_ATTEMPTS:
                    raise _Failed(failure)  # nothing created at all: another order will not help
                self.warnings.append(
                    f"{p.gpu.label}: the driver placed GPU instances where the rest of the layout does not fit; destroyed the {len(fresh)} "
                    f"this run created and trying the creation order {','.join(str(pr.id) for pr in following)}"
                )
                self._destroy(now, fresh)
                order = following
                tried.add(tuple(pr.id for pr in order))
            more = True
            answer = self._cgi(p.gpu, order)
            now = self.state()[p.gpu.index]

    # Checking ------------------------------------------------------------------------------------
    def _verify(self, gpus: list[GpuState]) -> list[str]:
        """Whether each managed GPU now holds its layout, and kept instances are untouched."""
        problems: list[str] = []
        waiting = set(self.reboot) | {g.index for g in self.need_reset_ok}
        for p in self.final_plan.gpus if self.final_plan else []:
            gpu = gpus[p.gpu.index]
            if p.wanted_mode is None or gpu.index in waiting:
                continue
            if not gpu.mig_current == gpu.mig_pending == p.wanted_mode:
                problems.append(f"{gpu.label}: MIG mode is {_mode_text(gpu)}, wanted {p.wanted_mode}.")
                continue
            if p.wanted_mode == "disabled":
                continue
            missing, extra = _present(gpu, p.wants)
            gone = [i for i in p.keep if not any((j.gi_id, j.start, j.profile) == (i.gi_id, i.start, i.profile) for j in gpu.instances)]
            if missing or extra or gone:
                problems.append(
                    f"{gpu.label}: missing {_summary([item[0].name for item in missing])}; not in the layout: {_label(extra)}; "
                    f"kept instances that disappeared: {_label(gone)}."
                )
        return problems

    def _partial(self) -> dict[str, Any]:
        try:
            return self.result(self.state())
        except NvidiaSmiError:
            return self.result()

    def _progress(self) -> str:
        done = [" ".join(argv[1:]) for argv in self.mutate.commands]
        return ("Commands run: " + "; ".join(done) + ".") if done else "No command changed the GPUs."


def apply_layout(
    binary: str,
    run: Runner,
    document: Any,
    config_name: str,
    *,
    reset_ok: bool = False,
    force: bool = False,
    check_mode: bool = False,
) -> dict[str, Any]:
    """Validate, plan and (unless ``check_mode``) apply ``config_name`` of ``document``.

    Returns ``changed``, ``plan``, ``reboot_required``, ``commands`` (mutating commands run),
    ``warnings`` and ``diff``. Raises LayoutError when nothing may be done, ApplyError (with a
    ``result``) when applying failed part way.
    """
    entries = select_config(parse_document(document), config_name)
    applier = Applier(binary, run, entries, reset_ok=reset_ok, force=force)
    if check_mode:
        applier.prepare()
        return applier.result()
    return applier.apply()
