"""Every runbook page follows the template, shows its checks' code, and every finding's link resolves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import DOCS, REPO, run_cli, scenario_files
from gpu_runbook.pages import PAGES, docs_path
from gpu_runbook.registry import load_checks

TEMPLATE = ["Symptoms", "Check", "Causes", "Fix", "Verify", "References"]
CONCEPT_TEMPLATE = ["Causes", "Fix", "Verify", "References"]


def front_matter(path: Path) -> tuple[dict, str]:
    text = path.read_text(encoding="utf-8")
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.DOTALL)
    assert match, f"{path}: no front matter"
    return yaml.safe_load(match.group(1)) or {}, match.group(2)


def h2_sections(body: str) -> list[str]:
    no_code = re.sub(r"```.*?```", "", body, flags=re.DOTALL)
    return [re.sub(r"\s*\{.*\}\s*$", "", h).strip() for h in re.findall(r"^## (.+)$", no_code, re.MULTILINE)]


PAGE_FILES = {pid: DOCS / docs_path(pid) for pid in PAGES}
WRITTEN = {pid: p for pid, p in PAGE_FILES.items() if p.exists() and not front_matter(p)[0].get("stub")}


@pytest.mark.parametrize("page_id", sorted(PAGES))
def test_catalogue_page_exists_with_its_id(page_id: str) -> None:
    path = PAGE_FILES[page_id]
    assert path.exists(), f"{path} missing"
    meta, _ = front_matter(path)
    assert meta.get("id") == page_id
    assert meta.get("title")


@pytest.mark.parametrize("page_id", sorted(WRITTEN))
def test_page_follows_template(page_id: str) -> None:
    meta, body = front_matter(WRITTEN[page_id])
    sections = h2_sections(body)
    template = CONCEPT_TEMPLATE if meta.get("kind") == "concept" else TEMPLATE
    positions = []
    for name in template:
        assert name in sections, f"{page_id}: missing '## {name}' (has {sections})"
        positions.append(sections.index(name))
    assert positions == sorted(positions), f"{page_id}: sections out of order: {sections}"
    refs = body.split("## References", 1)[1]
    assert re.search(r"\]\(https?://", refs), f"{page_id}: References lists no source link"


@pytest.mark.parametrize("page_id", sorted(WRITTEN))
def test_page_errors_appear_verbatim(page_id: str) -> None:
    meta, body = front_matter(WRITTEN[page_id])
    for error in meta.get("errors") or []:
        assert error in body, f"{page_id}: front-matter error not shown verbatim on the page: {error!r}"
    if meta.get("kind") != "concept":
        assert meta.get("errors"), f"{page_id}: a failure page lists the error strings users see"


@pytest.mark.parametrize("page_id", sorted(WRITTEN))
def test_page_shows_its_checks_code_from_snippets(page_id: str) -> None:
    meta, body = front_matter(WRITTEN[page_id])
    checks = load_checks()
    for check_id in meta.get("checks") or []:
        assert check_id in checks, f"{page_id}: unknown check {check_id}"
        include = re.search(r'--8<-- "gpu_runbook/[\w/]+\.py:' + re.escape(check_id) + '"', body)
        assert include, f"{page_id}: does not include the snippet section of {check_id}"
    if meta.get("checks"):
        assert "<!-- md:verified -->" in body, f"{page_id}: no Verified-on shortcode"


def test_every_check_is_shown_on_its_page() -> None:
    for spec in load_checks().values():
        meta, _ = front_matter(PAGE_FILES[spec.page])
        assert spec.id in (meta.get("checks") or []), f"{spec.id} is not listed on its page {spec.page}"


def test_snippet_sections_exist_for_every_check() -> None:
    sources = "\n".join(p.read_text() for p in (REPO / "snippets" / "gpu_runbook" / "checks").glob("*.py"))
    for check_id in load_checks():
        assert f"# --8<-- [start:{check_id}]" in sources and f"# --8<-- [end:{check_id}]" in sources, check_id


def test_every_finding_url_resolves_in_the_built_site(built_site: Path) -> None:
    urls = set()
    for path in scenario_files():
        _, out, _ = run_cli("check", "--snapshot", str(path), "--format", "json")
        urls.update(f["url"] for f in json.loads(out)["findings"])
    assert urls
    for url in sorted(urls):
        rel, _, anchor = url.split("127.0.0.1:8000/", 1)[1].partition("#")
        html = (built_site / rel).read_text(encoding="utf-8")
        if anchor:
            assert f'id="{anchor}"' in html, f"{url}: anchor #{anchor} is not on the page"
