"""Checks of the NVLink fabric on NVSwitch hosts: Fabric Manager runs, at the driver's version, and the GPUs
have registered with the fabric (until they have, CUDA answers error 802, "system not yet initialized")."""

from __future__ import annotations

import re
from typing import Any, Optional

from gpu_runbook.findings import Verdict, fail, ok, skip, unknown
from gpu_runbook.parsers.fabric import (
    FABRIC_COMPLETED,
    FABRIC_IN_PROGRESS,
    FABRIC_NOT_STARTED,
    FABRIC_NOT_SUPPORTED,
    FABRIC_STATES,
    fm_mismatches,
    fm_start_failures,
    fm_version_from_output,
    parse_systemctl_show,
)
from gpu_runbook.parsers.pci import is_function
from gpu_runbook.parsers.proc import DriverVersion
from gpu_runbook.registry import check, fact
from gpu_runbook.snapshot import Snapshot, nvml_devices

NVSWITCH_PROCFS = "/proc/driver/nvidia-nvswitch/devices/"
FM_BINARY = "/usr/bin/nv-fabricmanager"
FM_UNIT_FILES = ("/usr/lib/systemd/system/nvidia-fabricmanager.service",
                 "/lib/systemd/system/nvidia-fabricmanager.service")
# Where the GPU Operator's driver container exposes its root file system: it starts Fabric Manager itself,
# inside the container, on hosts where it finds NVSwitches (gpu-driver-container, nvidia-driver _start_daemons).
DRIVER_CONTAINER_ROOT = "/run/nvidia/driver"


# nvmlDeviceArchitecture_t values of GPUs whose NVSwitches are not driven by nvidia.ko's nvswitch part: Blackwell
# (NVLink5, managed through NVLSM on HGX/DGX B200 and later, or from the switch trays of NVL72 racks) and Rubin.
NVLINK5_ARCHITECTURES = {10: "Blackwell", 13: "Rubin"}


@fact("nvlink_fabric")
def nvlink_fabric_fact(snapshot: Snapshot) -> dict[str, Any]:
    """What says this host sits on an NVLink fabric: the NVSwitches the driver manages (procfs) and their /dev
    nodes, each GPU's fabric state in NVML, and which of those GPUs are Blackwell or later (NVLink5 fabrics).

    Never missing: an empty result is itself the answer "no NVSwitch seen".
    """
    procfs = sorted(path[len(NVSWITCH_PROCFS):] for path, info in snapshot.paths_matching(NVSWITCH_PROCFS).items()
                    if "/" not in path[len(NVSWITCH_PROCFS):] and info.get("kind") == "dir")
    nodes = sorted(p for p, f in snapshot.paths_matching("/dev/nvidia-nvswitch").items()
                   if re.search(r"/dev/nvidia-nvswitch\d+$", p) and f.get("kind") == "char")
    states: dict[str, dict[str, Any]] = {}
    nvlink5: list[str] = []
    nvml = snapshot.nvml
    for device in nvml_devices(nvml):
        fabric = device.get("fabric")
        if isinstance(fabric, dict) and isinstance(fabric.get("state"), int):
            gpu = f"GPU {device.get('index', '?')}"
            states[gpu] = fabric
            if device.get("architecture") in NVLINK5_ARCHITECTURES and fabric["state"] != FABRIC_NOT_SUPPORTED:
                nvlink5.append(gpu)
    return {"nvswitches": procfs, "nodes": nodes, "gpu_fabric": states, "nvlink5_gpus": nvlink5,
            "machine": snapshot.host.get("machine")}


@fact("fabric_manager")
def fabric_manager_fact(snapshot: Snapshot) -> dict[str, Any]:
    """Fabric Manager as installed and running: the binary and unit file, the unit's state (systemctl show),
    the daemon's version (nv-fabricmanager --version), its journal lines, and whether the GPU Operator's
    driver container (which runs its own Fabric Manager) is there."""
    unit_cmd = snapshot.command("fabricmanager-unit")
    unit = parse_systemctl_show(unit_cmd.stdout) if unit_cmd.ran else {}
    version_cmd = snapshot.command("fabricmanager-version")
    version = fm_version_from_output(version_cmd.output) if version_cmd.ran and version_cmd.exit == 0 else None
    journal_cmd = snapshot.command("fabricmanager-journal")
    journal = journal_cmd.output if journal_cmd.ran else ""
    return {
        "binary": snapshot.path(FM_BINARY).get("kind") in ("file", "symlink"),
        "unit_file": next((p for p in FM_UNIT_FILES if snapshot.path(p).get("kind") in ("file", "symlink")), None),
        "unit": unit,
        "unit_error": None if unit else (unit_cmd.error or unit_cmd.output.strip()[:160] or "no answer"),
        "version": version,
        "journal": journal,
        "driver_container": snapshot.path(DRIVER_CONTAINER_ROOT).get("kind") in ("dir", "symlink"),
        "live": not (unit_cmd.error == "not-collected" and version_cmd.error == "not-collected"),
    }


def _nvlink5_baseboard(fabric: dict[str, Any]) -> bool:
    """Blackwell-or-later GPUs on an NVLink fabric in an x86_64 host: an HGX/DGX B200-class baseboard, whose
    NVSwitches sit beside the GPUs. (Grace-based GB200/GB300 compute trays have theirs in the rack's switch trays.)"""
    return bool(fabric["nvlink5_gpus"]) and fabric["machine"] == "x86_64"


def _switches(fabric: dict[str, Any], pci: Optional[list[dict[str, Any]]]) -> list[str]:
    """The local NVSwitches, by any sign: procfs, /dev nodes, NVSwitch PCI functions, an NVLink5 baseboard."""
    found = [f"NVSwitch {s}" for s in fabric["nvswitches"]] or [f"{n}" for n in fabric["nodes"]]
    if not found and pci:
        found = [f"NVSwitch {f.get('bdf')}" for f in pci if is_function(f, "nvswitch")]
    if not found and _nvlink5_baseboard(fabric):
        found = [f"NVLink5 baseboard ({len(fabric['nvlink5_gpus'])} Blackwell-or-later GPUs on an NVLink fabric)"]
    return found


def _unit_state(fm: dict[str, Any]) -> str:
    unit = fm["unit"]
    if not unit:
        return f"unit state unknown ({fm['unit_error']})"
    if unit.get("LoadState") == "not-found":
        return "nvidia-fabricmanager.service not installed"
    state = f"nvidia-fabricmanager.service {unit.get('ActiveState', '?')} ({unit.get('SubState', '?')}"
    if unit.get("Result") and unit.get("Result") != "success":
        state += f", result {unit['Result']}"
    return state + ")"


# --8<-- [start:fabric-manager-running]
@check("fabric-manager-running", title="NVSwitch fabric initialised by Fabric Manager", page="fabric-manager",
       facts=("nvlink_fabric", "fabric_manager"), optional=("pci_functions",))
def fabric_not_initialised(fabric: dict[str, Any], fm: dict[str, Any], pci: Optional[list[dict[str, Any]]]) -> Verdict:
    """GPUs behind NVSwitches have not registered with the NVLink fabric because Fabric Manager is not
    installed, not running or failed, so every CUDA program gets error 802 "system not yet initialized".

    ## Why it matters
    On HGX and DGX systems with NVSwitches the driver loads and nvidia-smi lists every GPU, but CUDA refuses
    work (cudaErrorSystemNotReady, 802) until Fabric Manager has trained the NVLinks, programmed the switches
    and registered each GPU with the fabric. NVML shows the GPU's fabric state "In Progress" meanwhile. On
    NVLink5 systems (HGX B200 and later) Fabric Manager also needs the NVLink Subnet Manager (NVLSM); on
    GB200/GB300 NVL72 racks the fabric is managed from the switch trays, not from the compute node.

    ## Evidence
    /proc/driver/nvidia-nvswitch/devices, /dev/nvidia-nvswitch*, NVSwitch PCI functions; NVML's fabric state
    and architecture per GPU (nvmlDeviceGetGpuFabricInfoV: Blackwell GPUs on a fabric in an x86_64 host mean an
    NVLink5 baseboard); `systemctl show nvidia-fabricmanager.service`; the unit's journal.

    ## References
    NVIDIA Fabric Manager User Guide; CUDA Runtime API, cudaErrorSystemNotReady; GPU Operator troubleshooting,
    "Operator validator pods crashing with error code system not yet initialized".
    """
    switches = _switches(fabric, pci)
    gpu_fabric: dict[str, dict[str, Any]] = fabric["gpu_fabric"]
    waiting = {g: FABRIC_STATES[f["state"]] for g, f in gpu_fabric.items()
               if f["state"] in (FABRIC_NOT_STARTED, FABRIC_IN_PROGRESS)}
    failed = {g: f.get("status") for g, f in gpu_fabric.items()
              if f["state"] == FABRIC_COMPLETED and f.get("status") not in (0, None)}
    done = [g for g, f in gpu_fabric.items() if f["state"] == FABRIC_COMPLETED and f.get("status") in (0, None)]
    evidence: dict[str, Any] = {
        "switches": switches, "gpu_fabric_state": {g: FABRIC_STATES.get(f["state"], f["state"])
                                                   for g, f in sorted(gpu_fabric.items())},
        "unit": fm["unit"] or fm["unit_error"], "driver_container": fm["driver_container"]}
    reasons = fm_start_failures(fm["journal"])
    mismatch = fm_mismatches(fm["journal"])
    if reasons or mismatch:
        evidence["journal"] = [m.line for m in mismatch[-1:]] + list(reasons.values())
    if not switches and not waiting and not failed and not done:
        return skip("no NVSwitch here (no /proc/driver/nvidia-nvswitch devices or NVSwitch PCI function, and NVML "
                    "reports no GPU on an NVLink fabric)", evidence)
    if failed:
        listed = ", ".join(f"{g} (status {s})" for g, s in sorted(failed.items()))
        return fail(f"fabric registration completed with an error on {listed} (expected status 0): those GPUs "
                    "are not usable over NVLink", "Read Fabric Manager's log (/var/log/fabricmanager.log) for "
                    "the failed NVLinks or NVSwitches, then reset the GPUs or reboot; repeated failures need "
                    "service.", evidence, anchor="registration-failed")
    if waiting or (switches and not done):
        state = _unit_state(fm)
        by_state: dict[str, list[str]] = {}
        for gpu, name in sorted(waiting.items()):
            by_state.setdefault(name, []).append(gpu.replace("GPU ", ""))
        listed = "; ".join(f"{name}: GPU {', '.join(gpus)}" for name, gpus in by_state.items())
        prefix = (f"{len(waiting)} GPU(s) not registered with the NVLink fabric ({listed}; expected Completed): "
                  "CUDA answers 802 'system not yet initialized'" if waiting else
                  f"NVSwitches present ({len(switches)}) but NVML did not report the GPUs' fabric state")
        if mismatch:
            m = mismatch[-1]
            return fail(f"{prefix}; Fabric Manager {m.fm_version} refused driver {m.driver_version}",
                        "Install the Fabric Manager package of exactly the driver's version (or the driver of "
                        "Fabric Manager's), then start nvidia-fabricmanager.", evidence, anchor="version-mismatch")
        if not switches and fabric["nvlink5_gpus"] and fabric["machine"] == "aarch64":
            return fail(f"{prefix}; no NVSwitch is managed from this node (an NVL72-class compute tray)",
                        "The fabric of GB200/GB300 NVL72 racks is managed from the NVLink switch trays: check the "
                        "switch trays and the rack's NVLink management (NMX).", evidence,
                        anchor="nvl72")
        if fm["driver_container"] and not fm["unit"].get("ActiveState") == "active" and not waiting:
            # GPUs before Hopper (HGX A100) report no fabric state, and the container's Fabric Manager has no unit
            # on the host: a healthy node looks the same as a broken one from here.
            return unknown(f"{len(switches)} NVSwitch sign(s), Fabric Manager runs inside the GPU Operator's driver "
                           "container, and NVML reports no fabric state for these GPUs (before Hopper, or NVML not "
                           "asked): its state cannot be read from the host", evidence,
                           fix="Read the driver container's log (kubectl logs -n gpu-operator <nvidia-driver-daemonset "
                           "pod> -c nvidia-driver-ctr) for the Fabric Manager start.")
        if fm["driver_container"] and not fm["unit"].get("ActiveState") == "active":
            return fail(f"{prefix}; Fabric Manager should run inside the GPU Operator's driver container",
                        "Read the driver container's log (kubectl logs -n gpu-operator <nvidia-driver-daemonset pod>"
                        " -c nvidia-driver-ctr) for the Fabric Manager start and its /var/log/fabricmanager.log.",
                        evidence, anchor="gpu-operator")
        if _nvlink5_baseboard(fabric) and not fabric["nvswitches"]:
            return fail(f"{prefix}; {state} on an NVLink5 system"
                        + (", which found no NVSwitch to manage (no NVLSM)" if "nothing-to-do" in reasons else ""),
                        "Install Fabric Manager of the driver's version and the NVLink Subnet Manager (nvlsm), "
                        "and start nvidia-fabricmanager.service, whose start script starts NVLSM first.", evidence,
                        anchor="nvlink5")
        unit = fm["unit"]
        if unit.get("LoadState") == "not-found" or (not unit and not fm["binary"] and fm["live"]):
            return fail(f"{prefix}; {state}", "Install the Fabric Manager package (nvidia-fabricmanager from "
                        "branch 580 on, nvidia-fabricmanager-<branch> before) of exactly the driver's version (on "
                        "NVLink5 systems with nvlsm), enable and start it.", evidence, anchor="not-installed")
        if unit.get("ActiveState") == "active" and not waiting:
            return ok(f"{len(switches)} NVSwitch(es) and {state}; NVML reports no fabric state (GPUs before "
                      "Hopper, or NVML not asked)", evidence)
        if unit.get("ActiveState") == "active":
            return fail(f"{prefix}; {state} but has not finished", "Wait a minute after boot; if it stays, read "
                        "/var/log/fabricmanager.log and the unit's journal.", evidence, anchor="not-running")
        if not unit and not fm["live"] and not waiting:
            return skip(f"{len(switches)} NVSwitch sign(s) here, but neither NVML nor the unit state was read "
                        "(collected without --live)", evidence)
        if not unit:
            return unknown(f"{prefix}; {state}", evidence, fix="Run as root on the host: systemctl status "
                           "nvidia-fabricmanager; nvidia-smi -q | grep -A 2 Fabric.")
        return fail(f"{prefix}; {state}", "Start it (systemctl enable --now nvidia-fabricmanager) and read why it "
                    "stopped: journalctl -u nvidia-fabricmanager.", evidence, anchor="not-running")
    return ok(f"{len(done)} GPU(s) registered with the NVLink fabric (Completed)"
              + (f", {len(switches)} local NVSwitch sign(s)" if switches else ""), evidence)
# --8<-- [end:fabric-manager-running]


# --8<-- [start:fabric-manager-version]
@check("fabric-manager-version", title="Fabric Manager at the driver's version", page="fabric-manager",
       facts=("nvlink_fabric", "fabric_manager"), optional=("kernel_driver", "pci_functions"))
def fabric_manager_version_mismatch(fabric: dict[str, Any], fm: dict[str, Any], driver: Optional[DriverVersion],
                                    pci: Optional[list[dict[str, Any]]]) -> Verdict:
    """Fabric Manager's version differs from the loaded driver's, so it refuses to start ("fabric manager
    NVIDIA GPU driver interface version X don't match with driver version Y").

    ## Why it matters
    nv-fabricmanager compares its driver interface version with the loaded driver's and exits when they
    differ, so it must be the driver's exact version, down to the last number. Package managers that upgrade
    the driver and Fabric Manager from different repositories (or hold one of them) break this after an
    upgrade, and an image may carry a Fabric Manager of another branch.

    ## Evidence
    `nv-fabricmanager --version`, /proc/driver/nvidia/version, the version-mismatch line in the unit's journal.

    ## References
    NVIDIA Fabric Manager User Guide; NVIDIA/gpu-operator#544; Azure/azhpc-images#86.
    """
    mismatch = fm_mismatches(fm["journal"])
    evidence: dict[str, Any] = {"fabric_manager": fm["version"], "driver": driver.version if driver else None}
    # A PCIe GPU answers "Not Supported": an image that installs Fabric Manager everywhere must not fail there.
    on_fabric = [g for g, f in fabric["gpu_fabric"].items() if f["state"] != FABRIC_NOT_SUPPORTED]
    if not _switches(fabric, pci) and not on_fabric:
        return skip("no NVSwitch here: Fabric Manager is not needed (it exits on hosts without NVSwitches)",
                    evidence)
    if fm["version"] and driver is not None:
        if fm["version"] == driver.version:
            return ok(f"Fabric Manager {fm['version']} matches the driver {driver.version}", evidence)
        return fail(f"Fabric Manager {fm['version']} is not the loaded driver's version {driver.version} (expected "
                    "the same version): it refuses to start", "Install the Fabric Manager package of exactly "
                    f"version {driver.version} (and hold both packages together), then restart "
                    "nvidia-fabricmanager.",
                    evidence, anchor="version-mismatch")
    if mismatch:
        m = mismatch[-1]
        evidence["journal"] = m.line
        return fail(f"Fabric Manager {m.fm_version} refused the driver {m.driver_version} (journal): versions "
                    "must match exactly", f"Install the Fabric Manager package of exactly version "
                    f"{m.driver_version}, then restart nvidia-fabricmanager.", evidence, anchor="version-mismatch")
    if not fm["binary"] and not fm["version"]:
        if fm["driver_container"]:
            return skip("Fabric Manager runs inside the GPU Operator's driver container here, not on the host: "
                        "its version shows in the container (nv-fabricmanager --version there)", evidence)
        return skip("Fabric Manager is not installed on the host (fabric-manager-running says whether it is "
                    "missing)", evidence)
    if driver is None:
        return unknown("the loaded driver's version is not known (/proc/driver/nvidia/version unreadable)",
                       evidence)
    return unknown(f"Fabric Manager is installed but did not tell its version ({_command_note(fm)})", evidence)
# --8<-- [end:fabric-manager-version]


def _command_note(fm: dict[str, Any]) -> str:
    return "not live" if not fm["live"] else "nv-fabricmanager --version gave no version"

