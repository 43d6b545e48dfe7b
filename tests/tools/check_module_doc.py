"""Check one module's documentation as ansible-doc --json prints it (read from stdin) is complete.

Usage: ansible-doc --json NAME | check_module_doc.py NAME. Complete means: short_description,
version_added, description, author, attributes, examples that call the module by its FQCN, and a
RETURN section whose every key has description, returned (top level) and type.
"""

from __future__ import annotations

import json
import sys

import yaml


def return_problems(values: dict, path: str = "", top: bool = True) -> list[str]:
    problems = []
    for key, value in values.items():
        where = f"{path}{key}"
        for field in ("description", "type") + (("returned",) if top else ()):
            if field not in value:
                problems.append(f"RETURN {where} has no {field}")
        problems += return_problems(value.get("contains", {}), f"{where}.", top=False)
    return problems


def main() -> int:
    name = sys.argv[1]
    entry = json.load(sys.stdin).get(name)
    if entry is None:
        print(f"{name}: ansible-doc does not know this module (is the collection installed?)")
        return 1
    doc, examples, returns = entry["doc"], entry.get("examples") or "", entry.get("return") or {}
    required = ("short_description", "version_added", "description", "author", "attributes")
    problems = [f"DOCUMENTATION has no {field}" for field in required if not doc.get(field)]
    tasks = yaml.safe_load(examples) or []
    if not any(name in task for task in tasks):
        problems.append(f"EXAMPLES never call {name} by its FQCN")
    problems += [] if returns else ["RETURN is empty"]
    problems += return_problems(returns)
    for problem in problems:
        print(f"{name}: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
