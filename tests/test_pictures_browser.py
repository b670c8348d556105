"""The pictures in headless Chromium: the diagrams drawn at build time, the notebook's real run and the HTML report
render, follow light and dark mode, and fetch nothing from outside. Screenshots go to out/screenshots/ (ignored by
git) for a person to look at.

Needs /usr/bin/chromium (`.ci/run` installs it); skips locally without it and fails in CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, SCENARIO_DIR, run_cli
from gpu_runbook.layers import LAYERS
from test_offline_site import browser_page, site_url  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

SHOTS = REPO / "out" / "screenshots"
CAPTURE = SCENARIO_DIR / "device-nodes" / "captured-h200-mode-0600-nonroot.json"
# Document positions of: the papermill commands, the example-run label, the parameters cell, the report.
ORDER_JS = """() => {
    const all = [...document.querySelectorAll('*')];
    const at = el => el ? all.indexOf(el) : -1;
    const pres = [...document.querySelectorAll('pre')];
    const code = pres.find(p => p.textContent.includes('papermill notebooks/triage.ipynb triage-'));
    const params = pres.find(p => p.textContent.includes('Parameters (papermill'));
    return [at(code), at(document.querySelector('[data-example-run]')), at(params),
            at(document.querySelector('.gpu-report'))];
}"""


@pytest.fixture(scope="module")
def shots() -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS


def _open(page, url: str, scheme: str = "default") -> None:
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(url, wait_until="load")
    page.evaluate("s => document.body.setAttribute('data-md-color-scheme', s)", scheme)


def _diagram(page, name: str):
    svg = page.locator(f'svg[data-diagram="{name}"]')
    assert svg.count() == 1, name
    box = svg.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 150, (name, box)
    assert svg.locator("title").text_content() and svg.locator("desc").text_content()
    return svg


def test_home_page_draws_the_triage_flow(site_url: str, browser_page, shots: Path) -> None:  # noqa: F811
    page, outside = browser_page
    _open(page, site_url + "index.html")
    svg = _diagram(page, "triage")
    rows = svg.locator("g[data-row]").evaluate_all("gs => gs.map(g => g.dataset.row)")
    assert rows[:len(LAYERS)] == [layer.anchor for layer in LAYERS] and "kubernetes" in rows
    links = svg.locator("a").evaluate_all("as => as.map(a => a.getAttribute('href'))")
    assert "containers/container-stack.html#layer-driver" in links and "kubernetes/recovery.html" in links
    svg.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "home.png"))  # the viewport with the flow; full-page shots are slow
    assert not outside, outside


def test_container_stack_page_draws_the_layers_in_light_and_dark(site_url: str, browser_page,  # noqa: F811
                                                                 shots: Path) -> None:
    page, outside = browser_page
    colours = {}
    for scheme in ("default", "slate"):
        _open(page, site_url + "containers/container-stack.html", scheme)
        svg = _diagram(page, "stack")
        layers = svg.locator("g[data-layer]").evaluate_all("gs => gs.map(g => g.dataset.layer)")
        assert layers == [layer.anchor for layer in reversed(LAYERS)]
        colours[scheme] = svg.locator("text").first.evaluate("t => getComputedStyle(t).fill")
        svg.screenshot(path=str(shots / f"container-stack-diagram-{scheme}.png"))
    # Text follows the page's colour scheme (currentColor): dark on light, light on dark.
    assert colours["default"] != colours["slate"], colours
    page.screenshot(path=str(shots / "container-stack.png"))
    assert not outside, outside


@pytest.mark.parametrize("path, name", [("sharing/mig-vs-mps.html", "sharing"),
                                        ("kubernetes/recovery.html", "recovery")])
def test_decision_diagrams_render(site_url: str, browser_page, shots: Path, path: str,  # noqa: F811
                                  name: str) -> None:
    page, outside = browser_page
    _open(page, site_url + path)
    _diagram(page, name).screenshot(path=str(shots / f"{name}-diagram.png"))
    assert not outside, outside


def test_notebook_page_shows_a_real_run(site_url: str, browser_page, shots: Path) -> None:  # noqa: F811
    page, outside = browser_page
    _open(page, site_url + "notebooks/triage.html")
    label = page.locator("[data-example-run]")
    assert "captured on an NVIDIA H200, driver 580.159.04, 2026-11-27" in label.inner_text()
    assert "papermill notebooks/triage.ipynb out.ipynb -p snapshot_path" in label.inner_text()
    # The papermill commands and the label sit above the parameters cell; the run's output below it.
    order = page.evaluate(ORDER_JS)
    assert -1 not in order and order == sorted(order), order
    verdict = page.locator(".gpu-report .verdict")
    assert "Broken: nvml-init" in verdict.inner_text()
    stack = page.locator("svg.gpu-diagram--findings")
    assert stack.count() == 1 and stack.locator('g[data-broken="true"]').get_attribute("data-layer") == "layer-driver"
    stack.screenshot(path=str(shots / "triage-notebook-stack.png"))
    label.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "triage-notebook.png"))
    verdict.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "triage-notebook-findings.png"))
    _open(page, site_url + "notebooks/container-stack.html")
    assert page.locator("[data-example-run]").count() == 1
    assert page.locator('svg.gpu-diagram--findings g[data-broken="true"]').count() == 1
    assert not outside, outside


def test_html_report_renders_offline_and_prints(browser_page, shots: Path) -> None:  # noqa: F811
    code, html, _ = run_cli("check", "--snapshot", str(CAPTURE), "--format", "html")
    assert code == 1
    report = shots / "report.html"
    report.write_text(html, encoding="utf-8")
    browser = browser_page[0].context.browser
    context = browser.new_context(service_workers="block", viewport={"width": 1100, "height": 900})
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report.as_uri(), wait_until="load")
    assert page.locator(".verdict").inner_text().startswith("\u2717 Broken: nvml-init")
    assert page.locator('article.finding[data-status="fail"]').count() == 2
    assert page.locator('svg.gpu-diagram--findings g[data-broken="true"]').count() == 1
    assert not page.locator("details.skip").evaluate("d => d.open")
    page.screenshot(path=str(shots / "report.png"), full_page=True)
    page.emulate_media(media="print")
    page.screenshot(path=str(shots / "report-print.png"), full_page=True)
    context.close()
    assert requests == [report.as_uri()], requests
