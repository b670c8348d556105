"""Unit tests of the devices section beyond the scenarios: parser edge cases, malformed input, the open test."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Optional

import pytest
from conftest import SCENARIO_DIR, load_scenario
from gpu_runbook.checks import devices
from gpu_runbook.facts import system_container_fact
from gpu_runbook.findings import Finding, Status
from gpu_runbook.parsers.cgroup import (
    cgroup_driver_from_path,
    devices_list_allows,
    parse_cgroup_mounts,
    parse_devices_list,
    parse_proc_cgroup,
)
from gpu_runbook.parsers.modprobe import library_version, module_disabled_by, parse_modprobe_conf
from gpu_runbook.parsers.proc import (
    device_file_mode,
    module_load_causes,
    parse_api_mismatches,
    parse_driver_params,
    secure_boot_from_efivar,
)
from gpu_runbook.probes import plan
from gpu_runbook.probes.collect import collect
from gpu_runbook.probes.devopen import open_test, probe_open_tests
from gpu_runbook.registry import FACTS, run_checks
from gpu_runbook.snapshot import Missing, Snapshot

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


# -- the correctness sweep of 2026-12-02: kernel-log forms, uvm node modes, cgroup namespaces, /dev/char fixes ---

def _finding(data: dict, check_id: str) -> Finding:
    return next(f for f in run_checks(Snapshot(data), only=[check_id], strict=True))


def _dmesg(text: str) -> dict:
    return {"argv": ["dmesg"], "exit": 0, "stdout": text, "stderr": "", "seconds": 0.01}


API_MISMATCH_580 = ("[ 9.1] NVRM: API mismatch: the client 'nvidia-smi' (pid 4242)\n"
                    "               NVRM: has the version 580.159.04, but this kernel module has\n"
                    "               NVRM: the version 580.82.07.  Please make sure that this\n")
API_MISMATCH_570 = ("[ 8.2] NVRM: API mismatch: the client has the version 570.153.02, but\n"
                    "[ 8.2] NVRM: this kernel module has the version 570.144.  Please\n")


def test_both_api_mismatch_forms_are_parsed() -> None:
    reports = parse_api_mismatches(API_MISMATCH_570 + API_MISMATCH_580)
    assert [(r.client, r.pid, r.client_version, r.module_version) for r in reports] == [
        ("", None, "570.153.02", "570.144"), ("nvidia-smi", 4242, "580.159.04", "580.82.07")]


def test_mismatch_finding_names_the_client_of_the_575_form() -> None:
    data = healthy()
    data["files"]["/proc/driver/nvidia/version"]["text"] = data["files"]["/proc/driver/nvidia/version"][
        "text"].replace("580.159.04", "580.82.07")
    data["commands"]["dmesg"] = _dmesg(API_MISMATCH_580)
    finding = _finding(data, "driver-library-mismatch")
    assert finding.status is Status.FAIL and "client 'nvidia-smi' (pid 4242)" in finding.summary
    assert finding.evidence["kernel_log_form"].startswith("NVRM: API mismatch: the client '<name>'")


def test_mismatch_printed_by_an_earlier_module_is_ignored() -> None:
    data = healthy()  # module 580.159.04 = libraries; the log line names the module loaded before
    data["commands"]["dmesg"] = _dmesg(API_MISMATCH_580)
    finding = _finding(data, "driver-library-mismatch")
    assert finding.status is Status.OK and "kernel_log" not in finding.evidence


def test_uvm_nodes_are_judged_against_0666_root_or_the_parameters() -> None:
    data = healthy()
    data["files"]["/proc/driver/nvidia/params"]["text"] = data["files"]["/proc/driver/nvidia/params"][
        "text"].replace("DeviceFileGID: 0", "DeviceFileGID: 44").replace("DeviceFileMode: 438", "DeviceFileMode: 432")
    for path in ("/dev/nvidiactl", "/dev/nvidia0", "/dev/nvidia-caps/nvidia-cap1", "/dev/nvidia-caps/nvidia-cap2"):
        if data["paths"].get(path, {}).get("major") == 195:
            data["paths"][path].update(mode="0660", gid=44)
    # 0660 root:video on the 195 nodes as the parameters ask, uvm still 0666 root:root as nvidia-modprobe makes it
    assert _finding(data, "device-node-modes").status is Status.OK
    # Gentoo's patched nvidia-modprobe creates the uvm nodes with the parameters too: also what it makes
    data["paths"]["/dev/nvidia-uvm"].update(mode="0660", gid=44)
    assert _finding(data, "device-node-modes").status is Status.OK
    # neither 0666 root:root nor the parameters: a udev rule or chmod rewrote them
    data["paths"]["/dev/nvidia-uvm"].update(mode="0660", gid=27)
    finding = _finding(data, "device-node-modes")
    assert finding.status is Status.WARN and "/dev/nvidia-uvm 0660 0:27" in finding.summary


def test_private_cgroup_namespace_is_not_reported_as_cgroup_root() -> None:
    data = load_scenario(SCENARIO_DIR / "cgroup-device-access" / "broken-v2-ebpf-denies-after-daemon-reload.json")[
        "snapshot"]
    finding = _finding(data, "cgroup-device-access")
    assert finding.status is Status.FAIL and finding.evidence["namespace_root"] is True
    assert "cgroup /" not in finding.summary and "private cgroup namespace" in finding.summary
    assert finding.evidence["driver"] == ""


def test_cgroup_root_on_a_host_is_not_called_a_namespace() -> None:
    data = healthy()
    data["files"]["/proc/self/cgroup"] = {"text": "0::/\n"}
    assert "namespace_root" not in FACTS["cgroup_setup"](Snapshot(data))


@pytest.mark.parametrize(("line", "anchor"), [
    ("NVRM: This can occur when another driver was loaded and", "nouveau"),
    ("NVRM: nvidia.ko because it does not include the required GPU", "open-module-pre-turing"),
    ("NVRM:  supported through the NVIDIA 580.xx Legacy drivers. Please", "pre-turing-590"),
    ("Loading of unsigned module is rejected", "secure-boot"),
    ("Lockdown: modprobe: unsigned module loading is restricted; see man kernel_lockdown.7", "secure-boot"),
])
def test_kernel_log_names_why_nvidia_is_not_loaded(line: str, anchor: str) -> None:
    data = load_scenario(SCENARIO_DIR / "kernel-modules" / "broken-driver-not-loaded.json")["snapshot"]
    probe = "[ 4.9] NVRM: The NVIDIA probe routine was not called for 1 device(s).\n" if "another" in line else ""
    data["commands"]["dmesg"] = _dmesg(probe + f"[ 4.9] {line}\n")
    finding = _finding(data, "kernel-modules-loaded")
    assert finding.status is Status.FAIL and finding.url.endswith("#" + anchor), finding


def test_a_legacy_gpu_beside_a_supported_one_fails_with_the_module_loaded() -> None:
    """A host with a Turing-or-later GPU and a Pascal one on a 595 driver: nvidia loads for the first, the kernel
    log says the second is ignored; the 580 fixed host (no such line) passes."""
    fixed = load_scenario(SCENARIO_DIR / "kernel-modules" / "fixed-proprietary-module-pre-turing-gpu.json")["snapshot"]
    assert _finding(fixed, "kernel-modules-loaded").status is Status.OK
    fixed["commands"]["dmesg"] = _dmesg("[ 3.4] NVRM:  supported through the NVIDIA 580.xx Legacy drivers. Please\n")
    finding = _finding(fixed, "kernel-modules-loaded")
    assert finding.status is Status.FAIL and finding.url.endswith("#pre-turing-590"), finding
    assert "module is loaded" in finding.summary


@pytest.mark.parametrize(("release", "dxg", "in_container", "status", "expect"), [
    ("5.15.167.4-microsoft-standard-WSL2", True, False, Status.SKIP, "/dev/dxg"),
    ("4.19.128-microsoft-standard", True, False, Status.SKIP, "/dev/dxg"),
    ("5.15.167.4-microsoft-standard-WSL2", False, False, Status.FAIL, "gpu-not-visible.html#wsl"),
    ("5.15.167.4-microsoft-standard-WSL2", False, True, Status.FAIL, "started without GPUs"),
    ("5.15.167.4-microsoft-standard-WSL2", None, False, Status.UNKNOWN, "not looked at"),
    ("4.4.0-19041-Microsoft", False, False, Status.FAIL, "WSL 1"),
    ("6.8.0-1015-azure-microsoft-cvm", False, False, Status.FAIL, "#driver-not-loaded"),  # not WSL: Microsoft's own
    ("6.8.0-60-generic", True, False, Status.FAIL, "#driver-not-loaded"),  # a /dev/dxg alone does not make WSL
])
def test_wsl_has_no_nvidia_module_by_design(release: str, dxg: Optional[bool], in_container: bool, status: Status,
                                            expect: str) -> None:
    """Under WSL 2 the Windows driver lends the GPU through /dev/dxg: "load the nvidia module" would be wrong
    advice there; WSL without /dev/dxg has no GPU from Windows, and a container there was started without one."""
    data = load_scenario(SCENARIO_DIR / "kernel-modules" / "broken-driver-not-loaded.json")["snapshot"]
    data["host"]["kernel_release"] = release
    if dxg is None:
        data["paths"].pop("/dev/dxg", None)
    else:
        data["paths"]["/dev/dxg"] = ({"kind": "char", "major": 10, "minor": 125, "mode": 0o20666} if dxg
                                     else {"error": "ENOENT"})
    if in_container:
        data["paths"]["/.dockerenv"] = {"kind": "file", "mode": 0o100644}
    finding = _finding(data, "kernel-modules-loaded")
    assert finding.status is status, finding
    assert expect in finding.url or expect in finding.summary, finding


def test_open_module_message_is_stale_once_the_proprietary_module_runs() -> None:
    data = healthy()
    data["files"]["/proc/driver/nvidia/version"] = {
        "text": "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159.04  Release Build  (dvs-builder@U22)\n"}
    data["commands"]["dmesg"] = _dmesg("[ 4.9] NVRM: nvidia.ko because it does not include the required GPU\n")
    assert _finding(data, "kernel-modules-loaded").status is Status.OK


@pytest.mark.parametrize(("ctk", "uvm_loaded", "driver", "expected"), [
    ("1.18.1", True, "580.159.04", "--create-all --load-kernel-modules"),
    ("1.18.1", False, "580.159.04", "missing required device major nvidia-uvm"),
    ("1.18.0", True, "580.159.04", "create-all and watch are mutually exclusive"),
    ("1.18.0-rc.6", False, "580.159.04", "Upgrade the NVIDIA Container Toolkit to 1.18.1"),
    ("1.17.8", False, "580.159.04", "missing required device major nvidia-uvm"),
    ("1.14.5", True, "580.159.04", "Upgrade the NVIDIA Container Toolkit to 1.14.6"),
    ("1.14.5", True, "535.288.01", "--create-all --load-kernel-modules"),
    ("1.13.5", False, "535.288.01", "--load-kernel-modules"),
    ("1.13.1", False, "535.288.01", "modprobe nvidia-uvm"),
    (None, False, None, "--load-kernel-modules"),
])
def test_dev_char_fix_fits_the_toolkit_and_driver(ctk: str, uvm_loaded: bool, driver: str, expected: str) -> None:
    version = devices.DriverVersion(driver, "open", "x86_64", "") if driver else None
    assert expected in devices.dev_char_fix(ctk, uvm_loaded, version)


def test_proc_devices_name_follows_the_545_boundary() -> None:
    assert devices.frontend_name(devices.DriverVersion("545.23.06", "open", "x86_64", "")) == "nvidia"
    assert devices.frontend_name(devices.DriverVersion("535.288.01", "open", "x86_64", "")) == "nvidia-frontend"


def test_module_load_causes_read_real_log_framing() -> None:
    log = ("Aug 14 kernel: NVRM: The NVIDIA GPU 0000:09:00.0 (PCI ID: 10de:1d01)\n"
           "             NVRM: installed in this system is not supported by open\n"
           "             NVRM: nvidia.ko because it does not include the required GPU\n"
           "[ 12.4] mymod: loading of module with unavailable key is rejected\n")
    assert set(module_load_causes(log)) == {"open-module-pre-turing", "secure-boot"}


@pytest.mark.parametrize(("recorded", "env", "expect"), [
    ({"text": "lxc\n"}, {}, "lxc"),  # systemd's record in a Proxmox, Incus or LXD guest
    ({"error": "ENOENT"}, {"container": "lxc"}, "lxc"),  # a shell from lxc-attach, no systemd record
    ({"text": "systemd-nspawn\n"}, {}, "systemd-nspawn"),
    ({"text": "docker\n"}, {}, ""),  # an application container: the engine's own checks apply
    ({"error": "ENOENT"}, {}, ""),
    ({"error": "EACCES", "detail": "Permission denied"}, {}, None),  # cannot tell: never guessed to be a host
])
def test_system_container_is_read_from_systemd_or_the_environment(recorded: dict, env: dict,
                                                                  expect: Optional[str]) -> None:
    data = healthy()
    data["files"]["/run/systemd/container"] = recorded
    data["env"] = env
    if expect is None:
        with pytest.raises(Missing):
            system_container_fact(Snapshot(data))
    else:
        assert system_container_fact(Snapshot(data)) == expect


@pytest.mark.parametrize("lxc", [True, False])
def test_lxc_cgroup_denial_sends_the_fix_to_the_host_configuration(lxc: bool) -> None:
    """In an engine's container a restart re-adds the device rules; in an LXC container the rules come from its
    configuration on the host, so "restart the container" alone changes nothing."""
    data = load_scenario(SCENARIO_DIR / "cgroup-device-access" / "broken-lxc-bind-mounts-without-allow-lines.json")[
        "snapshot"]
    if not lxc:
        data["files"]["/run/systemd/container"] = {"error": "ENOENT"}
    finding = _finding(data, "cgroup-device-access")
    assert finding.status is Status.FAIL
    assert finding.url.endswith("#lxc") is lxc, finding
    assert ("On the host" in finding.fix) is lxc, finding.fix
    nvml = _finding(data, "nvml-init")
    assert nvml.url.endswith("cgroup-device-access.html#lxc") is lxc, nvml


@pytest.mark.parametrize("lxc", [True, False])
def test_lxc_library_mismatch_is_fixed_in_the_container_not_by_a_reboot(lxc: bool) -> None:
    data = load_scenario(SCENARIO_DIR / "driver-mismatch" / "broken-lxc-libraries-older-than-host-module.json")[
        "snapshot"]
    if not lxc:
        data["files"]["/run/systemd/container"] = {"error": "ENOENT"}
    for check_id in ("driver-library-mismatch", "nvml-init"):
        finding = _finding(data, check_id)
        assert finding.status is Status.FAIL
        assert finding.url.endswith("#system-container") is lxc, finding
        assert ("--no-kernel-modules" in finding.fix) is lxc, finding.fix
        assert ("reboot" in finding.fix.lower()) is not lxc, finding.fix


@pytest.mark.parametrize("line", [
    "Unable to determine the device handle for GPU 0000:0B:00.0: Unknown Error",
    "Unable to determine the device handle for GPU0000:07:00.0: Unknown Error",
    "Unable to determine the device handle for GPU0: 0000:01:00.0: Unknown Error",
])
def test_every_form_of_nvidia_smis_handle_error_is_a_lost_gpu(line: str) -> None:
    """nvidia-smi's per-GPU handle error, in each spelling seen in reports, fails gpu-lost and names the bus id."""
    from gpu_runbook.registry import run_checks
    from gpu_runbook.snapshot import Snapshot

    data = copy.deepcopy(load_scenario(SCENARIO_DIR / "recovery" / "broken-gpu-lost-unknown-error.json")["snapshot"])
    runs = [c for c in data["commands"].values() if "device handle" in c.get("stdout", "")]
    assert runs, "the scenario's nvidia-smi output changed"
    for command in runs:
        command["stdout"] = line + "\n"
    finding = run_checks(Snapshot(data), only=["gpu-lost"])[0]
    assert finding.status == Status.FAIL and ":00.0: Unknown Error" in finding.summary, finding.summary


def _service_snapshot(units: dict[str, str], proc_devices: Optional[str] = None) -> dict:
    data = copy.deepcopy(load_scenario(SCENARIO_DIR / "cgroup-device-access" / "broken-service-private-devices.json")
                         ["snapshot"])
    data["files"] = {p: f for p, f in data["files"].items() if "systemd" not in p}
    data["files"].update({path: {"text": text} for path, text in units.items()})
    if proc_devices is not None:
        data["files"]["/proc/devices"] = {"text": proc_devices}
    return data


def _service_verdict(data: dict) -> Finding:
    from gpu_runbook.registry import run_checks
    from gpu_runbook.snapshot import Snapshot

    return run_checks(Snapshot(data), only=["service-device-sandbox"])[0]


def test_service_sandbox_judges_uvm_by_name_before_nvidia_uvm_loads() -> None:
    """A unit that allows char-nvidia and char-nvidia-uvm is right even while nvidia_uvm is not loaded yet."""
    unit = "[Service]\nExecStart=/usr/bin/ollama serve\nDevicePolicy=closed\nDeviceAllow=char-nvidia rw\n" \
           "DeviceAllow=char-nvidia-uvm rw\n"
    no_uvm = "Character devices:\n  1 mem\n195 nvidia\n195 nvidiactl\n\nBlock devices:\n  8 sd\n"
    finding = _service_verdict(_service_snapshot({"/etc/systemd/system/ollama.service": unit}, no_uvm))
    assert finding.status == Status.OK, finding.summary
    no_driver = "Character devices:\n  1 mem\n\nBlock devices:\n  8 sd\n"  # driver not loaded: the name is unsure
    finding = _service_verdict(_service_snapshot({"/etc/systemd/system/ollama.service": unit}, no_driver))
    assert finding.status == Status.UNKNOWN, finding.summary


def test_service_sandbox_names_every_setting_to_change_and_reads_transient_units() -> None:
    """PrivateDevices=yes and a list without NVIDIA nodes are both reported, so the fix names both; a unit
    started by systemd-run (JupyterHub's SystemdSpawner) is read from /run/systemd/transient."""
    unit = "[Service]\nExecStart=/opt/jupyterhub/bin/jupyterhub-singleuser\nPrivateDevices=yes\n" \
           "DeviceAllow=/dev/null rw\n"
    finding = _service_verdict(_service_snapshot({"/run/systemd/transient/jupyter-alice-singleuser.service": unit}))
    assert finding.status == Status.FAIL and "jupyter-alice-singleuser.service" in finding.summary
    assert "PrivateDevices=no" in finding.fix and "DeviceAllow=char-nvidia rw" in finding.fix, finding.fix


# -- the kernel's build options (kernel-cgroup-bpf) ---------------------------------------------------------

KERNEL_CONFIG = ("#\n# Automatically generated file; DO NOT EDIT.\nCONFIG_BPF=y\nCONFIG_BPF_SYSCALL=y\n"
                 "# CONFIG_CGROUP_BPF is not set\nCONFIG_CGROUP_BPF_EXTRA=y\nCONFIG_LOCALVERSION=\"-avocado\"\n")


def test_kernel_config_probe_keeps_only_the_planned_options(tmp_path: Path) -> None:
    import gzip

    from gpu_runbook.probes.host import read_kernel_config

    (tmp_path / "proc").mkdir()
    (tmp_path / "boot").mkdir()
    (tmp_path / "proc" / "config.gz").write_bytes(gzip.compress(KERNEL_CONFIG.encode()))
    (tmp_path / "boot" / "config-6.6.52").write_text(KERNEL_CONFIG)
    want = "CONFIG_BPF_SYSCALL=y\n# CONFIG_CGROUP_BPF is not set\n"
    for path in ("/proc/config.gz", "/boot/config-6.6.52"):
        fact = read_kernel_config(str(tmp_path), path, plan.KERNEL_CONFIG_OPTIONS, plan.KERNEL_CONFIG_MAX_BYTES)
        assert fact == {"text": want, "filtered": True}, path
    # A limit smaller than the configuration marks it truncated, compressed or not.
    for path in ("/proc/config.gz", "/boot/config-6.6.52"):
        assert read_kernel_config(str(tmp_path), path, plan.KERNEL_CONFIG_OPTIONS, 40)["truncated"] is True
    (tmp_path / "proc" / "bad.gz").write_bytes(b"CONFIG_CGROUP_BPF=y\n")
    assert read_kernel_config(str(tmp_path), "/proc/bad.gz", plan.KERNEL_CONFIG_OPTIONS, 1024)["error"] == "EBADMSG"
    assert read_kernel_config(str(tmp_path), "/proc/absent.gz", plan.KERNEL_CONFIG_OPTIONS, 1024)["error"] == "ENOENT"
    # The collection records them under their own paths, and nothing else of the file.
    files = collect(root=str(tmp_path), deadline=5)["files"]
    assert files["/proc/config.gz"]["text"] == want and files["/boot/config-6.6.52"]["text"] == want


def test_kernel_cgroup_bpf_judges_planned_options_only() -> None:
    assert set(devices.KERNEL_BPF_OPTIONS) <= set(plan.KERNEL_CONFIG_OPTIONS)


def _kernel_verdict(data: dict) -> Finding:
    return next(iter(run_checks(Snapshot(data), only=["kernel-cgroup-bpf"], strict=True)))


def test_kernel_cgroup_bpf_running_release_and_branches() -> None:
    broken = load_scenario(SCENARIO_DIR / "cgroup-device-access" / "broken-kernel-without-cgroup-bpf.json")["snapshot"]
    data = copy.deepcopy(broken)
    # Both options missing (CONFIG_BPF_SYSCALL absent from the configuration counts as not set).
    data["files"]["/proc/config.gz"] = {"text": "# CONFIG_CGROUP_BPF is not set\n", "filtered": True}
    found = _kernel_verdict(data)
    assert found.status is Status.FAIL and "CONFIG_BPF_SYSCALL is not set" in found.summary
    # Cut before the options: cannot tell.
    data["files"]["/proc/config.gz"] = {"text": "", "filtered": True, "truncated": True}
    assert _kernel_verdict(data).status is Status.UNKNOWN
    # cgroup v1: device rules are not eBPF.
    data = copy.deepcopy(broken)
    data["files"]["/proc/self/mountinfo"] = {"text": (
        "24 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
        "40 25 0:35 / /sys/fs/cgroup/devices rw shared:20 - cgroup cgroup rw,devices\n")}
    assert _kernel_verdict(data).status is Status.OK
    # Only the running release's /boot copy counts; none readable is a skip.
    data = copy.deepcopy(broken)
    del data["files"]["/proc/config.gz"]
    data["files"]["/boot/config-5.15.0-1-generic"] = {"text": "CONFIG_BPF_SYSCALL=y\nCONFIG_CGROUP_BPF=y\n"}
    assert _kernel_verdict(data).status is Status.SKIP
    data["files"][f"/boot/config-{data['host']['kernel_release']}"] = {"text": "CONFIG_BPF_SYSCALL=y\n"}
    assert _kernel_verdict(data).status is Status.FAIL
