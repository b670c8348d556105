"""Hung commands and a blocking NVML: `gpu-runbook check` still ends within its deadline, kills what it
started, and reports the hang as a finding that points to the recovery page."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from conftest import limit_s, machine_pace, run_cli_process
from gpu_runbook.probes import plan

# A stand-in for every probed command: never answers, and forks a child that never answers either
# (both record their pid, so the test can tell whether anything was left running).
HANG_SCRIPT = """#!/bin/sh
echo $$ >> "$GPU_RUNBOOK_TEST_PIDS"
sh -c 'echo $$ >> "$GPU_RUNBOOK_TEST_PIDS"; exec sleep 3600' &
exec sleep 3600
"""
# A stand-in pynvml whose nvmlInit blocks, as NVML does on a hung driver.
BLOCKING_PYNVML = """import os, time
def nvmlInit():
    with open(os.environ["GPU_RUNBOOK_TEST_PIDS"], "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(3600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has been killed; only its parent's wait is pending


@pytest.fixture
def hung_env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "hang"
    script.write_text(HANG_SCRIPT)
    script.chmod(0o755)
    for program in {c.argv[0] for c in plan.COMMANDS.values()}:
        (bin_dir / program).symlink_to(script)
    py_dir = tmp_path / "py"
    py_dir.mkdir()
    (py_dir / "pynvml.py").write_text(BLOCKING_PYNVML)
    pids = tmp_path / "pids"
    pids.write_text("")
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
               PYTHONPATH=str(py_dir), GPU_RUNBOOK_TEST_PIDS=str(pids))
    return env


def _started_pids(env: dict[str, str]) -> list[int]:
    return [int(line) for line in Path(env["GPU_RUNBOOK_TEST_PIDS"]).read_text().split()]


def _run_check(env: dict[str, str], *extra: str) -> tuple[float, dict, str]:
    started = time.monotonic()
    proc = run_cli_process("check", "--format", "json", *extra, env=env, timeout=60)
    wall = time.monotonic() - started
    assert proc.returncode in (0, 1, 2), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return wall, json.loads(proc.stdout), proc.stderr


def _assert_nothing_left(env: dict[str, str]) -> None:
    pids = _started_pids(env)
    assert pids, "the stand-ins never ran: the test would prove nothing"
    deadline = time.monotonic() + limit_s(0.0, 2.0)  # the kill is at once; reaping waits on the scheduler
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)], "processes the doctor started are still running"


def test_every_command_and_nvml_hung_default_deadline(hung_env: dict[str, str], record_property) -> None:
    wall, report, _ = _run_check(hung_env)
    by_id = {f["check"]: f for f in report["findings"]}
    hung = by_id["gpu-tools-hung"]
    assert hung["status"] == "fail"
    assert hung["url"].endswith("kubernetes/recovery.html#hung-driver")
    assert "nvidia-smi" in hung["summary"] and "NVML" in hung["summary"]
    assert by_id["nvml-init"]["status"] == "fail" and "recovery.html#hung-driver" in by_id["nvml-init"]["url"]
    # The interpreter's start and the checks come on top of the collection's budget, and take longer on a
    # loaded host (the collection's own time is asserted in test_collect_records_each_hang_as_a_fact).
    assert wall <= limit_s(plan.DEFAULT_DEADLINE_S, 0.5), \
        f"check took {wall:.1f} s with every command hung (pace {machine_pace():.1f})"
    _assert_nothing_left(hung_env)
    record_property("longest_hung_run_seconds", round(wall, 2))
    print(f"\nlongest doctor run with every command hung (default deadline "
          f"{plan.DEFAULT_DEADLINE_S:g} s): {wall:.2f} s")


@pytest.mark.parametrize("deadline", [3.0])
def test_deadline_is_configurable(hung_env: dict[str, str], deadline: float) -> None:
    wall, report, _ = _run_check(hung_env, "--deadline", str(deadline))
    by_id = {f["check"]: f for f in report["findings"]}
    assert by_id["gpu-tools-hung"]["status"] == "fail"
    # Python start-up comes on top of the collection's own budget.
    assert wall <= limit_s(deadline, 0.5), f"check --deadline {deadline} took {wall:.1f} s (pace {machine_pace():.1f})"
    _assert_nothing_left(hung_env)


def test_blocking_nvml_alone_is_abandoned(hung_env: dict[str, str]) -> None:
    env = dict(hung_env, PATH="/nonexistent-bin")  # no command found: only NVML is asked, and blocks
    wall, report, _ = _run_check(env, "--deadline", "3")
    by_id = {f["check"]: f for f in report["findings"]}
    assert by_id["nvml-init"]["status"] == "fail"
    assert by_id["nvml-init"]["url"].endswith("recovery.html#hung-driver")
    assert by_id["gpu-tools-hung"]["status"] == "fail" and "NVML" in by_id["gpu-tools-hung"]["summary"]
    assert wall <= limit_s(3.0, 0.5), f"{wall:.1f} s with --deadline 3 (pace {machine_pace():.1f})"
    _assert_nothing_left(env)


def test_collect_records_each_hang_as_a_fact(hung_env: dict[str, str]) -> None:
    proc = run_cli_process("collect", "--deadline", "3", env=hung_env, timeout=60)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    snapshot = json.loads(proc.stdout)
    errors = {name: fact.get("error") for name, fact in snapshot["commands"].items()}
    assert errors["nvidia-smi"] == "timeout"
    # A tool that hung is not started a second time; what the deadline cut off says so.
    assert errors["nvidia-smi-version"] == "skipped"
    # not-applicable: commands whose host condition does not hold here (plan.Command.only_where) never start
    assert all(error in {"timeout", "skipped", "deadline"}
               or (error == "not-applicable" and plan.COMMANDS[name].only_where)
               for name, error in errors.items()), errors
    assert snapshot["nvml"]["error"]["name"] == "timeout"
    assert snapshot["probe"]["elapsed_seconds"] <= 3.0
    _assert_nothing_left(hung_env)
