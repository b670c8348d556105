"""Fleet benchmark: generate a realistic fleet of snapshots from tests/scenarios, then time
`gpu-runbook report` on it and record snapshots per second and the report's peak memory (RSS).

Usage: python benchmarks/bench_report.py [--nodes 10000] [--jobs 0] [--keep DIR] [--json OUT]

The fleet: most nodes are the GPU runner's real captures (tests/scenarios/*/captured-*.json, about
140 KB each, the size a real host's snapshot has), the rest every other scenario, broken and fixed,
so that the report has many findings to tally. Two of three files are gzipped (as a DaemonSet that
compresses would leave them), spread over racks of 100 nodes. Run it pinned to two cores for CI-like
numbers: taskset -c 0,1 python benchmarks/bench_report.py
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = REPO / "tests" / "scenarios"
CAPTURED_SHARE = 0.8  # of the nodes, real captures; the rest cycles through the other scenarios


def _templates() -> tuple[list[bytes], list[bytes]]:
    captured, other = [], []
    for path in sorted(SCENARIOS.glob("*/*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        snapshot = data.get("snapshot", data)
        text = json.dumps(snapshot, indent=2, sort_keys=True).encode("utf-8")
        (captured if path.name.startswith("captured-") else other).append(text)
    return captured, other


def generate(directory: Path, nodes: int) -> int:
    """Write `nodes` snapshot files below directory; returns their total size in bytes."""
    captured, other = _templates()
    gzipped: dict[int, bytes] = {}
    pools = [(captured, 0), (other, len(captured))]
    total = 0
    for index in range(nodes):
        pool, offset = pools[0] if (index % 10) < CAPTURED_SHARE * 10 else pools[1]
        choice = index % len(pool)
        rack = directory / f"rack{index // 100:03d}"
        rack.mkdir(parents=True, exist_ok=True)
        if index % 3:
            key = offset + choice
            if key not in gzipped:
                gzipped[key] = gzip.compress(pool[choice], compresslevel=6)
            body, name = gzipped[key], f"node-{index:05d}.json.gz"
        else:
            body, name = pool[choice], f"node-{index:05d}.json"
        (rack / name).write_bytes(body)
        total += len(body)
    return total


def run_report(directory: Path, jobs: int, python: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO / "snippets"),
                                                                  os.environ.get("PYTHONPATH")) if p))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([python, "-m", "gpu_runbook", "report", str(directory), "--format", "json",
                           "--jobs", str(jobs)], capture_output=True, text=True, env=env, check=False,
                          timeout=3600)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1, 2) or not proc.stdout.startswith("{"):
        raise SystemExit(f"report failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    report = json.loads(proc.stdout)
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 2),
        # ru_maxrss of the children is the largest single process among them (KiB on Linux): the
        # report's parent or one worker, whichever peaked higher.
        "peak_rss_mib": round(after.ru_maxrss / 1024, 1),
        "judged": report["judged"],
        "unreadable": len(report["unreadable"]),
        "findings": len(report["findings"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10000)
    parser.add_argument("--jobs", type=int, default=0, help="passed to report --jobs (0: one per CPU)")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--keep", help="generate the fleet here and keep it (default: a temporary directory)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    directory = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="gpu-runbook-fleet-"))
    try:
        started = time.perf_counter()
        size = generate(directory, args.nodes)
        generated = time.perf_counter() - started
        result = run_report(directory, args.jobs, args.python)
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    results = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "nodes": args.nodes,
        "fleet_mib_on_disk": round(size / 2**20, 1),
        "generate_s": round(generated, 2),
        "cores": cores,
        **result,
        "snapshots_per_s": round(result["judged"] / result["wall_s"], 1) if result["wall_s"] else None,
    }
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
