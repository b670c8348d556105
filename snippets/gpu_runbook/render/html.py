"""HTML renderer: the findings table the notebooks display (links open the runbook page)."""

from __future__ import annotations

import html
from typing import TextIO

from gpu_runbook.findings import Finding

_BADGE = {"ok": "#2e7d32", "skip": "#757575", "warn": "#ef6c00", "unknown": "#6a1b9a", "fail": "#c62828"}


def render(findings: list[Finding], out: TextIO, meta: dict[str, object]) -> None:
    out.write('<table class="gpu-runbook-findings">\n<thead><tr><th>Status</th><th>Check</th>'
              "<th>Summary</th><th>Fix</th><th>Page</th></tr></thead>\n<tbody>\n")
    for f in sorted(findings, key=lambda f: -f.status.rank):
        colour = _BADGE[f.status.value]
        out.write(
            f'<tr><td><b style="color:{colour}">{f.status.value.upper()}</b></td>'
            f"<td><code>{html.escape(f.check)}</code></td><td>{html.escape(f.summary)}</td>"
            f"<td>{html.escape(f.fix)}</td>"
            f'<td><a href="{html.escape(f.url, quote=True)}">{html.escape(f.page)}</a></td></tr>\n')
    out.write("</tbody>\n</table>\n")
    if meta.get("source"):
        out.write(f"<p>Source: {html.escape(str(meta['source']))}</p>\n")
