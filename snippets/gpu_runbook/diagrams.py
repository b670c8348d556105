"""SVG drawings built from the doctor's own data: the container stack from LAYERS, coloured by findings.

One function, `stack_svg`, draws the layers of layers.py bottom up. Without results it is the plain
picture the container-stack page shows (the site's build hook calls it, so picture and code cannot
drift); with the results of `walk_layers` each layer takes the colour of its worst check and the lowest
broken layer is marked. The notebooks and `gpu-runbook check --format html` show that second form.

The SVG is plain text: no script, no outside reference. Text and lines use `currentColor`, so the
drawing follows the page's light or dark scheme; status colours are mid-tones readable on both.
Each drawing carries a <title> and a <desc> (referenced by aria-labelledby) for screen readers, and
`data-search-exclude`, which keeps its labels out of the runbook site's search index.
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Sequence
from typing import Callable, Optional

from gpu_runbook.findings import Finding
from gpu_runbook.layers import LAYERS, Layer, LayerResult

# Mid-tone colours that keep contrast on Material's white and slate backgrounds alike.
STATUS_COLOURS = {
    "ok": "#2e9d4f",
    "skip": "#8a8a8a",
    "warn": "#e08a00",
    "unknown": "#9c4dcc",
    "fail": "#e53935",
    "not judged": "#8a8a8a",
}
STATUS_MARKS = {"ok": "\u2713", "skip": "\u2013", "warn": "!", "unknown": "?", "fail": "\u2717"}
NOT_RUN = "\u00b7"  # a check of the layer that this run did not include (--only)

WIDTH = 760
FONT = 13
SMALL = 12
LINE = 17


def esc(text: str) -> str:
    """Text for an SVG element or attribute."""
    return html.escape(text, quote=True)


def wrap(text: str, width_px: float, size: int = SMALL) -> list[str]:
    """Lines of `text` that fit `width_px` at font size `size` (an average glyph is ~0.56 em wide)."""
    chars = max(10, int(width_px / (size * 0.56)))
    return textwrap.wrap(text, chars, break_on_hyphens=False) or [""]


def svg_open(name: str, width: int, height: int, title: str, desc: str, *, extra_class: str = "") -> str:
    """The opening <svg> element with its text alternative; `name` makes the ids unique on a page."""
    classes = f"gpu-diagram gpu-diagram--{name}" + (f" {extra_class}" if extra_class else "")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="{classes}" data-diagram="{esc(name)}" role="img" '
            f'viewBox="0 0 {width} {height}" width="100%" style="max-width:{width}px;height:auto" '
            f'data-search-exclude="" '
            f'aria-labelledby="{name}-title {name}-desc" font-size="{FONT}" fill="currentColor">'
            f'<title id="{name}-title">{esc(title)}</title><desc id="{name}-desc">{esc(desc)}</desc>')


def _status_of(result: Optional[LayerResult]) -> Optional[str]:
    if result is None:
        return None
    return result.status.value if result.status is not None else "not judged"


def _check_marks(layer: Layer, findings: Sequence[Finding]) -> list[tuple[str, Optional[str]]]:
    by_check = {f.check: f.status.value for f in findings}
    return [(check, by_check.get(check)) for check in layer.checks]


def stack_svg(results: Optional[Sequence[LayerResult]] = None, broken: Optional[Layer] = None,
              link: Optional[Callable[[Layer], str]] = None, name: str = "stack", caption: str = "") -> str:
    """The container stack, top layer first as it is drawn, bottom layer (the kernel driver) last.

    results/broken: what `walk_layers` returned, to colour each layer by its worst check and mark the
    lowest broken one; leave them out for the plain picture. link: a URL for each layer's heading.
    """
    by_layer = {r.layer: r for r in results or ()}
    text_x = 18
    text_width = WIDTH - text_x - (150 if results is not None else 24)
    boxes = []
    for layer in reversed(LAYERS):  # drawn top down: CUDA on top, the kernel driver at the bottom
        result = by_layer.get(layer)
        findings = result.findings if result else ()
        marks = _check_marks(layer, findings)
        if results is not None:
            listed = "  ".join(f"{STATUS_MARKS.get(s or '', NOT_RUN)} {c}" for c, s in marks)
        else:
            listed = "checks: " + ", ".join(layer.checks)
        lines = wrap(listed, text_width)
        height = 12 + LINE + LINE * len(lines) + 8
        boxes.append((layer, result, lines, height))

    gap = 10
    top = 8 + (LINE + 6 if caption else 0)
    total = top + sum(h for *_, h in boxes) + gap * (len(boxes) - 1) + 30
    statuses = [f"{r.layer.name}: {_status_of(r)}" for r in results or ()]
    title = "The container stack" + (": layers coloured by this host's findings" if results is not None else "")
    if results is None:
        desc = ("The layers a GPU passes through into a container, bottom up: "
                + "; ".join(f"{layer.name} (checks: {', '.join(layer.checks)})" for layer in LAYERS)
                + ". A failure in one layer shows in every layer above it: fix the lowest broken layer first.")
    else:
        desc = ("Layers bottom up with their status: " + "; ".join(statuses) + ". "
                + (f"Lowest broken layer: {broken.name}." if broken is not None else "No layer fails."))
    out = [svg_open(name, WIDTH, total, title, desc,
                    extra_class="gpu-diagram--findings" if results is not None else "")]
    if caption:
        out.append(f'<text x="0" y="{8 + FONT}" font-weight="bold">{esc(caption)}</text>')
    y = top
    for layer, result, lines, height in boxes:
        status = _status_of(result) if results is not None else None
        colour = STATUS_COLOURS.get(status or "", "currentColor")
        is_broken = broken is not None and layer == broken
        dash = ' stroke-dasharray="6 4"' if status == "not judged" else ""
        fill = colour if status else "currentColor"
        opacity = "0.16" if status and status != "not judged" else "0.05"
        group_attrs = f' data-layer="{esc(layer.anchor)}"' + (f' data-status="{esc(status)}"' if status else "")
        if is_broken:
            group_attrs += ' data-broken="true"'
        out.append(f"<g{group_attrs}>")
        out.append(f'<rect x="1" y="{y}" width="{WIDTH - 2}" height="{height}" rx="8" fill="{fill}" '
                   f'fill-opacity="{opacity}" stroke="{colour}" stroke-width="{3 if is_broken else 1.5}"{dash}/>')
        heading = f'<text x="{text_x}" y="{y + 8 + FONT + 2}" font-weight="bold">{esc(layer.name)}</text>'
        if link is not None:
            heading = f'<a href="{esc(link(layer))}">{heading}</a>'
        out.append(heading)
        for i, line in enumerate(lines):
            out.append(f'<text x="{text_x}" y="{y + 8 + FONT + 2 + LINE * (i + 1)}" font-size="{SMALL}" '
                       f'opacity="0.85">{esc(line)}</text>')
        if status:
            label = status.upper() if status != "not judged" else "not judged"
            out.append(f'<text x="{WIDTH - 16}" y="{y + 8 + FONT + 2}" text-anchor="end" font-weight="bold" '
                       f'fill="{colour}">{esc(label)}</text>')
        if is_broken:
            out.append(f'<text x="{WIDTH - 16}" y="{y + 8 + FONT + 2 + LINE}" text-anchor="end" '
                       f'font-size="{SMALL}" font-weight="bold" fill="{colour}">\u25c0 fix this layer first</text>')
        out.append("</g>")
        y += height + gap
    note = ("bottom up: a failure shows in every layer above it" if results is None else
            (f"lowest broken layer: {broken.name}" if broken is not None else "no layer fails"))
    out.append(f'<text x="0" y="{total - 8}" font-size="{SMALL}" opacity="0.8">{esc(note)}</text>')
    out.append("</svg>")
    return "".join(out)


def findings_stack_svg(findings: Sequence[Finding], link: Optional[Callable[[Layer], str]] = None,
                       caption: str = "") -> str:
    """The stack coloured by a host's findings: the picture the notebooks and the HTML report show."""
    from gpu_runbook.layers import walk_layers

    results, broken = walk_layers(findings)
    if not any(r.findings for r in results):
        return ""
    return stack_svg(results, broken, link=link, name="stack-findings", caption=caption)


def status_legend() -> str:
    """One line naming the marks used in the findings picture."""
    return "  ".join(f"{mark} {status}" for status, mark in STATUS_MARKS.items())


