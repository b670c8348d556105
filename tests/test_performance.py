"""The Performance page shows what the GPU run records hold, and the benchmark scripts run."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import DOCS, REPO

RUNS = sorted((REPO / "tests" / "gpu" / "runs").glob("*.json"))
PAGE = DOCS / "reference" / "performance.md"


def test_every_timed_gpu_run_is_on_the_page_with_its_numbers() -> None:
    page = PAGE.read_text(encoding="utf-8")
    timed = 0
    for path in RUNS:
        record = json.loads(path.read_text(encoding="utf-8"))
        timings = record.get("timings_seconds") or {}
        if "gpu-runbook check" not in timings:
            continue
        timed += 1
        check = timings["gpu-runbook check"]["median"]
        smi = timings["nvidia-smi -q"]["median"]
        row = next((line for line in page.splitlines() if f"| {record['gpu']} |" in line), None)
        assert row is not None, f"{path.name}: {record['gpu']} is not on the page"
        assert f"{record['date']} |" in row and f"{record['driver']} |" in row, row
        assert f"{check:.3f} s" in row and f"{smi:.3f} s" in row, row
        assert f"{check / smi:.1f} \u00d7" in row, row
        bench = record.get("benchmark", {}).get("whole_process")
        if bench:  # a record made with benchmarks/bench_check.py: its median ratio is shown too
            assert f"{bench['ratio']:.2f}" in page, path.name
    assert timed, "no GPU run record holds timings"


def test_the_check_benchmark_runs_and_reports_a_ratio() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_check.py"), "--runs", "2", "--quick"],
                          capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(proc.stdout)
    whole = result["whole_process"]
    assert whole["runs"] == 2 and whole["doctor_median_s"] > 0 and whole["ratio"] > 0
    assert result["baseline"] in ("nvidia-smi -q", "python -c pass")
