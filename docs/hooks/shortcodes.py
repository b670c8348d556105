"""MkDocs hook: expands `<!-- md:NAME -->` shortcodes and validates runbook front matter.

Shortcodes (an unknown one fails the build):
- `<!-- md:verified -->`   latest real-GPU run of the checks in the page's `checks:` front matter
- `<!-- md:catalogue -->`  the check catalogue table, from the registry
- `<!-- md:plan -->`       the collection plan: every file, path and command the probes may touch
- `<!-- md:gpu-runs -->`   every recorded GPU run, one table each
- `<!-- md:versions -->`   the versions the page was checked against (front matter `versions:`, `checked:`)
- `<!-- md:explain-box -->` the "Paste an error" box (assets/javascripts/explain.js, offline, in the browser)
- `<!-- md:error-index -->`  every known error string and signature, with the page it leads to
- `<!-- md:diagram NAME -->` an SVG drawn at build time from the code (docs/hooks/diagrams.py: stack, triage,
  sharing, recovery)
- `<!-- md:explain-accuracy -->` how often `explain` names the right page for the real-report corpus (dev, test)

After the build, the explain index (snippets/gpu_runbook/explain_index.json, the one `gpu-runbook explain`
reads) is written as assets/javascripts/explain-index.js, a script: it loads from file:// too.

Generating these at build time means the catalogue can never go stale.
"""

from __future__ import annotations

import glob
import json
import os
import re
from typing import Any

from gpu_runbook.explain import INDEX_PATH
from gpu_runbook.pages import PAGES, page_url
from gpu_runbook.probes import plan
from gpu_runbook.registry import COMPONENTS, load_checks
from mkdocs.exceptions import PluginError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNS_GLOB = os.path.join(ROOT, "tests", "gpu", "runs", "*.json")
SHORTCODE = re.compile(r"<!--\s*md:([a-z][a-z0-9-]*)\s*(.*?)\s*-->")


def load_runs() -> list[dict[str, Any]]:
    """Recorded GPU runs, newest first."""
    runs = []
    for path in sorted(glob.glob(RUNS_GLOB)):
        with open(path, encoding="utf-8") as handle:
            run = json.load(handle)
        run["_file"] = os.path.relpath(path, ROOT)
        runs.append(run)
    return sorted(runs, key=lambda r: (r.get("date", ""), r.get("recorded_at", "")), reverse=True)


def _run_line(run: dict[str, Any]) -> str:
    return (f"{run.get('gpu', '?')} · driver {run.get('driver', '?')} · CUDA {run.get('cuda', '?')} · "
            f"{run.get('date', '?')}")


def verified(page_checks: list[str]) -> str:
    if not page_checks:
        return ""
    runs = load_runs()
    for run in runs:
        results = run.get("checks", {})
        covered = [c for c in page_checks if c in results]
        if not covered:
            continue
        summaries = run.get("summaries", {})
        rest = [c for c in page_checks if c not in results]
        lines = [f"    - `{c}` **{results[c]}**: {summaries.get(c, '')}".rstrip(": ") for c in covered]
        tail = [f"    Not in that run: {', '.join(f'`{c}`' for c in rest)}."] if rest else []
        others = [r for r in runs if r is not run and any(c in r.get("checks", {}) for c in covered)]
        for other in others:
            differ = [f"`{c}` {other['checks'][c]}" for c in covered
                      if c in other["checks"] and other["checks"][c] != results[c]]
            tail.append(f"    Also run on {_run_line(other)}: "
                        + (f"different there: {', '.join(differ)}." if differ else "the same results."))
        link = "    [All recorded runs](../reference/gpu-runs.md)."
        if any(results[c] in ("ok", "warn", "fail") for c in covered):
            head = (f'!!! success "Verified on {_run_line(run)}"\n'
                    "    Live run of this page's checks on a real GPU host:\n")
        else:
            # Every check skipped there: the run proves they stay quiet, not that they judge correctly.
            head = (f'!!! info "Ran on {_run_line(run)}: nothing to judge there"\n'
                    "    The checks ran live on a real GPU host where their subject is absent:\n")
        return head + "\n" + "\n".join([*lines, "", *tail, link]) + "\n"
    names = ", ".join(f"`{c}`" for c in page_checks)
    return (f'!!! info "Not yet verified on a real GPU"\n'
            f"    No recorded GPU run covers {names} yet; `make test-gpu` on a GPU host records one.\n")


def versions(meta: dict[str, Any], src: str) -> str:
    """The "Checked against" box: which upstream versions the page's claims were verified for."""
    stated = meta.get("versions")
    checked = meta.get("checked")
    if not isinstance(stated, dict) or not stated or not checked:
        raise PluginError(f"{src}: md:versions needs front matter `versions:` (component: versions) and `checked:`")
    unknown_components = sorted(set(stated) - set(COMPONENTS))
    if unknown_components:
        raise PluginError(f"{src}: unknown components in `versions:` {unknown_components}; known: {COMPONENTS}")
    parts = " · ".join(f"**{name}** {stated[name]}" for name in COMPONENTS if name in stated)
    return (f'!!! abstract "Checked against upstream on {checked}"\n'
            f"    {parts}.\n"
            "    Statements that hold only for some versions name their range where they are made.\n")


EXPLAIN_BOX = """<div class="gpu-explain" data-gpu-explain markdown="0">
<label class="gpu-explain__label" for="gpu-explain-input">Paste an error, a log or
<code>kubectl describe</code> output</label>
<textarea id="gpu-explain-input" class="gpu-explain__input" rows="6" spellcheck="false"
 placeholder="Failed to initialize NVML: Unknown Error"></textarea>
<button type="button" class="md-button md-button--primary gpu-explain__button">Find the page</button>
<ol class="gpu-explain__results" aria-live="polite"></ol>
<noscript>This box needs JavaScript; <code>gpu-runbook explain "&lt;the message&gt;"</code> gives the same
answer.</noscript>
</div>
"""


def error_index() -> str:
    """Every known string and signature of the explain index, grouped by the page it leads to."""
    with open(INDEX_PATH, encoding="utf-8") as handle:
        index = json.load(handle)
    by_page: dict[str, list[str]] = {p: [] for p in index["pages"]}
    for entry in index["strings"]:
        by_page[index["pages"][entry["page"]]].append(f"`{_cell(entry['text'])}`")
    for entry in index["signatures"]:
        by_page[index["pages"][entry["page"]]].append(
            f"{_cell(entry['why'])} <small>(pattern <code>{_html_cell(entry['pattern'])}</code>)</small>")
    out = [f"{len(index['strings'])} known strings and {len(index['signatures'])} signatures, from the pages' "
           "`errors:` front matter and `snippets/gpu_runbook/signatures.py`.", ""]
    for page_id, items in by_page.items():
        page = PAGES[page_id]
        out += [f"### [{page.title}](../{page.section}/{page_id}.md)", "", "| Known string or signature |", "|---|"]
        out += [f"| {item} |" for item in items] if items else ["| (words and real reports only) |"]
        out.append("")
    return "\n".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")


def _html_cell(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "&#124;")
            .replace("*", "&#42;").replace("_", "&#95;").replace("\\", "&#92;"))


def explain_accuracy() -> str:
    """Top-1 / top-3 of `explain` on the real-report corpus, measured at build time: the README's table."""
    import sys

    tools = os.path.join(ROOT, "tests", "tools")
    if tools not in sys.path:
        sys.path.insert(0, tools)
    from eval_explain import readme_block

    return readme_block()


def write_explain_index(site_dir: str) -> None:
    """The explain index as a script for the browser box, with each page's title and path added."""
    with open(INDEX_PATH, encoding="utf-8") as handle:
        index = json.load(handle)
    index["titles"] = {p: {"title": PAGES[p].title, "path": page_url(p, base="/")[1:]} for p in index["pages"]}
    target = os.path.join(site_dir, "assets", "javascripts", "explain-index.js")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "w", encoding="utf-8") as handle:
        handle.write("window.__gpuRunbookExplainIndex = ")
        json.dump(index, handle, ensure_ascii=False, separators=(",", ":"))
        handle.write(";\n")


def on_config(config: Any) -> Any:
    # The 404 template (docs/overrides/404.html) renders the same box markup as the md:explain-box shortcode.
    config["extra"]["explain_box"] = EXPLAIN_BOX
    return config


def on_post_build(config: Any) -> None:
    write_explain_index(config["site_dir"])


def catalogue() -> str:
    rows = ["| Check | Detects | Page |", "|---|---|---|"]
    for spec in load_checks().values():
        page = PAGES[spec.page]
        rows.append(f"| `{spec.id}` | {spec.detects} | [{page.title}](../{page.section}/{spec.page}.md) |")
    return "\n".join(rows) + "\n"


def collection_plan() -> str:
    out = ["### Commands", "", "Run as argument lists (no shell), each with its own timeout.", "",
           "| Name | Command | Timeout | Why |", "|---|---|---|---|"]
    for name, command in plan.COMMANDS.items():
        where = f" (only where {', '.join(f'`{p}`' for p in command.only_where)} exists)" if command.only_where else ""
        out.append(f"| `{name}` | `{' '.join(command.argv)}` | {command.timeout:g} s | {command.why}{where} |")
    out += ["", "### Files read", "", *[f"- `{p}`" for p in plan.FILES], "",
            "### Kernel configuration (only these options' lines are kept)", "",
            *[f"- `{p}`" for p in plan.KERNEL_CONFIG_FILES], "",
            "Options: " + ", ".join(f"`{o}`" for o in plan.KERNEL_CONFIG_OPTIONS) + f"; a `.gz` file is decompressed "
            f"in memory, at most {plan.KERNEL_CONFIG_MAX_BYTES // (1024 * 1024)} MiB of it.", "",
            "### Paths examined (lstat only, never opened)", "", *[f"- `{p}`" for p in plan.PATHS], "",
            "### Paths named by the environment (lstat only)", "",
            "At root `/` only, and only absolute paths without `..` or glob characters:", "",
            *[f"- `${name}{suffix}`" for name, suffixes in plan.ENV_PATHS.items() for suffix in suffixes], "",
            "### Directories listed", "", *[f"- `{p}`" for p in plan.DIRS], "",
            "### Each user's engine files", "",
            f"Users from `{'`, `'.join(plan.USER_SOURCES)}` (only name, uid, gid, home and group ids are kept): "
            f"every lingering user, then accounts with uid ≥ {plan.USER_MIN_UID} and a home other than "
            f"`{'`, `'.join(plan.USER_NO_HOMES)}`, at most {plan.MAX_USERS}. For each, these files are read "
            "and these paths examined (lstat):", "",
            *[f"- `{p}`" for p in plan.USER_FILES + plan.USER_PATHS], "",
            "### PCI functions (probes/pci.py)", "",
            f"`{plan.PCI_DEVICES}` is listed (at most {plan.PCI_MAX_LISTED} entries) and each function's `vendor` "
            "is read. For vendors " + ", ".join(f"`{v:#06x}`" for v in plan.PCI_KEEP_VENDORS) + " and every bridge "
            f"on their sysfs paths (at most {plan.PCI_MAX_KEPT} functions): "
            + ", ".join(f"`{a}`" for a in plan.PCI_ATTRS) + ", the targets of the "
            + ", ".join(f"`{a}`" for a in plan.PCI_LINKS) + f" links and `{plan.PCI_IOMMU_GROUP_TYPE}`; for "
            f"bridges, the first {plan.PCI_CONFIG_BYTES} bytes of `config` (the kernel returns 64 to non-root "
            "readers), of which only the ACS registers and the extended capability ids are kept.", "",
            "### Device nodes opened (the open test)", "",
            f"Opened read-only and non-blocking in a child process, closed at once (no read, no ioctl), "
            f"killed after {plan.OPEN_TEST_TIMEOUT_S:g} s; only on the live host. The errno tells a cgroup "
            "denial (EPERM) from a missing node (ENOENT) or a mode that denies this user (EACCES).", "",
            *[f"- `{p}`" for p in plan.OPEN_TESTS], "",
            "### Containerised driver roots", "",
            "When the host has no `nvidia-smi` on its PATH (GPU Operator nodes, where the driver runs in a "
            "container), the commands and NVML run with the first of these roots that holds one: its "
            f"`{'`, `'.join(plan.DRIVER_ROOT_BIN)}` appended to PATH and its library directories to "
            "LD_LIBRARY_PATH. The snapshot notes which root was used.", "",
            *[f"- `{p}`" for p in plan.DRIVER_ROOTS], "",
            "### GPU Operator toolkit directories", "",
            "When the host has no `" + "`, `".join(plan.TOOLKIT_ROOT_PROGRAMS) + "` on its PATH, that program "
            "(and only that one) runs with the first of these directories that holds it appended to PATH: the "
            "GPU Operator installs the toolkit there. The snapshot notes which directory was used.", "",
            *[f"- `{p}`" for p in plan.TOOLKIT_ROOTS], "",
            "### Environment variables recorded", "", *[f"- `{p}`" for p in plan.ENV_NAMES], ""]
    return "\n".join(out)


def gpu_runs() -> str:
    runs = load_runs()
    if not runs:
        return "No GPU run has been recorded yet. `make test-gpu` on a GPU host writes one to `tests/gpu/runs/`.\n"
    out = []
    for run in runs:
        out += [f"### {_run_line(run)}", "", f"Recorded in `{run['_file']}`. Host: {run.get('host', '?')}, "
                f"{run.get('kernel_module', '?')} kernel module, collected as uid {run.get('euid', '?')}.", ""]
        tests = run.get("pytest_gpu") or {}
        if tests:
            out += [f"GPU tests: {tests.get('passed', 0)} passed, {tests.get('failed', 0)} failed, "
                    f"{tests.get('skipped', 0)} skipped.", ""]
        timings = run.get("timings_seconds") or {}
        if timings:
            out += ["| Wall time (s) | Median | Fastest |", "|---|---|---|"]
            for name, value in timings.items():
                # One measured figure (in-process collect) has no spread; repeated commands give median/min.
                median, fastest = ((value.get("median"), value.get("min")) if isinstance(value, dict)
                                   else (value, value))
                out.append(f"| `{name}` | {median} | {fastest} |")
            out.append("")
        summaries = run.get("summaries", {})
        out += ["| Check | Status | Summary |", "|---|---|---|"]
        out += [f"| `{c}` | {s} | {str(summaries.get(c, '')).replace('|', '&#124;')} |"
                for c, s in sorted(run.get("checks", {}).items())]
        out.append("")
    return "\n".join(out)


def _validate_front_matter(page: Any) -> None:
    src = page.file.src_uri
    section, _, name = src.rpartition("/")
    if section not in {p.section for p in PAGES.values()}:
        return
    page_id = name[:-3]
    meta = page.meta
    if meta.get("id") != page_id or page_id not in PAGES or PAGES[page_id].section != section:
        raise PluginError(f"{src}: front matter id {meta.get('id')!r} must equal the catalogue id {page_id!r}")
    checks = load_checks()
    for check_id in meta.get("checks") or []:
        if check_id not in checks:
            raise PluginError(f"{src}: front matter names unknown check {check_id!r}")


def _diagrams() -> Any:
    """docs/hooks/diagrams.py, loaded by path (mkdocs loads hooks by path, not as a package)."""
    import importlib.util
    import sys

    module = sys.modules.get("gpu_runbook_site_diagrams")
    if module is None:
        spec = importlib.util.spec_from_file_location("gpu_runbook_site_diagrams",
                                                      os.path.join(os.path.dirname(__file__), "diagrams.py"))
        if spec is None or spec.loader is None:
            raise PluginError("docs/hooks/diagrams.py cannot be loaded")
        module = importlib.util.module_from_spec(spec)
        sys.modules["gpu_runbook_site_diagrams"] = module
        spec.loader.exec_module(module)
    return module


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    _validate_front_matter(page)

    def expand(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "verified":
            return verified(list(page.meta.get("checks") or []))
        if name == "catalogue":
            return catalogue()
        if name == "plan":
            return collection_plan()
        if name == "gpu-runs":
            return gpu_runs()
        if name == "versions":
            return versions(page.meta, page.file.src_uri)
        if name == "explain-box":
            return EXPLAIN_BOX
        if name == "error-index":
            return error_index()
        if name == "explain-accuracy":
            return explain_accuracy()
        if name == "diagram":
            return _diagrams().render(match.group(2), page, config, files)
        raise PluginError(f"{page.file.src_uri}: unknown shortcode md:{name}")

    return SHORTCODE.sub(expand, markdown)


# nbconvert's template imports mermaid from a CDN on every notebook page; the notebooks draw no diagrams,
# and a viewed page must not reach outside hosts.
_CDN_MODULE_SCRIPT = re.compile(r"<script type=\"module\">(?:(?!</script>).)*?https?://(?:(?!</script>).)*?</script>",
                                re.DOTALL)


def on_post_page(output: str, page: Any, config: Any) -> str:
    if page.file.src_uri.endswith(".ipynb"):
        return _CDN_MODULE_SCRIPT.sub("", output)
    return output
