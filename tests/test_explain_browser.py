"""The site answers pasted errors in headless Chromium, offline: the "Paste an error" box gives the same top three
pages as `gpu-runbook explain`, and Material's own search box finds each page from each of its error strings
(a pasted `nvidia-container-cli: ...` used to be a Lunr query error and "no results").

Needs /usr/bin/chromium (`.ci/run` installs it); skips locally without it and fails in CI.
"""

from __future__ import annotations

import json
import time

import pytest
from conftest import DOCS
from gen_error_index import front_matter
from gpu_runbook.explain import explain
from gpu_runbook.pages import PAGES, docs_path
from reports import load_reports
from test_offline_site import browser_page, site_url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

TEST_REPORTS = [r for r in load_reports() if r["split"] == "test"]
SEARCH_WAIT_S = 30.0
WAIT_MS = 30_000  # for an element to appear; a quick answer returns at once
DOCUMENTED = [(pid, e) for pid in PAGES for e in front_matter(DOCS / docs_path(pid))[0].get("errors") or []]


def _open_home(page, site_url: str) -> None:  # noqa: F811
    page.goto(site_url + "index.html", wait_until="load")
    page.wait_for_function("() => window.gpuRunbookExplain !== undefined")


def test_the_box_ranks_like_explain_for_every_test_report(site_url: str, browser_page) -> None:  # noqa: F811
    page, outside = browser_page
    _open_home(page, site_url)
    # Pasted forms that unfold_paste rewrites: JSON-quoted and terminal-coloured copies, and a Windows path.
    quoted = [json.dumps(r["text"], ensure_ascii=False)[1:-1] for r in TEST_REPORTS[:40]]
    coloured = ["\x1b[1;31m" + r["text"].replace(" ", "\x1b[0m ", 3) for r in TEST_REPORTS[:20]]
    windows = ["C:\\Windows\\System32\\nvidia-smi.exe\\nFailed to initialize NVML: Unknown Error"]
    texts = [r["text"] for r in TEST_REPORTS] + [e for _, e in DOCUMENTED] + quoted + coloured + windows
    browser = page.evaluate("texts => window.gpuRunbookExplain.rankMany(texts)", texts)
    differ = []
    for text, got in zip(texts, browser):
        want = [(m.page, m.level) for m in explain(text)[:3]]
        if [(r["page"], r["level"]) for r in got[:3]] != want:
            differ.append((text[:60], want, [(r["page"], r["level"]) for r in got[:3]]))
    assert not differ, f"{len(differ)} of {len(texts)} texts ranked differently in the browser: {differ[:5]}"
    assert len(TEST_REPORTS) >= 50
    assert not outside, outside


def test_the_home_page_box_answers_a_paste(site_url: str, browser_page) -> None:  # noqa: F811
    page, outside = browser_page
    _open_home(page, site_url)
    box = page.locator("[data-gpu-explain] textarea")
    box.fill("Dec 02 03:14:07 node7 kernel: NVRM: Xid (PCI:0000:3b:00): 79, pid=1913, GPU has fallen off the bus.")
    page.locator("[data-gpu-explain] button").click()
    first = page.locator(".gpu-explain__item").first
    first.wait_for(timeout=WAIT_MS)
    assert first.get_attribute("data-page") == "recovery"
    assert "match" in first.locator(".gpu-explain__level").inner_text().lower()
    first.locator("a").click()
    page.wait_for_load_state("load")
    assert page.url.endswith("kubernetes/recovery.html")
    assert not outside, outside


def test_the_404_page_carries_the_box(site_url: str, browser_page) -> None:  # noqa: F811
    page, outside = browser_page
    page.goto(site_url + "404.html", wait_until="load")
    page.locator("[data-gpu-explain] textarea").fill("Failed to initialize NVML: Driver/library version mismatch")
    page.locator("[data-gpu-explain] button").click()
    first = page.locator(".gpu-explain__item").first
    first.wait_for(timeout=WAIT_MS)
    assert first.get_attribute("data-page") == "driver-mismatch"
    assert not outside, outside


def _search(page, query: str) -> list[str]:
    """Material's search box: the pages of the result list, in order (articles, not sections)."""
    box = page.locator("input.md-search__input")
    results = page.locator(".md-search-result__item > a")
    # Empty the box and wait for the list to empty: otherwise the previous query's results, still on screen
    # while the worker answers the new one, are read as this query's.
    box.fill("")
    for _ in range(300):
        if not results.count():
            break
        page.wait_for_timeout(100)
    box.fill(query)
    box.press("End")
    found: list[str] = []
    # Up to SEARCH_WAIT_S: the first answer usually comes within a second, but a busy shared runner can be many
    # times slower, and waiting costs nothing when the answer is quick.
    deadline = time.monotonic() + SEARCH_WAIT_S
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        page.wait_for_timeout(100)
        # One read of the list: it may re-render between a count and a later nth(i), which then waits 30 s.
        hrefs = results.evaluate_all("as => as.slice(0, 12).map(a => a.getAttribute('href') || '')")
        if hrefs:
            paths = [h.split("?")[0].split("#")[0] for h in hrefs]
            found = list(dict.fromkeys("/".join(path.rsplit("/", 2)[-2:]) for path in paths))
            break
        if attempt % 10 == 0:  # asked before the worker had its index: ask again
            box.press("Space")
            box.press("Backspace")
    return found


@pytest.fixture(scope="module")
def search_page(site_url: str, browser_page):  # noqa: F811
    page, outside = browser_page
    _open_home(page, site_url)
    page.keyboard.press("s")
    page.locator("input.md-search__input").wait_for(state="visible", timeout=WAIT_MS)
    return page, outside


def test_material_search_finds_each_page_from_each_of_its_error_strings(search_page) -> None:
    page, outside = search_page
    misses = []
    for page_id, error in DOCUMENTED:
        want = f"{PAGES[page_id].section}/{page_id}.html"
        found = _search(page, error)
        if want not in found[:3]:
            misses.append((page_id, error[:70], found[:3]))
    assert not misses, f"{len(misses)} of {len(DOCUMENTED)} error strings do not bring up their page: {misses[:6]}"
    assert not outside, outside


def test_material_search_answers_pasted_reports(search_page) -> None:
    """Real pasted text (colons, quotes, brackets, paths, kubectl tables) never gets "no results"."""
    page, outside = search_page
    sample = TEST_REPORTS[::3]
    empty = [r["id"] for r in sample if not _search(page, r["text"][:500])]
    assert not empty, f"no search results for {empty}"
    # Material searches the last word as a prefix. lunr's token-set minimisation can merge two different nodes
    # when tokens hold digits, and then some queries throw and find nothing; which ones depends on every token
    # of the site (docs/hooks/lunr_tokenset.py patches it). Plain words must always find something.
    words = ["ubuntu", "nvid", "podman", "cuda", "kubectl"]
    assert all(_search(page, word) for word in words), [w for w in words if not _search(page, w)]
    assert not outside, outside


def test_box_and_search_work_from_file_urls(built_site, browser_page) -> None:  # noqa: F811
    """The site copied to an air-gapped host opens from file://: the box and pasted-error search still answer."""
    browser = browser_page[0].context.browser
    context = browser.new_context(service_workers="block")
    page = context.new_page()
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url) if r.url.startswith(("http:", "https:")) else None)
    page.goto((built_site / "index.html").as_uri(), wait_until="load")
    page.locator("[data-gpu-explain] textarea").fill("Failed to initialize NVML: Driver/library version mismatch")
    page.locator("[data-gpu-explain] button").click()
    first = page.locator(".gpu-explain__item").first
    first.wait_for(timeout=WAIT_MS)
    assert first.get_attribute("data-page") == "driver-mismatch"
    page.keyboard.press("s")
    page.locator("input.md-search__input").wait_for(state="visible", timeout=WAIT_MS)
    found = _search(page, "nvidia-container-cli: initialization error: load library failed")
    context.close()
    assert found and found[0] == "containers/container-cli-init-error.html", found
    assert not outside, outside
