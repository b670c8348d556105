"""Checks of the NVIDIA GPU Operator's node state and of the DCGM exporter it deploys.

The operator leaves its verdicts on the node: its validator writes one status file per component under
/run/nvidia/validations, and the driver container adds its own hidden ones there. These checks read that
directory, the driver the kernel has loaded, and what NVML says about each GPU. None needs the Kubernetes API.
"""

from __future__ import annotations

from typing import Any, Optional

from gpu_runbook.findings import Verdict, fail, ok, skip, unknown, warn
from gpu_runbook.parsers.proc import DriverVersion
from gpu_runbook.registry import check, fact
from gpu_runbook.snapshot import NOT_PRESENT, Missing, Snapshot, nvml_answered, nvml_devices

VALIDATIONS_DIR = "/run/nvidia/validations"  # cmd/nvidia-validator/main.go defaultStatusPath (validator/ before 25.10)
# The validator's status files in the order its init containers create them (driver -> toolkit -> cuda -> plugin);
# every GPU Operator operand waits for one of the first two (assets/*/0500_daemonset.yaml, `until [ -f ... ]`).
VALIDATION_CHAIN = ("driver-ready", "toolkit-ready", "cuda-ready", "plugin-ready")
# Written by the driver container's startup probe once nvidia-smi answers (up to 25.10: `touch`; from 26.3 the
# probe script writes the GDRCOPY/GDS/RDMA flags into it), removed by its preStop hook.
DRIVER_CTR_READY = ".driver-ctr-ready"
# Written by the driver container itself (gpu-driver-container, August 2026): "Ready" once its daemons run.
DRIVER_DAEMONS_STATUS = ".driver-daemons-status"
WORKLOAD_TYPE = "workload-type"  # "container", "vm-passthrough" or "vm-vgpu"

ANCHORS = {"driver-ready": "driver-not-validated", "toolkit-ready": "toolkit-not-validated",
           "cuda-ready": "cuda-not-validated", "plugin-ready": "plugin-not-validated"}
VALIDATOR_CONTAINERS = {"driver-ready": "driver-validation", "toolkit-ready": "toolkit-validation",
                        "cuda-ready": "cuda-validation", "plugin-ready": "plugin-validation"}


@fact("operator_validations")
def operator_validations_fact(snapshot: Snapshot) -> dict[str, Any]:
    """The GPU Operator's status directory: {"entries": [names], "files": {name: text}} for the files read.

    Skip when the directory is absent: the operator's validator never ran on this host.
    """
    listing = snapshot.dir(VALIDATIONS_DIR)
    error = listing.get("error")
    if error in NOT_PRESENT:
        raise Missing(f"no {VALIDATIONS_DIR} on this host: not a GPU Operator node (its validator never ran here)",
                      "skip")
    if error is not None or not isinstance(listing.get("entries"), dict):
        raise Missing(f"{VALIDATIONS_DIR} could not be listed ({error or 'malformed'})")
    files: dict[str, str] = {}
    for name in ("driver-ready", DRIVER_DAEMONS_STATUS, WORKLOAD_TYPE):
        text = snapshot.file(f"{VALIDATIONS_DIR}/{name}").text
        if text is not None:
            files[name] = text
    kernel = snapshot.file("/proc/sys/kernel/osrelease").text or snapshot.host.get("kernel_release") or "?"
    version = snapshot.file("/proc/driver/nvidia/version")  # absent = no driver loaded; unreadable = cannot tell
    driver_file = "present" if version.exists else "absent" if version.absent else f"unreadable ({version.why})"
    return {"entries": sorted(str(n) for n in listing["entries"]), "files": files, "kernel": str(kernel).strip(),
            "driver_file": driver_file}


def parse_status_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines of the validator's driver-ready file.

    >>> parse_status_file("IS_HOST_DRIVER=false\\nNVIDIA_DRIVER_ROOT=/run/nvidia/driver\\n")
    {'IS_HOST_DRIVER': 'false', 'NVIDIA_DRIVER_ROOT': '/run/nvidia/driver'}
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


# --8<-- [start:gpu-operator-validations]
@check("gpu-operator-validations", title="GPU Operator validations passed on this node", page="gpu-operator",
       facts=("operator_validations",), optional=("kernel_driver",))
def gpu_operator_validation_missing(state: dict[str, Any], driver: Optional[DriverVersion]) -> Verdict:
    """A GPU Operator node lacks one of the validator's status files (driver-ready, toolkit-ready, cuda-ready,
    plugin-ready), so the operands that wait for it (device plugin, GFD, DCGM exporter, MIG manager) never start.

    ## Why it matters
    nvidia-operator-validator runs driver, toolkit, CUDA and device-plugin validation in that order and
    writes one file per step into /run/nvidia/validations. The toolkit, device plugin, GFD, DCGM exporter and
    MIG manager pods loop in their init containers ("waiting for ... to be setup") until the file they need
    exists. The first missing file names the broken component. No driver-ready while no driver is loaded and the
    driver container has not reported ready means the driver container is still building, or cannot build,
    the kernel module.

    ## Evidence
    The names in /run/nvidia/validations (including the driver container's .driver-ctr-ready and, with driver
    images from August 2026, .driver-daemons-status), driver-ready's KEY=VALUE lines, workload-type, and whether
    a driver is loaded (/proc/driver/nvidia/version).

    ## References
    NVIDIA/gpu-operator v26.7.0 cmd/nvidia-validator/main.go (status files), assets/state-operator-validation,
    assets/state-driver/0400_configmap.yaml (startup probe), assets/*/0500_daemonset.yaml (init containers);
    NVIDIA/gpu-driver-container ubuntu22.04/nvidia-driver (_resolve_kernel_version, _set_daemons_status).
    """
    entries = set(state["entries"])
    files = state["files"]
    kernel = state["kernel"]
    evidence: dict[str, Any] = {"validations": sorted(entries), "driver_loaded": driver.version if driver else None}
    workload = files.get(WORKLOAD_TYPE, "container").strip() or "container"
    if workload != "container":
        return skip(f"this node is set up for {workload} workloads: the container validations do not apply",
                    evidence)
    missing = [name for name in VALIDATION_CHAIN if name not in entries]
    if not missing:
        driver_info = parse_status_file(files.get("driver-ready", ""))
        where = "the host" if driver_info.get("IS_HOST_DRIVER") == "true" else "the operator's driver container"
        evidence["driver_ready"] = driver_info
        return ok(f"all four validations passed ({', '.join(VALIDATION_CHAIN)}); driver from {where}", evidence)
    first = missing[0]
    evidence["first_missing"] = first
    container = VALIDATOR_CONTAINERS[first]
    logs = f"kubectl logs -n gpu-operator -l app=nvidia-operator-validator -c {container}"
    if first == "driver-ready":
        daemons = files.get(DRIVER_DAEMONS_STATUS, "").strip()
        evidence["driver_daemons_status"] = daemons or None
        if DRIVER_CTR_READY in entries:
            return fail("the driver container reports ready (.driver-ctr-ready) but the validator has not "
                        "written driver-ready: driver validation is failing",
                        f"Read {logs}: nvidia-smi failing, or \"Failed to create symlinks under /dev/char\".",
                        evidence, anchor="driver-not-validated")
        if daemons and daemons != "Ready":
            return fail(f"no driver-ready: the driver container's daemons report {daemons!r} "
                        f"({VALIDATIONS_DIR}/{DRIVER_DAEMONS_STATUS}), so its startup probe fails",
                        "Read the driver container's log (kubectl logs -n gpu-operator -l app=nvidia-driver-daemonset "
                        "-c nvidia-driver-ctr) for the daemon that did not start (the fabric manager: a failed "
                        "nvidia-persistenced does not hold back Ready).",
                        evidence, anchor="driver-container")
        if driver is None and state["driver_file"] != "absent":
            return unknown(f"no driver-ready, and whether a driver is loaded is unknown: /proc/driver/nvidia/version "
                           f"is {state['driver_file']}", evidence)
        if driver is None:
            return fail(f"no driver-ready and no NVIDIA driver loaded on kernel {kernel}: the operator's driver "
                        "container has not built and loaded the module (still compiling, or failing)",
                        "Read kubectl logs -n gpu-operator -l app=nvidia-driver-daemonset -c nvidia-driver-ctr: "
                        "\"Could not resolve Linux kernel version\" means its package repositories have no kernel "
                        f"headers for {kernel}; \"could not insert 'nvidia'\" with SELinux enforcing means a denial; "
                        "a driver pod in ImagePullBackOff means no driver image has this node's tag.",
                        evidence, anchor="driver-build")
        return fail(f"driver {driver.version} is loaded but there is no driver-ready and no {DRIVER_CTR_READY}: "
                    "the validator has not validated the driver",
                    "Read the driver container's log (kubectl logs -n gpu-operator -l app=nvidia-driver-daemonset "
                    "-c nvidia-driver-ctr; its startup probe writes .driver-ctr-ready once nvidia-smi answers) and "
                    f"{logs}; \"Could not unload NVIDIA driver kernel modules, driver is in use\" means a driver "
                    "installed on the host: run the operator with driver.enabled=false there.",
                    evidence, anchor="driver-not-validated")
    return fail(f"{', '.join(VALIDATION_CHAIN[:VALIDATION_CHAIN.index(first)])} present but no {first}: "
                f"the {container} step has not passed, and everything that waits for it stays in Init",
                f"Read {logs}.", evidence, anchor=ANCHORS[first])
# --8<-- [end:gpu-operator-validations]


# -- DCGM exporter -----------------------------------------------------------------------------------------------

# nvmlBrandType_t values whose GPUs DCGM gives no profiling (DCP) metrics before Blackwell: GeForce (nvml.h
# NVML_BRAND_GEFORCE = 5, NVML_BRAND_GEFORCE_RTX = 15). DCP needs a data-center-class (Tesla brand), Quadro RTX or
# Titan RTX GPU of Volta or later (NVIDIA/dcgm-exporter#5, maintainer's answer); GeForce cards before Blackwell lack
# it (#294, maintainer: a hardware limitation; #404, RTX 4090). GeForce Blackwell is not flagged: no NVIDIA document
# says either way, a user finds the RTX 5090 supported (#506), and DCGM 4.6.0 reads profiling fields through NVML's
# GPM API wherever NVML reports GPM support (DcgmGpmManager.cpp), so `dcgmi profile --list` decides there.
NO_DCP_BRANDS = {5: "GeForce", 15: "GeForce RTX"}
NVML_ARCH_VOLTA = 5  # nvml.h NVML_DEVICE_ARCH_VOLTA; 0xffffffff (UNKNOWN) means newer than the bindings know
NVML_ARCH_HOPPER = 9  # Hopper and later: DCGM reads DCP through NVML's GPM API, not the profiling module
NVML_ARCH_BLACKWELL = 10  # nvml.h NVML_DEVICE_ARCH_BLACKWELL: GeForce GPUs from here on are not flagged


def _why_no_dcp(device: dict[str, Any]) -> Optional[str]:
    """Why DCGM has no profiling metrics for this GPU, or None when it should have them.

    >>> _why_no_dcp({"brand": 5, "architecture": 7}), _why_no_dcp({"brand": 2, "architecture": 4})
    ('GeForce brand, before Blackwell', 'pre-Volta architecture (NVML 4)')
    >>> _why_no_dcp({"brand": 14, "architecture": 9}) is None, _why_no_dcp({"brand": 5, "architecture": 10}) is None
    (True, True)
    """
    arch = device.get("architecture")
    brand = device.get("brand")
    blackwell_or_later = isinstance(arch, int) and not isinstance(arch, bool) and arch >= NVML_ARCH_BLACKWELL
    if isinstance(brand, int) and brand in NO_DCP_BRANDS and not blackwell_or_later:
        return f"{NO_DCP_BRANDS[brand]} brand, before Blackwell"
    if isinstance(arch, int) and not isinstance(arch, bool) and 0 < arch < NVML_ARCH_VOLTA:
        return f"pre-Volta architecture (NVML {arch})"
    return None


# --8<-- [start:dcgm-profiling-supported]
@check("dcgm-profiling-supported", title="GPUs support DCGM profiling (DCP) metrics", page="dcgm-exporter",
       facts=("nvml",))
def dcgm_profiling_unsupported(nvml: dict[str, Any]) -> Verdict:
    """A GPU on this host cannot give DCGM's profiling (DCP, DCGM_FI_PROF_*) metrics (GeForce brand before
    Blackwell, older than Volta), or GPU models are mixed, so dcgm-exporter skips the metrics or fails to watch them.

    ## Why it matters
    DCGM's profiling metrics (SM activity, tensor pipe activity, DRAM activity, NVLink/PCIe bytes) exist only on
    data-center-class, Quadro RTX and Titan RTX GPUs of Volta and later, not on GeForce GPUs before Blackwell
    (GeForce Blackwell is not flagged: a user reports the RTX 5090 supported; `dcgmi profile --list` shows it).
    On other GPUs dcgm-exporter logs "Not collecting DCP metrics: ..." and exports none, and dashboards built on
    DCGM_FI_PROF_* stay empty; a collector list that asks for them can fail at start on such a GPU.

    On a node with more than one GPU model, dcgm-exporter (4.5.3-4.8.2 and earlier) asks DCGM which metric groups
    GPU 0 supports and watches those on every GPU, so a second model that lacks one of them fails the watch.

    ## Evidence
    NVML's name, brand (nvmlDeviceGetBrand) and architecture (nvmlDeviceGetArchitecture) of every GPU.

    ## References
    NVIDIA/dcgm-exporter#5 (maintainer: DCP on data-center Volta and newer, Quadro RTX, Titan RTX); #395 (maintainer:
    Volta or newer, Tesla M60); #294 and #404 (maintainer, 2024: none on GeForce, RTX 3090 and 4090); #506 (RTX 5090);
    DCGM API reference, "Profiling" (profiling module up to Ampere, GPM from Hopper); nvml.h brand and
    architecture enums; NVIDIA/DCGM#193 (GeForce RTX 3090); NVIDIA/dcgm-exporter pkg/cmd/app.go at 4.5.3-4.8.2
    (queryDCPMetrics), #657 and pull request #736 (mixed-model nodes).
    """
    if not nvml_answered(nvml):
        return unknown("NVML did not answer, so the GPUs' brand and architecture are unknown")
    devices = [d for d in nvml_devices(nvml) if "error" not in d]
    if not devices:
        return skip("NVML lists no GPUs on this host")
    rows = [{"index": d.get("index"), "name": d.get("name"), "brand": d.get("brand"),
             "architecture": d.get("architecture"), "no_dcp": _why_no_dcp(d)} for d in devices]
    evidence: dict[str, Any] = {"gpus": rows}
    without = [r for r in rows if r["no_dcp"]]
    if without:
        listed = "; ".join(f"GPU {r['index']} {r['name']}: {r['no_dcp']}" for r in without[:4])
        scope = "no GPU here supports" if len(without) == len(rows) else f"{len(without)} of {len(rows)} GPUs lack"
        return warn(f"{scope} DCGM profiling (DCP) metrics ({listed}): dcgm-exporter exports no DCGM_FI_PROF_* "
                    "for them",
                    "Drop DCGM_FI_PROF_* from the exporter's collectors CSV for these nodes (or schedule the "
                    "exporter with DCP only on data-center GPUs); the other metrics work.",
                    evidence, anchor="dcp-unsupported")
    models = sorted({str(r["name"]) for r in rows})
    if len(models) > 1:
        # dcgm-exporter asks DCGM for the profiling metric groups of GPU 0 only (pkg/cmd/app.go queryDCPMetrics:
        # GetSupportedMetricGroups(0), 4.5.3-4.8.2) and watches them on every GPU (NVIDIA/dcgm-exporter#657, #736).
        return warn(f"GPU models differ on this node ({', '.join(models[:4])}): dcgm-exporter takes the profiling "
                    "metric groups of GPU 0 for every GPU and can fail to start or watch DCP fields",
                    "Run the exporter without DCGM_FI_PROF_* on mixed-model nodes (a collectors CSV of its own for "
                    "them) until a release that watches DCP fields per GPU model.", evidence, anchor="mixed-models")
    hopper = all(isinstance(r["architecture"], int) and r["architecture"] >= NVML_ARCH_HOPPER for r in rows)
    return ok(f"all {len(rows)} GPU(s) ({', '.join(models)}) support DCGM profiling metrics"
              + (" (through NVML GPM, Hopper and later)" if hopper else "")
              + "; a 'Profiling module returned an unrecoverable error' at start then more likely points at another "
              "profiler or host engine holding the counters, or a first-start race", evidence)
# --8<-- [end:dcgm-profiling-supported]
