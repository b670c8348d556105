"""Checks of the container stack: NVML start-up, the container toolkit, runtimes, CDI, compatibility."""

from __future__ import annotations

from typing import Any

from gpu_runbook.findings import Verdict, fail, ok, unknown
from gpu_runbook.registry import check

# --8<-- [start:nvml-init]
# NVML error -> (page that explains it, anchor, one-sentence fix). Names are pynvml's exception
# classes; "timeout", "crashed" and "garbled" are the probe's own (the NVML child hung or died).
NVML_ERROR_PAGES: dict[str, tuple[str, str, str]] = {
    "NVMLError_Unknown": (
        "nvml-unknown-error", "causes",
        "The container lost access to the GPU device nodes: restart it, then stop the cause "
        "(systemd cgroup driver without /dev/char links, or no-cgroups)."),
    "NVMLError_DriverNotLoaded": (
        "kernel-modules", "driver-not-loaded",
        "Load the driver (modprobe nvidia) and find out why it is not loaded at boot."),
    "NVMLError_LibraryNotFound": (
        "container-cli-init-error", "load-library-failed",
        "libnvidia-ml.so.1 is not on the loader path: install the driver's user-space libraries "
        "(or run the container with the NVIDIA runtime so they are injected)."),
    "NVMLError_LibRmVersionMismatch": (
        "driver-mismatch", "causes",
        "The loaded kernel module and libnvidia-ml differ: reboot (or reload the module) after a driver upgrade."),
    "NVMLError_NoPermission": (
        "device-nodes", "permissions",
        "The process cannot open /dev/nvidia*: fix the node modes or run with the right group."),
    "NVMLError_GpuIsLost": (
        "recovery", "gpu-lost",
        "The GPU fell off the bus: drain the node, then reset the GPU or reboot."),
    "NVMLError_ResetRequired": (
        "recovery", "reset",
        "The GPU needs a reset: drain the node, then reset the GPU or reboot."),
    "timeout": (
        "recovery", "hung-driver",
        "NVML did not answer: the driver is hung; drain the node and follow the recovery runbook."),
}


@check("nvml-init", title="NVML initialises", page="nvml-unknown-error", facts=("nvml",))
def nvml_init_fails(nvml: dict[str, Any]) -> Verdict:
    """NVML cannot start (nvmlInit fails), so nvidia-smi, CUDA and every monitoring tool fail too.

    ## Why it matters
    Every NVIDIA tool starts with nvmlInit; its error code names the broken layer: no driver,
    no library, a library/module version mismatch, or a container that lost its devices.

    ## Evidence
    The NVML section of the snapshot: nvmlInit's exception class and code, driver version, GPU count.

    ## References
    NVML API reference, nvmlReturn_t: https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceEnumvs.html
    """
    init = nvml.get("init")
    error = (init or {}).get("error") if isinstance(init, dict) else None
    if error is None and isinstance(nvml.get("error"), dict):
        error = nvml["error"]  # the probe itself failed (timeout, crash)
    if isinstance(error, dict):
        name = str(error.get("name", "?"))
        message = str(error.get("message", ""))
        evidence = {"error": name, "code": error.get("code"), "message": message}
        if name in ("ModuleNotFoundError", "ImportError"):
            return unknown("pynvml is not importable here, so NVML was not asked: "
                           "install nvidia-ml-py (pip install nvidia-ml-py)", evidence)
        if name in ("crashed", "garbled", "not-started"):
            return unknown(f"the NVML probe did not report: {message}", evidence)
        page, anchor, fix = NVML_ERROR_PAGES.get(name, ("recovery", "", "See the recovery runbook."))
        return fail(f"nvmlInit failed: {message or name} ({name})", fix, evidence, page=page, anchor=anchor)
    if not (isinstance(init, dict) and init.get("ok") is True):
        return unknown("the snapshot's NVML section has no nvmlInit result", {"nvml_keys": sorted(nvml)})
    count = nvml.get("device_count")
    evidence = {"driver_version": nvml.get("driver_version"), "cuda_driver_version":
                nvml.get("cuda_driver_version"), "device_count": count}
    if count == 0:
        return fail("NVML started but sees no GPU", "Check that the GPU is passed to this host or container.",
                    evidence, page="gpu-not-visible")
    return ok(f"NVML initialised: driver {nvml.get('driver_version')}, {count} GPU(s)", evidence)
# --8<-- [end:nvml-init]

