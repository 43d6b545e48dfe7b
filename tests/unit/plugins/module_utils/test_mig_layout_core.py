"""mig_layout core: mig-parted documents, per-GPU validation over real -lgip/-lgipp captures, planning, and
applying through the nvidia-smi simulator run as a subprocess (its own config and state files per test)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from captures import FIXTURES, read_capture

from ansible_collections.llmops.gpu_inference.plugins.module_utils._mig_layout import (
    READ_ONLY,
    ApplyError,
    Entry,
    GpuState,
    Instance,
    LayoutError,
    Want,
    apply_layout,
    borrow_profiles,
    build_gpu,
    check_layout,
    creation_order,
    find_placement,
    load_document_text,
    make_plan,
    mig_parted_document,
    parse_document,
    predict_placements,
    read_state,
    select_config,
)
from ansible_collections.llmops.gpu_inference.plugins.module_utils._nvidia_smi import (
    parse_mig_compute_instances,
    parse_mig_gpu_instance_profiles,
    parse_mig_gpu_instances,
    parse_mig_placements,
)

REPO_ROOT = Path(__file__).resolve().parents[4]
SIMULATOR = REPO_ROOT / "tests" / "nvidia_smi_sim" / "nvidia_smi_sim.py"
# Real mig-parted layouts, read in place (override with MIG_PARTED_FIXTURES); never copied into this repository.
MIG_PARTED = Path(os.environ.get("MIG_PARTED_FIXTURES", FIXTURES.parent / "mig-parted"))


def mig_parted(name: str) -> dict:
    if not MIG_PARTED.is_dir():
        pytest.skip(f"real mig-parted layouts not found at {MIG_PARTED} (set MIG_PARTED_FIXTURES)")
    return yaml.safe_load((MIG_PARTED / name).read_text(encoding="utf-8"))


def layout(devices, **profiles):
    """A one-config document: ``layout("all", **{"1g.10gb": 2})``."""
    return {"version": "v1", "mig-configs": {"test": [{"devices": devices, "mig-enabled": True, "mig-devices": profiles}]}}


def errors_of(document) -> list[str]:
    with pytest.raises(LayoutError) as caught:
        parse_document(document)
    return caught.value.errors


# ============================================================================================
# The simulator as a subprocess
# ============================================================================================


class SimHost:
    """A simulated host: every nvidia-smi call is a subprocess of the simulator with this host's config and state."""

    def __init__(self, directory: Path, **config) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.config_path = directory / "config.json"
        self.state_path = directory / "state.json"
        self.config = {"hostname": directory.name, **config}
        self.config_path.write_text(json.dumps(self.config), encoding="utf-8")
        self.env = dict(os.environ, NVIDIA_SMI_SIM_CONFIG=str(self.config_path), NVIDIA_SMI_SIM_STATE=str(self.state_path), LC_ALL="C")
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        self.calls.append(list(argv))
        done = subprocess.run([sys.executable, str(SIMULATOR), *argv[1:]], env=self.env, capture_output=True, text=True, check=False)
        return done.returncode, done.stdout, done.stderr

    def sim(self, *args: str) -> subprocess.CompletedProcess:
        """Run a command directly (set-up and inspection; not recorded)."""
        return subprocess.run([sys.executable, str(SIMULATOR), *args], env=self.env, capture_output=True, text=True, check=False)

    def ok(self, *args: str) -> str:
        done = self.sim(*args)
        assert done.returncode == 0, done
        return done.stdout

    def mutations(self) -> list[list[str]]:
        """The recorded commands that change GPUs (everything but the listings), without the binary."""
        return [argv[1:] for argv in self.calls if tuple(argv[1:]) not in READ_ONLY]

    def instances(self, gpu: int) -> list[tuple[str, int]]:
        """(profile, start) of the GPU instances the simulator holds on ``gpu``, sorted by start."""
        done = self.sim("mig", "-i", str(gpu), "-lgi")
        return sorted(((gi["profile"], gi["placement_start"]) for gi in parse_mig_gpu_instances(done.stdout)), key=lambda x: x[1])

    def modes(self, gpu: int) -> list[str]:
        done = self.sim("-i", str(gpu), "--query-gpu=mig.mode.current,mig.mode.pending", "--format=csv,noheader")
        return done.stdout.strip().split(", ")

    def apply(self, document, name="test", **options):
        self.calls.clear()
        return apply_layout("nvidia-smi", self, document, name, **options)


@pytest.fixture
def host(tmp_path):
    """``host(model=..., count=...)``: a fresh simulated host per call."""
    made = []

    def make(**config) -> SimHost:
        made.append(SimHost(tmp_path / f"host{len(made)}", **config))
        return made[-1]

    return make


@pytest.fixture(scope="session")
def sim_listing(tmp_path_factory):
    """(-lgip, -lgipp) text of a simulated model with MIG on, for the models no real capture covers."""
    cache: dict[str, tuple[str, str]] = {}

    def listing(model: str) -> tuple[str, str]:
        if model not in cache:
            one = SimHost(tmp_path_factory.mktemp(model), model=model, count=1, mig_enabled=[0])
            cache[model] = (one.sim("mig", "-lgip").stdout, one.sim("mig", "-lgipp").stdout)
        return cache[model]

    return listing


# ============================================================================================
# GPUs built from real captures
# ============================================================================================

# The real H100 NVL -lgipp: the 8-memory-slice placement table shared by A100, H100, H200 and GH200
# (reference/mig_profiles.yaml, common_8slice_placements); the A30 has its own real -lgipp.
EIGHT_SLICES_LGIPP = "h100-nvl-94gb-560-mig-lgipp.txt"
# model: (product name, PCI id, driver, real -lgip capture or simulator model, real -lgipp capture or simulator model)
MODELS = {
    "A100-40GB": ("NVIDIA A100-SXM4-40GB", "0x20B010DE", "535.54.03", "a100-40gb-mig-lgip.txt", EIGHT_SLICES_LGIPP),
    "A100-40GB-R510": ("NVIDIA A100-PCIE-40GB", "0x20F110DE", "510.47.03", "a100-pcie-40gb-esxi-510-mig-lgip-free-0.txt", EIGHT_SLICES_LGIPP),
    "A100-80GB": ("NVIDIA A100-SXM4-80GB", "0x20B210DE", "550.90.07", "sim:A100-SXM4-80GB", EIGHT_SLICES_LGIPP),
    "H100": ("NVIDIA H100 80GB HBM3", "0x233010DE", "550.90.07", "sim:H100-80GB", EIGHT_SLICES_LGIPP),
    "H100-NVL": ("NVIDIA H100 NVL", "0x232110DE", "560.35.03", "sim:H100-NVL", EIGHT_SLICES_LGIPP),
    "H200": ("NVIDIA H200", "0x233510DE", "550.90.07", "sim:H200", "sim:H200"),
    "GH200": ("NVIDIA GH200 480GB", "0x234210DE", "550.54.15", "gh200-96gb-550-mig-lgip.txt", EIGHT_SLICES_LGIPP),
    "A30": ("NVIDIA A30", "0x20B710DE", "470.57.02", "a30-24gb-mig-lgip-all-used.txt", "a30-24gb-mig-lgipp.txt"),
}


@pytest.fixture
def model_gpus(sim_listing):
    """``model_gpus("H100", count=8, mig="enabled", instances={0: [...]})``: GpuStates as read_state builds them."""

    def make(model: str, count: int = 1, mig: str = "enabled", instances=None, processes=None) -> tuple[list[GpuState], str]:
        name, pci, driver, lgip, lgipp = MODELS[model]

        def text(source: str, which: int) -> str:
            return sim_listing(source[4:])[which] if source.startswith("sim:") else read_capture(source)

        profiles = parse_mig_gpu_instance_profiles(text(lgip, 0))
        placements = parse_mig_placements(text(lgipp, 1))
        gpus = []
        for index in range(count):
            fact = {"index": index, "name": name, "pci_device_id": pci, "mig_mode_current": mig, "mig_mode_pending": mig}
            fact["processes"] = (processes or {}).get(index, [])
            own = [dict(p, gpu=index) for p in profiles] if mig == "enabled" else []
            gpu = build_gpu(fact, [], [], own, [dict(p, gpu=index) for p in placements])
            gpu.instances = [instance(*spec) for spec in (instances or {}).get(index, [])]
            gpus.append(gpu)
        return gpus, driver

    return make


def instance(profile: str, start: int, size: int, gi_id: int, profile_id: int = 0) -> Instance:
    """A GPU instance with its one full compute instance (a usable MIG device)."""
    return Instance(gi_id=gi_id, profile=profile, profile_id=profile_id, start=start, size=size, compute=(profile,), ci_ids=(0,))


def plan_of(gpus, driver, document, name="test", force=False):
    return make_plan(select_config(parse_document(document), name), gpus, driver, force)


# ============================================================================================
# 1. Documents
# ============================================================================================


@pytest.mark.parametrize(
    ("file", "names"),
    [
        (
            "examples-config.yaml",
            [
                "all-disabled",
                "all-enabled",
                "all-1g.5gb",
                "all-1g.5gb.me",
                "all-1g.10gb",
                "all-2g.10gb",
                "all-3g.20gb",
                "all-balanced",
                "custom-config",
            ],
        ),
        (
            "examples-dgx-station-80gb-config.yaml",
            [
                "all-disabled-dgx-station-80",
                "all-enabled-dgx-station-80",
                "all-1g.10gb-dgx-station-80",
                "all-2g.20gb-dgx-station-80",
                "all-3g.40gb-dgx-station-80",
                "all-4g.40gb-dgx-station-80",
                "all-7g.80gb-dgx-station-80",
                "all-balanced-dgx-station-80",
                "balanced-k8s-dgx-station-80",
            ],
        ),
    ],
)
def test_every_named_layout_of_the_real_mig_parted_files_parses(file, names):
    configs = parse_document(mig_parted(file))
    assert list(configs) == names
    assert all(entries for entries in configs.values())


def test_real_documents_parse_into_their_entries():
    custom = parse_document(mig_parted("examples-config.yaml"))["custom-config"]
    assert [(e.devices, e.mig_enabled, e.mig_devices) for e in custom] == [
        ((0, 1, 2, 3), False, ()),
        ((4,), True, (Want("1g.5gb", 7),)),
        ((5,), True, (Want("2g.10gb", 3),)),
        ((6,), True, (Want("3g.20gb", 2),)),
        ((7,), True, (Want("1g.5gb", 2), Want("2g.10gb", 1), Want("3g.20gb", 1))),
    ]
    dgx = parse_document(mig_parted("examples-dgx-station-80gb-config.yaml"))["balanced-k8s-dgx-station-80"]
    # 'mig-enabled: false' with 'mig-devices: {}' is valid, as in mig-parted's own file.
    assert [(e.device_filter, e.devices, e.mig_enabled) for e in dgx] == [
        (("0x20B210DE",), (0,), False),
        (("0x20B210DE",), (1,), True),
        (("0x20B210DE",), (2,), True),
        (("0x20B210DE",), (4,), True),
        (("0x1FB010DE",), (3,), False),
    ]


def entry_doc(**entry):
    return {"version": "v1", "mig-configs": {"c": [entry]}}


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"mig-configs": {"c": [{"devices": "all", "mig-enabled": False}]}}, "missing 'version' field"),
        ({"version": "v2", "mig-configs": {"c": [{"devices": "all", "mig-enabled": False}]}}, 'unknown version "v2"'),
        ({"version": "v1", "mig-configs": {}}, "'mig-configs' must be a non-empty mapping"),
        ({"version": "v1", "mig-configs": {"c": []}, "extra": 1}, "unexpected top-level field 'extra'"),
        ({"version": "v1", "mig-configs": {"c": []}}, "config 'c': at least one entry is required"),
        (entry_doc(devices="all", **{"mig-enabled": True, "mig-device": {}}), "config 'c' entry 1: unexpected field 'mig-device'"),
        (entry_doc(**{"mig-enabled": False}), "config 'c' entry 1: missing required field 'devices'"),
        (entry_doc(devices="all"), "config 'c' entry 1: missing required field 'mig-enabled'"),
        (entry_doc(devices="some", **{"mig-enabled": False}), "config 'c' entry 1, field 'devices': must be 'all' or a list of GPU indices"),
        (entry_doc(devices=[0, -1], **{"mig-enabled": False}), "field 'devices': must be 'all' or a list of GPU indices, got [0, -1]"),
        (entry_doc(devices=[True], **{"mig-enabled": False}), "field 'devices'"),
        (entry_doc(devices="all", **{"mig-enabled": "true", "mig-devices": {}}), "field 'mig-enabled': must be true or false, got \"true\""),
        (entry_doc(devices="all", **{"mig-enabled": True}), "missing required field 'mig-devices' when 'mig-enabled' is true"),
        (entry_doc(devices="all", **{"mig-enabled": False, "mig-devices": {"1g.5gb": 7}}), "MIG devices are listed although 'mig-enabled' is false"),
        (entry_doc(devices="all", **{"mig-enabled": False, "device-filter": "20B010DE"}), "field 'device-filter': \"20B010DE\" is not a PCI id"),
        (entry_doc(devices="all", **{"mig-enabled": False, "device-filter": ["0x20B010DE", "0x20B1"]}), '"0x20B1" is not a PCI id'),
        (entry_doc(devices="all", **{"mig-enabled": False, "device-filter": 538968286}), "field 'device-filter': must be a PCI id or a list"),
        (entry_doc(devices="all", **{"mig-enabled": True, "mig-devices": {"1g5gb": 1}}), "'1g5gb' is not a MIG profile name"),
        (entry_doc(devices="all", **{"mig-enabled": True, "mig-devices": {"5g.20gb": 1}}), "'5g.20gb' has 5 GPU instance slices"),
        (entry_doc(devices="all", **{"mig-enabled": True, "mig-devices": {"1g.5gb": "7"}}), "the count of '1g.5gb' must be a whole number"),
        (entry_doc(devices="all", **{"mig-enabled": True, "mig-devices": {"1g.5gb": True}}), "the count of '1g.5gb' must be a whole number"),
        (entry_doc(devices="all", **{"mig-enabled": True, "mig-devices": {"1g.5gb": -1}}), "the count of '1g.5gb' must be 0 or more"),
        (entry_doc(devices="all", **{"mig-enabled": True, "mig-devices": {"3g.20gb": {"count": 2, "placements": [0]}}}), "count 2 but 1 placement(s)"),
        (entry_doc(devices="all", **{"mig-enabled": True, "mig-devices": {"3g.20gb": {"placements": [4, 4]}}}), "repeat a start"),
        (entry_doc(devices="all", **{"mig-enabled": True, "mig-devices": {"3g.20gb": {"start": 4}}}), "unexpected field(s) start"),
    ],
)
def test_invalid_documents_are_rejected_naming_config_entry_and_field(document, expected):
    errors = errors_of(document)
    assert any(expected in error for error in errors), errors


def test_every_problem_of_a_document_is_reported_at_once():
    document = mig_parted("examples-config.yaml")
    document["mig-configs"]["custom-config"][1]["mig-devices"] = {"1g.5gb": "7"}
    document["mig-configs"]["all-balanced"][0]["devices"] = "every"
    document["mig-configs"]["all-disabled"][0]["mig-devices"] = {"1g.5gb": 1}
    errors = errors_of(document)
    assert errors == [
        "config 'all-disabled' entry 1, field 'mig-devices': MIG devices are listed although 'mig-enabled' is false",
        "config 'all-balanced' entry 1, field 'devices': must be 'all' or a list of GPU indices, got \"every\"",
        "config 'custom-config' entry 2, field 'mig-devices': the count of '1g.5gb' must be a whole number or a mapping with count and placements, got \"7\"",
    ]


def test_accepted_forms_zero_counts_subsystem_filter_and_pins():
    configs = parse_document(
        entry_doc(
            devices=[0, 1],
            **{
                "mig-enabled": True,
                "device-filter": ["0x233010de:0x16c110de", ""],
                "mig-devices": {"1g.10gb": 0, "3g.40gb": {"count": 1, "placements": [4]}, "2g.20gb": {"count": 1}, "1g.10gb+me": 1},
            },
        )
    )
    (entry,) = configs["c"]
    assert entry.device_filter == ("0x233010DE:0x16C110DE",)
    assert entry.mig_devices == (Want("3g.40gb", 1, (4,)), Want("2g.20gb", 1), Want("1g.10gb+me", 1))


def test_mig_parted_document_drops_the_pins_and_stays_valid():
    pinned = layout([0], **{"3g.40gb": {"count": 1, "placements": [4]}, "1g.10gb": {"placements": [0, 1]}, "2g.20gb": 1})
    plain = mig_parted_document(pinned)
    assert plain["mig-configs"]["test"][0]["mig-devices"] == {"3g.40gb": 1, "1g.10gb": 2, "2g.20gb": 1}
    assert all(isinstance(v, int) for v in plain["mig-configs"]["test"][0]["mig-devices"].values())
    real = mig_parted("examples-dgx-station-80gb-config.yaml")
    assert mig_parted_document(real) == real


def test_unknown_config_name_lists_the_names():
    with pytest.raises(LayoutError, match=re.escape("config_name 'all-2g.20gb' is not in mig-configs; the document has all-1g.10gb, all-1g.5gb")):
        select_config(parse_document(mig_parted("examples-config.yaml")), "all-2g.20gb")


def test_layout_files_are_read_as_json_or_yaml():
    document = mig_parted("examples-config.yaml")
    assert load_document_text((MIG_PARTED / "examples-config.yaml").read_text(encoding="utf-8"), "examples-config.yaml") == document
    assert load_document_text(json.dumps(document), "examples-config.json") == document
    assert load_document_text('{"version": "v1"}', "x.json") == {"version": "v1"}
    with pytest.raises(LayoutError, match=re.escape("broken.yaml is not valid YAML")):
        load_document_text("version: v1\n  mig-configs: [", "broken.yaml")


# ============================================================================================
# 2. Per-GPU validation over the real -lgip / -lgipp captures
# ============================================================================================

ALL_MODELS = list(MODELS)
SEED_GUIDE_7X_1G5GB = layout("all", **{"1g.5gb": 7})


@pytest.mark.parametrize("model", ALL_MODELS)
def test_seed_guide_7x_1g5gb_fits_only_the_a100_40gb(model, model_gpus):
    gpus, driver = model_gpus(model)
    plan = plan_of(gpus, driver, SEED_GUIDE_7X_1G5GB)
    if model.startswith("A100-40GB"):
        assert plan.errors == []
        assert plan.gpus[0].create and {p.id for _name, p, _start in plan.gpus[0].create} == {19}
    else:
        (error,) = plan.errors
        assert error.startswith(f"GPU 0 ({MODELS[model][0]}), config 'test' entry 1: profile '1g.5gb' is not offered by this GPU with driver {driver}")


# Which of mig-parted's examples/config.yaml (written for A100-40GB) fit which GPU; None = valid, else the reason.
EXAMPLES_FIT = {
    "all-disabled": dict.fromkeys(ALL_MODELS),
    "all-enabled": dict.fromkeys(ALL_MODELS),
    "all-1g.5gb": {m: None if m.startswith("A100-40GB") else "profile '1g.5gb' is not offered" for m in ALL_MODELS},
    "all-1g.5gb.me": {m: None if m.startswith("A100-40GB") else "profile '1g.5gb+me' is not offered" for m in ALL_MODELS},
    # 1g.10gb: ID 15 (2 memory slices) on A100-40GB from R525, ID 19 on A100-80GB and H100; unknown elsewhere.
    "all-1g.10gb": {m: None if m in ("A100-40GB", "A100-80GB", "H100") else "profile '1g.10gb' is not offered" for m in ALL_MODELS},
    "all-2g.10gb": {m: None if m.startswith("A100-40GB") else "profile '2g.10gb' is not offered" for m in ALL_MODELS},
    "all-3g.20gb": {m: None if m.startswith("A100-40GB") else "profile '3g.20gb' is not offered" for m in ALL_MODELS},
    "all-balanced": {m: None if m.startswith("A100-40GB") else "is not offered" for m in ALL_MODELS},
    "custom-config": {m: None if m.startswith("A100-40GB") else "is not offered" for m in ALL_MODELS},
}


@pytest.mark.parametrize("config", list(EXAMPLES_FIT))
@pytest.mark.parametrize("model", ALL_MODELS)
def test_real_mig_parted_examples_fit_the_gpus_they_are_written_for(config, model, model_gpus):
    gpus, driver = model_gpus(model, count=8)
    plan = plan_of(gpus, driver, mig_parted("examples-config.yaml"), config)
    expected = EXAMPLES_FIT[config][model]
    if expected is None:
        assert plan.errors == []
    else:
        assert plan.errors and all(expected in e and e.startswith("GPU ") for e in plan.errors), plan.errors


def test_profile_names_resolve_to_ids_per_gpu_model(model_gpus):
    document = mig_parted("examples-config.yaml")
    ids = {}
    for model in ("A100-40GB", "A100-80GB", "H100"):
        gpus, driver = model_gpus(model)
        plan = plan_of(gpus, driver, document, "all-1g.10gb")
        ids[model] = [(p.id, p.memory_slices) for _name, p, _start in plan.gpus[0].create]
    assert ids == {"A100-40GB": [(15, 2)] * 4, "A100-80GB": [(19, 1)] * 4, "H100": [(19, 1)] * 4}


def test_a100_r510_does_not_offer_1g10gb_yet(model_gpus):
    gpus, driver = model_gpus("A100-40GB-R510")
    (error,) = plan_of(gpus, driver, mig_parted("examples-config.yaml"), "all-1g.10gb").errors
    assert "profile '1g.10gb' is not offered by this GPU with driver 510.47.03" in error
    assert "(nvidia-smi mig -lgip lists 1g.5gb, 1g.5gb+me, 2g.10gb, 3g.20gb, 4g.20gb, 7g.40gb)" in error


@pytest.mark.parametrize("model", ["A100-80GB", "A100-40GB", "H100"])
def test_dgx_station_file_applies_only_to_the_a100_80gb_it_filters_for(model, model_gpus):
    gpus, driver = model_gpus(model, count=5)
    document = mig_parted("examples-dgx-station-80gb-config.yaml")
    for name in parse_document(document):
        plan = plan_of(gpus, driver, document, name)
        assert plan.errors == []
        managed = [p.gpu.index for p in plan.gpus if p.wanted_mode is not None]
        if model != "A100-80GB":
            assert managed == []
            assert plan.warnings == [f"config '{name}' selects no MIG-capable GPU on this host; nothing is managed"]
        elif name == "balanced-k8s-dgx-station-80":
            assert managed == [0, 1, 2, 4]  # GPU 3's entry filters for the DGX display GPU (0x1FB010DE)
        else:
            assert managed == [0, 1, 2, 3, 4]


def test_same_name_other_gpu_without_its_filter_is_rejected_with_the_reason(model_gpus):
    """mig-parted #157: 1g.10gb x7 fits an A100-80GB (ID 19, 7 max) but is ID 15 (4 max) on an A100-40GB."""
    document = mig_parted("examples-dgx-station-80gb-config.yaml")
    for entry in document["mig-configs"]["all-1g.10gb-dgx-station-80"]:
        del entry["device-filter"]
    document["mig-configs"]["all-1g.10gb-dgx-station-80"] = document["mig-configs"]["all-1g.10gb-dgx-station-80"][:1]
    gpus, driver = model_gpus("A100-40GB")
    assert plan_of(gpus, driver, document, "all-1g.10gb-dgx-station-80").errors == [
        "GPU 0 (NVIDIA A100-SXM4-40GB), config 'all-1g.10gb-dgx-station-80' entry 1: 7x '1g.10gb' is more than the 4 instance(s) "
        "this GPU allows of that profile"
    ]
    gpus, driver = model_gpus("A100-80GB")
    assert plan_of(gpus, driver, document, "all-1g.10gb-dgx-station-80").errors == []


@pytest.mark.parametrize(
    ("model", "profiles", "expected"),
    [
        ("A100-40GB", {"3g.20gb": 3}, "3x '3g.20gb' is more than the 2 instance(s) this GPU allows of that profile"),
        ("A100-40GB", {"4g.20gb": 1, "3g.20gb": 1, "1g.5gb": 1}, "the layout (1x 4g.20gb, 1x 3g.20gb, 1x 1g.5gb) needs 8 compute slices; this GPU has 7"),
        ("A100-40GB", {"1g.10gb": 4, "1g.5gb": 1}, "the layout (4x 1g.10gb, 1x 1g.5gb) needs 9 memory slices; this GPU has 8"),
        ("H100", {"7g.80gb": 1, "1g.10gb": 1}, "needs 8 compute slices; this GPU has 7"),
        ("GH200", {"3g.48gb": 2, "1g.12gb": 1}, "needs 9 memory slices; this GPU has 8"),
        ("A30", {"2g.12gb": 2, "1g.6gb": 1}, "needs 5 compute slices; this GPU has 4"),
        ("A30", {"4g.24gb": 2}, "2x '4g.24gb' is more than the 1 instance(s)"),
        ("H200", {"1g.18gb+me": 2}, "ask for 2 media-extension (+me) instances; a GPU has one set of media engines"),
        ("H100-NVL", {"1c.3g.47gb": 1}, "'1c.3g.47gb' is a compute-instance profile"),
        ("H100", {"3g.40gb": {"placements": [2]}}, "'3g.40gb' cannot start at memory slice 2; nvidia-smi mig -lgipp lists {0,4}:4"),
        ("A100-40GB", {"3g.20gb": {"placements": [0]}, "2g.10gb": 2}, "no placement holds 1x 3g.20gb, 2x 2g.10gb together with the pinned starts"),
        ("A100-80GB", {"4g.40gb": 1, "3g.40gb": {"placements": [0]}}, "no placement holds"),
    ],
)
def test_layouts_that_do_not_fit_are_rejected_naming_gpu_profile_and_reason(model, profiles, expected, model_gpus):
    gpus, driver = model_gpus(model)
    errors = plan_of(gpus, driver, layout("all", **profiles)).errors
    assert any(expected in e for e in errors), errors
    assert all(e.startswith(f"GPU 0 ({MODELS[model][0]}), config 'test' entry 1: ") for e in errors)


def test_all_gpus_and_all_problems_are_reported_together(model_gpus):
    gpus, driver = model_gpus("H100", count=3, instances={1: [("3g.40gb", 0, 4, 1)]}, processes={1: [{"pid": 4242, "name": "vllm", "gi_id": 1}]})
    document = {
        "version": "v1",
        "mig-configs": {
            "test": [
                {"devices": [0], "mig-enabled": True, "mig-devices": {"1g.5gb": 7, "3g.40gb": 3}},
                {"devices": [1], "mig-enabled": True, "mig-devices": {"7g.80gb": 1}},
                {"devices": [2], "mig-enabled": True, "mig-devices": {"1g.10gb+me": 1, "1g.10gb": 7}},
            ]
        },
    }
    errors = plan_of(gpus, driver, document).errors
    assert errors == [
        "GPU 0 (NVIDIA H100 80GB HBM3), config 'test' entry 1: profile '1g.5gb' is not offered by this GPU with driver 550.90.07 "
        "(nvidia-smi mig -lgip lists 1g.10gb, 1g.10gb+me, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb)",
        "GPU 0 (NVIDIA H100 80GB HBM3), config 'test' entry 1: 3x '3g.40gb' is more than the 2 instance(s) this GPU allows of that profile",
        "GPU 1 (NVIDIA H100 80GB HBM3): the layout destroys 3g.40gb at 0:4 (GPU instance 1), where processes run: pid 4242 (vllm); "
        "stop them (drain the node) or set force: true",
        "GPU 2 (NVIDIA H100 80GB HBM3), config 'test' entry 3: the layout (1x 1g.10gb+me, 7x 1g.10gb) needs 8 compute slices; this GPU has 7",
    ]


def test_selection_errors_overlapping_entries_and_non_mig_gpu(model_gpus):
    gpus, driver = model_gpus("H100", count=2)
    gpus[1] = replace(gpus[1], name="NVIDIA L40S", pci_device_id="0x26B910DE", mig_current=None, mig_pending=None, profiles={})
    document = {
        "version": "v1",
        "mig-configs": {
            "test": [
                {"devices": "all", "mig-enabled": True, "mig-devices": {}},
                {"devices": [0, 9], "mig-enabled": False},
                {"devices": [1], "mig-enabled": True, "mig-devices": {}},
            ]
        },
    }
    plan = plan_of(gpus, driver, document)
    assert plan.errors == [
        "GPU 0 (NVIDIA H100 80GB HBM3) is selected by both config 'test' entry 1 and config 'test' entry 2; a GPU may match only one entry",
        "GPU 1 (NVIDIA L40S) is not MIG-capable, but config 'test' entry 3 enables MIG on it",
    ]
    assert plan.warnings == ["config 'test' entry 2 names GPU(s) 9, which this host does not have (it has 2 GPU(s)); they are ignored, as mig-parted does"]


def test_device_filter_matches_the_pci_id_and_the_subsystem_when_given(model_gpus):
    gpus, driver = model_gpus("H100", count=2)
    gpus[0].pci_subsystem_id = "0x16C110DE"
    gpus[1].pci_subsystem_id = "0x17A010DE"
    document = entry_doc(devices="all", **{"mig-enabled": True, "mig-devices": {}, "device-filter": "0x233010DE:0x16C110DE"})
    plan = plan_of(gpus, driver, document, "c")
    assert [p.wanted_mode for p in plan.gpus] == ["enabled", None]
    gpus[1].pci_subsystem_id = None
    assert plan_of(gpus, driver, document, "c").errors == [
        "config 'c' entry 1: device-filter '0x233010DE:0x16C110DE' names a PCI subsystem, but the facts of GPU 1 (NVIDIA H100 80GB HBM3) "
        "carry no subsystem id to compare"
    ]


def test_a_gpu_with_mig_off_borrows_the_listing_of_an_enabled_twin(model_gpus):
    enabled, driver = model_gpus("H100", count=1)
    off, _listing = model_gpus("H100", count=2, mig="disabled")
    gpus = [enabled[0], off[1]]
    assert gpus[1].profiles == {}
    borrow_profiles(gpus)
    assert gpus[1].profiles == gpus[0].profiles and gpus[1].profiles_from == 0
    plan = plan_of(gpus, driver, SEED_GUIDE_7X_1G5GB)
    assert [e.split(":")[0] for e in plan.errors] == [
        "GPU 0 (NVIDIA H100 80GB HBM3), config 'test' entry 1",
        "GPU 1 (NVIDIA H100 80GB HBM3), config 'test' entry 1",
    ]


def test_without_any_listing_the_check_waits_for_mig_mode(model_gpus):
    gpus, driver = model_gpus("H100", count=2, mig="disabled")
    plan = plan_of(gpus, driver, SEED_GUIDE_7X_1G5GB)
    assert plan.errors == []
    assert [p.profiles_checked for p in plan.gpus] == [False, False]
    assert plan.gpus[0].as_result()["create"] == ["1g.5gb"] * 7
    assert plan.warnings == [
        "MIG is off on GPU 0, 1 and on every GPU of the same model, so nvidia-smi cannot list their profiles yet: the layout is checked "
        "against them right after MIG mode is enabled, before any instance is created"
    ]
    # Name-only rules still apply before anything changes.
    assert "one set of media engines" in plan_of(gpus, driver, layout("all", **{"1g.10gb+me": 2})).errors[0]


# ============================================================================================
# 3. Placement and planning
# ============================================================================================


def test_placement_search_and_the_drivers_lowest_free_start(model_gpus):
    (gpu,), _listing = model_gpus("A100-40GB")
    p = gpu.profiles
    balanced = [(p["3g.20gb"], None), (p["2g.10gb"], None), (p["1g.5gb"], None), (p["1g.5gb"], None)]
    assert find_placement(balanced) is not None
    # Largest first, each at the lowest free start: 3g at 0 leaves 2g only start 4 and no room for the second 1g.
    assert predict_placements(balanced) is None
    order = creation_order(balanced)
    assert [(q.name, s) for q, s in order] == [("2g.10gb", 0), ("3g.20gb", 4), ("1g.5gb", 2), ("1g.5gb", 3)]
    # 4g only fits at 0: around a kept 1g at 0 it cannot be placed at all.
    assert find_placement([(p["4g.20gb"], None)], occupied=[0]) is None
    assert creation_order([(p["4g.20gb"], None), (p["3g.20gb"], None)]) == [(p["4g.20gb"], 0), (p["3g.20gb"], 4)]
    # A pin is honoured only if the driver's choice lands there: 1g pinned at 1 needs something at 0 first.
    assert creation_order([(p["1g.5gb"], 1)]) is None
    assert creation_order([(p["1g.5gb"], 1), (p["1g.5gb"], None)]) == [(p["1g.5gb"], 0), (p["1g.5gb"], 1)]


BALANCED_H100 = [("2g.20gb", 0, 2, 3), ("1g.10gb", 2, 1, 9), ("1g.10gb", 3, 1, 10), ("3g.40gb", 4, 4, 2)]


@pytest.mark.parametrize(
    ("current", "wanted", "destroy", "create", "keep", "rebuild"),
    [
        # Same multiset, whatever the ids and placements: nothing to do.
        (BALANCED_H100, {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}, [], [], ["2g.20gb", "1g.10gb", "1g.10gb", "3g.40gb"], False),
        (
            [("3g.40gb", 0, 4, 1), ("2g.20gb", 4, 2, 5), ("1g.10gb", 6, 1, 13), ("1g.10gb", 5, 1, 12)],
            {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1},
            [],
            [],
            ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"],
            False,
        ),
        # One profile differs: only those instances go, the new one fills the gap.
        (BALANCED_H100, {"2g.20gb": 2, "3g.40gb": 1}, ["1g.10gb", "1g.10gb"], ["2g.20gb"], ["2g.20gb", "3g.40gb"], False),
        (BALANCED_H100, {"1g.10gb": 3, "2g.20gb": 1, "3g.40gb": 1}, [], [], None, None),  # no room: placement check fails (asserted below)
        (BALANCED_H100, {"1g.10gb": 1, "2g.20gb": 1, "3g.40gb": 1}, ["1g.10gb"], [], ["2g.20gb", "1g.10gb", "3g.40gb"], False),
        # The kept 3g at 0 blocks the 4g (start 0 only): the GPU is rebuilt, 4g created first.
        ([("3g.40gb", 0, 4, 1)], {"4g.40gb": 1, "3g.40gb": 1}, ["3g.40gb"], ["4g.40gb", "3g.40gb"], [], True),
        ([("1g.10gb", 0, 1, 7)], {"4g.40gb": 1, "1g.10gb": 1}, ["1g.10gb"], ["4g.40gb", "1g.10gb"], [], True),
        # A kept 3g at 4 leaves room for the 4g.
        ([("3g.40gb", 4, 4, 2)], {"4g.40gb": 1, "3g.40gb": 1}, [], ["4g.40gb"], ["3g.40gb"], False),
        # Pinned: a 1g elsewhere than its pins is replaced by one on the free pin; unpinned profiles match anywhere.
        (
            [("3g.40gb", 0, 4, 1), ("1g.10gb", 4, 1, 11), ("1g.10gb", 6, 1, 13)],
            {"3g.40gb": 1, "1g.10gb": {"placements": [4, 5]}},
            ["1g.10gb"],
            ["1g.10gb"],
            ["3g.40gb", "1g.10gb"],
            False,
        ),
        # A pinned 3g at 4 cannot stay beside the 1g at 4: everything is rebuilt, the 1g first so that the 3g lands on 4.
        (
            [("3g.40gb", 0, 4, 1), ("1g.10gb", 4, 1, 11)],
            {"3g.40gb": {"placements": [4]}, "1g.10gb": 1},
            ["3g.40gb", "1g.10gb"],
            ["1g.10gb", "3g.40gb"],
            [],
            True,
        ),
        # MIG on without instances destroys everything.
        (BALANCED_H100, {}, ["2g.20gb", "1g.10gb", "1g.10gb", "3g.40gb"], [], [], False),
    ],
)
def test_plan_compares_by_profile_multiset_and_keeps_what_matches(current, wanted, destroy, create, keep, rebuild, model_gpus):
    gpus, driver = model_gpus("H100", instances={0: current})
    plan = plan_of(gpus, driver, layout("all", **wanted))
    if keep is None:
        assert any("needs 9 memory slices" in e for e in plan.errors), plan.errors
        return
    assert plan.errors == []
    result = plan.gpus[0].as_result()
    assert (result["destroy"], result["create"], result["keep"], result["rebuild"]) == (destroy, create, keep, rebuild)
    assert result["action"] == ("apply" if destroy or create else "none")
    assert plan.changed is bool(destroy or create)


def test_instances_split_into_compute_instances_or_without_one_are_not_matches():
    """The real ESXi A100 capture: four GIs, two with 1c compute instances of a larger GI."""
    lgip = parse_mig_gpu_instance_profiles(read_capture("a100-pcie-40gb-esxi-510-mig-lgip-free-0.txt"))
    lgipp = parse_mig_placements(read_capture(EIGHT_SLICES_LGIPP))
    cis = parse_mig_compute_instances(read_capture("a100-pcie-40gb-esxi-510-mig-lci-with-1c-profiles.txt"))
    # GI ids from the real '-cgi 9,19,14,19' capture of the same host (it has no -lgi); placements valid for -lgipp.
    gis = [
        {"gpu": 0, "profile": "3g.20gb", "profile_id": 9, "gi_id": 1, "placement_start": 4, "placement_size": 4},
        {"gpu": 0, "profile": "1g.5gb", "profile_id": 19, "gi_id": 11, "placement_start": 2, "placement_size": 1},
        {"gpu": 0, "profile": "2g.10gb", "profile_id": 14, "gi_id": 6, "placement_start": 0, "placement_size": 2},
        {"gpu": 0, "profile": "1g.5gb", "profile_id": 19, "gi_id": 12, "placement_start": 3, "placement_size": 1},
    ]
    fact = {"index": 0, "name": "NVIDIA A100-PCIE-40GB", "pci_device_id": "0x20F110DE", "mig_mode_current": "enabled", "mig_mode_pending": "enabled"}
    gpu = build_gpu(fact, gis, cis, lgip, lgipp)
    assert [(i.gi_id, i.compute, i.complete) for i in gpu.instances] == [
        (6, ("1c.2g.10gb",), False),
        (11, ("1g.5gb",), True),
        (12, ("1g.5gb",), True),
        (1, ("1c.3g.20gb",), False),
    ]
    plan = make_plan(select_config(parse_document(mig_parted("examples-config.yaml")), "all-balanced"), [gpu], "510.47.03")
    result = plan.gpus[0].as_result()
    assert plan.errors == []
    assert (sorted(result["keep"]), sorted(result["destroy"]), sorted(result["create"])) == (
        ["1g.5gb", "1g.5gb"],
        ["2g.10gb", "3g.20gb"],
        ["2g.10gb", "3g.20gb"],
    )
    assert [i.gi_id for i in plan.gpus[0].destroy] == [6, 1]
    # A GPU instance left without its compute instance (an interrupted -cgi without -C) is no match either.
    no_ci = replace(gpu, instances=[replace(i, compute=(), ci_ids=()) if i.gi_id == 11 else i for i in gpu.instances])
    again = make_plan([plan.gpus[0].entry], [no_ci], "510.47.03").gpus[0]
    assert [i.describe() for i in again.destroy] == [
        "2g.10gb at 0:2 (GPU instance 6 split into 1c.2g.10gb)",
        "1g.5gb at 2:1 (GPU instance 11 without a compute instance)",
        "3g.20gb at 4:4 (GPU instance 1 split into 1c.3g.20gb)",
    ]
    assert [i.gi_id for i in again.keep] == [12]


@pytest.mark.parametrize(
    ("current", "pending", "wanted", "set_mode", "reset"),
    [
        ("disabled", "disabled", True, True, False),
        ("disabled", "enabled", True, False, True),  # asked for earlier, waiting for a reset
        ("enabled", "disabled", True, True, False),  # a pending disable is cancelled
        ("enabled", "enabled", False, True, False),
        ("enabled", "disabled", False, False, True),
        ("disabled", "disabled", False, False, False),
    ],
)
def test_mig_mode_changes_and_pending_states(current, pending, wanted, set_mode, reset, model_gpus):
    gpus, driver = model_gpus("A100-80GB")
    gpus[0].mig_current, gpus[0].mig_pending = current, pending
    document = layout("all") if wanted else entry_doc(devices="all", **{"mig-enabled": False})
    plan = plan_of(gpus, driver, document, "test" if wanted else "c")
    p = plan.gpus[0]
    assert (p.set_mode, p.reset) == (set_mode, reset)
    assert p.as_result()["mig_mode"] == {"current": current, "pending": pending, "wanted": "enabled" if wanted else "disabled"}
    assert p.action == ("apply" if set_mode or reset else "none")


def test_processes_block_destroying_their_instance_and_mode_changes_unless_forced(model_gpus):
    procs = {
        0: [{"pid": 101, "name": "vllm", "gi_id": 3}],
        1: [{"pid": 202, "name": "python3", "gi_id": 2}],
        2: [{"pid": 303, "name": "python3", "gi_id": None}],
    }
    gpus, driver = model_gpus("H100", count=3, instances={0: BALANCED_H100, 1: BALANCED_H100, 2: []}, processes=procs)
    gpus[2].mig_current = gpus[2].mig_pending = "disabled"
    # Keep 2g+3g (GI 3 and 2), replace the 1g pair: the processes on GI 3 (GPU 0) and GI 2 (GPU 1) are on kept instances.
    document = {
        "version": "v1",
        "mig-configs": {
            "test": [
                {"devices": [0, 1], "mig-enabled": True, "mig-devices": {"2g.20gb": 2, "3g.40gb": 1}},
                {"devices": [2], "mig-enabled": True, "mig-devices": {"7g.80gb": 1}},
            ]
        },
    }
    plan = plan_of(gpus, driver, document)
    assert plan.errors == [
        "GPU 2 (NVIDIA H100 80GB HBM3): changing MIG mode to enabled resets the GPU, and processes run on it: pid 303 (python3); "
        "stop them (drain the node) or set force: true"
    ]
    # Replacing the 2g (GI 3) on GPU 0 is refused, naming the pid; forced, it is planned.
    document["mig-configs"]["test"][0]["mig-devices"] = {"1g.10gb": 2, "1g.20gb": 1, "3g.40gb": 1}
    plan = plan_of(gpus[:1], driver, document)
    assert plan.errors == [
        "GPU 0 (NVIDIA H100 80GB HBM3): the layout destroys 2g.20gb at 0:2 (GPU instance 3), where processes run: pid 101 (vllm); "
        "stop them (drain the node) or set force: true"
    ]
    forced = plan_of(gpus[:1], driver, document, force=True)
    assert forced.errors == [] and forced.gpus[0].as_result()["destroy"] == ["2g.20gb"]


def test_the_plan_keeps_instances_with_processes_when_another_choice_exists(model_gpus):
    # Two 1g.10gb, one wanted: keep the one whose GI runs a process.
    current = [("1g.10gb", 0, 1, 7), ("1g.10gb", 1, 1, 8)]
    gpus, driver = model_gpus("H100", instances={0: current}, processes={0: [{"pid": 9, "name": "vllm", "gi_id": 8}]})
    plan = plan_of(gpus, driver, layout("all", **{"1g.10gb": 1}))
    assert plan.errors == []
    assert [i.gi_id for i in plan.gpus[0].keep] == [8] and [i.gi_id for i in plan.gpus[0].destroy] == [7]


def test_one_gpu_of_eight_differs_costs_a_fraction_of_destroy_all_and_recreate(model_gpus):
    balanced = {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}
    gpus, driver = model_gpus("H100", count=8, instances=dict.fromkeys(range(8), BALANCED_H100))
    document = {
        "version": "v1",
        "mig-configs": {
            "test": [
                {"devices": [0, 1, 2, 4, 5, 6, 7], "mig-enabled": True, "mig-devices": balanced},
                {"devices": [3], "mig-enabled": True, "mig-devices": {"2g.20gb": 2, "3g.40gb": 1}},
            ]
        },
    }
    plan = plan_of(gpus, driver, document)
    assert plan.errors == []
    # This plan: per changed GPU one -dci and one -dgi when something goes, one -cgi when something comes.
    commands = sum(2 * bool(p.destroy) + bool(p.create) for p in plan.gpus)
    instance_ops = sum(len(p.destroy) + len(p.create) for p in plan.gpus)
    # Destroy all and recreate: -dci, -dgi and -cgi on every GPU, every instance out and back in.
    everything = [(p.gpu.instances, [w.profile for w in p.entry.mig_devices for _copy in range(w.count)]) for p in plan.gpus]
    destroy_all_commands = 3 * len(everything)
    # mig-parted: GPUs whose profile multiset differs lose all their instances and get the whole layout again.
    differing = [(have, want) for have, want in everything if sorted(i.profile for i in have) != sorted(want)]
    mig_parted_instance_ops = sum(len(have) + len(want) for have, want in differing)
    assert (commands, instance_ops) == (3, 3)
    assert (destroy_all_commands, mig_parted_instance_ops) == (24, 7)
    assert destroy_all_commands / commands == 8


# ============================================================================================
# 4. End to end through the simulator
# ============================================================================================

BALANCED = {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}


def eight_gpus_one_differs(gpu3: dict) -> dict:
    return {
        "version": "v1",
        "mig-configs": {
            "test": [
                {"devices": [0, 1, 2, 4, 5, 6, 7], "mig-enabled": True, "mig-devices": BALANCED},
                {"devices": [3], "mig-enabled": True, "mig-devices": gpu3},
            ]
        },
    }


def test_read_state_joins_the_listings_and_runs_each_command_once(host):
    h = host(model="H100-80GB", count=2, mig_enabled=[0], mig_layout={"0": ["3g.40gb", "1g.10gb"]})
    facts, gpus = read_state("nvidia-smi", h)
    assert [argv[1:] for argv in h.calls] == [["-q", "-x"], ["-L"], ["mig", "-lgi"], ["mig", "-lci"], ["mig", "-lgip"], ["mig", "-lgipp"]]
    assert facts["driver_version"] == "550.90.07"
    assert [(i.profile, i.start, i.size, i.complete) for i in gpus[0].instances] == [("3g.40gb", 0, 4, True), ("1g.10gb", 4, 1, True)]
    assert gpus[0].profiles["1g.10gb"].id == 19 and gpus[0].profiles["3g.40gb"].starts == (0, 4)
    assert (gpus[0].compute_slices, gpus[0].memory_slices) == (7, 8)
    assert gpus[1].mig_current == "disabled" and gpus[1].profiles_from == 0  # borrowed from its enabled twin


def test_check_mode_plans_and_changes_nothing(host):
    h = host(model="H100-80GB", count=8)
    result = h.apply(layout("all", **BALANCED), check_mode=True)
    assert result["changed"] is True and result["commands"] == []
    assert h.mutations() == []
    assert not h.state_path.exists() or all(g["gpu_instances"] == [] for g in json.loads(h.state_path.read_text())["gpus"])
    assert h.modes(0) == ["Disabled", "Disabled"]
    assert {p["action"] for p in result["plan"]} == {"apply"}


def test_apply_then_rerun_is_idempotent_and_one_changed_gpu_runs_only_its_commands(host):
    h = host(model="H100-80GB", count=8)
    first = h.apply(layout("all", **BALANCED))
    assert first["changed"] is True
    assert h.mutations() == [["-i", str(i), "-mig", "1"] for i in range(8)] + [["mig", "-i", str(i), "-cgi", "14,9,19,19", "-C"] for i in range(8)]
    assert all(h.instances(i) == [("2g.20gb", 0), ("1g.10gb", 2), ("1g.10gb", 3), ("3g.40gb", 4)] for i in range(8))
    assert "GPU 0 NVIDIA H100 80GB HBM3: MIG disabled\n" in first["diff"]["before"]
    assert "GPU 0 NVIDIA H100 80GB HBM3: MIG enabled\n  2g.20gb at 0:2\n  1g.10gb at 2:1\n  1g.10gb at 3:1\n  3g.40gb at 4:4\n" in first["diff"]["after"]

    again = h.apply(layout("all", **BALANCED))
    assert (again["changed"], again["commands"], h.mutations()) == (False, [], [])
    assert {p["action"] for p in again["plan"]} == {"none"}

    preview = h.apply(eight_gpus_one_differs({"2g.20gb": 2, "3g.40gb": 1}), check_mode=True)
    assert preview["changed"] is True and h.mutations() == []
    assert [p["index"] for p in preview["plan"] if p["action"] == "apply"] == [3]

    changed = h.apply(eight_gpus_one_differs({"2g.20gb": 2, "3g.40gb": 1}))
    assert h.mutations() == [["mig", "-i", "3", "-dci", "-gi", "9,10"], ["mig", "-i", "3", "-dgi", "-gi", "9,10"], ["mig", "-i", "3", "-cgi", "14", "-C"]]
    assert changed["commands"] == ["nvidia-smi mig -i 3 -dci -gi 9,10", "nvidia-smi mig -i 3 -dgi -gi 9,10", "nvidia-smi mig -i 3 -cgi 14 -C"]
    assert h.instances(3) == [("2g.20gb", 0), ("2g.20gb", 2), ("3g.40gb", 4)]
    assert all(h.instances(i) == [("2g.20gb", 0), ("1g.10gb", 2), ("1g.10gb", 3), ("3g.40gb", 4)] for i in (0, 1, 2, 4, 5, 6, 7))
    assert h.apply(eight_gpus_one_differs({"2g.20gb": 2, "3g.40gb": 1}))["changed"] is False


def test_real_mig_parted_examples_on_a_simulated_a100_40gb_host(host):
    h = host(model="A100-SXM4-40GB", count=8)
    document = mig_parted("examples-config.yaml")
    h.apply(document, "custom-config")
    assert [h.modes(i)[0] for i in range(8)] == ["Disabled"] * 4 + ["Enabled"] * 4
    assert [p for p, _start in h.instances(4)] == ["1g.5gb"] * 7
    assert sorted(p for p, _start in h.instances(7)) == ["1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"]
    assert h.apply(document, "custom-config")["changed"] is False
    # From custom-config to all-balanced: GPU 7 already holds it and is left alone.
    result = h.apply(document, "all-balanced")
    assert not any(argv[:3] == ["mig", "-i", "7"] for argv in h.mutations())
    assert [p["index"] for p in result["plan"] if p["action"] == "apply"] == [0, 1, 2, 3, 4, 5, 6]
    h.apply(document, "all-disabled")
    assert [h.modes(i) for i in range(8)] == [["Disabled", "Disabled"]] * 8
    assert [argv for argv in h.mutations() if "-mig" in argv] == [["-i", str(i), "-mig", "0"] for i in range(8)]


def test_profiles_are_checked_after_enabling_mig_when_no_gpu_could_list_them(host):
    h = host(model="H100-80GB", count=2)
    plan = h.apply(SEED_GUIDE_7X_1G5GB, check_mode=True)
    assert [p["profiles_checked"] for p in plan["plan"]] == [False, False]
    with pytest.raises(ApplyError) as caught:
        h.apply(SEED_GUIDE_7X_1G5GB)
    message = str(caught.value)
    assert "With MIG mode now on, the layout turned out not to fit" in message
    assert "GPU 0 (NVIDIA H100 80GB HBM3), config 'test' entry 1: profile '1g.5gb' is not offered" in message
    assert "Commands run: -i 0 -mig 1; -i 1 -mig 1." in message
    assert h.mutations() == [["-i", "0", "-mig", "1"], ["-i", "1", "-mig", "1"]]
    assert caught.value.result["changed"] is True
    # Now the profiles are listed: the same layout fails before any change.
    with pytest.raises(LayoutError, match=re.escape("profile '1g.5gb' is not offered")):
        h.apply(SEED_GUIDE_7X_1G5GB)
    assert h.mutations() == []


def test_a_gpu_with_mig_on_lets_check_mode_validate_its_twins(host):
    h = host(model="H100-80GB", count=4, mig_enabled=[0])
    with pytest.raises(LayoutError) as caught:
        h.apply(SEED_GUIDE_7X_1G5GB, check_mode=True)
    assert [e.split(",")[0] for e in caught.value.errors] == [f"GPU {i} (NVIDIA H100 80GB HBM3)" for i in range(4)]
    assert h.mutations() == []


def test_processes_refuse_the_change_naming_pids_and_force_reaches_the_driver(host):
    h = host(model="H100-80GB", count=8, mig_enabled=list(range(8)), mig_layout={str(i): ["2g.20gb", "3g.40gb", "1g.10gb", "1g.10gb"] for i in range(8)})
    h.config["processes"] = [{"gpu": 3, "pid": 4242, "name": "vllm", "gi": 9}]
    h.config_path.write_text(json.dumps(h.config))
    with pytest.raises(LayoutError) as caught:
        h.apply(eight_gpus_one_differs({"2g.20gb": 2, "3g.40gb": 1}))
    assert caught.value.errors == [
        "GPU 3 (NVIDIA H100 80GB HBM3): the layout destroys 1g.10gb at 2:1 (GPU instance 9), where processes run: pid 4242 (vllm); "
        "stop them (drain the node) or set force: true"
    ]
    assert h.mutations() == []
    with pytest.raises(ApplyError) as forced:
        h.apply(eight_gpus_one_differs({"2g.20gb": 2, "3g.40gb": 1}), force=True)
    message = str(forced.value)
    assert message.startswith("GPU 3 (NVIDIA H100 80GB HBM3): 'nvidia-smi mig -i 3 -dci -gi 9,10' failed with exit code 255:")
    assert "In use by another client" in message
    assert forced.value.result["changed"] is True


def test_pending_mode_needs_reset_ok_and_a_reset_completes_it(host):
    h = host(model="A100-SXM4-80GB", count=2)
    # Leave GPU 1 with MIG enable pending, as a held GPU does.
    h.ok("-i", "1", "-pm", "1")
    h.ok("-i", "1", "-mig", "1")
    h.ok("-i", "1", "-pm", "0")
    assert h.modes(1) == ["Disabled", "Enabled"]
    document = layout("all", **{"3g.40gb": 2})
    plan = h.apply(document, check_mode=True)
    assert [(p["reset"], p["mig_mode"]["pending"]) for p in plan["plan"]] == [(False, "disabled"), (True, "enabled")]
    with pytest.raises(ApplyError) as caught:
        h.apply(document)
    assert "GPU 1 (NVIDIA A100-SXM4-80GB)" in str(caught.value)
    assert "set reset_ok: true (role variable gpu_node_mig_reset_ok)" in str(caught.value)
    assert caught.value.result["reboot_required"] is True
    assert h.instances(0) == [("3g.40gb", 0), ("3g.40gb", 4)] and h.instances(1) == []  # the other GPU was configured
    h.apply(document, reset_ok=True)
    assert h.mutations() == [["-r", "-i", "1"], ["mig", "-i", "1", "-cgi", "9,9", "-C"]]
    assert h.modes(1) == ["Enabled", "Enabled"] and h.instances(1) == [("3g.40gb", 0), ("3g.40gb", 4)]


def test_a_held_gpu_refuses_the_reset_and_the_error_says_what_to_stop(host):
    h = host(model="H100-80GB", count=1, persistence_mode=True)
    with pytest.raises(ApplyError) as caught:
        h.apply(layout("all", **{"7g.80gb": 1}), reset_ok=True)
    message = str(caught.value)
    assert h.mutations() == [["-i", "0", "-mig", "1"], ["-r", "-i", "0"]]
    assert "the GPU reset that makes the MIG mode change effective was refused" in message
    assert "nvidia-persistenced" in message and "In use by another client" in message
    assert caught.value.result["reboot_required"] is True


def test_where_no_reset_is_possible_a_reboot_is_reported_not_forced(host):
    h = host(model="A100-SXM4-40GB", count=2, mig_capable_reset=False)
    result = h.apply(layout("all", **{"3g.20gb": 2}))
    assert result["reboot_required"] is True and result["changed"] is True
    assert h.mutations() == [["-i", "0", "-mig", "1"], ["-i", "1", "-mig", "1"]]
    assert any("waits for a reboot" in w and "Not Supported" in w for w in result["warnings"])
    assert h.sim("sim", "reboot").returncode == 0
    after = h.apply(layout("all", **{"3g.20gb": 2}))
    assert after["reboot_required"] is False
    assert h.mutations() == [["mig", "-i", "0", "-cgi", "9,9", "-C"], ["mig", "-i", "1", "-cgi", "9,9", "-C"]]


def test_disabling_mig_destroys_the_instances_first(host):
    h = host(model="H100-80GB", count=2, mig_enabled=[0, 1], mig_layout={"0": ["7g.80gb"]})
    result = h.apply(entry_doc(devices=[0], **{"mig-enabled": False}), "c")
    assert h.mutations() == [["mig", "-i", "0", "-dci", "-gi", "0"], ["mig", "-i", "0", "-dgi", "-gi", "0"], ["-i", "0", "-mig", "0"]]
    assert h.modes(0) == ["Disabled", "Disabled"] and h.modes(1) == ["Enabled", "Enabled"]
    assert [p["managed"] for p in result["plan"]] == [True, False]


class Driver:
    """A simulated host where one command (``-cgi`` by default) behaves like another driver; calls are recorded once."""

    def __init__(self, sim: SimHost, replacement, option: str = "-cgi") -> None:
        self.sim = sim
        self.replacement = replacement
        self.option = option

    def __call__(self, argv):
        if self.option not in argv:
            return self.sim(argv)
        self.sim.calls.append(list(argv))
        return self.replacement(self.sim, argv)


def cgi(sim: SimHost, argv, ids):
    """Run ``-cgi`` with other ids on the simulator, unrecorded."""
    done = sim.sim(*argv[1 : argv.index("-cgi")], "-cgi", ",".join(ids), "-C")
    return done.returncode, done.stdout, done.stderr


def reversed_creation(sim: SimHost, argv):
    """A driver that places the listed profiles in the opposite order (so elsewhere than predicted)."""
    return cgi(sim, argv, list(reversed(argv[argv.index("-cgi") + 1].split(","))))


def test_when_the_driver_places_differently_the_module_clears_its_own_instances_and_tries_another_order(host):
    h = host(model="H100-80GB", count=1, mig_enabled=[0])
    result = apply_layout("nvidia-smi", Driver(h, reversed_creation), layout("all", **{"4g.40gb": 1, "3g.40gb": 1}), "test")
    assert h.mutations() == [
        ["mig", "-i", "0", "-cgi", "5,9", "-C"],  # reversed: 3g lands at 0, the 4g no longer fits
        ["mig", "-i", "0", "-dci", "-gi", "1"],
        ["mig", "-i", "0", "-dgi", "-gi", "1"],
        ["mig", "-i", "0", "-cgi", "9,5", "-C"],
    ]
    assert h.instances(0) == [("4g.40gb", 0), ("3g.40gb", 4)]
    assert any("trying the creation order 9,5" in w for w in result["warnings"])


def test_a_driver_that_creates_less_than_it_says_gets_the_rest_in_another_call(host):
    h = host(model="H100-80GB", count=1, mig_enabled=[0])

    def drops_the_last(sim, argv):
        ids = argv[argv.index("-cgi") + 1].split(",")
        return cgi(sim, argv, ids if len(ids) == 1 else ids[:-1])

    result = apply_layout("nvidia-smi", Driver(h, drops_the_last), layout("all", **BALANCED), "test")
    assert h.mutations() == [["mig", "-i", "0", "-cgi", "14,9,19,19", "-C"], ["mig", "-i", "0", "-cgi", "19", "-C"]]
    assert sorted(p for p, _start in h.instances(0)) == ["1g.10gb", "1g.10gb", "2g.20gb", "3g.40gb"]
    assert any("placed them elsewhere; creating the other 1" in w for w in result["warnings"])


def test_success_without_instances_is_caught_by_reading_back(host):
    h = host(model="H100-80GB", count=1, mig_enabled=[0])

    def says_yes(sim, argv):
        return 0, "Successfully created GPU instance ID  1 on GPU  0 using profile MIG 3g.40gb (ID  9)\n", ""

    with pytest.raises(ApplyError) as caught:
        apply_layout("nvidia-smi", Driver(h, says_yes), layout("all", **{"3g.40gb": 2}), "test")
    message = str(caught.value)
    assert "GPU 0 (NVIDIA H100 80GB HBM3): not every GPU instance was created: 'nvidia-smi mig -i 0 -cgi 9,9 -C' reported success" in message
    assert "not created: 2x 3g.40gb" in message and "Creation orders tried: 1." in message
    assert h.mutations() == [["mig", "-i", "0", "-cgi", "9,9", "-C"]]


def test_the_result_is_verified_against_the_plan_after_applying(host):
    """A destroy that reports success but leaves the GPU instance is caught by reading the GPUs back."""
    h = host(model="H100-80GB", count=2, mig_enabled=[0, 1], mig_layout={"0": ["3g.40gb", "3g.40gb"], "1": ["3g.40gb", "3g.40gb"]})

    def keeps_it(sim, argv):
        return 0, "Successfully destroyed GPU instance ID  2 from GPU  1\n", ""

    with pytest.raises(ApplyError) as caught:
        apply_layout("nvidia-smi", Driver(h, keeps_it, "-dgi"), layout([1], **{"3g.40gb": 1}), "test")
    assert str(caught.value).startswith(
        "The GPUs do not hold the layout after applying it: GPU 1 (NVIDIA H100 80GB HBM3): missing nothing; "
        "not in the layout: 3g.40gb at 4:4 (GPU instance 2 without a compute instance); kept instances that disappeared: none."
    )
    assert caught.value.result["changed"] is True
    assert h.mutations() == [["mig", "-i", "1", "-dci", "-gi", "2"], ["mig", "-i", "1", "-dgi", "-gi", "2"]]


def test_insufficient_resources_names_the_gpu_the_command_and_what_exists(host):
    h = host(model="GH200-96GB", count=2, mig_enabled=[0, 1])

    def refuses(sim, argv):
        text = "Unable to create a GPU instance on GPU  1 using profile 15: Insufficient Resources\nFailed to create GPU instances: Insufficient Resources\n"
        return 255, text, ""

    with pytest.raises(ApplyError) as caught:
        apply_layout("nvidia-smi", Driver(h, refuses), entry_doc(devices=[1], **{"mig-enabled": True, "mig-devices": {"1g.24gb": 3}}), "c")
    message = str(caught.value)
    assert message.startswith(
        "GPU 1 (NVIDIA GH200 480GB): not every GPU instance was created: 'nvidia-smi mig -i 1 -cgi 15,15,15 -C' failed with exit code 255: "
        "Unable to create a GPU instance on GPU 1 using profile 15: Insufficient Resources"
    )
    assert "not created: 3x 1g.24gb" in message


def test_check_mode_never_runs_a_mutating_command_in_any_scenario(host):
    h = host(model="H100-80GB", count=4, mig_enabled=[0, 1], mig_layout={"0": ["7g.80gb"], "1": ["3g.40gb"]})
    for document, name in ((layout("all", **BALANCED), "test"), (entry_doc(devices="all", **{"mig-enabled": False}), "c")):
        result = h.apply(document, name, check_mode=True, reset_ok=True, force=True)
        assert result["changed"] is True
        assert h.mutations() == []
    assert h.instances(0) == [("7g.80gb", 0)]


def test_a30_layouts_use_its_own_profile_ids(host):
    h = host(model="A30", count=1, driver_version="470.57.02")
    h.apply(layout("all", **{"2g.12gb": 1, "1g.6gb": 2}))
    assert h.instances(0) == [("2g.12gb", 0), ("1g.6gb", 2), ("1g.6gb", 3)]
    assert h.mutations()[-1] == ["mig", "-i", "0", "-cgi", "5,14,14", "-C"]


def test_check_layout_is_usable_on_its_own(model_gpus):
    (gpu,), driver = model_gpus("A30")
    entry = Entry("x", 1, None, (), True, (Want("1g.6gb+me", 1), Want("4g.24gb", 1)))
    assert check_layout(gpu, entry, driver) == [
        "GPU 0 (NVIDIA A30), config 'x' entry 1: the layout (1x 1g.6gb+me, 1x 4g.24gb) needs 5 compute slices; this GPU has 4",
        "GPU 0 (NVIDIA A30), config 'x' entry 1: the layout (1x 1g.6gb+me, 1x 4g.24gb) needs 5 memory slices; this GPU has 4",
    ]
