"""Diagrams the site draws at build time, as inline SVG: `<!-- md:diagram NAME -->` (see shortcodes.py).

- `stack`    the container stack, from gpu_runbook.layers.LAYERS (gpu_runbook.diagrams.stack_svg)
- `triage`   symptom -> layer or section -> pages; rows and pages come from LAYERS, the check registry,
             the page catalogue (pages.py) and each page's front matter, so a new page shows up by itself
- `sharing`  choosing MIG, MPS or time-slicing: the questions that decide (facts of sharing/mig-vs-mps.md)
- `recovery` the recovery ladder: drain, stop holders, reset, reload, reboot, verify (kubernetes/recovery.md)

Nothing is fetched: the SVG is written into the page. Text uses currentColor and follows the light or
dark scheme; each drawing has a <title> and <desc> for screen readers.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

import yaml
from gpu_runbook.diagrams import esc, stack_svg, svg_open, wrap
from gpu_runbook.layers import LAYERS
from gpu_runbook.pages import PAGES, docs_path
from gpu_runbook.registry import load_checks
from mkdocs.exceptions import PluginError
from mkdocs.utils import get_relative_url

DOCS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = 17
FONT = 13
SMALL = 12

Link = Callable[[str, str], Optional[str]]

# What a reader sees when the trouble is in a layer or section, and the page whose first documented error
# string (its `errors:` front matter, verbatim) is shown as the example; the pages of each row come from data.
SYMPTOMS = {
    "layer-driver": ("nvidia-smi cannot talk to the driver; /dev/nvidia* missing", "kernel-modules"),
    "layer-nvml": ("nvidia-smi fails, hangs or reports a lost GPU on the host", "driver-mismatch"),
    "layer-runtime": ("the container does not start: the engine cannot inject the GPU", "gpu-not-visible"),
    "layer-container": ("the container starts but sees no GPU, or loses it later", "dev-char-symlinks"),
    "layer-cuda": ("the image needs a newer driver than the host has: the start is refused or CUDA fails",
                   "driver-compat"),
    "sharing": ("several processes or pods share one GPU (MIG, MPS)", "mps"),
    "kubernetes": ("pods stay Pending, labels or health are wrong, a node needs recovery", "device-plugin"),
    "fabric": ("several GPUs: NVLink, NVSwitch, peer-to-peer, RDMA", "fabric-manager"),
    "more": ("other driver, device and container trouble", ""),
}
CONTAINER_SECTIONS = ("containers", "devices")


def front_matter(page_id: str) -> dict[str, Any]:
    path = os.path.join(DOCS, docs_path(page_id))
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    if not text.startswith("---"):
        return {}
    head = text.split("\n---", 1)[0][3:]
    data = yaml.safe_load(head) or {}
    return data if isinstance(data, dict) else {}


def triage_rows(nav_titles: dict[str, str]) -> list[dict[str, Any]]:
    """The triage flow's rows: one per container-stack layer, then one per other section of the catalogue."""
    specs = load_checks()
    meta = {pid: front_matter(pid) for pid in PAGES}
    rows = []
    placed: set[str] = set()
    for layer in LAYERS:
        primary = list(dict.fromkeys(specs[c].page for c in layer.checks if c in specs))
        more = {pid for pid in PAGES if set(meta[pid].get("checks") or ()) & set(layer.checks)}
        ordered = primary + [pid for pid in PAGES if pid in more and pid not in primary]
        placed.update(ordered)
        rows.append({"key": layer.anchor, "area": layer.name, "area_link": ("container-stack", layer.anchor),
                     "pages": ordered})
    rest = [pid for pid in PAGES if PAGES[pid].section in CONTAINER_SECTIONS and pid not in placed
            and pid != "container-stack"]
    if rest:
        rows.append({"key": "more", "area": "More host and container pages", "area_link": None, "pages": rest})
    sections = list(dict.fromkeys(p.section for p in PAGES.values() if p.section not in CONTAINER_SECTIONS))
    for section in sections:
        pages = [pid for pid in PAGES if PAGES[pid].section == section]
        rows.append({"key": section, "area": nav_titles.get(section, section.capitalize()),
                     "area_link": (pages[0], ""), "pages": pages})
    for row in rows:
        symptom, example_page = SYMPTOMS.get(row["key"], (f"{row['area']}: something is wrong", ""))
        if example_page not in row["pages"]:
            example_page = row["pages"][0] if row["pages"] else ""
        errors = meta[example_page].get("errors") or () if example_page else ()
        example = str(errors[0]) if errors else ""
        row["symptom"] = symptom
        row["example"] = example if len(example) <= 64 else example[:61].rstrip() + "..."
    return rows


def _arrow_defs(name: str) -> str:
    return (f'<defs><marker id="{name}-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
            'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="currentColor"/>'
            "</marker></defs>")


def _line(name: str, x1: float, y1: float, x2: float, y2: float) -> str:
    return (f'<path d="M{x1},{y1} L{x2},{y2}" stroke="currentColor" stroke-width="1.3" fill="none" '
            f'marker-end="url(#{name}-arrow)"/>')


def _texts(x: float, y: float, lines: list[str], size: int = SMALL, *, bold_first: bool = False,
           extra: str = "") -> str:
    out = []
    for i, line in enumerate(lines):
        weight = ' font-weight="bold"' if bold_first and i == 0 else ""
        out.append(f'<text x="{x}" y="{y + LINE * i}" font-size="{size}"{weight}{extra}>{esc(line)}</text>')
    return "".join(out)


def _linked(svg: str, href: Optional[str]) -> str:
    return f'<a href="{esc(href)}">{svg}</a>' if href else svg


def triage_svg(link: Link, nav_titles: dict[str, str]) -> str:
    name = "triage"
    rows = triage_rows(nav_titles)
    width = 800
    col = [(0, 260), (285, 180), (490, 310)]  # x, width: symptom, layer or section, pages
    heights = []
    laid = []
    for row in rows:
        symptom = wrap(row["symptom"], col[0][1] - 20, SMALL)
        # Monospace glyphs are wider than the average proportional one: measure 11 px code as 12 px text.
        example = wrap(row["example"], col[0][1] - 20, 12) if row["example"] else []
        area = wrap(row["area"], col[1][1] - 20, SMALL)
        height = 14 + LINE * max(len(symptom) + len(example), len(area), len(row["pages"]), 1)
        heights.append(height)
        laid.append((row, symptom, example, area))
    head = 28
    gap = 10
    total = head + sum(heights) + gap * len(rows)
    desc = "; ".join(f"{r['symptom']} -> {r['area']} -> {', '.join(PAGES[p].title for p in r['pages'])}"
                     for r in rows)
    out = [svg_open(name, width, total, "Triage: from what you see to the layer and the page", desc), _arrow_defs(name)]
    for (x, _), label in zip(col, ("What you see", "Where it breaks", "Read")):
        out.append(f'<text x="{x + 4}" y="18" font-weight="bold">{label}</text>')
    y = head
    for (row, symptom, example, area), height in zip(laid, heights):
        out.append(f'<g data-row="{esc(row["key"])}">')
        out.append(f'<rect x="{col[0][0] + 1}" y="{y}" width="{col[0][1]}" height="{height}" rx="6" '
                   'fill="currentColor" fill-opacity="0.05" stroke="currentColor" stroke-opacity="0.5"/>')
        out.append(_texts(col[0][0] + 10, y + 20, symptom))
        if example:
            out.append(_texts(col[0][0] + 10, y + 20 + LINE * len(symptom), example, size=11,
                              extra=' font-family="monospace" opacity="0.8"'))
        out.append(f'<rect x="{col[1][0]}" y="{y}" width="{col[1][1]}" height="{height}" rx="6" '
                   'fill="currentColor" fill-opacity="0.12" stroke="currentColor" stroke-width="1.5"/>')
        area_link = link(*row["area_link"]) if row["area_link"] else None
        out.append(_linked(_texts(col[1][0] + 10, y + 20, area, extra=' font-weight="bold"'), area_link))
        mid = y + height / 2
        out.append(_line(name, col[0][0] + col[0][1] + 2, mid, col[1][0] - 2, mid))
        out.append(_line(name, col[1][0] + col[1][1] + 2, mid, col[2][0] - 4, mid))
        for i, pid in enumerate(row["pages"]):
            text = (f'<text x="{col[2][0] + 4}" y="{y + 20 + LINE * i}" font-size="{SMALL}" '
                    f'data-page="{esc(pid)}" text-decoration="underline">{esc(PAGES[pid].title)}</text>')
            out.append(_linked(text, link(pid, "")))
        out.append("</g>")
        y += height + gap
    out.append("</svg>")
    return "".join(out)


def _box(x: float, y: float, w: float, lines: list[str], *, strong: bool = False, key: str = "",
         href: Optional[str] = None, colour: str = "currentColor") -> tuple[str, float]:
    height = 14 + LINE * len(lines)
    attrs = f' data-node="{esc(key)}"' if key else ""
    body = (f'<rect x="{x}" y="{y}" width="{w}" height="{height}" rx="{14 if not strong else 6}" fill="{colour}" '
            f'fill-opacity="{0.16 if strong else 0.05}" stroke="{colour}" stroke-width="{2 if strong else 1.2}"/>'
            + _texts(x + 10, y + 20, lines, bold_first=strong))
    return f"<g{attrs}>" + _linked(body, href) + "</g>", height


def sharing_svg(link: Link) -> str:
    name = "sharing"
    width, w = 880, 400
    left, right = 10, 470
    out: list[str] = []
    q1, h1 = _box(240, 10, 400, wrap("Several workloads share one GPU. Must they be isolated from each other "
                                     "(memory, faults, performance), as untrusted or independent tenants are?",
                                     380), key="q-isolation", href=link("mig-vs-mps", "tenants"))
    out.append(q1)
    y2 = 10 + h1 + 50
    q2, h2 = _box(left, y2, w, wrap("yes: does the GPU support MIG? (A100, A30, H100, H200, B200, RTX PRO 6000 "
                                    "and 5000 Blackwell and other listed GPUs of compute capability 8.0+)", w - 20),
                  key="q-mig", href=link("mig-vs-mps", "no-mig"))
    q3, h3 = _box(right, y2, w, wrap("no: are they cooperating processes of one job that should run kernels "
                                     "concurrently (MPI ranks, workers of one inference service)?", w - 20),
                  key="q-cooperative", href=link("mig-vs-mps", "cooperative"))
    out += [q2, q3, _line(name, 340, 10 + h1, left + w / 2, y2 - 2), _line(name, 540, 10 + h1, right + w / 2, y2 - 2)]
    y3 = y2 + max(h2, h3) + 50
    ow = 190
    outcomes = [
        ("mig", left, "MIG", ["MIG", *wrap("hardware partitions, up to 7; own memory, SMs and L2; a fault stays "
                                           "in its instance", ow - 20)], link("mig", ""), "#2e9d4f"),
        ("no-mig", left + 210, "no", ["No MIG here", *wrap("MPS or time-slicing only; neither partitions "
                                                           "memory in hardware", ow - 20)],
         link("mig-vs-mps", "no-mig"), "#e08a00"),
        ("mps", right, "MPS", ["MPS", *wrap("clients of one MPS server share its scheduling resources and run "
                                            "concurrently; Volta+: own address space, thread cap; a fatal fault hits "
                                            "the other clients on that GPU", ow - 20)],
         link("mps", ""), "#2e9d4f"),
        ("time-slicing", right + 210, "ts", ["Time-slicing", *wrap("any GPU, no setup outside Kubernetes; "
                                                                  "processes take turns; no memory limit",
                                                                  ow - 20)],
         link("time-slicing", ""), "#2e9d4f"),
    ]
    bottoms = []
    for key, x, _, lines, href, colour in outcomes:
        box, height = _box(x, y3, ow, lines, strong=True, key=key, href=href, colour=colour)
        out.append(box)
        bottoms.append(y3 + height)
    labels = [(left + w / 2, y2 + h2, left + ow / 2, "yes"), (left + w / 2, y2 + h2, left + 210 + ow / 2, "no"),
              (right + w / 2, y2 + h3, right + ow / 2, "yes"), (right + w / 2, y2 + h3, right + 210 + ow / 2, "no")]
    for x1, y1, x2, label in labels:
        out.append(_line(name, x1, y1, x2, y3 - 2))
        out.append(f'<text x="{(x1 + x2) / 2 + 4}" y="{(y1 + y3) / 2}" font-size="{SMALL}">{label}</text>')
    note_y = max(bottoms) + 24
    note = ("Kubernetes: the device plugin offers whole GPUs; pods share one only through its time-slicing, "
            "MPS or MIG settings.")
    out.append(_linked(_texts(left, note_y, wrap(note, width - 20)), link("mig-vs-mps", "sharing-by-default")))
    total = note_y + LINE * len(wrap(note, width - 20)) + 6
    desc = ("Decision: if the workloads must be isolated, use MIG when the GPU supports it; without MIG only MPS "
            "or time-slicing remain and neither partitions memory in hardware. If no isolation is needed, "
            "cooperating processes of one job use MPS; other trusted, bursty work uses time-slicing. " + note)
    head = svg_open(name, width, total, "Choosing MIG, MPS or time-slicing", desc) + _arrow_defs(name)
    return head + "".join(out) + "</svg>"


RECOVERY_STEPS = [
    ("drain", "1. Cordon and drain", "kubectl drain NODE --ignore-daemonsets --delete-emptydir-data",
     "needs: nothing from the GPU. Evicts the node's pods (PodDisruptionBudgets honoured) except DaemonSet pods "
     "such as the device plugin and DCGM exporter: step 2 stops those.", "fix"),
    ("holders", "2. Stop what holds the GPU", "DCGM, dcgm-exporter, GFD, device plugin; nvidia-smi -pm 0",
     "needs: a reset or unload is refused while any process has the GPU open; persistence mode keeps it open "
     "through nvidia-persistenced. Keep the Fabric Manager up.",
     "fix"),
    ("reset", "3a. Reset the GPU", "nvidia-smi -r -i <bus id>",
     "needs: root, NVML still answers, no process uses the GPU. On NVSwitch systems one GPU alone only while the "
     "Fabric Manager runs, else all its NVLink peers in the same command. Fails on a GPU that fell off the bus.",
     "reset"),
    ("reload", "3b. Reload the driver", "modprobe -r nvidia_uvm nvidia_drm nvidia_modeset nvidia",
     "needs: the modules can unload (persistenced and Fabric Manager stopped, nvidia_peermem unloaded first "
     "where loaded, no process stuck in D state). Takes every GPU on the node away.", "hung-driver"),
    ("reboot", "3c. Reboot", "systemctl reboot",
     "needs: nothing. For a lost GPU (Xid 79), processes in D state, a module that will not unload.",
     "gpu-lost"),
    ("verify", "4. Verify, then uncordon", "gpu-runbook check --only gpu-tools-hung,gpu-lost,nvml-init",
     "needs: every check ok and every GPU listed; then kubectl uncordon NODE.", "verify"),
]


def recovery_svg(link: Link) -> str:
    name = "recovery"
    width = 860
    label_w = 230
    text_x = label_w + 30
    text_w = width - text_x - 10
    out = []
    y = 10
    gap = 26
    for i, (key, title, command, needs, anchor) in enumerate(RECOVERY_STEPS):
        needs_lines = wrap(needs, text_w)
        height = 16 + LINE * (1 + len(needs_lines))
        disruptive = key in ("drain", "holders", "reset", "reload", "reboot")  # as the page's warnings mark them
        colour = "#e08a00" if disruptive else "currentColor"
        out.append(f'<g data-step="{key}">')
        out.append(_linked(
            f'<rect x="1" y="{y}" width="{label_w}" height="{height}" rx="6" fill="{colour}" '
            f'fill-opacity="0.14" stroke="{colour}" stroke-width="1.5"/>'
            f'<text x="12" y="{y + 22}" font-weight="bold">{esc(title)}</text>'
            + (f'<text x="12" y="{y + 22 + LINE}" font-size="11" opacity="0.85">disruptive</text>'
               if disruptive else ""), link("recovery", anchor)))
        out.append(f'<text x="{text_x}" y="{y + 22}" font-size="{SMALL}" font-family="monospace">{esc(command)}</text>')
        out.append(_texts(text_x, y + 22 + LINE, needs_lines, extra=' opacity="0.85"'))
        out.append("</g>")
        if i < len(RECOVERY_STEPS) - 1:
            label = "still broken" if key in ("reset", "reload") else "then"
            out.append(_line(name, label_w / 2, y + height + 2, label_w / 2, y + height + gap - 2))
            out.append(f'<text x="{label_w / 2 + 8}" y="{y + height + gap / 2 + 4}" font-size="11">{label}</text>')
        y += height + gap
    total = y - gap + 10
    desc = "Recovery ladder, each step with what it needs: " + "; ".join(
        f"{title}: {command} ({needs})" for _, title, command, needs, _ in RECOVERY_STEPS)
    head = (svg_open(name, width, total, "Recovery ladder: drain, reset, reload, reboot", desc)
            + _arrow_defs(name))
    return head + "".join(out) + "</svg>"


def nav_titles(config: Any) -> dict[str, str]:
    """Section folder -> the nav title mkdocs.yml gives it ("fabric" -> "Multi-GPU and fabric")."""
    titles: dict[str, str] = {}
    for item in config.get("nav") or []:
        if not isinstance(item, dict):
            continue
        for title, children in item.items():
            if isinstance(children, list):
                for child in children:
                    path = child if isinstance(child, str) else next(iter(child.values()), "")
                    if isinstance(path, str) and "/" in path:
                        titles.setdefault(path.split("/", 1)[0], title)
    return titles


def render(name: str, page: Any, config: Any, files: Any) -> str:
    """The SVG for `<!-- md:diagram NAME -->` on `page`, with links relative to it."""

    def link(page_id: str, anchor: str = "") -> Optional[str]:
        if page_id not in PAGES:
            return None
        target = files.get_file_from_path(docs_path(page_id)) if files is not None else None
        if target is None:
            return None
        url = get_relative_url(target.url, page.file.url)
        return f"{url}#{anchor}" if anchor else url

    if name == "stack":
        svg = stack_svg(link=lambda layer: link("container-stack", layer.anchor) or f"#{layer.anchor}")
    elif name == "triage":
        svg = triage_svg(link, nav_titles(config))
    elif name == "sharing":
        svg = sharing_svg(link)
    elif name == "recovery":
        svg = recovery_svg(link)
    else:
        raise PluginError(f"{page.file.src_uri}: unknown diagram {name!r} (stack, triage, sharing, recovery)")
    # data-search-exclude: the drawing repeats page titles and error strings; search should find the pages
    # themselves, not every page that draws them. Screen readers still get the <title> and <desc>.
    return (f'<div class="gpu-figure" markdown="0" data-search-exclude style="margin:1em 0;overflow-x:auto">{svg}'
            "</div>\n")
