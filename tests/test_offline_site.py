"""Offline site: in headless Chromium with every non-localhost request blocked, each page (notebooks
included) loads with zero attempted outside requests, and search finds error strings.

Needs /usr/bin/chromium (`.ci/run` installs it). Without it the test skips locally and fails in CI.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import load_hook
from playwright.sync_api import sync_playwright

pytestmark = pytest.mark.browser

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-default-apps", "--disable-extensions"]


def _chromium() -> str:
    for candidate in (os.environ.get("GPU_RUNBOOK_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.path.exists(candidate):
            return candidate
    message = "chromium is not installed (apt-get install chromium; .ci/run does this)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError  # unreachable


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site_url(built_site: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(built_site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser_page(site_url: str):
    executable = _chromium()
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS, headless=True)
        context = browser.new_context(service_workers="block")

        def route(route_obj) -> None:  # every request passes here first
            url = route_obj.request.url
            parsed = urlparse(url)
            if parsed.scheme in ("data", "blob", "about") or parsed.hostname in LOCAL_HOSTS:
                route_obj.continue_()
            else:
                outside.append(url)
                route_obj.abort()

        context.route("**/*", route)
        page = context.new_page()
        yield page, outside
        context.close()
        browser.close()


def _pages(built_site: Path) -> list[str]:
    return sorted(str(p.relative_to(built_site)) for p in built_site.rglob("*.html")
                  if p.name != "404.html" and "assets" not in p.parts)


def test_every_page_loads_with_no_outside_request(built_site: Path, site_url: str, browser_page) -> None:
    page, outside = browser_page
    pages = _pages(built_site)
    assert any("notebooks" in p for p in pages), "no notebook page in the site"
    assert "kubernetes/recovery.html" in pages
    failures = {}
    for rel in pages:
        before = len(outside)
        response = page.goto(site_url + rel, wait_until="load")
        page.wait_for_timeout(50)
        if response is None or response.status != 200:
            failures[rel] = f"status {response.status if response else None}"
        if len(outside) > before:
            failures[rel] = outside[before:]
    assert not failures, f"pages that failed or reached outside: {failures}"
    assert not outside, outside
    print(f"\n{len(pages)} pages loaded offline, 0 outside requests")


@pytest.mark.parametrize("query, expected_page", [
    ("libnvidia-ml.so.1", None),
    ("Unknown Error", None),
    ("GPU is lost", "recovery"),
])
def test_search_finds_error_strings(site_url: str, browser_page, query: str, expected_page: str) -> None:
    page, outside = browser_page
    page.goto(site_url + "index.html", wait_until="load")
    page.keyboard.press("s")  # Material's shortcut opens search on any viewport
    box = page.locator("input.md-search__input")
    box.wait_for(state="visible", timeout=30_000)
    results = page.locator(".md-search-result__item")

    def hrefs() -> list[str]:
        return [results.nth(i).locator("a").first.get_attribute("href") or "" for i in range(results.count())]

    # fill() sets the whole query at once (typing would search each prefix). Material reads the query on
    # keyup and focus, not on input, and drops one asked before its worker has loaded the index (slow on a
    # busy 2-core runner): so press a key after filling, and while nothing is found, change the query and
    # change it back (a space, then Backspace) so that it is asked again.
    box.fill(query)
    box.press("End")
    found: list[str] = []
    for _ in range(120):  # up to 30 s on a busy runner; a quick answer ends the loop at once
        page.wait_for_timeout(250)
        found = hrefs()
        if found and (not expected_page or any(expected_page in href for href in found)):
            break
        if not found and _ % 8 == 7:
            box.press("Space")
            box.press("Backspace")
    assert found, f"no search results for {query!r}"
    if expected_page:
        assert any(expected_page in href for href in found), found
    assert not outside, outside


def test_lunr_patch_rewrites_the_worker_once(tmp_path: Path) -> None:
    hook = load_hook("lunr_tokenset")
    workers = tmp_path / "assets" / "javascripts" / "workers"
    workers.mkdir(parents=True)
    worker = workers / "search.0123abcd.min.js"
    worker.write_text("a=1;" + hook.BUGGY + ";b=2", encoding="utf-8")
    (workers / "search.0123abcd.min.js.map").write_text(hook.BUGGY, encoding="utf-8")
    assert hook.patch_worker(str(tmp_path)) == [str(worker)]
    assert worker.read_text(encoding="utf-8") == "a=1;" + hook.FIXED + ";b=2"
    assert hook.patch_worker(str(tmp_path)) == [str(worker)]  # a second build does not patch twice
    worker.write_text("unrelated", encoding="utf-8")
    assert hook.patch_worker(str(tmp_path)) == []


def test_search_worker_carries_the_lunr_tokenset_fix(built_site: Path) -> None:
    """docs/hooks/lunr_tokenset.py patched Material's search worker (else some pasted errors find nothing)."""
    hook = load_hook("lunr_tokenset")
    workers = list((built_site / "assets" / "javascripts" / "workers").glob("search.*.js"))
    assert workers, "no search worker in the built site"
    for worker in workers:
        source = worker.read_text(encoding="utf-8")
        assert hook.FIXED in source and hook.BUGGY not in source, worker.name
