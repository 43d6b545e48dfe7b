"""The AWX definitions in awx/ against the real awx.awx modules and AWX's survey rules, offline.

Each definition is validated with the argument spec of the awx.awx module that applies it (taken from
the module itself, imported from the collection, and checked with ansible-core's ArgumentSpecValidator:
unknown options, wrong types and bad choices fail as the module would fail). The awx.awx collection
is not in the pinned `ansible` 14.x bundle: it is extracted from the ansible 12.3.0 wheel into
.build/collections (see awx/README.md); AWX_COLLECTION_PATH overrides where it is looked for.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

REPO_ROOT = Path(__file__).resolve().parents[2]
AWX_DIR = REPO_ROOT / "awx"
PLAYBOOKS = REPO_ROOT / "playbooks"
AWX_COLLECTION = Path(os.environ.get("AWX_COLLECTION_PATH", REPO_ROOT / ".build" / "collections" / "ansible_collections" / "awx" / "awx"))

# The playbooks issue 8 asks a job template for (awx_configure.yml configures AWX itself and has none).
EXPECTED_PLAYBOOKS = {
    "site",
    "preflight",
    "gpu_node",
    "gpu_operator",
    "model_sync",
    "model_backup",
    "model_restore",
    "vllm",
    "node_maintenance",
    "gpu_report",
}
NOT_A_JOB_TEMPLATE = {"awx_configure"}
# AWX's own survey rules (awx/api/views JobTemplateSurveySpec): question types and the Python type of their default.
SURVEY_TYPES: dict[str, tuple[type, ...]] = {
    "text": (str,),
    "textarea": (str,),
    "password": (str,),
    "multiplechoice": (str,),
    "multiselect": (str,),
    "integer": (int,),
    "float": (float, int),
}
SURVEY_QUESTION_KEYS = {"question_name", "question_description", "variable", "type", "required", "default", "choices", "min", "max", "new_question"}
DISRUPTIVE_SWITCHES = {"gpu_node_mig_reset_ok", "gpu_node_reboot_ok", "gpu_node_mig_force"}
# What playbooks/awx_configure.yml adds to every job template (site settings).
SITE_FIELDS = {"organization": "Default", "project": "llmops.gpu_inference", "inventory": "llmops GPU inference", "credentials": []}


class _AnsibleYamlLoader(yaml.SafeLoader):
    """Safe loader that accepts Ansible's !unsafe tag (the value is kept as a plain string)."""


_AnsibleYamlLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_AnsibleYamlLoader)


# ---------------------------------------------------------------------------------------------
# awx.awx argument specs, from the modules themselves
# ---------------------------------------------------------------------------------------------


class _SpecCaptured(Exception):
    def __init__(self, argument_spec: dict[str, Any]) -> None:
        super().__init__("argument_spec captured")
        self.argument_spec = argument_spec


class _CaptureModule:
    """Stands in for ControllerAPIModule: main() builds its argument_spec and hands it over here."""

    def __init__(self, argument_spec: dict[str, Any], **_kwargs: Any) -> None:
        raise _SpecCaptured(argument_spec)


_SPECS: dict[str, dict[str, Any]] = {}


def awx_argument_spec(module_name: str) -> dict[str, Any]:
    """The full argument spec of awx.awx.<module_name>: its own options plus the controller connection options."""
    if module_name not in _SPECS:
        if not (AWX_COLLECTION / "plugins" / "modules" / f"{module_name}.py").is_file():
            pytest.fail(
                f"awx.awx not found at {AWX_COLLECTION}: extract it from the ansible 12.3.0 wheel "
                "(pip download ansible==12.3.0 --no-deps -d .build/wheels && "
                "unzip -q -o .build/wheels/ansible-12.3.0-py3-none-any.whl 'ansible_collections/awx/awx/*' -d .build/collections) "
                "or set AWX_COLLECTION_PATH"
            )
        module = importlib.import_module(f"ansible_collections.awx.awx.plugins.modules.{module_name}")
        controller_api = importlib.import_module("ansible_collections.awx.awx.plugins.module_utils.controller_api")
        original = module.ControllerAPIModule
        module.ControllerAPIModule = _CaptureModule
        try:
            module.main()
        except _SpecCaptured as captured:
            _SPECS[module_name] = {**controller_api.ControllerModule.AUTH_ARGSPEC, **captured.argument_spec}
        finally:
            module.ControllerAPIModule = original
        if module_name not in _SPECS:
            pytest.fail(f"awx.awx.{module_name}: main() did not build a ControllerAPIModule")
    return _SPECS[module_name]


def module_errors(module_name: str, params: dict[str, Any]) -> list[str]:
    """The errors awx.awx.<module_name> would fail with for these options (unknown options, types, choices, required)."""
    result = ArgumentSpecValidator(awx_argument_spec(module_name)).validate(dict(params))
    return [f"awx.awx.{module_name} {params.get('name', '?')}: {message}" for message in result.error_messages]


# ---------------------------------------------------------------------------------------------
# What a playbook reads
# ---------------------------------------------------------------------------------------------


def _strings(data: Any) -> list[str]:
    """Every key and string value of a loaded YAML document (comments are gone)."""
    if isinstance(data, dict):
        return [s for key, value in data.items() for s in (*_strings(key), *_strings(value))]
    if isinstance(data, list):
        return [s for item in data for s in _strings(item)]
    return [data] if isinstance(data, str) else []


def _role_names(data: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            if key == "roles" and isinstance(value, list):
                names |= {(entry.get("role") or entry.get("name")) if isinstance(entry, dict) else entry for entry in value}
            elif key in {"ansible.builtin.import_role", "ansible.builtin.include_role", "import_role", "include_role"} and isinstance(value, dict):
                names.add(value["name"])
            else:
                names |= _role_names(value)
    elif isinstance(data, list):
        for item in data:
            names |= _role_names(item)
    return names


def playbook_reads(playbook: Path, seen: set[Path] | None = None) -> tuple[list[str], set[str]]:
    """The strings of the playbook and of what it imports, and the options of the roles it runs (argument_specs)."""
    seen = set() if seen is None else seen
    if playbook in seen:
        return [], set()
    seen.add(playbook)
    data = load_yaml(playbook)
    texts = _strings(data)
    options: set[str] = set()
    for play in data or []:
        target = play.get("ansible.builtin.import_playbook") or play.get("import_playbook")
        if target:
            more_texts, more_options = playbook_reads((playbook.parent / target).resolve(), seen)
            texts += more_texts
            options |= more_options
    for task_file in re.findall(r"[\w./-]+\.yml", "\n".join(texts)):
        candidate = (playbook.parent / task_file).resolve()
        if candidate.is_file() and candidate != playbook and candidate.parent.name == "tasks":
            texts += _strings(load_yaml(candidate))
    for role in _role_names(data):
        role_dir = REPO_ROOT / "roles" / role.split(".")[-1]
        specs = load_yaml(role_dir / "meta" / "argument_specs.yml")["argument_specs"]
        options |= {name for entry in specs.values() for name in (entry.get("options") or {})}
    return texts, options


def variable_is_read(playbook: Path, variable: str) -> bool:
    texts, options = playbook_reads(playbook)
    return variable in options or any(re.search(rf"(?<![\w.]){re.escape(variable)}\b", text) for text in texts)


# ---------------------------------------------------------------------------------------------
# Validators (used on the real definitions below, and on broken ones to show they catch problems)
# ---------------------------------------------------------------------------------------------


def survey_errors(survey: Any) -> list[str]:
    """AWX's checks of a survey_spec (POST .../survey_spec/ and launch-time validation of the defaults)."""
    if not isinstance(survey, dict):
        return [f"survey_spec is a {type(survey).__name__}, not a mapping"]
    errors = [
        f"survey_spec.{field} must be a {kind.__name__}"
        for field, kind in (("name", str), ("description", str), ("spec", list))
        if not isinstance(survey.get(field), kind)
    ]
    if errors:
        return errors
    if not survey["spec"]:
        return ["survey_spec.spec has no question"]
    seen: set[str] = set()
    for index, question in enumerate(survey["spec"]):
        where = f"survey question {index} ({question.get('variable', '?') if isinstance(question, dict) else '?'})"
        if not isinstance(question, dict):
            errors.append(f"{where} is not a mapping")
            continue
        errors += [f"{where}: unknown key {key}" for key in sorted(set(question) - SURVEY_QUESTION_KEYS)]
        for field in ("type", "question_name", "variable"):
            if not isinstance(question.get(field), str) or not question[field]:
                errors.append(f"{where}: {field} must be a non-empty string")
        if not isinstance(question.get("required"), bool):
            errors.append(f"{where}: required must be true or false")
        if errors:
            continue
        qtype, variable = question["type"], question["variable"]
        if variable in seen:
            errors.append(f"{where}: variable {variable} is asked twice")
        seen.add(variable)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variable):
            errors.append(f"{where}: {variable} is not a valid variable name")
        if qtype not in SURVEY_TYPES:
            errors.append(f"{where}: type {qtype} is not one of {', '.join(SURVEY_TYPES)}")
            continue
        for key in ("min", "max"):
            if question.get(key) is not None and (not isinstance(question[key], int) or isinstance(question[key], bool)):
                errors.append(f"{where}: {key} must be an integer")
        default = question.get("default")
        if default not in (None, "") and (not isinstance(default, SURVEY_TYPES[qtype]) or isinstance(default, bool)):
            errors.append(f"{where}: default {default!r} is not a {qtype} value")
        if qtype in {"multiplechoice", "multiselect"}:
            choices = question.get("choices")
            choices = choices.splitlines() if isinstance(choices, str) else choices
            if not isinstance(choices, list) or not choices or not all(isinstance(c, str) and c for c in choices):
                errors.append(f"{where}: {qtype} needs choices, a list of strings")
                continue
            defaults = default.splitlines() if isinstance(default, str) else []
            if qtype == "multiplechoice" and len(defaults) > 1:
                errors.append(f"{where}: multiplechoice takes one default")
            errors += [f"{where}: default {value!r} is not one of the choices {choices}" for value in defaults if value not in choices]
        elif default not in (None, ""):
            low, high = question.get("min"), question.get("max")
            size = len(default) if qtype in {"text", "textarea", "password"} else default
            if (low is not None and size < low) or (high is not None and size > high):
                errors.append(f"{where}: default {default!r} is outside min {low} / max {high}")
        if question["required"] is False and qtype in {"text", "textarea"} and default in (None, "") and question.get("min") in (None, 0):
            errors.append(f"{where}: an optional text question without min 1 lets AWX pass an empty string; set min: 1")
    return errors


def job_template_errors(template: dict[str, Any], defaults: dict[str, Any]) -> list[str]:
    """Everything wrong with one job template entry, as playbooks/awx_configure.yml would send it."""
    params = {**defaults, **template, **SITE_FIELDS}
    errors = module_errors("job_template", params)
    name = params.get("name", "?")
    playbook = params.get("playbook")
    if not isinstance(playbook, str) or not (REPO_ROOT / playbook).is_file():
        return [*errors, f"{name}: playbook {playbook} does not exist in this repository"]
    if params.get("survey_enabled") and not params.get("survey_spec"):
        errors.append(f"{name}: survey_enabled without a survey_spec")
    if params.get("survey_spec"):
        if not params.get("survey_enabled"):
            errors.append(f"{name}: a survey_spec that is not enabled")
        survey_problems = survey_errors(params["survey_spec"])
        errors += [f"{name}: {problem}" for problem in survey_problems]
        if not survey_problems:
            errors += [
                f"{name}: survey variable {question['variable']} is never read by {playbook}"
                for question in params["survey_spec"]["spec"]
                if not variable_is_read(REPO_ROOT / playbook, question["variable"])
            ]
    return errors


# ---------------------------------------------------------------------------------------------
# The real definitions
# ---------------------------------------------------------------------------------------------

JOB_TEMPLATES = load_yaml(AWX_DIR / "job_templates.yml")
DEFAULTS = JOB_TEMPLATES["awx_job_template_defaults"]
TEMPLATES = JOB_TEMPLATES["awx_job_templates"]
BY_STEM = {Path(template["playbook"]).stem: template for template in TEMPLATES}
CONFIGURE = load_yaml(PLAYBOOKS / "awx_configure.yml")


def _configure_task(module: str) -> dict[str, Any]:
    tasks = [task for task in CONFIGURE[0]["tasks"] if module in task]
    assert len(tasks) == 1, f"awx_configure.yml has {len(tasks)} {module} tasks"
    return tasks[0]


def test_one_job_template_per_playbook():
    stems = [Path(template["playbook"]).stem for template in TEMPLATES]
    on_disk = {path.stem for path in PLAYBOOKS.glob("*.yml")} - NOT_A_JOB_TEMPLATE
    assert sorted(stems) == sorted(set(stems)), "two templates run the same playbook"
    assert set(stems) == EXPECTED_PLAYBOOKS | on_disk
    assert len({template["name"] for template in TEMPLATES}) == len(TEMPLATES), "template names must be unique"


@pytest.mark.parametrize("stem", sorted(EXPECTED_PLAYBOOKS))
def test_job_template_is_valid_for_awx_job_template_module(stem):
    assert job_template_errors(BY_STEM[stem], DEFAULTS) == []


def test_defaults_are_valid_job_template_options():
    assert module_errors("job_template", {**DEFAULTS, "name": "defaults"}) == []


def test_node_maintenance_asks_for_the_limit_and_the_node():
    template = {**DEFAULTS, **BY_STEM["node_maintenance"]}
    assert template["ask_limit_on_launch"] is True
    node = next(q for q in template["survey_spec"]["spec"] if q["variable"] == "node")
    assert node["required"] is True and node["type"] == "text"


@pytest.mark.parametrize(
    ("stem", "variable"),
    [
        ("node_maintenance", "gpu_node_mig_config"),
        ("gpu_node", "gpu_node_mig_config"),
        ("model_sync", "model_sync_only"),
        ("model_backup", "model_sync_backup_models"),
        ("model_restore", "model_sync_restore_model"),
    ],
)
def test_surveys_ask_what_the_issue_asks_for(stem, variable):
    assert variable in [q["variable"] for q in BY_STEM[stem].get("survey_spec", {}).get("spec", [])]


def test_disruptive_switches_are_explicit_and_off_by_default():
    asked = [(t["name"], q) for t in TEMPLATES for q in t.get("survey_spec", {}).get("spec", []) if q["variable"] in DISRUPTIVE_SWITCHES]
    assert {q["variable"] for _name, q in asked} == DISRUPTIVE_SWITCHES
    for name, question in asked:
        assert (question["type"], question["choices"], question["default"], question["required"]) == ("multiplechoice", ["false", "true"], "false", True), name
    assert {"gpu_node_mig_reset_ok", "gpu_node_reboot_ok"} <= {q["variable"] for q in BY_STEM["gpu_node"]["survey_spec"]["spec"]}


def test_no_template_turns_on_become_for_the_whole_run():
    # The plays set become; AWX's --become would also hit controller-side tasks (gpu_report writes its files there).
    assert all(not {**DEFAULTS, **t}.get("become_enabled") for t in TEMPLATES)


def test_read_only_playbooks_do_not_run_in_diff_mode():
    assert {**DEFAULTS, **BY_STEM["preflight"]}["diff_mode"] is False
    assert {**DEFAULTS, **BY_STEM["gpu_report"]}["diff_mode"] is False


def test_configure_passes_on_exactly_the_declared_job_template_options():
    task = _configure_task("awx.awx.job_template")
    args = {key: value for key, value in task["awx.awx.job_template"].items() if key != "state"}
    declared = CONFIGURE[0]["vars"]["__awx_job_template_keys"]
    assert sorted(args) == sorted(declared)
    assert {key: value for key, value in args.items() if value != f"{{{{ __awx_jt.{key} | default(omit) }}}}"} == {}
    used = set(DEFAULTS) | {key for template in TEMPLATES for key in template} | set(SITE_FIELDS) | {"execution_environment"}
    assert used - set(args) == set(), "a key of awx/job_templates.yml that awx_configure.yml would drop"
    assert set(args) - set(awx_argument_spec("job_template")) == set()


@pytest.mark.parametrize("module", ["credential_type", "project", "inventory", "inventory_source", "execution_environment"])
def test_configure_task_options_exist_in_the_module(module):
    task = _configure_task(f"awx.awx.{module}")
    assert set(task[f"awx.awx.{module}"]) - set(awx_argument_spec(module)) == set()


def test_credential_types_are_valid():
    credential_types = load_yaml(AWX_DIR / "credential_types.yml")["awx_credential_types"]
    assert {ct["name"] for ct in credential_types} == {"llmops kubeconfig", "llmops model store SSH key"}
    env = jinja2.Environment(autoescape=False)
    for credential_type in credential_types:
        assert module_errors("credential_type", credential_type) == []
        fields = credential_type["inputs"]["fields"]
        ids = {field["id"] for field in fields}
        assert all({"id", "type", "label"} <= set(field) and field["type"] in {"string", "boolean"} for field in fields)
        assert set(credential_type["inputs"].get("required", [])) <= ids
        injectors = credential_type["injectors"]
        assert set(injectors) <= {"file", "env", "extra_vars"}
        files = {key.split(".", 1)[1] for key in injectors.get("file", {}) if key.startswith("template.")}
        assert len(files) == len(injectors.get("file", {})), "file injector keys are template.<name>"
        for template in [*injectors.get("file", {}).values(), *injectors.get("env", {}).values(), *injectors.get("extra_vars", {}).values()]:
            parsed = env.parse(template)
            assert jinja2.meta.find_undeclared_variables(parsed) <= ids | {"tower"}, template
            assert set(re.findall(r"tower\.filename\.(\w+)", template)) <= files, template
        for variable in injectors.get("extra_vars", {}):
            assert variable_is_read(PLAYBOOKS / "model_sync.yml", variable), variable
    by_name = {ct["name"]: ct for ct in credential_types}
    assert by_name["llmops kubeconfig"]["injectors"]["env"] == {"K8S_AUTH_KUBECONFIG": "{{ tower.filename.kubeconfig }}"}


def test_project_and_inventory_are_valid():
    project = load_yaml(AWX_DIR / "project.yml")["awx_project"]
    assert module_errors("project", {**project, "organization": "Default", "scm_url": "https://git.example.invalid/x.git"}) == []
    assert project["allow_override"] is False
    inventories = load_yaml(AWX_DIR / "inventories.yml")
    assert module_errors("inventory", {**inventories["awx_inventory"], "organization": "Default"}) == []
    assert inventories["awx_inventory_sources"] == []
    examples = inventories["awx_inventory_source_examples"]
    assert examples
    for source in examples:
        assert module_errors("inventory_source", {**source, "inventory": "llmops GPU inference"}) == []


# ---------------------------------------------------------------------------------------------
# The validators catch what they are for
# ---------------------------------------------------------------------------------------------

GOOD = {"name": "t", "playbook": "playbooks/gpu_node.yml"}
GOOD_SURVEY = {"name": "s", "description": "", "spec": [{"question_name": "q", "variable": "gpu_node_mig_config", "type": "text", "required": False, "min": 1}]}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ({**GOOD, "playbook": "playbooks/no_such.yml"}, "does not exist"),
        ({**GOOD, "forkz": 5}, "forkz"),
        ({**GOOD, "forks": "many"}, "forks"),
        ({**GOOD, "verbosity": 9}, "verbosity"),
        ({**GOOD, "ask_limit_on_launch": "perhaps"}, "ask_limit_on_launch"),
        (
            {**GOOD, "survey_enabled": True, "survey_spec": {**GOOD_SURVEY, "spec": [{**GOOD_SURVEY["spec"][0], "variable": "never_read_anywhere"}]}},
            "never read",
        ),
        ({**GOOD, "survey_enabled": True}, "without a survey_spec"),
        ({**GOOD, "survey_spec": GOOD_SURVEY}, "not enabled"),
    ],
)
def test_job_template_errors_catch(template, expected):
    errors = job_template_errors(template, {})
    assert any(expected in error for error in errors), errors


def test_job_template_errors_pass_a_good_template():
    assert job_template_errors({**GOOD, "survey_enabled": True, "survey_spec": GOOD_SURVEY}, {}) == []


BOOL_QUESTION = {
    "question_name": "q",
    "variable": "gpu_node_reboot_ok",
    "type": "multiplechoice",
    "choices": ["false", "true"],
    "required": True,
    "default": "false",
}


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ({**BOOL_QUESTION, "type": "boolean"}, "not one of"),
        ({**BOOL_QUESTION, "default": False}, "is not a multiplechoice value"),
        ({**BOOL_QUESTION, "default": "maybe"}, "not one of the choices"),
        ({**BOOL_QUESTION, "choices": []}, "needs choices"),
        ({**BOOL_QUESTION, "required": "yes"}, "required must be"),
        ({**BOOL_QUESTION, "variable": "bad-name"}, "not a valid variable name"),
        ({**BOOL_QUESTION, "label": "x"}, "unknown key label"),
        ({"question_name": "q", "variable": "x", "type": "integer", "required": True, "default": "85"}, "not a integer value"),
        ({"question_name": "q", "variable": "x", "type": "integer", "required": True, "default": 200, "max": 120}, "outside"),
        ({"question_name": "q", "variable": "x", "type": "text", "required": False}, "set min: 1"),
    ],
)
def test_survey_errors_catch(question, expected):
    errors = survey_errors({"name": "s", "description": "", "spec": [question]})
    assert any(expected in error for error in errors), errors


def test_survey_errors_catch_a_duplicate_variable_and_a_bad_shape():
    assert any("asked twice" in e for e in survey_errors({"name": "s", "description": "", "spec": [BOOL_QUESTION, BOOL_QUESTION]}))
    assert survey_errors({"name": "s", "spec": []}) == ["survey_spec.description must be a str"]
    assert survey_errors({"name": "s", "description": "", "spec": []}) == ["survey_spec.spec has no question"]
