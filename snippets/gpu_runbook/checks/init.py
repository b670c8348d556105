"""Checks of GPU initialisation: GPUs the driver probed but could not bring up (RmInitAdapter, GSP boot), and
GPUs on the PCI bus that the driver and NVML never report (fallen off the bus while the driver probed them)."""

from __future__ import annotations

import re
from typing import Any, Optional

from gpu_runbook.findings import Verdict, fail, ok, skip, unknown, warn
from gpu_runbook.parsers.pci import is_function, normalize_bdf
from gpu_runbook.parsers.proc import InitFailure, gpu_init_failures, module_load_causes
from gpu_runbook.registry import check
from gpu_runbook.snapshot import CommandFact, nvml_answered

# The proprietary module's refusal of a GPU that needs the open modules (Grace Hopper, Blackwell), as a report
# pasted it (awslabs/amazon-eks-ami#2769, a g7 instance); the text is not in the open-module source.
NEEDS_OPEN_MODULES = re.compile(r"requires use of the NVIDIA open kernel modules")


def _nvml_view(nvml: Optional[dict[str, Any]]) -> Optional[tuple[set[str], int]]:
    """(PCI addresses NVML reports, its device count), or None when NVML did not answer."""
    if not nvml_answered(nvml):
        return None
    devices = nvml.get("devices") if isinstance(nvml.get("devices"), list) else []
    seen = {b for b in (normalize_bdf(d.get("pci_bus_id")) for d in devices if isinstance(d, dict)) if b}
    count = nvml.get("device_count")
    return seen, count if isinstance(count, int) and not isinstance(count, bool) else len(devices)


# What each failure means and where the page explains it: (words, anchor).
MEANING = {
    "fell-off-at-probe": ("fell off the bus while the driver probed it (no Xid is logged for this)",
                          "fallen-off-at-probe"),
    "gsp-boot": ("the GSP firmware did not boot", "gsp-boot"),
    "invalid-bar": ("its PCI memory window (BAR) was never assigned", "invalid-bar"),
    "rm-init": ("RmInitAdapter failed", "rm-init-adapter"),
    "probe-failed": ("the driver's probe failed", "fallen-off-at-probe"),
    "none-initialized": ("no NVIDIA GPU was initialised", "rm-init-adapter"),
}


BAR_FIX = ("Give the GPU address space for its BARs (Above 4G Decoding in the firmware setup, a larger 64-bit MMIO "
           "window for a VM, pci=realloc), then reboot the host, or stop and start the VM (a reboot inside the guest "
           "keeps the old firmware settings).")


def _describe(failure: InitFailure) -> str:
    where = f"GPU {failure.pci}: " if failure.pci else ""
    detail = f" ({failure.detail})" if failure.detail else ""
    return f"{where}{MEANING[failure.kind][0]}{detail}"


# --8<-- [start:gpu-init-failed]
@check("gpu-init-failed", title="No GPU failed to initialise", page="gpu-init-failure",
       facts=("kernel_log",), optional=("nvml",))
def gpu_init_failed(log: CommandFact, nvml: Optional[dict[str, Any]]) -> Verdict:
    """The kernel log shows a GPU the driver could not initialise: "RmInitAdapter failed!", "Cannot initialize
    GSP firmware RM", a GPU that "has fallen off the bus" while the driver probed it, or one whose PCI BAR
    "is invalid" (left unassigned, typically for want of 64-bit address space, so the probe fails).

    ## Why it matters
    nvidia-smi then prints "No devices were found", or simply lists one GPU fewer: a GPU that fails its probe
    leaves no Xid, no NVML error and no device-plugin health event, so every other check looks fine while a
    node advertises less than it holds. The codes in the RmInitAdapter line name the stage that failed
    (0x61 fetching the GSP firmware, 0x62 booting it) and the status (0x65 a timeout).

    ## Evidence
    The NVRM lines of the kernel log (`dmesg`); NVML's list of GPUs, to tell a failure that is still there
    from one a later reset or reload cleared.

    ## References
    open-gpu-kernel-modules: src/nvidia/arch/nvalloc/unix/src/osinit.c (RmInitAdapter, rm_init_status),
    src/nvidia/arch/nvalloc/unix/src/osapi.c (rm_is_supported_device), kernel-open/nvidia/nv.c,
    kernel-open/nvidia/nv-pci.c (nv_pci_validate_bars from 580.65.06, nv_pci_probe before);
    NVIDIA/open-gpu-kernel-modules#789.
    """
    text = log.output
    failures = gpu_init_failures(text)
    firmware = module_load_causes(text).get("gsp-firmware")
    evidence: dict[str, Any] = {"kernel_log": [f.line for f in failures][-8:], "log_truncated": log.truncated}
    if not failures and not firmware:
        if not text.strip():
            return unknown("dmesg printed nothing: the kernel log could not be read (restricted or empty)", evidence)
        return ok("no RmInitAdapter, GSP boot or probe failure in the kernel log"
                  + (" (its newest part: older lines were not kept)" if log.truncated else ""), evidence)
    view = _nvml_view(nvml)
    named = sorted({f.pci for f in failures if f.pci})
    summary = "; ".join(dict.fromkeys(_describe(f) for f in failures if f.kind != "probe-failed")) or \
        "; ".join(_describe(f) for f in failures)
    if firmware and not failures:
        return fail(f"the GSP firmware of the loaded driver was not found: {firmware}",
                    "Install the firmware of the loaded driver's version or reboot into a consistent install.",
                    evidence, page="kernel-modules", anchor="gsp-firmware")
    if view is not None and named and set(named) <= view[0]:
        return warn(f"the kernel log holds GPU initialisation failures since boot ({summary[:300]}), but NVML now "
                    f"reports every GPU named there ({', '.join(named)})",
                    "Watch the GPU: a failure that a reset cleared may come back; note it for service.",
                    evidence, anchor=MEANING[failures[0].kind][1])
    needs_open = NEEDS_OPEN_MODULES.search(text)
    if needs_open:
        evidence["kernel_log"].append(text[text.rfind("\n", 0, needs_open.start()) + 1:needs_open.end()].strip())
        return fail(f"GPU initialisation failed: {summary[:300]}; the proprietary module says the GPU requires the "
                    "open kernel modules", "Install the open flavour of the same driver version (Grace Hopper and "
                    "Blackwell are supported only with it), then reload the driver or reboot.", evidence,
                    page="kernel-modules", anchor="proprietary-on-blackwell")
    first = next((f for f in failures if f.kind != "probe-failed"), failures[0])
    stage = re.search(r"RmInitAdapter failed! \((0x[0-9a-fA-F]+):", first.line)
    if firmware or (stage and int(stage.group(1), 16) == 0x61):
        return fail(f"GPU initialisation failed: {summary[:300]} (the GSP firmware could not be fetched)",
                    "Install the firmware of the loaded driver's version or reboot into a consistent install.",
                    evidence, page="kernel-modules", anchor="gsp-firmware")
    if any(f.kind == "invalid-bar" for f in failures):  # the cause, whatever the probe said after it
        anchor = "invalid-bar"
    elif any(f.kind == "gsp-boot" or (f.kind == "rm-init" and "GSP" in f.detail) for f in failures):
        anchor = "gsp-boot"
    else:
        anchor = MEANING[first.kind][1]
    fixes = {
        "fallen-off-at-probe": "Drain the node, reseat the GPU or check its power and PCIe slot (the BMC's event "
                               "log), then cold-boot; a GPU that keeps falling off needs service.",
        "gsp-boot": "Reload the driver or cold-boot the node (nvidia-smi -r cannot reach a GPU NVML does not list); "
                    "if it fails again, try another driver release and update the GPU's firmware, then collect "
                    "nvidia-bug-report.sh for NVIDIA.",
        "rm-init-adapter": "Reload the driver or reboot; if it persists, check the GPU's power and PCIe link and "
                           "collect nvidia-bug-report.sh.",
        "invalid-bar": BAR_FIX,
    }
    return fail(f"GPU initialisation failed: {summary[:300]}", fixes[anchor], evidence, anchor=anchor)
# --8<-- [end:gpu-init-failed]


# --8<-- [start:gpus-missing-from-driver]
@check("gpus-missing-from-driver", title="Every NVIDIA GPU on the PCI bus reaches NVML", page="gpu-init-failure",
       facts=("pci_functions",), optional=("nvml", "in_container", "proc_modules", "kernel_log"))
def gpus_missing_from_driver(pci: list[dict[str, Any]], nvml: Optional[dict[str, Any]],
                             in_container: Optional[bool], modules: Optional[dict[str, Any]],
                             log: Optional[CommandFact]) -> Verdict:
    """An NVIDIA GPU is on the PCI bus but the driver never bound it or NVML does not list it: it failed its
    probe or its initialisation, and the host quietly runs with one GPU fewer.

    ## Why it matters
    A GPU that falls off the bus while the driver probes it leaves no Xid: NVML, nvidia-smi and the device
    plugin simply see fewer GPUs, and health checks that ask NVML say all is well. Only the PCI bus still shows
    the GPU. Jobs sized for the whole node do not fit, and the node keeps being scheduled.

    ## Evidence
    The NVIDIA display-class functions in /sys/bus/pci/devices with the driver bound to each; NVML's device list
    (PCI bus ids); the NVRM probe lines of the kernel log for the GPUs that are missing.

    ## References
    open-gpu-kernel-modules kernel-open/nvidia/nv.c ("The NVIDIA probe routine failed for %d device(s)");
    NVIDIA/NVSentinel#684.
    """
    every = [f for f in pci if is_function(f, "gpu")]
    # SR-IOV virtual functions (vGPU hosts) are the physical GPU's slices: NVML on the host lists the physical
    # GPU only, so counting them would report every VF as a GPU that failed to initialise.
    gpus = [f for f in every if not f.get("physfn")]
    if not gpus:
        return skip("no NVIDIA GPU on the PCI bus" if not every else
                    "only SR-IOV virtual functions of NVIDIA GPUs here (their physical GPUs are elsewhere)",
                    {"pci_gpus": 0, "virtual_functions": len(every)})
    if in_container:
        return skip("inside a container NVML sees only the GPUs given to it, while sysfs shows the whole bus",
                    {"pci_gpus": len(gpus)})
    other = {f["bdf"]: f.get("driver") for f in gpus if f.get("driver") not in (None, "nvidia")}
    ours = [f for f in gpus if f["bdf"] not in other]
    evidence: dict[str, Any] = {"pci_gpus": {f["bdf"]: f.get("driver") for f in gpus},
                                "held_by_other_driver": other}
    if not ours:
        return skip(f"every NVIDIA GPU here is bound to another driver ({', '.join(sorted(set(other.values())))}): "
                    "nothing for NVML to see", evidence)
    if modules is not None and "nvidia" not in modules:
        return skip("the nvidia module is not loaded (kernel-modules-loaded covers it)", evidence)
    view = _nvml_view(nvml)
    unbound = [f["bdf"] for f in ours if f.get("driver") is None]
    if view is not None:
        seen, count = view
        evidence["nvml"] = sorted(seen)
        missing = [f["bdf"] for f in ours if f["bdf"] not in seen] if seen else []
        if not seen and count < len(ours):
            missing = [f["bdf"] for f in ours][count:]
    else:
        missing = unbound
        evidence["nvml"] = "not available: only GPUs no driver bound can be told"
    if missing:
        failures = gpu_init_failures(log.output) if log is not None else []
        lines = [f.line for f in failures if f.pci in missing or f.kind in ("probe-failed", "none-initialized")]
        evidence["missing"] = missing
        evidence["kernel_log"] = lines[-6:]
        kinds = ", ".join(f"{b} (no driver bound: its probe failed)" if b in unbound
                          else f"{b} (bound to nvidia but not in NVML)" for b in missing)
        fell = any(f.kind == "fell-off-at-probe" for f in failures)
        if log is not None and NEEDS_OPEN_MODULES.search(log.output):
            # Not a hardware fault: the loaded (proprietary) module refuses GPUs that only the open modules drive.
            return fail(f"{len(missing)} of {len(ours)} NVIDIA GPU(s) on the PCI bus are missing from the driver's "
                        f"view: {kinds}; the kernel log says they require the open kernel modules",
                        "Install the open flavour of the same driver version, then reload the driver or reboot.",
                        evidence, page="kernel-modules", anchor="proprietary-on-blackwell")
        bars = sorted({f.pci for f in failures if f.kind == "invalid-bar" and f.pci in missing})
        if bars:  # not a hardware fault either: nobody gave the GPU its memory window
            return fail(f"{len(missing)} of {len(ours)} NVIDIA GPU(s) on the PCI bus are missing from the driver's "
                        f"view: {kinds}; the kernel log says {', '.join(bars)} got no valid PCI BAR",
                        BAR_FIX, evidence, anchor="invalid-bar")
        return fail(f"{len(missing)} of {len(ours)} NVIDIA GPU(s) on the PCI bus are missing from the driver's view: "
                    f"{kinds}" + ("; the kernel log says it fell off the bus during the probe" if fell else ""),
                    "Drain the node, then check the GPU's power, seating and PCIe link (BMC event log) and cold-boot; "
                    "a GPU that stays missing needs service. (A GPU an admin put in drain state is hidden from NVML "
                    "the same way: `nvidia-smi drain --pciid <bus id> --modify 0` ends the drain.)", evidence,
                    anchor="fallen-off-at-probe" if fell or any(b in unbound for b in missing) else "rm-init-adapter")
    if view is None:
        return skip(f"the nvidia driver is bound to all {len(ours)} NVIDIA GPU(s) on the bus, but NVML did not answer, "
                    "so a GPU whose initialisation failed after the probe cannot be told", evidence)
    return ok(f"all {len(ours)} NVIDIA GPU(s) on the PCI bus are listed by NVML"
              + (f"; {len(other)} held by another driver" if other else ""), evidence)
# --8<-- [end:gpus-missing-from-driver]
