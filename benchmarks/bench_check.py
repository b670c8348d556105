"""How long `gpu-runbook check` takes as a whole process, next to a baseline on the same host, and where
the time goes (imports, each probe, the NVML child, each check).

Usage: python benchmarks/bench_check.py [--runs 11] [--json OUT] [--python PY]

The baseline is `nvidia-smi -q` where nvidia-smi is on PATH (a GPU host) and `python -c pass` elsewhere.
The two commands run alternately, `--runs` times each after one warm-up of each, so that a slow spell of
the machine hits both; the figures are medians. Nothing here changes the host: the doctor is read-only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SNIPPETS = REPO / "snippets"


def _env(bytecode_cache: bool) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(SNIPPETS), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path)
    if bytecode_cache:
        # As an installed package runs (pip writes the .pyc files at install): compiled once, in a
        # private cache, so that a checkout or a read-only tree is not written to.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "gpu-runbook-bench-pycache")
    return env


def _wall(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds of one run and the CPU seconds (user + system) it and its children used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=env, timeout=120, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def alternate(doctor: list[str], baseline: list[str], runs: int, env: dict[str, str]) -> dict[str, Any]:
    """Median wall times of the two commands, run alternately (one warm-up each, not counted)."""
    _wall(doctor, env)
    _wall(baseline, env)
    times: dict[str, list[float]] = {"doctor": [], "baseline": []}
    cpu: dict[str, list[float]] = {"doctor": [], "baseline": []}
    for _ in range(runs):
        for name, argv in (("doctor", doctor), ("baseline", baseline)):
            wall, used = _wall(argv, env)
            times[name].append(wall)
            cpu[name].append(used)
    doctor_s = statistics.median(times["doctor"])
    baseline_s = statistics.median(times["baseline"])
    return {
        "runs": runs,
        "doctor_median_s": round(doctor_s, 4),
        "doctor_min_s": round(min(times["doctor"]), 4),
        "doctor_cpu_median_s": round(statistics.median(cpu["doctor"]), 4),
        "baseline_median_s": round(baseline_s, 4),
        "baseline_min_s": round(min(times["baseline"]), 4),
        "baseline_cpu_median_s": round(statistics.median(cpu["baseline"]), 4),
        "ratio": round(doctor_s / baseline_s, 2) if baseline_s > 0 else None,
    }


def import_times(python: str, env: dict[str, str]) -> dict[str, Any]:
    """`-X importtime` of a whole `check` run: total microseconds and the ten costliest packages."""
    proc = subprocess.run([python, "-X", "importtime", "-m", "gpu_runbook", "check", "--format", "json"],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    rows = []
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            rows.append((int(match.group(1)), int(match.group(2)), len(match.group(3)), match.group(4)))
    top_level = [r for r in rows if r[2] == 1]
    own = sorted(((r[0], r[3]) for r in rows if r[3].startswith("gpu_runbook")), reverse=True)[:10]
    return {
        "total_ms": round(sum(r[1] for r in top_level) / 1000, 1),
        "gpu_runbook_ms": round(sum(r[0] for r in rows if r[3].startswith("gpu_runbook")) / 1000, 1),
        "costliest_own_modules_ms": {name: round(us / 1000, 1) for us, name in own},
    }


def probe_times(repeat: int) -> dict[str, Any]:
    """Each probe's share, measured in this process: the host reader, each command, the NVML child and
    the open-test child; then the whole collect() (which overlaps them)."""
    sys.path.insert(0, str(SNIPPETS))
    from gpu_runbook.probes import plan
    from gpu_runbook.probes.collect import HostReader, collect
    from gpu_runbook.probes.commands import run_command
    from gpu_runbook.probes.devopen import probe_open_tests
    from gpu_runbook.probes.nvml import probe_nvml_finish, probe_nvml_start

    def median_of(fn: Any) -> float:
        samples = []
        for _ in range(repeat):
            started = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - started)
        return round(statistics.median(samples), 4)

    def reader() -> None:
        thread = HostReader("/")
        thread.start()
        thread.finish(30)

    result: dict[str, Any] = {"host reader (files, paths, dirs)": median_of(reader)}
    for name, command in plan.COMMANDS.items():
        fact = run_command(command.argv, command.timeout)
        key = f"command {name}" + (f" ({fact['error']})" if fact.get("error") else "")
        result[key] = median_of(lambda c=command: run_command(c.argv, c.timeout)) if not fact.get("error") \
            else 0.0
    nvml_inside: list[float] = []

    def nvml_child() -> None:
        fact = probe_nvml_finish(probe_nvml_start(), 30)
        if isinstance(fact.get("seconds"), (int, float)):
            nvml_inside.append(fact["seconds"])

    result["NVML child (start to answer)"] = median_of(nvml_child)
    result["NVML calls inside the child"] = round(statistics.median(nvml_inside), 4) if nvml_inside else None
    result["open-test child"] = median_of(lambda: probe_open_tests(10.0))
    result["collect() as a whole (overlapped)"] = median_of(collect)
    return result


def check_times(repeat: int) -> dict[str, Any]:
    """Each check on this host's snapshot (microseconds, median), and all of them together."""
    sys.path.insert(0, str(SNIPPETS))
    from gpu_runbook.probes.collect import collect
    from gpu_runbook.registry import load_checks, run_checks
    from gpu_runbook.snapshot import Snapshot

    snapshot = Snapshot(collect())
    each = {}
    for check_id in load_checks():
        samples = []
        for _ in range(repeat):
            started = time.perf_counter()
            run_checks(snapshot, [check_id])
            samples.append(time.perf_counter() - started)
        each[check_id] = round(statistics.median(samples) * 1e6)
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run_checks(snapshot)
        samples.append(time.perf_counter() - started)
    slowest = dict(sorted(each.items(), key=lambda kv: -kv[1])[:8])
    return {"all_checks_ms": round(statistics.median(samples) * 1000, 2), "slowest_checks_us": slowest,
            "checks": len(each)}


def machine(env: dict[str, str]) -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            model = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": model, "cores_visible": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(), "python": platform.python_version(), "kernel": platform.release(),
            "bytecode_cache": "off (every run compiles the source)" if env.get("PYTHONDONTWRITEBYTECODE")
            else "on (as an installed package)", "load_average_1m": round(os.getloadavg()[0], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11, help="alternating runs of each command (default 11)")
    parser.add_argument("--python", default=sys.executable, help="the Python that runs the doctor")
    parser.add_argument("--json", help="also write the results here as JSON")
    parser.add_argument("--quick", action="store_true", help="whole-process ratio only, no breakdown")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="run as this environment says (PYTHONDONTWRITEBYTECODE: every run compiles the "
                             "source) instead of as an installed package, which has its .pyc files")
    args = parser.parse_args()
    env = _env(not args.no_bytecode_cache)
    doctor = [args.python, "-m", "gpu_runbook", "check", "--format", "json"]
    if shutil.which("nvidia-smi"):
        baseline_name, baseline = "nvidia-smi -q", ["nvidia-smi", "-q"]
    else:
        baseline_name, baseline = "python -c pass", [args.python, "-c", "pass"]
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": machine(env),
        "baseline": baseline_name,
        "whole_process": alternate(doctor, baseline, args.runs, env),
    }
    if not args.quick:
        results["imports"] = import_times(args.python, env)
        results["probes_s"] = probe_times(5)
        results["checks"] = check_times(20)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
