"""HTML renderer: one self-contained page to attach to a ticket (inline CSS, no script, nothing fetched).

`render` writes the whole page: the verdict, the problems (summary, fix, evidence, the page to read), the
checks that could not judge, the container stack coloured by the findings, the checks that passed and,
folded, those that did not apply; then host, source, times and tool version. `fragment` is the same body
without the page around it, for the notebooks.
"""

from __future__ import annotations

import html
import json
from typing import TextIO

from gpu_runbook.diagrams import STATUS_COLOURS, findings_stack_svg
from gpu_runbook.findings import Finding, Status
from gpu_runbook.render import EXIT_PROBLEM, EXIT_UNKNOWN, exit_code
from gpu_runbook.render.text import EXIT_MEANING

# Scoped to .gpu-report so the fragment can sit inside a notebook or a site page without restyling it.
CSS = """
.gpu-report{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:60rem;margin:0 auto;
 color:inherit}
.gpu-report code,.gpu-report pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}
.gpu-report .verdict{font-size:1.25em;font-weight:700;padding:.6em .8em;border-radius:6px;border-left:6px solid}
.gpu-report .finding{border:1px solid rgba(127,127,127,.35);border-left:6px solid;border-radius:6px;
 padding:.5em .9em;margin:.8em 0;break-inside:avoid}
.gpu-report .badge{display:inline-block;min-width:5.5em;font-weight:700}
.gpu-report .finding h3{margin:.2em 0;font-size:1.05em}
.gpu-report pre{white-space:pre-wrap;word-break:break-word;max-height:16em;overflow:auto;
 background:rgba(127,127,127,.1);padding:.5em;border-radius:4px;margin:.3em 0}
.gpu-report table{border-collapse:collapse;width:100%}
.gpu-report td,.gpu-report th{text-align:left;vertical-align:top;padding:.25em .5em;
 border-bottom:1px solid rgba(127,127,127,.25)}
.gpu-report table.meta{width:auto;margin:.8em 0;font-size:.9em}
.gpu-report table.meta th{padding-right:1.5em;white-space:nowrap}
.gpu-report table.meta td,.gpu-report table.meta th{border:0;padding:.1em .5em .1em 0;word-break:break-word}
.gpu-report td details summary{cursor:pointer;font-size:.85em;opacity:.8}
.gpu-report details>summary{cursor:pointer;font-weight:600;margin:.6em 0}
@media print{
 .gpu-report{font-size:11pt;max-width:none}
 .gpu-report pre{max-height:none;overflow:visible}
 .gpu-report a[href^="http"]::after{content:" <" attr(href) ">";font-size:.85em;word-break:break-all}
 .gpu-report details>summary::after{content:" (folded; open it before printing to include it)"}
 .gpu-report svg{max-width:100%!important}
}
"""
PAGE_CSS = ("body{margin:1.5em;background:#fff;color:#1a1a1a}"
            "@media (prefers-color-scheme: dark){body{background:#16181d;color:#e6e6e6}"
            ".gpu-report a{color:#8ab4f8}}"
            "@media print{body{margin:0;background:#fff;color:#000}}")
SECTION_TITLES = {Status.FAIL: "Failed", Status.WARN: "Warnings", Status.UNKNOWN: "Could not judge"}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def verdict(findings: list[Finding]) -> tuple[str, str]:
    """The verdict sentence and its status colour."""
    code = exit_code(findings)
    fails = [f for f in findings if f.status is Status.FAIL]
    unknowns = [f for f in findings if f.status is Status.UNKNOWN]
    warns = [f for f in findings if f.status is Status.WARN]
    if code == EXIT_PROBLEM:
        first = fails[0]
        more = f" and {len(fails) - 1} more" if len(fails) > 1 else ""
        text, status = f"\u2717 Broken: {first.check}{more}. {first.summary}", "fail"
    elif code == EXIT_UNKNOWN:
        text, status = f"? No failure found, but {len(unknowns)} check(s) could not judge", "unknown"
    elif warns:
        text, status = f"! Working, with {len(warns)} warning(s)", "warn"
    elif findings:
        text, status = "\u2713 Healthy: no check failed", "ok"
    else:
        text, status = "No check ran", "skip"
    return f"{text} ({EXIT_MEANING[code]})", status


def _finding(f: Finding) -> str:
    colour = STATUS_COLOURS[f.status.value]
    evidence = json.dumps(f.evidence, indent=1, sort_keys=True, default=str)
    title = f.title or f.page
    return (f'<article class="finding" data-check="{_e(f.check)}" data-status="{f.status.value}" '
            f'style="border-left-color:{colour}">'
            f'<h3><span class="badge" style="color:{colour}">{f.status.value.upper()}</span> '
            f"<code>{_e(f.check)}</code></h3><p>{_e(f.summary)}</p>"
            + (f"<p><b>Fix:</b> {_e(f.fix)}</p>" if f.fix else "")
            + f"<p><b>Evidence:</b></p><pre>{_e(evidence)}</pre>"
            f'<p><b>Read:</b> <a href="{_e(f.url)}">{_e(title)}</a></p></article>\n')


def _unknown(f: Finding) -> str:
    evidence = json.dumps(f.evidence, indent=1, sort_keys=True, default=str)
    return (f'<tr data-check="{_e(f.check)}" data-status="unknown"><td><code>{_e(f.check)}</code></td>'
            f"<td>{_e(f.summary)}<details><summary>evidence</summary><pre>{_e(evidence)}</pre></details></td>"
            f'<td><a href="{_e(f.url)}">{_e(f.title or f.page)}</a></td></tr>')


def _table(findings: list[Finding]) -> str:
    rows = "".join(f'<tr data-check="{_e(f.check)}"><td><code>{_e(f.check)}</code></td><td>{_e(f.summary)}</td>'
                   f'<td><a href="{_e(f.url)}">{_e(f.page)}</a></td></tr>' for f in findings)
    return f"<table><thead><tr><th>Check</th><th>Summary</th><th>Page</th></tr></thead><tbody>{rows}</tbody></table>\n"


def _meta_line(meta: dict[str, object]) -> str:
    facts = [("Host", meta.get("host")), ("Source", meta.get("source")), ("Collected", meta.get("collected_at")),
             ("Report written", meta.get("generated_at")),
             ("Tool", f"gpu-runbook {meta['version']}" if meta.get("version") else "")]
    items = "".join(f'<tr><th scope="row">{name}</th><td>{_e(value)}</td></tr>' for name, value in facts if value)
    return f'<table class="meta"><tbody>{items}</tbody></table>\n' if items else ""


def fragment(findings: list[Finding], meta: dict[str, object]) -> str:
    """The report's body, scoped under .gpu-report (the notebooks display this).

    Order: verdict, where and when, failures, warnings, the container stack picture, the checks that
    could not judge (one row each, evidence folded), then folded lists of what passed and what did
    not apply.
    """
    text, status = verdict(findings)
    colour = STATUS_COLOURS[status]
    out = [f"<style>{CSS}</style>\n" if meta.get("style", True) else "",
           # data-search-exclude: on the site (a notebook's output) the site's search skips this example run.
           '<div class="gpu-report" data-search-exclude>\n',
           f'<p class="verdict" data-status="{status}" style="border-left-color:{colour}">{_e(text)}</p>\n',
           _meta_line(meta)]
    for status_group in (Status.FAIL, Status.WARN):
        group = [f for f in findings if f.status is status_group]
        if group:
            out.append(f'<section class="{status_group.value}"><h2>{SECTION_TITLES[status_group]} '
                       f"({len(group)})</h2>\n" + "".join(_finding(f) for f in group) + "</section>\n")
    picture = findings_stack_svg(findings, caption="The container stack on this host, bottom up")
    if picture:
        out.append(f'<section class="stack"><h2>Container stack</h2>{picture}</section>\n')
    unknowns = [f for f in findings if f.status is Status.UNKNOWN]
    if unknowns:
        out.append(f'<section class="unknown"><h2>{SECTION_TITLES[Status.UNKNOWN]} ({len(unknowns)})</h2>'
                   "<table><thead><tr><th>Check</th><th>Why not</th><th>Page</th></tr></thead><tbody>"
                   + "".join(_unknown(f) for f in unknowns) + "</tbody></table></section>\n")
    passed = [f for f in findings if f.status is Status.OK]
    if passed:
        out.append(f'<details class="ok"><summary>Passed ({len(passed)})</summary>{_table(passed)}</details>\n')
    skipped = [f for f in findings if f.status is Status.SKIP]
    if skipped:
        out.append(f'<details class="skip"><summary>Did not apply ({len(skipped)})</summary>{_table(skipped)}'
                   "</details>\n")
    out.append("</div>\n")
    return "".join(out)


def render(findings: list[Finding], out: TextIO, meta: dict[str, object]) -> None:
    text, _ = verdict(findings)
    host = f" \u2014 {meta['host']}" if meta.get("host") else ""
    out.write('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
              '<meta name="viewport" content="width=device-width, initial-scale=1">'
              f"<title>gpu-runbook report{_e(host)}: {_e(text)}</title>"
              f"<style>{PAGE_CSS}</style></head>\n<body>\n"
              f"<h1>gpu-runbook report{_e(host)}</h1>\n")
    out.write(fragment(findings, meta))
    out.write("</body></html>\n")
