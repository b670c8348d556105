"""node-problem-detector custom-plugin output: one short line; the exit code carries the verdict."""

from __future__ import annotations

from typing import TextIO

from gpu_runbook.findings import Finding, Status

# NPD keeps only the first max_output_length bytes (80 by default) of a plugin's output.
MAX_MESSAGE = 80


def render(findings: list[Finding], out: TextIO, meta: dict[str, object]) -> None:
    problems = sorted((f for f in findings if f.status in (Status.FAIL, Status.UNKNOWN)),
                      key=lambda f: -f.status.rank)
    if problems:
        first = problems[0]
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        message = f"{first.message}{more}"
    else:
        message = f"gpu-runbook: {len(findings)} checks ok"
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    out.write(message + "\n")
