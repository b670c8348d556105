"""MkDocs hook: each notebook page shows a real run, executed at build time against a captured H200 snapshot.

The committed notebooks carry no output (tests/test_notebooks.py keeps it so). For the site, each one
in EXAMPLES is run through papermill with `snapshot_path` set to a snapshot captured on a real GPU host,
and mkdocs-jupyter renders that executed copy instead of the empty one. A markdown cell added after the
notebook's introduction says what ran: the snapshot, the GPU, driver and date it was captured on (read
from the scenario file), and the papermill command that gives the same output.

The downloadable .ipynb next to the page stays the clean notebook. Executed copies are cached under
.cache/notebooks/ by a hash of the notebook, the snapshot and the gpu_runbook sources.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import os
import re
import time
from typing import Any

from mkdocs.exceptions import PluginError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(ROOT, ".cache", "notebooks")
# A broken host captured on the GPU runner: device nodes 0600 root:root and the check run as nobody.
CAPTURE = "tests/scenarios/device-nodes/captured-h200-mode-0600-nonroot.json"
EXAMPLES = {
    "notebooks/triage.ipynb": CAPTURE,
    "notebooks/container-stack.ipynb": CAPTURE,
}
# Findings link to runbook pages; in the executed copy they point at this site, relative to notebooks/.
DOCS_URL = "../"
STALE_AFTER_S = 3600
_STREAM_OUTPUT = re.compile(r'(<div class="jp-RenderedText[^"]*"[^>]*>\s*)<pre>')
_originals: dict[str, str] = {}


def capture_label(snapshot_path: str) -> dict[str, str]:
    """GPU, driver and date of a captured scenario, from its own data.

    The GPU model is in the scenario's `source` line (the capture scripts write it there); the driver
    version is read from the snapshot's /proc/driver/nvidia/version and must agree with that line; the
    date is the snapshot's `collected_at`.
    """
    with open(os.path.join(ROOT, snapshot_path), encoding="utf-8") as handle:
        scenario = json.load(handle)
    source = str(scenario.get("source", ""))
    snapshot = scenario.get("snapshot", {})
    gpu = re.search(r"captured on (?:an )?(NVIDIA [^,]+), driver ([0-9.]+)", source)
    version = ((snapshot.get("files") or {}).get("/proc/driver/nvidia/version") or {}).get("text", "")
    driver = re.search(r"Kernel Module(?: for \S+)?\s+([0-9]+\.[0-9.]+)", version)
    if not gpu or not driver or gpu.group(2) != driver.group(1):
        raise PluginError(f"{snapshot_path}: cannot tell the GPU and driver it was captured on "
                          f"(source {source[:80]!r}, driver file {version[:80]!r})")
    return {"gpu": gpu.group(1), "driver": driver.group(1), "date": str(snapshot.get("collected_at", ""))[:10],
            "description": str(scenario.get("description", "")), "path": snapshot_path}


def label_markdown(notebook: str, label: dict[str, str]) -> str:
    """The note above the example run (HTML: notebook markdown is not rendered by Python-Markdown)."""
    command = f"papermill {notebook} out.ipynb -p snapshot_path {label['path']}"
    title = f"Example run: captured on an {label['gpu']}, driver {label['driver']}, {label['date']}"
    return (f'<div class="admonition example" data-example-run="{html.escape(label["path"], quote=True)}">\n'
            f'<p class="admonition-title">{html.escape(title)}</p>\n'
            "<p>The output on this page is real: this notebook ran when the site was built, against a snapshot "
            f"recorded on a GPU host: {html.escape(label['description'])}</p>\n"
            f"<p>The same output comes from:</p>\n<pre><code>{html.escape(command)}</code></pre>\n"
            "<p>The parameters cell below is the notebook's own; papermill's <code>injected-parameters</code> "
            "cell after it holds this run's values.</p>\n</div>\n")


def _source_hash(notebook_path: str, snapshot_path: str) -> str:
    digest = hashlib.sha256()
    for path in (notebook_path, os.path.join(ROOT, snapshot_path), os.path.abspath(__file__)):
        with open(path, "rb") as handle:
            digest.update(handle.read())
    package = os.path.join(ROOT, "snippets", "gpu_runbook")
    for folder, dirs, names in sorted(os.walk(package)):
        dirs.sort()
        for name in sorted(names):
            if name.endswith(".py"):
                digest.update(name.encode())
                with open(os.path.join(folder, name), "rb") as handle:
                    digest.update(handle.read())
    digest.update(DOCS_URL.encode())
    return digest.hexdigest()[:16]


def executed_copy(notebook: str, notebook_path: str, snapshot_path: str) -> str:
    """Path of the notebook executed with papermill against the snapshot (from the cache when fresh)."""
    import nbformat
    import papermill

    target = os.path.join(CACHE, f"{os.path.basename(notebook)[:-6]}-{_source_hash(notebook_path, snapshot_path)}"
                                 ".ipynb")
    if os.path.exists(target):
        return target
    os.makedirs(CACHE, exist_ok=True)
    raw = f"{target[:-6]}.{os.getpid()}.run.ipynb"  # builds may run side by side (tests, make serve)
    saved = os.environ.get("GPU_RUNBOOK_DOCS_URL")
    os.environ["GPU_RUNBOOK_DOCS_URL"] = DOCS_URL
    try:
        papermill.execute_notebook(notebook_path, raw, parameters={"snapshot_path": snapshot_path},
                                   kernel_name="python3", cwd=ROOT, progress_bar=False, log_output=False,
                                   execution_timeout=120)
    except Exception as exc:  # papermill raises its own types; any of them fails the build
        raise PluginError(f"{notebook}: the example run against {snapshot_path} failed: {exc}") from None
    finally:
        if saved is None:
            os.environ.pop("GPU_RUNBOOK_DOCS_URL", None)
        else:
            os.environ["GPU_RUNBOOK_DOCS_URL"] = saved
    nb = nbformat.read(raw, as_version=4)
    label = nbformat.v4.new_markdown_cell(label_markdown(notebook, capture_label(snapshot_path)))
    label.metadata["tags"] = ["example-run"]
    first_code = next(i for i, cell in enumerate(nb.cells) if cell.cell_type == "code")
    nb.cells.insert(first_code, label)
    nbformat.write(nb, raw)
    os.replace(raw, target)
    stem = os.path.basename(target).rsplit("-", 1)[0]
    for name in os.listdir(CACHE):
        # Runs of this notebook for sources that have changed since; recent ones may serve a build still going.
        path = os.path.join(CACHE, name)
        if name.startswith(f"{stem}-") and path != target and time.time() - os.path.getmtime(path) > STALE_AFTER_S:
            with contextlib.suppress(OSError):
                os.unlink(path)
    return target


def on_pre_page(page: Any, config: Any, files: Any) -> Any:
    src = page.file.src_uri
    if src in EXAMPLES:
        original = page.file.abs_src_path
        executed = executed_copy(src, original, EXAMPLES[src])
        _originals[src] = original
        page.file.abs_src_path = executed  # mkdocs-jupyter converts the file at this path when it renders
    return page


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    # Rendered: point back at the clean notebook, which mkdocs-jupyter copies next to the page for download.
    original = _originals.pop(page.file.src_uri, None)
    if original is None:
        return html
    page.file.abs_src_path = original
    # The example run's output quotes error strings of one captured host; the site's search should lead to
    # the pages that explain them, so Material's search skips the printed output (the code cells stay; the
    # HTML outputs, the report and the stack drawing, carry the attribute themselves). It goes on the <pre>:
    # the search parser matches elements by tag name, so an excluded <div> ends at its first inner </div>.
    return _STREAM_OUTPUT.sub(r"\1<pre data-search-exclude>", html)
