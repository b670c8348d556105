"""Text renderer: one line per finding for a human at 3 a.m., problems first, with the page to read."""

from __future__ import annotations

from typing import TextIO

from gpu_runbook.findings import Finding, Status

_COLOURS = {Status.OK: "32", Status.SKIP: "2", Status.WARN: "33", Status.UNKNOWN: "35", Status.FAIL: "31;1"}


def _label(status: Status, colour: bool) -> str:
    text = f"{status.value.upper():<7}"
    return f"\033[{_COLOURS[status]}m{text}\033[0m" if colour else text


def render(findings: list[Finding], out: TextIO, meta: dict[str, object]) -> None:
    colour = bool(meta.get("colour"))
    width = max((len(f.check) for f in findings), default=10)
    ordered = sorted(findings, key=lambda f: -f.status.rank)
    for finding in ordered:
        out.write(f"{_label(finding.status, colour)} {finding.check:<{width}}  {finding.summary}\n")
        if finding.status in (Status.FAIL, Status.WARN, Status.UNKNOWN):
            pad = " " * (8 + width + 2)
            if finding.fix:
                out.write(f"{pad}fix: {finding.fix}\n")
            out.write(f"{pad}read: {finding.url}\n")
    counts = {s: sum(1 for f in findings if f.status is s) for s in Status}
    summary = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
    source = meta.get("source")
    out.write(f"\n{len(findings)} checks: {summary or 'none run'}" + (f"  (source: {source})" if source else "") + "\n")
