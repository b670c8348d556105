"""Run as an unprivileged user: the report names the facts it could not read and why, and no check
turns "could not read" into "ok".

CI runs as root: the test makes a root-only file in a fixture host tree and drops to nobody (65534)
for the doctor. On a developer laptop (not root) it skips, saying why.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
from conftest import SNIPPETS, load_scenario, scenario_files
from gpu_runbook.registry import run_checks
from gpu_runbook.snapshot import Snapshot

NOBODY = 65534
AS_NOBODY: dict[str, Any] = {"user": NOBODY, "group": NOBODY, "extra_groups": []}


def _runs_as_nobody(python: str) -> bool:
    try:
        proc = subprocess.run([python, "-c", "import sys; sys.exit(sys.version_info < (3, 9))"], cwd="/",
                              capture_output=True, timeout=30, **AS_NOBODY)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def unprivileged_python() -> Optional[str]:
    """An interpreter nobody may run (a venv under /root is not one); None when there is none."""
    if os.geteuid() != 0:
        return None
    for candidate in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        if candidate and _runs_as_nobody(candidate):
            return candidate
    return None


def require_unprivileged() -> str:
    if os.geteuid() != 0:
        pytest.skip("needs root, to make root-only files and drop to an unprivileged user (CI runs as root)")
    python = unprivileged_python()
    if python is None:
        message = "no Python >= 3.9 that user nobody may execute (install python3)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return python


@pytest.fixture(scope="module")
def public_dir() -> Iterator[Path]:
    """A directory nobody can read: the package copy and the fixture host tree live here."""
    path = Path(tempfile.mkdtemp(prefix="gpu-runbook-nonroot-", dir="/tmp"))
    path.chmod(0o755)
    shutil.copytree(SNIPPETS / "gpu_runbook", path / "pkg" / "gpu_runbook",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for sub in (path / "pkg").rglob("*"):
        sub.chmod(0o755 if sub.is_dir() else 0o644)
    (path / "pkg").chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_as_nobody(public: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    python = require_unprivileged()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(public / "pkg"), "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([python, "-m", "gpu_runbook", *args], cwd="/", env=env, capture_output=True, text=True,
                          timeout=timeout, **AS_NOBODY)


def _host_tree(base: Path) -> Path:
    root = base / "host"
    nvidia = root / "proc" / "driver" / "nvidia"
    (nvidia / "gpus" / "0000:3b:00.0").mkdir(parents=True)
    (root / "etc" / "nvidia-container-runtime").mkdir(parents=True)
    (root / "proc" / "devices").write_text("Character devices:\n195 nvidia-frontend\n507 nvidia-uvm\n")
    (nvidia / "version").write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  "
                                    "Sat Aug 19 01:15:15 UTC 2023\n")
    (nvidia / "params").write_text("ModifyDeviceFiles: 1\nDeviceFileUID: 0\nDeviceFileGID: 0\nDeviceFileMode: 438\n")
    (nvidia / "gpus" / "0000:3b:00.0" / "information").write_text("Model: NVIDIA A100\n")
    (root / "etc" / "nvidia-container-runtime" / "config.toml").write_text("[nvidia-container-cli]\n")
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    # What an unprivileged user cannot read on a real host: root-only files and directories.
    (nvidia / "params").chmod(0o600)
    (root / "etc" / "nvidia-container-runtime" / "config.toml").chmod(0o600)
    (nvidia / "gpus").chmod(0o700)
    return root


UNREADABLE = ("/proc/driver/nvidia/params", "/etc/nvidia-container-runtime/config.toml",
              "/proc/driver/nvidia/gpus/*/information")


def test_nonroot_collect_names_what_it_could_not_read(public_dir: Path) -> None:
    require_unprivileged()
    root = _host_tree(public_dir)
    proc = run_as_nobody(public_dir, "collect", "--root", str(root))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    snapshot = json.loads(proc.stdout)
    assert snapshot["host"]["euid"] == NOBODY
    for path in UNREADABLE:
        assert snapshot["files"][path]["error"] == "EACCES", (path, snapshot["files"].get(path))
    assert "text" in snapshot["files"]["/proc/devices"]

    # The same tree read by root: what nobody could not read is the only difference.
    from gpu_runbook.probes.collect import collect

    as_root = collect(root=str(root), live=False)
    assert all("text" in as_root["files"][p] for p in UNREADABLE[:2])
    nobody_findings = {f.check: f for f in run_checks(Snapshot(snapshot))}
    root_findings = {f.check: f for f in run_checks(Snapshot(as_root))}
    for check_id, finding in nobody_findings.items():
        if finding.status.value == "ok":
            assert root_findings[check_id].status.value == "ok", (
                f"{check_id} is ok only when facts are unreadable: {finding.summary}")

    # The report (as nobody, every format) says which facts it could not read and why.
    proc = run_as_nobody(public_dir, "check", "--root", str(root), "--format", "json")
    assert proc.returncode in (0, 1, 2) and "Traceback" not in proc.stderr, proc.stderr
    report = json.loads(proc.stdout)
    unreadable_findings = [f for f in report["findings"] if "EACCES" in f["summary"]]
    assert unreadable_findings, "no finding names an EACCES fact"
    assert all(f["status"] != "ok" for f in unreadable_findings), unreadable_findings
    assert any(p in f["summary"] for f in unreadable_findings for p in UNREADABLE), unreadable_findings
    for fmt in ("text", "npd", "prometheus", "html"):
        proc = run_as_nobody(public_dir, "check", "--root", str(root), "--format", fmt)
        assert proc.returncode in (0, 1, 2) and proc.stdout and "Traceback" not in proc.stderr, proc.stderr


# -- no check turns "could not read" into "ok": every scenario, every fact made unreadable -----------
def _unreadable_variants(data: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    denied = {"error": "EACCES", "detail": "Permission denied"}
    for section in ("files", "paths", "dirs"):
        for key in list(data.get(section) or {}):
            variant = copy.deepcopy(data)
            variant[section][key] = dict(denied)
            yield f"{section}:{key}", variant
    for name in list(data.get("commands") or {}):
        variant = copy.deepcopy(data)
        variant["commands"][name] = {"argv": [name], "error": "EACCES", "detail": "Permission denied"}
        yield f"commands:{name}", variant
    if isinstance(data.get("nvml"), dict) and data["nvml"]:
        variant = copy.deepcopy(data)
        variant["nvml"] = {"init": {"error": {"name": "NVMLError_NoPermission", "code": 4,
                                              "message": "Insufficient Permissions"}}}
        yield "nvml", variant


@pytest.mark.parametrize("path", scenario_files(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_unreadable_facts_never_become_ok(path: Path) -> None:
    data = load_scenario(path)["snapshot"]
    baseline = {f.check: f.status.value for f in run_checks(Snapshot(data))}
    for label, variant in _unreadable_variants(data):
        for finding in run_checks(Snapshot(variant)):
            if finding.status.value == "ok":
                assert baseline[finding.check] == "ok", (
                    f"{finding.check}: {baseline[finding.check]} with the fact, ok once {label} is unreadable: "
                    f"{finding.summary}")
