"""Renderers: one module per output format behind one interface, picked by the OutputFormat enum."""

from __future__ import annotations

import enum
from typing import Callable, TextIO

from gpu_runbook.findings import Finding, Status


class OutputFormat(str, enum.Enum):
    TEXT = "text"
    JSON = "json"
    NPD = "npd"
    PROMETHEUS = "prometheus"
    HTML = "html"


Renderer = Callable[[list[Finding], TextIO, dict[str, object]], None]


def renderer_for(fmt: OutputFormat) -> Renderer:
    """The render function of a format; every enum member has a branch (tests assert it)."""
    if fmt is OutputFormat.TEXT:
        from gpu_runbook.render.text import render
    elif fmt is OutputFormat.JSON:
        from gpu_runbook.render.json import render
    elif fmt is OutputFormat.NPD:
        from gpu_runbook.render.npd import render
    elif fmt is OutputFormat.PROMETHEUS:
        from gpu_runbook.render.prometheus import render
    elif fmt is OutputFormat.HTML:
        from gpu_runbook.render.html import render
    else:  # pragma: no cover - unreachable while the branches above are exhaustive
        raise ValueError(fmt)
    return render


# Exit codes follow node-problem-detector's custom plugin convention.
EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_UNKNOWN = 2


def exit_code(findings: list[Finding]) -> int:
    """0 when nothing is wrong (warnings included), 1 when a check failed, 2 when one could not judge."""
    statuses = {f.status for f in findings}
    if Status.FAIL in statuses:
        return EXIT_PROBLEM
    if Status.UNKNOWN in statuses:
        return EXIT_UNKNOWN
    return EXIT_OK
