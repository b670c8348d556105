"""Ask NVML (through pynvml, from nvidia-ml-py) what the driver reports, in a child process.

NVML calls can block for a long time on a sick GPU and cannot be interrupted from Python, so the
parent runs `python -m gpu_runbook.probes.nvml` and kills it at the deadline. Every NVMLError is
recorded as a fact: {"error": {"name": "NVMLError_Unknown", "code": 999, "message": "Unknown Error"}}.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Optional

# The parent's helpers (subprocess and friends) are imported where used: the child, which runs this
# module as __main__, then only pays for json and pynvml.
if TYPE_CHECKING:
    import subprocess


def error_fact(exc: BaseException) -> dict[str, Any]:
    """An exception as a JSON fact; NVML errors keep their class name and numeric code."""
    code = getattr(exc, "value", None)
    try:
        message = str(exc)
    except Exception:  # pynvml's __str__ itself calls into NVML
        message = repr(exc)
    fact: dict[str, Any] = {"name": type(exc).__name__, "message": message}
    if isinstance(code, int) and not isinstance(code, bool):
        fact["code"] = code
    return {"error": fact}


def _text(value: Any) -> Any:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _fn(nvml: Any, name: str) -> Callable[..., Any]:
    """nvml.<name>, or a stand-in that raises, so old or broken bindings are recorded, not fatal."""
    fn = getattr(nvml, name, None)
    if callable(fn):
        return fn

    def missing(*_args: Any) -> Any:
        raise AttributeError(f"{name} is not in these NVML bindings")

    return missing


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return _text(fn(*args))
    except Exception as exc:  # every NVMLError subclass, AttributeError for old bindings, ...
        return error_fact(exc)


def _fabric(nvml: Any, handle: Any) -> Any:
    """The GPU's registration with an NVLink fabric (NVSwitch, NVL72), as Fabric Manager left it.

    {"state": 0-3, "status": nvmlReturn_t, "clique_id": int, "api": the call}; state 0 NOT_SUPPORTED (no fabric,
    or a GPU before Hopper), 1 NOT_STARTED, 2 IN_PROGRESS, 3 COMPLETED; status is the outcome once completed
    (0 = success). Older drivers lack nvmlDeviceGetGpuFabricInfoV (leptonai/gpud#1183 saw it missing on 535);
    they have only the first form.
    """
    result: Any = {"error": {"name": "AttributeError", "message": "no GPU fabric calls in these NVML bindings"}}
    for call, struct in (("nvmlDeviceGetGpuFabricInfoV", "c_nvmlGpuFabricInfoV_t"),
                         ("nvmlDeviceGetGpuFabricInfo", "c_nvmlGpuFabricInfo_t")):
        make = getattr(nvml, struct, None)
        if not callable(make):
            continue
        try:
            info = make()
        except Exception as exc:  # a struct the bindings cannot build
            result = error_fact(exc)
            continue
        result = _call(_fn(nvml, call), handle, info)
        if isinstance(result, dict) and "error" in result:
            if result["error"].get("name") in ("NVMLError_FunctionNotFound", "AttributeError"):
                continue  # a driver before 550: try the older call
            return result
        return {"state": getattr(info, "state", None), "status": getattr(info, "status", None),
                "clique_id": getattr(info, "cliqueId", None), "api": call}
    return result


# NVML_FEATURE_ENABLED: nvmlDeviceGetNvLinkState's answer for a link that is up.
NVLINK_UP = 1
# Links asked at most: 18 on Hopper and Blackwell GPUs; bindings' NVML_NVLINK_MAX_LINKS ranges from 6 (old copies)
# to 36 (nvidia-ml-py 13), so the bound is ours and the driver's INVALID_ARGUMENT ends the walk.
NVLINK_LINKS_ASKED = 36
# Errors at link 0 that mean "no NVLink to ask about" (a GPU without NVLink, bindings or a driver without the call).
NVLINK_ABSENT = ("NVMLError_NotSupported", "NVMLError_FunctionNotFound", "AttributeError")


def _nvlink(nvml: Any, handle: Any) -> Any:
    """The GPU's NVLinks that are up and the PCI address at each one's far end: a peer GPU (an NVLink bridge
    between two or four PCIe GPUs) or an NVSwitch. Peer traffic between bridged GPUs takes NVLink, not PCIe.

    {"active": [[link, remote bus id], ...], "errors": {link: error}} (errors only when a link could not be read);
    the error itself when the GPU has no NVLink (NOT_SUPPORTED at link 0) or the bindings lack the calls. The walk
    ends at the driver's INVALID_ARGUMENT past the GPU's last link; another error skips that link only.
    """
    state_of, remote_of = _fn(nvml, "nvmlDeviceGetNvLinkState"), _fn(nvml, "nvmlDeviceGetNvLinkRemotePciInfo")
    active: list[list[Any]] = []
    errors: dict[str, Any] = {}
    for link in range(NVLINK_LINKS_ASKED):
        state = _call(state_of, handle, link)
        if isinstance(state, dict) and "error" in state:
            name = state["error"].get("name")
            if name == "NVMLError_InvalidArgument":
                break
            if link == 0 and name in NVLINK_ABSENT:
                return state
            errors[str(link)] = state["error"]
            continue
        if state != NVLINK_UP:
            continue
        remote = _call(remote_of, handle, link)
        active.append([link, remote if isinstance(remote, dict) else _text(getattr(remote, "busId", None))])
    return {"active": active, **({"errors": errors} if errors else {})}


def _device(nvml: Any, index: int) -> dict[str, Any]:
    handle = _call(_fn(nvml, "nvmlDeviceGetHandleByIndex"), index)
    if isinstance(handle, dict) and "error" in handle:
        return {"index": index, **handle}
    device: dict[str, Any] = {"index": index}
    getters = {
        "name": "nvmlDeviceGetName",
        "uuid": "nvmlDeviceGetUUID",
        "serial": "nvmlDeviceGetSerial",
        "minor_number": "nvmlDeviceGetMinorNumber",
        "compute_mode": "nvmlDeviceGetComputeMode",
        "persistence_mode": "nvmlDeviceGetPersistenceMode",
        "architecture": "nvmlDeviceGetArchitecture",
        "cuda_compute_capability": "nvmlDeviceGetCudaComputeCapability",
        # nvmlBrandType_t: what libnvidia-container compares `brand=` requirements against
        "brand": "nvmlDeviceGetBrand",
    }
    for key, name in getters.items():
        device[key] = _call(_fn(nvml, name), handle)
    pci = _call(_fn(nvml, "nvmlDeviceGetPciInfo"), handle)
    if isinstance(pci, dict):
        device["pci_bus_id"] = pci
    else:
        device["pci_bus_id"] = _text(getattr(pci, "busId", None))
    mig = _call(_fn(nvml, "nvmlDeviceGetMigMode"), handle)
    if isinstance(mig, (list, tuple)) and len(mig) == 2:
        device["mig_mode"] = {"current": mig[0], "pending": mig[1]}
    else:
        device["mig_mode"] = mig
    # Ampere and newer: rows remapped after memory errors; "pending" waits for a GPU reset (NVML API).
    rows = _call(_fn(nvml, "nvmlDeviceGetRemappedRows"), handle)
    if isinstance(rows, (list, tuple)) and len(rows) == 4:
        device["remapped_rows"] = {"correctable": rows[0], "uncorrectable": rows[1],
                                   "pending": bool(rows[2]), "failure": bool(rows[3])}
    else:
        device["remapped_rows"] = rows
    memory = _call(_fn(nvml, "nvmlDeviceGetMemoryInfo"), handle)
    device["memory_total_bytes"] = memory if isinstance(memory, dict) else getattr(memory, "total", None)
    device["fabric"] = _fabric(nvml, handle)
    device["nvlink"] = _nvlink(nvml, handle)
    if isinstance(device.get("cuda_compute_capability"), tuple):
        device["cuda_compute_capability"] = list(device["cuda_compute_capability"])
    return device


def collect_nvml(nvml: Any) -> dict[str, Any]:
    """Everything NVML says about the system and each device; errors recorded, never raised.

    `nvml` is the pynvml module (tests pass a stand-in that raises each NVMLError class).
    """
    fact: dict[str, Any] = {"bindings": {"module": getattr(nvml, "__name__", "?"),
                                         "file": getattr(nvml, "__file__", None)}}
    init = _call(_fn(nvml, "nvmlInit"))
    if isinstance(init, dict) and "error" in init:
        fact["init"] = init
        return fact
    fact["init"] = {"ok": True}
    try:
        fact["driver_version"] = _call(_fn(nvml, "nvmlSystemGetDriverVersion"))
        fact["nvml_version"] = _call(_fn(nvml, "nvmlSystemGetNVMLVersion"))
        fact["cuda_driver_version"] = _call(_fn(nvml, "nvmlSystemGetCudaDriverVersion"))
        count = _call(_fn(nvml, "nvmlDeviceGetCount"))
        fact["device_count"] = count
        devices: list[dict[str, Any]] = []
        if isinstance(count, int):
            for index in range(min(count, 64)):
                devices.append(_device(nvml, index))
        fact["devices"] = devices
    finally:
        _call(_fn(nvml, "nvmlShutdown"))
    return fact


def child_main() -> int:
    """Entry point of the child process: print one JSON object, exit 0 whatever happened."""
    started = time.monotonic()
    try:
        import pynvml
    except Exception as exc:  # the bindings themselves are missing or broken
        result: dict[str, Any] = {"init": error_fact(exc), "bindings": {"module": None}}
    else:
        result = collect_nvml(pynvml)
    result["seconds"] = round(time.monotonic() - started, 3)
    # default=repr: a binding that returns a ctypes struct must not cost the whole answer.
    sys.stdout.write(json.dumps(result, default=repr))
    return 0


def probe_nvml_start(env: Optional[dict[str, str]] = None) -> subprocess.Popen[bytes]:
    """Start the NVML child; the caller collects it with probe_nvml_finish (so other probes run meanwhile)."""
    from gpu_runbook.probes.children import start_child

    return start_child("gpu_runbook.probes.nvml", env)


def probe_nvml_finish(proc: subprocess.Popen[bytes], timeout: float,
                      since: Optional[float] = None) -> dict[str, Any]:
    """The NVML facts, or an error fact when the child hung ("timeout"), died or printed nonsense."""
    from gpu_runbook.probes.children import finish_child

    result = finish_child(proc, timeout, since)
    if result.payload is None:
        detail = {"timeout": "NVML did not answer: {}", "crashed": "NVML probe {}",
                  "garbled": "NVML probe {}"}[str(result.error)].format(result.detail)
        return {"error": {"name": result.error, "message": detail}}
    payload = result.payload
    payload["waited_seconds"] = round(result.waited, 3)
    return payload


if __name__ == "__main__":
    sys.exit(child_main())
