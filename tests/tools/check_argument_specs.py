"""Every role input is declared once: defaults/main.yml keys and meta/argument_specs.yml options must match.

Usage: check_argument_specs.py ROLES_DIR. Prints each mismatch and exits 1 when there is one
(prometheus.prometheus keeps the same check as lint_arguments_spec.sh). Also checks the defaults
match the argument spec's declared defaults, that every input carries the role's prefix, and that the
role's README.md names every input.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml


def check_role(role: Path) -> list[str]:
    spec_file = role / "meta" / "argument_specs.yml"
    defaults_file = role / "defaults" / "main.yml"
    if not spec_file.exists():
        return [f"{role.name}: meta/argument_specs.yml is missing"]
    options = yaml.safe_load(spec_file.read_text())["argument_specs"]["main"].get("options", {})
    defaults = yaml.safe_load(defaults_file.read_text()) or {} if defaults_file.exists() else {}
    problems = [f"{role.name}: {name} is in defaults/main.yml but not in argument_specs" for name in sorted(set(defaults) - set(options))]
    for name, option in sorted(options.items()):
        if not name.startswith(f"{role.name}_"):
            problems.append(f"{role.name}: {name} lacks the role prefix {role.name}_")
        if name not in defaults and not option.get("required"):
            problems.append(f"{role.name}: {name} is optional but has no value in defaults/main.yml")
        if "default" in option and name in defaults and option["default"] != defaults[name]:
            problems.append(f"{role.name}: {name} defaults to {defaults[name]!r} in defaults/main.yml but {option['default']!r} in argument_specs")
    readme = role / "README.md"
    documented = readme.read_text() if readme.exists() else ""
    problems.extend(f"{role.name}: {name} is in argument_specs but README.md never names it (`{name}`)" for name in options if f"`{name}`" not in documented)
    return problems


def main() -> int:
    roles = sorted(path for path in Path(sys.argv[1]).iterdir() if (path / "tasks").is_dir())
    problems = [problem for role in roles for problem in check_role(role)]
    print("\n".join(problems) or f"argument_specs match defaults and READMEs in {len(roles)} roles")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
