"""Text renderer for a human at 3 a.m.: a header, the problems first, one line for the rest, the verdict last.

Layout (each part is its own function, so a part can grow without moving the others):

    header     what was judged: tool version, host, source, when (one line each; more may be added)
    problems   FAIL, then WARN, each with its fix and the page to read; then UNKNOWN, one line each
               (the first few; `--verbose` lists all, with their pages)
    rest       one line for the checks that passed and one for those that did not apply
               (`--verbose` lists each of them instead)
    verdict    the last line: the outcome and what the exit code means
"""

from __future__ import annotations

from typing import TextIO

from gpu_runbook.findings import Finding, Status
from gpu_runbook.render import EXIT_OK, EXIT_PROBLEM, EXIT_UNKNOWN, exit_code

_COLOURS = {Status.OK: "32", Status.SKIP: "2", Status.WARN: "33", Status.UNKNOWN: "35", Status.FAIL: "31;1"}
PROBLEMS = (Status.FAIL, Status.WARN, Status.UNKNOWN)  # the order they are shown in
UNKNOWN_SHOWN = 5
LABEL_WIDTH = 8
# What each exit code means, for the verdict line (the README's table says the same).
EXIT_MEANING = {
    EXIT_OK: "exit 0: nothing is broken",
    EXIT_PROBLEM: "exit 1: a check failed",
    EXIT_UNKNOWN: "exit 2: a check could not judge",
}


def _paint(text: str, status: Status, colour: bool) -> str:
    return f"\033[{_COLOURS[status]}m{text}\033[0m" if colour else text


def _label(status: Status, colour: bool) -> str:
    return _paint(f"{status.value.upper():<{LABEL_WIDTH - 1}}", status, colour)


def header_lines(meta: dict[str, object]) -> list[str]:
    """What was judged, where and when; one line per fact group."""
    parts = [f"gpu-runbook {meta['version']}" if meta.get("version") else "gpu-runbook"]
    for key, label in (("host", "host"), ("source", "source"), ("collected_at", "collected")):
        if meta.get(key):
            parts.append(f"{label} {meta[key]}")
    engines = [f"engine {line}" for line in str(meta.get("engines") or "").splitlines() if line]
    return [", ".join(parts), *engines]  # plain ASCII: a terminal at 3 a.m. may not be UTF-8


def problem_lines(findings: list[Finding], colour: bool, width: int, verbose: bool = False) -> list[str]:
    """Failures and warnings with their fix and page, then the checks that could not judge.

    An unknown keeps to one line (its page is listed with --verbose), and past UNKNOWN_SHOWN of them
    one more line counts the rest: they are often the echo of one missing fact (NVML failed, so
    nothing NVML reports is known), and the failure that matters must stay on the first screen.
    """
    lines = []
    pad = " " * (LABEL_WIDTH + width + 2)
    for status in (Status.FAIL, Status.WARN):
        for finding in (f for f in findings if f.status is status):
            lines.append(f"{_label(status, colour)} {finding.check:<{width}}  {finding.summary}")
            if finding.fix:
                lines.append(f"{pad}fix: {finding.fix}")
            lines.append(f"{pad}read: {finding.url}")
    unknowns = [f for f in findings if f.status is Status.UNKNOWN]
    shown = unknowns if verbose else unknowns[:UNKNOWN_SHOWN]
    for finding in shown:
        lines.append(f"{_label(Status.UNKNOWN, colour)} {finding.check:<{width}}  {finding.summary}")
        if verbose:
            lines.append(f"{pad}read: {finding.url}")
    if len(unknowns) > len(shown):
        rest = unknowns[len(shown):]
        lines.append(f"{_label(Status.UNKNOWN, colour)} {len(rest)} more could not judge: "
                     f"{', '.join(f.check for f in rest)} (--verbose lists them)")
    return lines


def rest_lines(findings: list[Finding], colour: bool, width: int, verbose: bool) -> list[str]:
    """The checks that passed and those that did not apply: one line each, or all of them with --verbose."""
    lines = []
    for status, what in ((Status.OK, "passed"), (Status.SKIP, "did not apply")):
        group = [f for f in findings if f.status is status]
        if not group:
            continue
        if verbose:
            lines += [f"{_label(status, colour)} {f.check:<{width}}  {f.summary}" for f in group]
        else:
            lines.append(f"{_label(status, colour)} {len(group)} {'check' if len(group) == 1 else 'checks'} "
                         f"{what} (--verbose lists them)")
    return lines


def verdict_line(findings: list[Finding], colour: bool) -> str:
    """The last line: how many problems, and what the exit code says."""
    counts = {s: sum(1 for f in findings if f.status is s) for s in Status}
    code = exit_code(findings)
    if not findings:
        return f"verdict: no check ran ({EXIT_MEANING[code]})"
    if code == EXIT_PROBLEM:
        status, head = Status.FAIL, f"{counts[Status.FAIL]} failed"
    elif code == EXIT_UNKNOWN:
        status, head = Status.UNKNOWN, f"{counts[Status.UNKNOWN]} could not judge"
    else:
        status, head = (Status.WARN, "no failure, with warnings") if counts[Status.WARN] else (Status.OK, "healthy")
    tally = ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
    return _paint(f"verdict: {head} ({len(findings)} checks: {tally}); {EXIT_MEANING[code]}", status, colour)


def render(findings: list[Finding], out: TextIO, meta: dict[str, object]) -> None:
    colour = bool(meta.get("colour"))
    verbose = bool(meta.get("verbose"))
    shown = [f for f in findings if f.status in PROBLEMS or verbose]
    width = max((len(f.check) for f in shown), default=10)  # the ids line up; the one-line groups do not count
    lines = [*header_lines(meta), *problem_lines(findings, colour, width, verbose),
             *rest_lines(findings, colour, width, verbose), verdict_line(findings, colour)]
    out.write("\n".join(lines) + "\n")
