"""The drawings come from the code: the stack from LAYERS, the triage flow from the page catalogue; findings colour
the stack; every drawing has a text alternative and reaches for nothing outside the page."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import REPO, SCENARIO_DIR, load_hook
from gpu_runbook.diagrams import findings_stack_svg, stack_svg
from gpu_runbook.doctor import judge
from gpu_runbook.layers import LAYERS
from gpu_runbook.pages import PAGES

SVG = "{http://www.w3.org/2000/svg}"
BROKEN_CAPTURE = SCENARIO_DIR / "device-nodes" / "captured-h200-mode-0600-nonroot.json"
HEALTHY_CAPTURE = SCENARIO_DIR / "device-nodes" / "captured-h200-private-dev-healthy.json"


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # noqa: S314  (our own output; well-formed XML, or this raises)
    assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None and title.text and desc is not None and desc.text
    assert root.get("aria-labelledby") == f"{title.get('id')} {desc.get('id')}"
    return root


def _self_contained(svg: str) -> None:
    assert "<script" not in svg and "<image" not in svg and "<foreignObject" not in svg
    urls = re.findall(r'(?:href|src)="([^"]*)"', svg) + re.findall(r"url\(([^)]*)\)", svg)
    assert not [u for u in urls if re.match(r"(?i)(https?:)?//", u)], urls
    assert re.findall(r"https?://[^\s\"]+", svg) == ["http://www.w3.org/2000/svg"]


def test_stack_is_drawn_from_layers() -> None:
    svg = stack_svg()
    root = _parse(svg)
    _self_contained(svg)
    groups = [g for g in root.iter(f"{SVG}g") if g.get("data-layer")]
    # Drawn top down: the last layer (CUDA) first, the kernel driver at the bottom.
    assert [g.get("data-layer") for g in groups] == [layer.anchor for layer in reversed(LAYERS)]
    text = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    for layer in LAYERS:
        assert layer.name in text and layer.name in root.find(f"{SVG}desc").text
        for check in layer.checks:
            assert check in text, check


def test_findings_colour_the_stack_and_mark_the_lowest_broken_layer() -> None:
    findings, _ = judge(str(BROKEN_CAPTURE))
    svg = findings_stack_svg(findings)
    root = _parse(svg)
    _self_contained(svg)
    status = {g.get("data-layer"): g.get("data-status") for g in root.iter(f"{SVG}g") if g.get("data-layer")}
    assert status["layer-driver"] == "fail"
    assert {status[layer.anchor] for layer in LAYERS[1:]} == {"not judged"}
    broken = [g.get("data-layer") for g in root.iter(f"{SVG}g") if g.get("data-broken")]
    assert broken == ["layer-driver"]
    assert "fix this layer first" in svg and "Lowest broken layer: 1. Kernel driver" in root.find(f"{SVG}desc").text


def test_a_healthy_host_has_no_broken_layer() -> None:
    findings, _ = judge(str(HEALTHY_CAPTURE))
    root = _parse(findings_stack_svg(findings))
    assert not [g for g in root.iter(f"{SVG}g") if g.get("data-broken")]
    assert "not judged" not in {g.get("data-status") for g in root.iter(f"{SVG}g")}


def test_no_layer_check_ran_draws_nothing() -> None:
    assert findings_stack_svg([]) == ""


def test_triage_flow_takes_every_page_from_the_catalogue() -> None:
    diagrams = load_hook("diagrams")
    svg = diagrams.triage_svg(lambda page_id, anchor="": f"../{page_id}.html", {})
    root = _parse(svg)
    _self_contained(svg)
    drawn = {t.get("data-page") for t in root.iter(f"{SVG}text") if t.get("data-page")}
    missing = set(PAGES) - drawn - {"container-stack"}  # the stack page is the layers' own link
    assert not missing, f"pages missing from the triage flow: {sorted(missing)}"
    rows = [g.get("data-row") for g in root.iter(f"{SVG}g") if g.get("data-row")]
    assert rows[:len(LAYERS)] == [layer.anchor for layer in LAYERS]
    assert {"sharing", "kubernetes"} <= set(rows)


def test_triage_examples_are_documented_error_strings() -> None:
    diagrams = load_hook("diagrams")
    for row in diagrams.triage_rows({}):
        if not row["example"]:
            continue
        errors = [str(e) for pid in row["pages"] for e in diagrams.front_matter(pid).get("errors") or ()]
        shown = row["example"].removesuffix("...")
        assert any(e.startswith(shown) for e in errors), row


@pytest.mark.parametrize("name", ["sharing", "recovery"])
def test_decision_diagrams_link_to_runbook_pages(name: str) -> None:
    diagrams = load_hook("diagrams")
    links: list[tuple[str, str]] = []
    svg = getattr(diagrams, f"{name}_svg")(lambda page_id, anchor="": links.append((page_id, anchor)) or "#x")
    root = _parse(svg)
    _self_contained(svg)
    assert links and all(page_id in PAGES for page_id, _ in links)
    for page_id, anchor in links:
        if anchor:
            text = (REPO / "docs" / PAGES[page_id].section / f"{page_id}.md").read_text(encoding="utf-8")
            assert f"{{ #{anchor} }}" in text, f"{page_id}#{anchor} is not a heading anchor"
    if name == "recovery":
        steps = [g.get("data-step") for g in root.iter(f"{SVG}g") if g.get("data-step")]
        assert steps == ["drain", "holders", "reset", "reload", "reboot", "verify"]
    else:
        nodes = {g.get("data-node") for g in root.iter(f"{SVG}g") if g.get("data-node")}
        assert {"mig", "mps", "time-slicing", "q-isolation"} <= nodes


def test_notebook_example_label_comes_from_the_capture() -> None:
    notebooks = load_hook("notebooks")
    for notebook, capture in notebooks.EXAMPLES.items():
        assert (REPO / notebook).exists() and "/captured-h200-" in capture
        label = notebooks.capture_label(capture)
        assert label["gpu"] == "NVIDIA H200" and label["driver"] == "580.159.04"
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", label["date"])
        text = notebooks.label_markdown(notebook, label)
        assert f"captured on an NVIDIA H200, driver 580.159.04, {label['date']}" in text
        assert f"papermill {notebook} out.ipynb -p snapshot_path {capture}" in text


def test_label_refuses_a_capture_whose_driver_disagrees(tmp_path: Path) -> None:
    import json

    from mkdocs.exceptions import PluginError

    notebooks = load_hook("notebooks")
    scenario = json.loads(BROKEN_CAPTURE.read_text(encoding="utf-8"))
    scenario["source"] = scenario["source"].replace("580.159.04", "570.1.2")
    bad = tmp_path / "captured-h200-bad.json"
    bad.write_text(json.dumps(scenario), encoding="utf-8")
    with pytest.raises(PluginError):
        notebooks.capture_label(str(bad))
