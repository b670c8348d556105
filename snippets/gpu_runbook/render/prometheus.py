"""Prometheus textfile-collector renderer: one gauge per check and status."""

from __future__ import annotations

from typing import TextIO

from gpu_runbook.findings import Finding, Status


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(findings: list[Finding], out: TextIO, meta: dict[str, object]) -> None:
    out.write("# HELP gpu_runbook_check_status 1 for the status each gpu-runbook check reported, else 0.\n")
    out.write("# TYPE gpu_runbook_check_status gauge\n")
    for finding in findings:
        for status in Status:
            value = 1 if finding.status is status else 0
            out.write(f'gpu_runbook_check_status{{check="{_label(finding.check)}",status="{status.value}",'
                      f'page="{_label(finding.page)}"}} {value}\n')
    out.write("# HELP gpu_runbook_problems Number of checks that failed or could not judge.\n")
    out.write("# TYPE gpu_runbook_problems gauge\n")
    problems = sum(1 for f in findings if f.status in (Status.FAIL, Status.UNKNOWN))
    out.write(f"gpu_runbook_problems {problems}\n")
