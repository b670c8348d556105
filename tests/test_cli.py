"""The CLI as an operator meets it: commands, formats, exit codes, and one clear line for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli, run_cli_process
from gpu_runbook.registry import load_checks
from gpu_runbook.snapshot import SCHEMA_VERSION

MINIMAL = {"schema_version": SCHEMA_VERSION, "nvml": {"init": {"error": {
    "name": "NVMLError_Unknown", "code": 999, "message": "Unknown Error"}}}}


@pytest.fixture
def snapshot_file(tmp_path: Path) -> Path:
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(MINIMAL))
    return path


def test_list_shows_every_registered_check() -> None:
    code, out, _ = run_cli("list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["id"] for r in rows] == list(load_checks())
    assert all(r["page"] and r["url"] and r["detects"] for r in rows)
    code, text, _ = run_cli("list")
    assert code == 0 and all(check_id in text for check_id in load_checks())


def test_check_snapshot_json_has_the_documented_shape(snapshot_file: Path) -> None:
    code, out, err = run_cli("check", "--snapshot", str(snapshot_file), "--format", "json")
    assert code == 1 and err == ""
    report = json.loads(out)
    assert report["summary"]["worst"] == "fail"
    by_id = {f["check"]: f for f in report["findings"]}
    nvml = by_id["nvml-init"]
    assert set(nvml) >= {"check", "status", "summary", "evidence", "page", "url", "fix"}
    assert nvml["status"] == "fail" and "Unknown Error" in nvml["summary"]
    assert nvml["url"].endswith("containers/nvml-unknown-error.html#causes")


def test_check_only_runs_the_named_checks(snapshot_file: Path) -> None:
    code, out, _ = run_cli("check", "--snapshot", str(snapshot_file), "--only", "nvml-init", "--format", "json")
    assert [f["check"] for f in json.loads(out)["findings"]] == ["nvml-init"]
    assert code == 1


def test_text_output_is_one_line_per_check_with_the_page(snapshot_file: Path) -> None:
    code, out, _ = run_cli("check", "--snapshot", str(snapshot_file), "--no-color")
    lines = out.splitlines()
    assert lines[0].startswith("gpu-runbook ")  # the header: what was judged, where, when
    assert lines[1].startswith("FAIL") and "nvml-init" in lines[1]
    assert any("read: http" in line and "nvml-unknown-error" in line for line in lines)
    assert "\033[" not in out
    assert code == 1


def test_collect_writes_a_snapshot_that_check_reads(tmp_path: Path) -> None:
    out_file = tmp_path / "snap.json"
    code, _, err = run_cli("collect", "--root", str(tmp_path), "-o", str(out_file))
    assert code == 0, err
    data = json.loads(out_file.read_text())
    assert data["schema_version"] == SCHEMA_VERSION and "skipped" in data["nvml"]
    code, out, _ = run_cli("check", "--snapshot", str(out_file), "--format", "json")
    assert code in (0, 1, 2) and json.loads(out)["findings"]


def test_collect_never_overwrites_without_force(tmp_path: Path) -> None:
    target = tmp_path / "precious.json"
    target.write_text("keep me")
    code, _, err = run_cli("collect", "--root", str(tmp_path), "-o", str(target))
    assert code == 2 and "exists" in err and target.read_text() == "keep me"
    code, _, _ = run_cli("collect", "--root", str(tmp_path), "-o", str(target), "--force")
    assert code == 0 and json.loads(target.read_text())["schema_version"] == SCHEMA_VERSION


@pytest.mark.parametrize("args, needle", [
    (["check", "--snapshot", "/nonexistent/snap.json"], "no such file"),
    (["check", "--bogus-flag"], "unrecognized arguments"),
    (["check", "--format", "xml"], "invalid choice"),
    (["check", "--only", "no-such-check", "--snapshot", "-"], "unknown check id"),
    (["check", "--root", "/nonexistent-root"], "not a directory"),
    (["check", "--deadline", "-3"], "between 0 and 3600"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_usage_is_one_line_and_exit_2(args: list[str], needle: str) -> None:
    proc = run_cli_process(*args, input="")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("gpu-runbook: error:") and needle in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("content, needle", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "a snapshot is a JSON object"),
    ('{"files": {}}', "no schema_version"),
    ('{"schema_version": 99}', "not supported"),
    ("", "not valid JSON"),
])
def test_bad_snapshot_is_one_line_and_exit_2(tmp_path: Path, content: str, needle: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    proc = run_cli_process("check", "--snapshot", str(bad))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and needle in proc.stderr, proc.stderr


def test_live_check_on_this_host_finishes_and_judges() -> None:
    proc = run_cli_process("check", "--format", "json", "--deadline", "10")
    assert proc.returncode in (0, 1, 2), proc.stderr
    findings = json.loads(proc.stdout)["findings"]
    assert {f["check"] for f in findings} == set(load_checks())
    assert not [f for f in findings if f["evidence"].get("internal_error")], findings
