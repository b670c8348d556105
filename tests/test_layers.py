"""The container stack walk: layers bottom up, stopping at the lowest failing layer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import papermill
from conftest import DOCS, REPO, SCENARIO_DIR
from gpu_runbook.doctor import judge
from gpu_runbook.layers import LAYERS, layer_checks, walk_layers
from gpu_runbook.registry import load_checks

NOTEBOOK = REPO / "notebooks" / "container-stack.ipynb"


def test_layers_name_registered_checks_once() -> None:
    ids = layer_checks()
    assert len(ids) == len(set(ids))
    assert not [c for c in ids if c not in load_checks()]


def test_the_page_lists_each_layers_checks() -> None:
    page = (DOCS / "containers" / "container-stack.md").read_text(encoding="utf-8")
    for layer in LAYERS:
        section = page.split(f"{{ #{layer.anchor} }}", 1)[1].split("\n### ", 1)[0]
        listed = re.findall(r"`([a-z0-9-]+)`", section.split("Checks:", 1)[1])
        assert set(layer.checks) <= set(listed), (layer.name, sorted(set(layer.checks) - set(listed)))


def test_walk_stops_at_the_lowest_failing_layer() -> None:
    findings, _ = judge(str(SCENARIO_DIR / "device-nodes" / "broken-uvm-not-loaded-in-container.json"))
    results, broken = walk_layers(findings)
    assert broken is LAYERS[0]
    assert [r.status for r in results[1:]] == [None] * (len(LAYERS) - 1)


def test_walk_on_a_healthy_host_breaks_nowhere() -> None:
    findings, _ = judge(str(SCENARIO_DIR / "device-nodes" / "fixed-healthy-h100-580.json"))
    results, broken = walk_layers(findings)
    assert broken is None and all(r.status is not None for r in results)


def test_walk_finds_a_broken_runtime_layer_above_healthy_ones() -> None:
    findings, _ = judge(str(SCENARIO_DIR / "gpu-not-visible" / "broken-runtime-configured-toolkit-missing.json"))
    _, broken = walk_layers(findings)
    assert broken is not None and broken.anchor == "layer-runtime"


def test_container_stack_notebook_under_papermill(tmp_path: Path) -> None:
    out = tmp_path / "stack.ipynb"
    scenario = SCENARIO_DIR / "device-nodes" / "broken-uvm-not-loaded-in-container.json"
    papermill.execute_notebook(str(NOTEBOOK), str(out), parameters={"snapshot_path": str(scenario)},
                               kernel_name="python3", cwd=str(REPO), progress_bar=False)
    nb = nbformat.read(str(out), as_version=4)
    cell = next(c for c in nb.cells if "layers-json" in c.metadata.get("tags", []))
    result = json.loads("".join(o.get("text", "") for o in cell.outputs))
    assert result["error"] == "" and result["first_broken"] == LAYERS[0].name
    assert "Fix first" in json.dumps([c.get("outputs") for c in nb.cells])
