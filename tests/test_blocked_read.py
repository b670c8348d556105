"""A host file whose read never returns (a driver /proc file on a hung GPU) cannot stall the doctor."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from conftest import limit_s
from gpu_runbook.probes import collect as collect_module
from gpu_runbook.registry import run_checks
from gpu_runbook.snapshot import Snapshot

STUCK = "/proc/driver/nvidia/version"


@pytest.fixture
def stuck_read(monkeypatch: pytest.MonkeyPatch):
    """read_file blocks forever on STUCK, as a read of a hung driver's procfs file does."""
    release = threading.Event()
    real = collect_module.read_file

    def read_file(root: str, path: str, max_bytes: int):
        if path == STUCK:
            release.wait()  # the kernel would hold the thread here; the test lets it go at the end
        return real(root, path, max_bytes)

    monkeypatch.setattr(collect_module, "read_file", read_file)
    yield
    release.set()


def test_collect_ends_at_the_deadline_and_names_the_stuck_read(tmp_path: Path, stuck_read: None) -> None:
    started = time.monotonic()
    data = collect_module.collect(root=str(tmp_path), deadline=2.0)
    elapsed = time.monotonic() - started
    assert elapsed < limit_s(2.0, 0.5), f"collect took {elapsed:.2f} s with a 2 s deadline"
    assert data["probe"]["blocked_on"] == STUCK
    assert data["files"][STUCK]["error"] == "timeout"
    # what was read before the stuck file is kept
    assert "/proc/devices" in data["files"]
    findings = {f.check: f for f in run_checks(Snapshot(data), strict=True)}
    hung = findings["gpu-tools-hung"]
    assert hung.status.value == "fail" and STUCK in hung.summary and hung.url.endswith("#hung-driver")
    # a check that needs the unread file cannot say ok
    assert findings["driver-library-mismatch"].status.value != "ok"


def test_collect_without_a_stuck_read_reports_nothing_blocked(tmp_path: Path) -> None:
    data = collect_module.collect(root=str(tmp_path), deadline=5.0)
    assert data["probe"]["blocked_on"] is None
    assert not any(isinstance(f, dict) and f.get("error") == "timeout" for f in data["files"].values())
