"""Record a live GPU run as data: GPU, driver, CUDA, date, every check's status, test counts, timings.

Usage (on the GPU host, after the GPU tests): python tests/gpu/record_run.py --junit J.xml [--out-dir D]
The record lands in tests/gpu/runs/ and the site shows it on every page whose checks it covers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "snippets"))

from gpu_runbook.probes.collect import collect  # noqa: E402
from gpu_runbook.redact import process_redactor  # noqa: E402
from gpu_runbook.registry import run_checks  # noqa: E402
from gpu_runbook.snapshot import Snapshot  # noqa: E402


def _timed(argv: list[str], repeat: int = 3) -> dict[str, float]:
    """Wall time of a command: the median and fastest of `repeat` runs (the first run pays cold caches)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "snippets"),
                                                                   os.environ.get("PYTHONPATH")])))
    times = []
    for _ in range(repeat):
        started = time.monotonic()
        subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
        times.append(time.monotonic() - started)
    return {"median": round(statistics.median(times), 3), "min": round(min(times), 3)}


def _junit_counts(path: str | None) -> dict[str, int]:
    if not path or not os.path.exists(path):
        return {}
    root = ET.parse(path).getroot()  # noqa: S314
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return {}
    total = int(suite.get("tests", 0))
    failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    skipped = int(suite.get("skipped", 0))
    return {"passed": total - failed - skipped, "failed": failed, "skipped": skipped}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--junit")
    parser.add_argument("--out-dir", default=str(REPO / "tests" / "gpu" / "runs"))
    parser.add_argument("--bench", help="benchmarks/bench_check.py --json output to keep in the record")
    args = parser.parse_args()

    # Redacted like `collect --redact`: the record is committed, so no UUID, serial or hostname goes in it.
    snapshot = Snapshot(process_redactor().snapshot(collect()))
    findings = run_checks(snapshot)
    nvml = snapshot.nvml
    devices = nvml.get("devices") or []
    if not devices or not isinstance(devices[0], dict) or not isinstance(devices[0].get("name"), str):
        # A record says "verified on <GPU>" on the site: never write one without a GPU that NVML named.
        print(f"record_run: NVML reports no GPU here ({nvml.get('init') or nvml.get('error')}); no record written",
              file=sys.stderr)
        return 2
    cuda = nvml.get("cuda_driver_version")
    os_release = snapshot.file("/etc/os-release").text or ""
    pretty = re.search(r'^PRETTY_NAME="?([^"\n]*)', os_release, re.MULTILINE)
    kernel = snapshot.file("/proc/driver/nvidia/version").text or ""
    now = datetime.datetime.now(datetime.timezone.utc)
    record = {
        "date": now.strftime("%Y-%m-%d"),
        "recorded_at": now.replace(microsecond=0).isoformat(),
        "gpu": devices[0].get("name", "?") + (f" x{len(devices)}" if len(devices) > 1 else ""),
        "driver": nvml.get("driver_version"),
        "cuda": f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else None,
        "kernel_module": "open" if "Open Kernel Module" in kernel else "proprietary" if kernel else None,
        "host": (pretty.group(1) if pretty else "?") + f", kernel {snapshot.host.get('kernel_release', '?')}",
        "euid": snapshot.host.get("euid"),
        "checks": {f.check: f.status.value for f in findings},
        "summaries": {f.check: f.summary for f in findings},
        "pytest_gpu": _junit_counts(args.junit),
        "timings_seconds": {
            "gpu-runbook check": _timed([sys.executable, "-m", "gpu_runbook", "check", "--format", "json"]),
            "nvidia-smi -q": _timed(["nvidia-smi", "-q"]),
            "collect (in-process)": snapshot.probe.get("elapsed_seconds"),
        },
    }
    if args.bench and os.path.exists(args.bench):
        with open(args.bench, encoding="utf-8") as handle:
            record["benchmark"] = json.load(handle)
    slug = re.sub(r"[^a-z0-9]+", "-", str(record["gpu"]).lower()).strip("-")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{record['date']}-{slug}.json"
    target.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2, ensure_ascii=False))
    print(f"recorded: {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
