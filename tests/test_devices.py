"""Unit tests of the devices section beyond the scenarios: parser edge cases, malformed input, the open test."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from conftest import SCENARIO_DIR, load_scenario
from gpu_runbook.checks import devices
from gpu_runbook.findings import Status
from gpu_runbook.parsers.cgroup import (
    cgroup_driver_from_path,
    devices_list_allows,
    parse_cgroup_mounts,
    parse_devices_list,
    parse_proc_cgroup,
)
from gpu_runbook.parsers.modprobe import library_version, module_disabled_by, parse_modprobe_conf
from gpu_runbook.parsers.proc import device_file_mode, parse_driver_params, secure_boot_from_efivar
from gpu_runbook.probes import plan
from gpu_runbook.probes.collect import collect
from gpu_runbook.probes.devopen import open_test, probe_open_tests
from gpu_runbook.registry import FACTS, run_checks
from gpu_runbook.snapshot import Snapshot

HEALTHY = SCENARIO_DIR / "device-nodes" / "fixed-healthy-h100-580.json"
DEVICE_CHECKS = ("device-nodes", "device-node-modes", "dev-char-symlinks", "cgroup-device-access", "bpf-jit-harden",
                 "kernel-modules-loaded", "nouveau-conflict", "gsp-firmware", "secure-boot-unsigned",
                 "driver-library-mismatch")


def healthy() -> dict:
    return copy.deepcopy(load_scenario(HEALTHY)["snapshot"])


def verdicts(data: dict) -> dict[str, Status]:
    return {f.check: f.status for f in run_checks(Snapshot(data), only=DEVICE_CHECKS, strict=True)}


# -- parsers -------------------------------------------------------------------------------------

def test_hybrid_cgroup_mounts() -> None:
    mountinfo = ("30 25 0:26 / /sys/fs/cgroup ro shared:9 - tmpfs tmpfs ro,mode=755\n"
                 "31 30 0:27 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw,nsdelegate\n"
                 "40 30 0:35 / /sys/fs/cgroup/devices rw shared:20 - cgroup cgroup rw,devices\n")
    assert parse_cgroup_mounts(mountinfo) == ("hybrid", "/sys/fs/cgroup/devices", "/sys/fs/cgroup/unified")


@pytest.mark.parametrize("text", ["", "no separator here", " - ", "1 2 3 - cgroup2", "\x00\xff - cgroup"])
def test_cgroup_mounts_tolerate_garbage(text: str) -> None:
    assert parse_cgroup_mounts(text).version in ("", "v1", "v2", "hybrid")


@pytest.mark.parametrize(("path", "driver"), [
    ("/system.slice/docker-4f1c.scope", "systemd"),
    ("/kubepods/burstable/pod1234/abcd", "cgroupfs"),
    ("/user.slice/user-1000.slice/session-1.scope", "systemd"),
    ("/", ""),
    ("", ""),
])
def test_cgroup_driver_guess(path: str, driver: str) -> None:
    assert cgroup_driver_from_path(path) == driver


def test_proc_cgroup_keeps_colons_in_path() -> None:
    assert parse_proc_cgroup("0::/a:b\n") == {"": "/a:b"}


def test_devices_list_all_and_read_only() -> None:
    assert devices_list_allows(parse_devices_list("a *:* rwm\n"), 195, 0)
    read_only = parse_devices_list("c 235:* r\n")
    assert devices_list_allows(read_only, 235, 1, "r")
    assert not devices_list_allows(read_only, 235, 1, "rw")
    assert not devices_list_allows(parse_devices_list("b 195:* rwm\n"), 195, 0)


def test_modprobe_install_false_and_alias_off_count_as_disabled() -> None:
    confs = {"/etc/modprobe.d/a.conf": "install nouveau /bin/false\n",
             "/etc/modprobe.d/b.conf": "alias nouveau off  # comment\n"}
    assert len(module_disabled_by(confs, "", "nouveau")) == 2
    assert module_disabled_by({"/x.conf": "blacklist nouveau_fb\n"}, "", "nouveau") == []
    assert parse_modprobe_conf("blacklist\n")["blacklist"] == []  # keyword without a module


@pytest.mark.parametrize(("name", "version"), [
    ("libnvidia-ml.so.580.159.04", "580.159.04"), ("libnvidia-ml.so.470.82", "470.82"),
    ("libnvidia-ml.so", None), ("libnvidia-ml.so.1", None), ("libnvidia-ml.so.1.bak", None),
])
def test_library_version(name: str, version: str) -> None:
    assert library_version(name) == version


def test_params_mode_and_secure_boot_var_tolerate_garbage() -> None:
    assert device_file_mode(parse_driver_params("DeviceFileMode: ²\n")) is None
    assert parse_driver_params("no colon\n: empty key\nKey With Space: 1\n") == {}
    assert secure_boot_from_efivar("\x06\x00\x00\x00\x02") is None


# -- checks on variants of the healthy host -------------------------------------------------------

def test_healthy_host_is_all_ok() -> None:
    assert set(verdicts(healthy()).values()) == {Status.OK}


def test_stale_caps_major_fails_device_nodes() -> None:
    data = healthy()
    data["paths"]["/dev/nvidia-caps/nvidia-cap1"]["major"] = 511
    assert verdicts(data)["device-nodes"] is Status.FAIL


def test_malformed_node_facts_do_not_crash() -> None:
    data = healthy()
    data["paths"]["/dev/nvidiactl"].update(mode="rw-rw-rw-", major="x")
    data["paths"]["/dev/nvidia-caps/nvidia-cap1"]["minor"] = "1"
    result = verdicts(data)  # strict=True: an exception would fail the test
    assert result["device-nodes"] is Status.FAIL


def test_open_test_timeout_is_unknown_not_ok() -> None:
    data = healthy()
    data["opens"] = {"error": "timeout", "detail": "open() did not return within 3.0 s"}
    assert verdicts(data)["cgroup-device-access"] is Status.UNKNOWN


def test_open_test_enoent_is_not_blamed_on_the_cgroup() -> None:
    data = healthy()
    data["opens"] = {"/dev/nvidiactl": {"error": "ENOENT"}, "/dev/nvidia-uvm": {"error": "ENOENT"}}
    assert verdicts(data)["cgroup-device-access"] is Status.SKIP


def test_v2_without_open_test_says_why_it_cannot_judge() -> None:
    data = healthy()
    del data["opens"]
    finding = next(f for f in run_checks(Snapshot(data), only=["cgroup-device-access"]))
    assert finding.status is Status.SKIP and "eBPF" in finding.summary


def test_jit_hardening_without_jit_is_harmless() -> None:
    data = healthy()
    data["files"]["/proc/sys/net/core/bpf_jit_harden"] = {"text": "2\n"}
    data["files"]["/proc/sys/net/core/bpf_jit_enable"] = {"text": "0\n"}
    assert verdicts(data)["bpf-jit-harden"] is Status.OK


def test_headless_host_without_display_modules_passes() -> None:
    summary = next(f.summary for f in run_checks(Snapshot(healthy()), only=["kernel-modules-loaded"]))
    assert "headless" in summary


def test_proprietary_module_does_not_need_gsp_files() -> None:
    data = healthy()
    data["files"]["/proc/driver/nvidia/version"] = {
        "text": "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159.04  Release Build  (dvs-builder@U22)\n"}
    data["paths"] = {p: v for p, v in data["paths"].items() if not p.startswith("/lib/firmware/")}
    assert verdicts(data)["gsp-firmware"] is Status.OK


def test_secure_boot_from_efivar_wins_over_missing_mokutil() -> None:
    data = healthy()
    data["files"][devices.SECURE_BOOT_EFIVAR] = {"text": "\x06\x00\x00\x00\x01", "binary": True}
    data["commands"].pop("mokutil-sb-state")
    assert FACTS["secure_boot"](Snapshot(data)) is True


def test_mismatch_skips_without_a_loaded_module() -> None:
    data = healthy()
    data["files"]["/proc/driver/nvidia/version"] = {"error": "ENOENT"}
    assert verdicts(data)["driver-library-mismatch"] is Status.SKIP


# -- the open test probe ----------------------------------------------------------------------------

def test_open_test_reports_errno_names(tmp_path: Path) -> None:
    assert open_test("/dev/null") == {"ok": True}
    assert open_test(str(tmp_path / "absent"))["error"] == "ENOENT"


def test_probe_open_tests_covers_the_plan() -> None:
    result = probe_open_tests(10.0)
    assert sorted(result) == sorted(plan.OPEN_TESTS)
    assert all(("ok" in r) or ("error" in r) for r in result.values())
    assert probe_open_tests(0)["error"] == "deadline"


def test_collect_under_root_skips_the_open_test(tmp_path: Path) -> None:
    snapshot = collect(root=str(tmp_path), deadline=5)
    assert "skipped" in snapshot["opens"]
    json.dumps(snapshot)


# -- /dev as found: recorded before NVML and the commands, compared afterwards -------------------------------

def test_dev_is_recorded_before_anything_else(tmp_path: Path) -> None:
    """The reader signals /dev done before it reads any file, so the live probes start after /dev is seen."""
    from gpu_runbook.probes.collect import HostReader

    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "nvidiactl").write_text("")
    reader = HostReader(str(tmp_path))
    reader.start()
    assert reader.dev_recorded.wait(5)
    tables, _ = reader.finish(5)
    assert tables["paths"]["/dev/nvidiactl"]["kind"] == "file"
    assert "/dev/char" in tables["dirs"]


def test_nodes_that_appear_during_collection_are_reported(tmp_path: Path) -> None:
    from gpu_runbook.probes.collect import _dev_changes

    (tmp_path / "dev").mkdir()
    before = {"/dev/nvidia-uvm": {"error": "ENOENT"}, "/dev/nvidia0": {"kind": "char", "major": 195, "minor": 0}}
    (tmp_path / "dev" / "nvidia-uvm").write_text("")  # what root's NVML/nvidia-smi does with ModifyDeviceFiles=1
    assert _dev_changes(str(tmp_path), before) == {"appeared": ["/dev/nvidia-uvm"], "vanished": ["/dev/nvidia0"]}


def test_device_nodes_warns_when_the_probes_created_the_missing_node() -> None:
    scenario = load_scenario(SCENARIO_DIR / "device-nodes" / "captured-h200-private-dev-healthy.json")
    data = copy.deepcopy(scenario["snapshot"])
    data["paths"]["/dev/nvidia-uvm"] = {"error": "ENOENT", "detail": "No such file or directory"}
    data["probe"]["dev_changes"] = {"appeared": [], "vanished": []}
    assert _device_nodes(data).status is Status.FAIL
    data["probe"]["dev_changes"] = {"appeared": ["/dev/nvidia-uvm"], "vanished": []}
    finding = _device_nodes(data)
    assert finding.status is Status.WARN and "as root, created it (it exists now" in finding.summary, finding.summary
    assert finding.evidence["created_by_probes"] == ["/dev/nvidia-uvm"]


def _device_nodes(data: dict) -> object:
    (finding,) = run_checks(Snapshot(data), only=["device-nodes"], strict=True)
    return finding
