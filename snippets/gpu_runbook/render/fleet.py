"""Renderers of the fleet report (`gpu-runbook report`): text, JSON, Markdown and HTML, one function each.

Every format lists, per finding (check and status), how many nodes had it and which, worst nodes first;
then the worst nodes; then the files that could not be judged. Text and Markdown name the first
NODES_SHOWN nodes of a finding and count the rest; JSON and HTML carry every node.
"""

from __future__ import annotations

import enum
import html
import json
from typing import TYPE_CHECKING, Callable, TextIO

if TYPE_CHECKING:
    from gpu_runbook.fleet import FleetReport

NODES_SHOWN = 10
WORST_SHOWN = 20


class ReportFormat(str, enum.Enum):
    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"
    HTML = "html"


def _nodes(names: list[str]) -> str:
    shown = ", ".join(names[:NODES_SHOWN])
    return shown + (f" (+{len(names) - NODES_SHOWN} more)" if len(names) > NODES_SHOWN else "")


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _headline(report: FleetReport) -> str:
    parts = [f"gpu-runbook report: {_plural(report.judged, 'snapshot')} judged"]
    if report.unreadable:
        parts.append(f"{_plural(len(report.unreadable), 'file')} unreadable")
    if report.oldest:
        parts.append(f"collected {report.oldest} to {report.newest}")
    return " \u00b7 ".join(parts)


def _counts(node: dict[str, object]) -> str:
    return ", ".join(f"{node[k]} {k}" for k in ("fail", "unknown", "warn") if node[k])


def render_text(report: FleetReport, out: TextIO) -> None:
    rows = report.rows()
    lines = [_headline(report),
             f"{report.healthy():,} of {report.judged:,} nodes without a failure or an unknown"]
    width = max((len(r["check"]) for r in rows), default=10)
    if rows:
        lines.append("")
    for row in rows:
        lines.append(f"{row['status'].upper():<8}{row['check']:<{width}}  {_plural(row['count'], 'node')}: "
                     f"{_nodes(row['nodes'])}")
        pad = " " * (8 + width + 2)
        if row["title"]:
            lines.append(f"{pad}{row['title']}")
        if row["url"]:
            lines.append(f"{pad}read: {row['url']}")
    worst = report.worst_nodes(WORST_SHOWN)
    if worst:
        lines += ["", "worst nodes:"] + [f"  {n['node']}: {_counts(n)}" for n in worst]
    if report.unreadable:
        lines += ["", "not judged:"] + [f"  {reason}" for _, reason in report.unreadable]
    out.write("\n".join(lines) + "\n")


def render_json(report: FleetReport, out: TextIO) -> None:
    json.dump({
        "schema_version": 1,
        "judged": report.judged,
        "healthy": report.healthy(),
        "collected": {"oldest": report.oldest, "newest": report.newest},
        "findings": report.rows(),
        "worst_nodes": report.worst_nodes(len(report.nodes)),
        "unreadable": [{"path": p, "error": e} for p, e in report.unreadable],
        "exit_code": report.exit_code(),
    }, out, indent=2)
    out.write("\n")


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: FleetReport, out: TextIO) -> None:
    lines = [f"# {_md(_headline(report))}", "",
             f"{report.healthy():,} of {report.judged:,} nodes without a failure or an unknown.", ""]
    rows = report.rows()
    if rows:
        lines += ["| status | check | nodes | which (worst first) | page |", "|---|---|---:|---|---|"]
        for row in rows:
            page = f"[{_md(row['title'] or row['check'])}]({row['url']})" if row["url"] else ""
            lines.append(f"| {row['status']} | `{row['check']}` | {row['count']} | {_md(_nodes(row['nodes']))} "
                         f"| {page} |")
        lines.append("")
    worst = report.worst_nodes(WORST_SHOWN)
    if worst:
        lines += ["## Worst nodes", ""] + [f"- `{_md(n['node'])}`: {_counts(n)}" for n in worst] + [""]
    if report.unreadable:
        lines += ["## Not judged", ""] + [f"- {_md(reason)}" for _, reason in report.unreadable] + [""]
    out.write("\n".join(lines))


def render_html(report: FleetReport, out: TextIO) -> None:
    esc = html.escape
    out.write(f"<h2>{esc(_headline(report))}</h2>\n<p>{report.healthy():,} of {report.judged:,} nodes without "
              "a failure or an unknown.</p>\n")
    rows = report.rows()
    if rows:
        out.write('<table class="gpu-runbook-fleet">\n<thead><tr><th>Status</th><th>Check</th><th>Nodes</th>'
                  "<th>Which (worst first)</th><th>Page</th></tr></thead>\n<tbody>\n")
        for row in rows:
            names = ", ".join(esc(n) for n in row["nodes"])
            link = (f'<a href="{esc(row["url"], quote=True)}">{esc(row["title"] or row["check"])}</a>'
                    if row["url"] else "")
            out.write(f"<tr><td>{esc(row['status'].upper())}</td><td><code>{esc(row['check'])}</code></td>"
                      f"<td>{row['count']}</td><td><details><summary>{esc(_nodes(row['nodes']))}</summary>"
                      f"{names}</details></td><td>{link}</td></tr>\n")
        out.write("</tbody>\n</table>\n")
    if report.unreadable:
        out.write("<h3>Not judged</h3>\n<ul>\n" + "".join(f"<li>{esc(reason)}</li>\n"
                                                         for _, reason in report.unreadable) + "</ul>\n")


def renderer_for(fmt: ReportFormat) -> Callable[[FleetReport, TextIO], None]:
    """The render function of a report format; every member has a branch."""
    if fmt is ReportFormat.TEXT:
        return render_text
    if fmt is ReportFormat.JSON:
        return render_json
    if fmt is ReportFormat.MARKDOWN:
        return render_markdown
    if fmt is ReportFormat.HTML:
        return render_html
    raise ValueError(fmt)  # pragma: no cover - unreachable while the branches above are exhaustive
