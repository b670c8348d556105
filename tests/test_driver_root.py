"""On GPU Operator nodes the driver lives in a container's root (/run/nvidia/driver): the probes use it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gpu_runbook.probes.collect import collect, driver_root_env
from gpu_runbook.registry import run_checks
from gpu_runbook.snapshot import Snapshot

CSV = ("0, NVIDIA H100 80GB HBM3, GPU-8f4c3b52-5a0e-4c55-9a0b-5f3e1d2c4b6a, 580.159.04, 00000000:19:00.0, "
       "Default, Disabled")


def _driver_root(tmp_path: Path) -> Path:
    root = tmp_path / "run-nvidia-driver"
    (root / "usr" / "lib" / "x86_64-linux-gnu").mkdir(parents=True)
    tool = root / "usr" / "bin" / "nvidia-smi"
    tool.parent.mkdir(parents=True)
    tool.write_text(f"#!/bin/sh\necho '{CSV}'\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return root


def _host_env(tmp_path: Path) -> dict[str, str]:
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    # A PATH with the system tools the probes may use but no nvidia-smi, as on a GPU Operator node.
    return {"PATH": os.pathsep.join([str(empty), "/usr/bin", "/bin"]), "HOME": str(tmp_path)}


def test_driver_root_is_added_only_when_the_host_has_no_nvidia_smi(tmp_path: Path) -> None:
    root = _driver_root(tmp_path)
    env = _host_env(tmp_path)
    extended, used = driver_root_env(env, (str(root),))
    assert used == str(root)
    assert extended["PATH"].endswith(str(root / "usr" / "bin"))
    assert str(root / "usr" / "lib" / "x86_64-linux-gnu") in extended["LD_LIBRARY_PATH"]
    host_tool = tmp_path / "empty-bin" / "nvidia-smi"
    host_tool.write_text("#!/bin/sh\n")
    host_tool.chmod(0o755)
    assert driver_root_env(env, (str(root),)) == (env, None)


def test_live_collect_runs_the_driver_roots_nvidia_smi(tmp_path: Path) -> None:
    root = _driver_root(tmp_path)
    data = collect(root="/", deadline=10, environ=_host_env(tmp_path), driver_roots=(str(root),))
    smi = data["commands"]["nvidia-smi"]
    assert smi.get("exit") == 0 and "H100" in smi["stdout"], smi
    assert data["probe"]["driver_root"] == str(root)
    assert any(str(root) in note for note in data["probe"]["notes"])
    assert "LD_LIBRARY_PATH" not in data["env"]  # the snapshot records the caller's environment
    findings = {f.check: f for f in run_checks(Snapshot(data), strict=True)}
    assert findings["gpu-tools-hung"].status.value == "ok"


def test_without_a_driver_root_nothing_changes(tmp_path: Path) -> None:
    env = _host_env(tmp_path)
    assert driver_root_env(env, (str(tmp_path / "absent"),)) == (env, None)
