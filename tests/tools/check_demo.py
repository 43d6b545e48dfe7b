"""Check what `make demo` printed: called by `make demo-check` with the output of two runs.

Usage: check_demo.py FIRST_RUN_LOG SECOND_RUN_LOG. The first run must end with the summary of what
playbooks/site.yml built on the sandbox (both GPU nodes, the model published on the store, every
manifest rendered for the GPU Operator and vLLM) and the pointers to the results; the second run
must change nothing. Prints what it checked; exits 1 naming each miss.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

EXPECTED_SUMMARY = [
    "# Sandbox after playbooks/site.yml",
    "| sandbox-1 | 550.90.07 | 12.4 | 8 | NVIDIA H100 80GB HBM3 | 8/8 | Completed | disabled | 0 |",
    "| sandbox-2 | 570.124.06 | 12.8 | 4 | NVIDIA L40S | 4/4 | n/a | not capable | 0 |",
    "| qwen2-5-7b-instruct | demo-1 |",
    "| gpu-operator/values.yaml | values |",
    "| llm/models/qwen2-5-7b-instruct.yaml | Service, Deployment, PodDisruptionBudget, NetworkPolicy, ServiceMonitor, ScaledObject, HTTPRoute |",
    "| llm/models/qwen-on-l40s.yaml | Service, Deployment, NetworkPolicy, ServiceMonitor, HTTPRoute |",
    "| llm/monitoring.yaml | PrometheusRule, ConfigMap |",
    "| llm/namespace.yaml | Namespace |",
]
LAST_LINE = "Run it again to see changed=0; remove the sandbox with: make sandbox-down"
RECAP = re.compile(r"^(sandbox-\d+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


def main(first: str, second: str) -> int:
    first_out, second_out = Path(first).read_text(), Path(second).read_text()
    lines = [line.rstrip() for line in first_out.splitlines()]
    problems = [f"the summary lacks the line {want!r}" for want in EXPECTED_SUMMARY if want not in lines]
    if not lines or lines[-1] != LAST_LINE:
        problems.append(f"the output does not end with {LAST_LINE!r} (it ends with {lines[-1:]!r})")
    recaps = RECAP.findall(second_out)
    if {recap[0] for recap in recaps} != {"sandbox-1", "sandbox-2"}:
        problems.append(f"the second run's recap does not list both sandbox hosts: {recaps}")
    problems += [
        f"the second run changed {changed}, unreachable {unreachable}, failed {failed} on {host}"
        for host, changed, unreachable, failed in recaps
        if (changed, unreachable, failed) != ("0", "0", "0")
    ]
    if problems:
        print("\n".join(problems))
        return 1
    print(f"make demo: summary complete ({len(EXPECTED_SUMMARY)} lines checked), second run changed=0 on {len(recaps)} recap lines")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
