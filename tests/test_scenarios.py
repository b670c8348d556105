"""Every scenario (a broken or fixed host) gets the verdicts it expects, through the real CLI."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import SCENARIO_DIR, load_scenario, run_cli, scenario_files
from gpu_runbook.pages import PAGES
from gpu_runbook.registry import load_checks

SCENARIOS = scenario_files()
STATUSES = {"ok", "warn", "fail", "skip", "unknown"}


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


@pytest.mark.parametrize("path", SCENARIOS, ids=_id)
def test_scenario_gets_expected_verdicts(path: Path) -> None:
    scenario = load_scenario(path)
    code, out, err = run_cli("check", "--snapshot", str(path), "--format", "json")
    assert err == "", err
    report = json.loads(out)
    got = {f["check"]: f["status"] for f in report["findings"]}
    for check_id, expected in scenario["expect"].items():
        assert got.get(check_id) == expected, (
            f"{check_id}: expected {expected}, got {got.get(check_id)}: "
            f"{[f['summary'] for f in report['findings'] if f['check'] == check_id]}")
    statuses = set(got.values())
    assert code == (1 if "fail" in statuses else 2 if "unknown" in statuses else 0)
    # One line at 3 a.m.: nothing from the host (an image's NVIDIA_REQUIRE_CUDA runs to 2 KB) may blow it up.
    long = {f["check"]: len(f["summary"]) for f in report["findings"] if len(f["summary"]) > 500}
    assert not long, long


@pytest.mark.parametrize("path", SCENARIOS, ids=_id)
def test_scenario_is_well_formed(path: Path) -> None:
    scenario = load_scenario(path)
    assert path.parent.name in PAGES, f"scenario folder {path.parent.name} is not a page id"
    assert isinstance(scenario.get("source"), str) and len(scenario["source"]) > 10, "name the source"
    assert scenario.get("description"), "say what host state this is"
    assert scenario["expect"], "a scenario must expect at least one verdict"
    checks = load_checks()
    for check_id, status in scenario["expect"].items():
        assert check_id in checks, f"unknown check {check_id}"
        assert status in STATUSES


def test_every_check_has_a_broken_and_a_fixed_scenario() -> None:
    seen: dict[str, set[str]] = defaultdict(set)
    for path in SCENARIOS:
        for check_id, status in load_scenario(path)["expect"].items():
            seen[check_id].add(status)
    missing = {c: sorted({"fail", "ok"} - seen[c]) for c in load_checks()
               if not ({"ok"} <= seen[c] and seen[c] & {"fail", "warn"})}
    assert not missing, f"checks without a broken (fail/warn) and a fixed (ok) scenario: {missing}"


def test_scenario_dir_has_no_stray_files() -> None:
    stray = [p for p in SCENARIO_DIR.rglob("*") if p.is_file() and p.suffix != ".json" and p.name != "README.md"]
    assert not stray, stray
