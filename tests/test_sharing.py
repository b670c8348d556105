"""Sharing checks (MIG, MPS): edge cases beyond the scenarios, judged through the real engine."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from conftest import SCENARIO_DIR
from gpu_runbook.parsers.sharing import parse_capability_minor, parse_thread_percentage, parse_visible_devices
from gpu_runbook.registry import run_checks
from gpu_runbook.snapshot import Snapshot

SHARING = ("mig-mode-pending", "mig-devices-visible", "mps-daemon", "mps-thread-percentage", "mps-multi-gpu")


def _scenario(name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((SCENARIO_DIR / name).read_text())["snapshot"])


def _status(data: dict[str, Any], check_id: str) -> tuple[str, str]:
    finding = {f.check: f for f in run_checks(Snapshot(data), only=[check_id], strict=True)}[check_id]
    return finding.status.value, finding.summary


# -- the GPU test host: ok or skip, never fail or unknown -------------------------------------------
def test_gpu_test_host_configuration_gives_ok_or_skip() -> None:
    data = _scenario("mig/fixed-mig-disabled-h100.json")
    statuses = {f.check: f.status.value for f in run_checks(Snapshot(data), only=list(SHARING), strict=True)}
    assert statuses == {"mig-mode-pending": "ok", "mig-devices-visible": "skip", "mps-daemon": "skip",
                        "mps-thread-percentage": "skip", "mps-multi-gpu": "skip"}


def test_private_pipe_directory_outside_the_plan_is_a_skip_not_unknown() -> None:
    """The live GPU tests may run an MPS daemon on a private pipe directory: say so, do not guess."""
    data = _scenario("mig/fixed-mig-disabled-h100.json")
    data["env"]["CUDA_MPS_PIPE_DIRECTORY"] = "/tmp/gpu-runbook-mps-1234"
    status, summary = _status(data, "mps-daemon")
    assert status == "skip" and "/tmp/gpu-runbook-mps-1234" in summary


# -- MIG -----------------------------------------------------------------------------------------
def test_mig_pending_on_one_gpu_of_several_fails_naming_it() -> None:
    data = _scenario("mps-multi-gpu/fixed-clients-select-by-uuid.json")
    data["nvml"]["devices"][2]["mig_mode"] = {"current": 0, "pending": 1}
    status, summary = _status(data, "mig-mode-pending")
    assert status == "fail" and "GPU 2" in summary and "Enabled is pending" in summary


def _finding(data: dict[str, Any], check_id: str) -> Any:
    return {f.check: f for f in run_checks(Snapshot(data), only=[check_id], strict=True)}[check_id]


def test_mig_pending_fix_depends_on_the_architecture() -> None:
    """Ampere needs a GPU reset to apply a MIG mode change; Hopper and later apply it when it is set."""
    data = _scenario("mps-multi-gpu/fixed-clients-select-by-uuid.json")  # four A100s
    data["nvml"]["devices"][1]["mig_mode"] = {"current": 0, "pending": 1}
    data["nvml"]["devices"][3].update(name="NVIDIA H200", cuda_compute_capability=[9, 0], architecture=9,
                                      mig_mode={"current": 1, "pending": 0})
    finding = _finding(data, "mig-mode-pending")
    assert finding.status.value == "fail" and finding.url.endswith("#pending-reset")
    assert "GPU 1" in finding.summary and "on Ampere" in finding.summary
    assert "GPU 3 (NVIDIA H200)" in finding.summary and "on Hopper and later" in finding.summary
    assert "--gpu-reset" in finding.fix and "no reset is needed" in finding.fix


def test_mig_pending_on_hopper_without_compute_capability_uses_the_nvml_architecture() -> None:
    data = _scenario("mig/broken-mig-enable-pending-hopper.json")
    del data["nvml"]["devices"][0]["cuda_compute_capability"]
    finding = _finding(data, "mig-mode-pending")
    assert finding.url.endswith("#pending-hopper") and "--gpu-reset" not in finding.fix
    data["nvml"]["devices"][0]["architecture"] = 0xFFFFFFFF  # NVML_DEVICE_ARCH_UNKNOWN: give both fixes
    finding = _finding(data, "mig-mode-pending")
    assert finding.url.endswith("#pending-reset") and "--gpu-reset" in finding.fix and "no reset" in finding.fix


def test_mig_mode_unreadable_is_unknown_not_ok() -> None:
    data = _scenario("mig/fixed-mig-disabled-h100.json")
    data["nvml"]["devices"][0]["mig_mode"] = {"error": {"name": "NVMLError_Unknown", "code": 999}}
    assert _status(data, "mig-mode-pending")[0] == "unknown"


def test_nvml_not_initialised_is_unknown() -> None:
    data = _scenario("mig/fixed-mig-disabled-h100.json")
    data["nvml"] = {"init": {"error": {"name": "NVMLError_DriverNotLoaded", "code": 9}}}
    for check_id in ("mig-mode-pending", "mig-devices-visible"):
        assert _status(data, check_id)[0] == "unknown"


def test_proc_mode_capabilities_without_minors_are_usable() -> None:
    """nv_cap_enable_devfs=0 (deprecated /proc mode): the access files are empty, no /dev node is needed."""
    data = _scenario("mig/fixed-mig-instances-created.json")
    for path in list(data["files"]):
        if "/gpu0/mig/" in path:
            data["files"][path] = {"text": ""}
    data["dirs"]["/dev/nvidia-caps"] = {"error": "ENOENT"}
    assert _status(data, "mig-devices-visible")[0] == "ok"


def test_caps_dir_unlistable_is_unknown() -> None:
    data = _scenario("mig/fixed-mig-instances-created.json")
    data["dirs"]["/dev/nvidia-caps"] = {"error": "EACCES", "detail": "Permission denied"}
    assert _status(data, "mig-devices-visible")[0] == "unknown"


def test_one_usable_instance_and_one_without_compute_instance_warns() -> None:
    data = _scenario("mig/fixed-mig-instances-created.json")
    del data["files"]["/proc/driver/nvidia/capabilities/gpu0/mig/gi2/ci0/access"]
    status, summary = _status(data, "mig-devices-visible")
    assert status == "warn" and "GPU instance 2" in summary


def test_instances_are_matched_by_device_minor_not_nvml_index() -> None:
    """/proc/driver/nvidia/capabilities/gpuN uses the device minor; NVML index 0 may be minor 3."""
    data = _scenario("mig/fixed-mig-instances-created.json")
    data["nvml"]["devices"][0]["minor_number"] = 3
    assert _status(data, "mig-devices-visible")[0] == "fail"


# -- MPS -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [("25", "ok"), ("12.5", "ok"), ("100", "ok"), ("0", "fail"),
                                             ("-5", "fail"), ("101", "fail"), ("abc", "fail"), ("", "fail")])
def test_thread_percentage_values(value: str, expected: str) -> None:
    data = _scenario("mps/fixed-daemon-exclusive-process.json")
    data["env"]["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = value
    assert _status(data, "mps-thread-percentage")[0] == expected


def test_mps_daemon_does_not_ask_for_exclusive_process_on_a_mig_gpu() -> None:
    """MIG with MPS: EXCLUSIVE_PROCESS is not supported in MIG mode, so only the GPU without MIG is named."""
    data = _scenario("mps-multi-gpu/fixed-clients-select-by-uuid.json")
    for device in data["nvml"]["devices"]:
        device["compute_mode"] = 0
    for device in data["nvml"]["devices"][:3]:
        device["mig_mode"] = {"current": 1, "pending": 1}
    status, summary = _status(data, "mps-daemon")
    assert status == "warn" and "GPU 3" in summary and "GPU 0" not in summary
    data["nvml"]["devices"][3]["mig_mode"] = {"current": 1, "pending": 1}
    status, summary = _status(data, "mps-daemon")
    assert status == "ok" and "4 GPU(s) in MIG mode" in summary


def test_control_socket_unreadable_is_unknown_everywhere() -> None:
    data = _scenario("mps/fixed-daemon-exclusive-process.json")
    data["paths"]["/tmp/nvidia-mps/control"] = {"error": "EACCES", "detail": "Permission denied"}
    for check_id in ("mps-daemon", "mps-thread-percentage", "mps-multi-gpu"):
        assert _status(data, check_id)[0] == "unknown", check_id


def test_daemon_running_without_nvml_is_unknown() -> None:
    data = _scenario("mps/fixed-daemon-exclusive-process.json")
    data["nvml"] = {"skipped": "--root collection"}
    assert _status(data, "mps-daemon")[0] == "unknown"


def test_client_without_daemon_in_a_container_names_the_mount() -> None:
    data = _scenario("mps/broken-client-without-daemon.json")
    data["paths"]["/.dockerenv"] = {"kind": "file", "mode": "0755", "uid": 0, "gid": 0}
    status, summary = _status(data, "mps-daemon")
    assert status == "warn" and "not shared into this container" in summary


def test_stale_control_file_is_not_a_daemon() -> None:
    data = _scenario("mps/broken-exclusive-process-without-daemon.json")
    data["paths"]["/tmp/nvidia-mps/control"] = {"kind": "file", "mode": "0644", "uid": 0, "gid": 0, "size": 0}
    assert _status(data, "mps-daemon")[0] == "fail"


def test_empty_visible_devices_is_not_judged_as_a_selection() -> None:
    data = _scenario("mps-multi-gpu/fixed-clients-select-by-uuid.json")
    data["env"]["CUDA_VISIBLE_DEVICES"] = ""
    assert _status(data, "mps-multi-gpu")[0] == "skip"


# -- parsers ---------------------------------------------------------------------------------------
def test_parsers_on_odd_input() -> None:
    assert parse_capability_minor("DeviceFileMinor: x\n") is None
    assert parse_visible_devices(" , ,MIG-GPU-932bfb2c/1/0") == [("mig-uuid", "MIG-GPU-932bfb2c/1/0")]
    assert parse_visible_devices("NoNe") == [("none", "NoNe")]
    assert parse_thread_percentage("1e2") is None and parse_thread_percentage("100.0") == 100.0


def test_a_private_mps_pipe_directory_is_examined(tmp_path: Any) -> None:
    """CUDA_MPS_PIPE_DIRECTORY outside /tmp/nvidia-mps: the probe lstats it, so mps-daemon can judge it."""
    import socket

    from gpu_runbook.probes.collect import collect

    pipe = tmp_path / "mps-pipe"
    pipe.mkdir()
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(pipe)}
    absent = collect(live=False, environ=env)
    assert absent["paths"][f"{pipe}/control"]["error"] == "ENOENT"
    assert _status(dict(absent, env=env), "mps-daemon")[0] != "skip"

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(pipe / "control"))  # what nvidia-cuda-mps-control -d creates while it runs
        running = collect(live=False, environ=env)
    finally:
        server.close()
    assert running["paths"][f"{pipe}/control"]["kind"] == "socket"
    # The GPU side comes from the captured H100 (a CPU test host has no NVML to ask).
    nvml = _scenario("device-nodes/captured-h100-580.159.04-root.json")["nvml"]
    status, summary = _status(dict(running, env=env, nvml=nvml), "mps-daemon")
    # Judged, not skipped: that H100 runs in Default compute mode, which the check warns about beside MPS.
    assert status == "warn" and summary.startswith(f"the MPS control daemon runs ({pipe}/control)"), summary
    # Under another root the environment names paths of this machine, not the mounted one's.
    assert f"{pipe}/control" not in collect(root=str(tmp_path), live=False, environ=env)["paths"]


def test_a_daemon_at_the_v3_root_directory_is_not_called_absent() -> None:
    """No daemon at /tmp/nvidia-mps, variable unset, a socket at /run/nvidia-mps/control (the MPS v3 reference's
    root default): mps-daemon, mps-thread-percentage and mps-multi-gpu answer unknown and name the socket, where
    they would otherwise skip or warn."""
    data = _scenario("mps/fixed-daemon-exclusive-process.json")
    data["env"].pop("CUDA_MPS_PIPE_DIRECTORY", None)
    data["env"]["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = "50"
    data["paths"]["/tmp/nvidia-mps/control"] = {"error": "ENOENT"}
    before = {c: _status(data, c)[0] for c in ("mps-daemon", "mps-thread-percentage")}
    assert before == {"mps-daemon": "skip", "mps-thread-percentage": "warn"}
    data["paths"]["/run/nvidia-mps/control"] = {"kind": "socket", "mode": "0777", "uid": 0, "gid": 0}
    for check_id in ("mps-daemon", "mps-thread-percentage", "mps-multi-gpu"):
        status, summary = _status(data, check_id)
        assert status == "unknown" and "/run/nvidia-mps/control" in summary, (check_id, summary)
    # A stale file there is no daemon; and a client with its own pipe directory is judged on that one only.
    data["paths"]["/run/nvidia-mps/control"] = {"kind": "file", "mode": "0644", "uid": 0, "gid": 0, "size": 0}
    assert _status(data, "mps-daemon")[0] == "skip"
    data["paths"]["/run/nvidia-mps/control"] = {"kind": "socket", "mode": "0777", "uid": 0, "gid": 0}
    data["env"]["CUDA_MPS_PIPE_DIRECTORY"] = "/tmp/nvidia-mps"
    assert _status(data, "mps-daemon")[0] in ("warn", "fail")
