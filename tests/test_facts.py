"""The facts ledger: every load-bearing claim of a page, with its primary source, agrees with page and checks.

`tests/data/facts/<page-id>.yaml` lists the claims a page (and its checks) stands on: error strings, defaults,
paths, version boundaries, behaviours. The tests below hold the three together:
- every `errors:` string of a page is in the ledger with a source;
- every version boundary a check compares against (`registry.boundary`) is in the ledger, with the same
  component and version, and the page states that version;
- every ledger value appears verbatim on its page, so a page and its ledger cannot drift apart;
- every page says which upstream versions it was checked against, and shows it.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from conftest import DOCS, REPO
from gpu_runbook.pages import PAGES, docs_path
from gpu_runbook.registry import BOUNDARIES, COMPONENTS, load_checks
from test_pages import front_matter

LEDGER = REPO / "tests" / "data" / "facts"
KINDS = {"error", "default", "path", "version", "behaviour", "command", "limit"}
# Primary sources: the vendors' and projects' own documentation, source and issue trackers, the standards
# and manual pages. A blog or forum answer is a lead to verify, not a source.
PRIMARY_HOSTS = {
    "github.com", "raw.githubusercontent.com", "docs.nvidia.com", "developer.nvidia.com", "download.nvidia.com",
    "www.nvidia.com", "nvidia.github.io", "catalog.ngc.nvidia.com", "kubernetes.io", "docs.docker.com",
    "docs.podman.io", "man7.org", "www.kernel.org", "docs.kernel.org", "access.redhat.com", "docs.redhat.com",
    "docs.fedoraproject.org", "documentation.suse.com", "manpages.ubuntu.com", "manpages.debian.org",
    "www.freedesktop.org", "systemd.io", "kubernetes-sigs.github.io", "containerd.io",
}
# Projects whose own repository is on a shared forge other than GitHub: NVIDIA's CUDA image sources.
PRIMARY_PREFIXES = ("https://gitlab.com/nvidia/",)


def _ledger(page_id: str) -> list[dict]:
    path = LEDGER / f"{page_id}.yaml"
    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    assert isinstance(data, list), f"{path}: the ledger is a list of facts"
    return data


ALL_FACTS = {page_id: _ledger(page_id) for page_id in PAGES}


# A link to a branch (main, master) shows other code next month, so a claim "in release X" cannot rest on it: pages and
# ledgers cite a tag or a commit. These files of the Linux tree are the exceptions, each cited for behaviour that
# every current kernel has, because no current version of them could be read here to pin (too large to fetch;
# the stored copies are years old): pin them to a kernel tag when someone reads them there.
BRANCH_LINK = re.compile(r"https://github\.com/[\w.-]+/[\w.-]+/(?:blob|tree)/(?:main|master)/[^\s)\"'>]+")
BRANCH_LINKS_ALLOWED = {
    f"https://github.com/torvalds/linux/blob/master/{path}"
    for path in ("drivers/pci/iov.c", "drivers/pci/pci-sysfs.c", "drivers/pci/pci.c", "init/Kconfig",
                 "kernel/bpf/syscall.c")
}


def test_sources_cite_tags_or_commits_not_branches() -> None:
    found = {}
    for path in [*sorted(DOCS.rglob("*.md")), *sorted(LEDGER.glob("*.yaml"))]:
        for match in BRANCH_LINK.finditer(path.read_text(encoding="utf-8")):
            url = match.group(0).split("#")[0]
            if url not in BRANCH_LINKS_ALLOWED:
                found.setdefault(url, path.name)
    assert not found, f"links to a branch instead of a tag or commit: {found}"


def test_ledger_files_belong_to_catalogue_pages() -> None:
    stray = sorted(p.name for p in LEDGER.glob("*") if p.suffix != ".yaml" or p.stem not in PAGES)
    assert not stray, f"ledger files that name no catalogue page: {stray}"


def test_fact_ids_are_unique() -> None:
    seen: dict[str, str] = {}
    for page_id, facts in ALL_FACTS.items():
        for fact in facts:
            assert fact.get("id") not in seen, f"fact {fact.get('id')!r} in {page_id} and {seen.get(fact.get('id'))}"
            seen[fact["id"]] = page_id


@pytest.mark.parametrize("page_id", sorted(PAGES))
def test_every_fact_is_well_formed_with_a_primary_source(page_id: str) -> None:
    facts = ALL_FACTS[page_id]
    assert facts, f"tests/data/facts/{page_id}.yaml is missing or empty"
    checks = load_checks()
    for fact in facts:
        where = f"{page_id}:{fact.get('id')}"
        assert isinstance(fact.get("id"), str) and re.fullmatch(r"[a-z0-9][a-z0-9.-]*", fact["id"]), where
        assert fact.get("kind") in KINDS, f"{where}: kind must be one of {sorted(KINDS)}"
        assert isinstance(fact.get("claim"), str) and len(fact["claim"]) > 10, f"{where}: say the claim in a sentence"
        sources = fact.get("source")
        sources = [sources] if isinstance(sources, str) else sources
        assert sources and all(isinstance(s, str) for s in sources), f"{where}: no source"
        for source in sources:
            host = urlparse(source).hostname or ""
            primary = urlparse(source).scheme == "https" and host in PRIMARY_HOSTS
            assert primary or source.startswith(PRIMARY_PREFIXES), \
                f"{where}: {source!r} is not a primary source (allowed hosts: {sorted(PRIMARY_HOSTS)})"
        for check_id in fact.get("checks") or []:
            assert check_id in checks, f"{where}: names unknown check {check_id!r}"
        if fact["kind"] == "version":
            assert fact.get("component") in COMPONENTS, f"{where}: a version fact names its component"
            assert re.fullmatch(r"\d+(\.\d+)*", str(fact.get("value", ""))), f"{where}: value is the version"


@pytest.mark.parametrize("page_id", sorted(PAGES))
def test_ledger_values_appear_on_their_page(page_id: str) -> None:
    _, body = front_matter(DOCS / docs_path(page_id))
    for fact in ALL_FACTS[page_id]:
        value = fact.get("value")
        if value is not None:
            assert str(value) in body, f"{page_id}:{fact['id']}: the page does not state {value!r}"


@pytest.mark.parametrize("page_id", sorted(PAGES))
def test_every_error_string_has_a_sourced_fact(page_id: str) -> None:
    meta, _ = front_matter(DOCS / docs_path(page_id))
    documented = {f["value"] for f in ALL_FACTS[page_id] if f.get("kind") == "error" and "value" in f}
    missing = [e for e in meta.get("errors") or [] if e not in documented]
    assert not missing, f"{page_id}: errors: strings with no ledger fact (kind: error, value: the string): {missing}"


def test_every_version_boundary_of_the_checks_is_in_the_ledger() -> None:
    load_checks()
    by_id = {f["id"]: (page_id, f) for page_id, facts in ALL_FACTS.items() for f in facts}
    assert BOUNDARIES, "no check declares a version boundary (registry.boundary)"
    for fact_id, entry in BOUNDARIES.items():
        assert fact_id in by_id, f"boundary {fact_id!r} ({entry.component} {entry.version}) has no ledger fact"
        _, fact = by_id[fact_id]
        assert fact.get("kind") == "version", f"{fact_id}: ledger kind must be 'version'"
        assert (fact.get("component"), str(fact.get("value"))) == (entry.component, entry.version), \
            f"{fact_id}: the check uses {entry.component} {entry.version}, the ledger says " \
            f"{fact.get('component')} {fact.get('value')}"


@pytest.mark.parametrize("page_id", sorted(PAGES))
def test_page_states_the_versions_it_was_checked_against(page_id: str) -> None:
    meta, body = front_matter(DOCS / docs_path(page_id))
    stated = meta.get("versions")
    assert isinstance(stated, dict) and stated, f"{page_id}: front matter `versions:` (component: versions checked)"
    assert set(stated) <= set(COMPONENTS), f"{page_id}: unknown components {sorted(set(stated) - set(COMPONENTS))}"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(meta.get("checked", ""))), f"{page_id}: `checked:` YYYY-MM-DD"
    assert "<!-- md:versions -->" in body, f"{page_id}: the page does not show them (<!-- md:versions -->)"


def test_checked_against_box_is_rendered(built_site: Path) -> None:
    html = (built_site / "containers" / "cdi.html").read_text(encoding="utf-8")
    assert "Checked against upstream on" in html


# Module-level tuples of ints in the checks that are not component versions (each names its ledger fact).
NOT_VERSIONS = {"MIG_NO_RESET_CC"}  # compute capability 9.0 = Hopper: ledger facts mig-hopper-cc-boundary


def test_checks_declare_every_version_constant_as_a_boundary() -> None:
    """A version tuple written straight into a check escapes the ledger: it must come from registry.boundary."""
    import ast

    raw = []
    for path in sorted((REPO / "snippets" / "gpu_runbook" / "checks").glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple) and node.value.elts and all(
                    isinstance(e, ast.Constant) and isinstance(e.value, int) for e in node.value.elts):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                raw += [f"{path.name}:{node.lineno} {n}" for n in names if n not in NOT_VERSIONS]
    assert not raw, f"version tuples not declared with registry.boundary: {raw}"
