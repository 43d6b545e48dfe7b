"""execution-environment.yml: `ansible-builder create` builds its context offline, with every dependency in it.

ansible-builder (a development requirement) validates the definition against its v3 schema and writes the
build context; the tests then read that context: Containerfile, requirements, bindep, the collection tarball
and helm. The collection's own meta/execution-environment.yml is read with ansible-builder's introspection code,
as it runs inside any EE that installs this collection.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
EE_FILE = REPO_ROOT / "execution-environment.yml"
GALAXY = yaml.safe_load((REPO_ROOT / "galaxy.yml").read_text(encoding="utf-8"))
TARBALL = f"{GALAXY['namespace']}-{GALAXY['name']}-{GALAXY['version']}.tar.gz"
BUNDLED = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / "ansible_collections"


def _ansible_builder() -> list[str]:
    try:
        import ansible_builder  # noqa: F401, PLC0415 - only to say what is missing
    except ImportError:
        pytest.fail("ansible-builder is not installed: pip install ansible-builder==3.2.0 (requirements/dev.txt)")
    return [sys.executable, "-m", "ansible_builder"]


def _pins(path: Path) -> dict[str, str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return {name.lower(): version for name, _sep, version in (line.partition("==") for line in lines if "==" in line)}


def _stage(tmp_path: Path, definition: dict) -> Path:
    """A copy of the EE inputs under tmp_path, laid out as in the repository: the definition, meta/ee, a real
    collection tarball built from this checkout, and a stand-in helm binary (create only copies it)."""
    (tmp_path / "meta").mkdir()
    shutil.copytree(REPO_ROOT / "meta" / "ee", tmp_path / "meta" / "ee")
    (tmp_path / "execution-environment.yml").write_text(yaml.safe_dump(definition, sort_keys=False), encoding="utf-8")
    dist = tmp_path / ".build" / "dist"
    build = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-galaxy"), "collection", "build", "--output-path", str(dist), str(REPO_ROOT)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    helm = tmp_path / ".build" / "ee" / "helm"
    helm.parent.mkdir(parents=True)
    helm.write_text("#!/bin/sh\necho v3.19.0\n", encoding="utf-8")
    return tmp_path / "execution-environment.yml"


def _create(definition_file: Path, context: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_ansible_builder(), "create", "-f", str(definition_file), "-c", str(context), "--output-filename", "Containerfile"],
        capture_output=True,
        text=True,
        check=False,
        cwd=definition_file.parent,
    )


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ee")
    definition = yaml.safe_load(EE_FILE.read_text(encoding="utf-8"))
    result = _create(_stage(root, definition), root / "context")
    assert result.returncode == 0, result.stdout + result.stderr
    return root / "context"


def test_definition_is_version_3_with_a_pinned_fully_qualified_base_image():
    definition = yaml.safe_load(EE_FILE.read_text(encoding="utf-8"))
    assert definition["version"] == 3
    image = definition["images"]["base_image"]["name"]
    registry, _sep, rest = image.partition("/")
    assert "." in registry and ":" in rest and not rest.endswith(":latest"), image


def test_create_writes_a_containerfile_with_ansible_runner_and_the_collections(context):
    containerfile = (context / "Containerfile").read_text(encoding="utf-8")
    assert 'ARG EE_BASE_IMAGE="quay.io/centos/centos:stream10"' in containerfile
    dev = _pins(REPO_ROOT / "requirements" / "dev.txt")
    assert f"ansible-core=={dev['ansible-core']}" in containerfile
    assert "ansible-runner==" in containerfile
    assert "ansible-galaxy collection install" in containerfile and "-r requirements.yml" in containerfile
    assert "introspect" in containerfile and "--user-pip=requirements.txt" in containerfile and "--user-bindep=bindep.txt" in containerfile
    assert "COPY _build/helm/helm /usr/local/bin/helm" in containerfile
    assert containerfile.index("COPY _build/helm/helm") > containerfile.index("FROM base AS final")


def test_context_has_the_python_and_system_requirements(context):
    python = _pins(context / "_build" / "requirements.txt")
    assert {"kubernetes", "jmespath"} <= set(python)
    system = (context / "_build" / "bindep.txt").read_text(encoding="utf-8")
    for package in ("rsync", "openssh-clients [platform:rpm]", "openssh-client [platform:dpkg]"):
        assert package in system


def test_context_has_this_collection_and_its_dependencies(context):
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text(encoding="utf-8"))["collections"]
    names = {entry["name"] for entry in requirements}
    assert set(GALAXY["dependencies"]) | {"awx.awx", f"collections/{TARBALL}"} == names
    tarball = context / "_build" / "collections" / TARBALL
    with tarfile.open(tarball) as archive:
        manifest = json.load(archive.extractfile("MANIFEST.json"))["collection_info"]
        members = set(archive.getnames())
    assert (manifest["namespace"], manifest["name"], manifest["version"]) == (GALAXY["namespace"], GALAXY["name"], GALAXY["version"])
    assert {"meta/execution-environment.yml", "meta/ee/requirements.txt", "meta/ee/bindep.txt", "playbooks/site.yml"} <= members
    assert (context / "_build" / "helm" / "helm").is_file()


def test_collection_versions_are_the_ones_the_tests_run_with():
    requirements = yaml.safe_load((REPO_ROOT / "meta" / "ee" / "requirements.yml").read_text(encoding="utf-8"))["collections"]
    pinned = {entry["name"]: entry.get("version") for entry in requirements if entry.get("type") != "file"}
    for name in GALAXY["dependencies"]:
        manifest = json.loads((BUNDLED / name.replace(".", "/") / "MANIFEST.json").read_text(encoding="utf-8"))
        assert pinned[name] == manifest["collection_info"]["version"], name
    awx = REPO_ROOT / ".build" / "collections" / "ansible_collections" / "awx" / "awx" / "MANIFEST.json"
    if awx.is_file():  # the awx.awx the AWX template tests validate against
        assert pinned["awx.awx"] == json.loads(awx.read_text(encoding="utf-8"))["collection_info"]["version"]
    files = [entry["name"] for entry in requirements if entry.get("type") == "file"]
    assert files == [f"collections/{TARBALL}"]
    definition = yaml.safe_load(EE_FILE.read_text(encoding="utf-8"))
    assert {"src": f".build/dist/{TARBALL}", "dest": "collections"} in definition["additional_build_files"]


def test_python_pins_match_the_development_requirements():
    dev = _pins(REPO_ROOT / "requirements" / "dev.txt")
    ee = _pins(REPO_ROOT / "meta" / "ee" / "requirements.txt")
    definition = yaml.safe_load(EE_FILE.read_text(encoding="utf-8"))
    assert ee == {name: dev[name] for name in ee}
    assert definition["dependencies"]["ansible_core"]["package_pip"] == f"ansible-core=={dev['ansible-core']}"


def test_collection_metadata_gives_its_requirements_to_any_ee(monkeypatch):
    _ansible_builder()
    from ansible_builder._target_scripts import introspect  # noqa: PLC0415 - needs ansible-builder

    monkeypatch.chdir(REPO_ROOT)
    pip_lines, bindep_lines = introspect.process_collection(str(REPO_ROOT))
    assert {line.split("==")[0].split(">=")[0].strip() for line in pip_lines} >= {"kubernetes", "jmespath"}
    assert any(line.startswith("rsync") for line in bindep_lines)
    assert any(line.startswith("openssh-client") for line in bindep_lines)


def test_create_rejects_a_definition_outside_the_v3_schema(tmp_path):
    definition = yaml.safe_load(EE_FILE.read_text(encoding="utf-8"))
    definition["dependencies"]["pythn"] = definition["dependencies"].pop("python")
    result = _create(_stage(tmp_path, definition), tmp_path / "context")
    assert result.returncode != 0
    assert "pythn" in result.stdout + result.stderr
