"""Ask NVML (through pynvml, from nvidia-ml-py) what the driver reports, in a child process.

NVML calls can block for a long time on a sick GPU and cannot be interrupted from Python, so the
parent runs `python -m gpu_runbook.probes.nvml` and kills it at the deadline. Every NVMLError is
recorded as a fact: {"error": {"name": "NVMLError_Unknown", "code": 999, "message": "Unknown Error"}}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any, Callable, Optional

from gpu_runbook.probes.commands import _kill_group


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


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return _text(fn(*args))
    except Exception as exc:  # every NVMLError subclass, AttributeError for old bindings, ...
        return error_fact(exc)


def _device(nvml: Any, index: int) -> dict[str, Any]:
    handle = _call(nvml.nvmlDeviceGetHandleByIndex, index)
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
    }
    for key, name in getters.items():
        fn = getattr(nvml, name, None)
        device[key] = _call(fn, handle) if fn else {"error": {"name": "FunctionNotInBindings", "message": name}}
    pci = _call(nvml.nvmlDeviceGetPciInfo, handle)
    if isinstance(pci, dict):
        device["pci_bus_id"] = pci
    else:
        device["pci_bus_id"] = _text(getattr(pci, "busId", None))
    mig = _call(nvml.nvmlDeviceGetMigMode, handle)
    if isinstance(mig, (list, tuple)) and len(mig) == 2:
        device["mig_mode"] = {"current": mig[0], "pending": mig[1]}
    else:
        device["mig_mode"] = mig
    memory = _call(nvml.nvmlDeviceGetMemoryInfo, handle)
    device["memory_total_bytes"] = memory if isinstance(memory, dict) else getattr(memory, "total", None)
    if isinstance(device.get("cuda_compute_capability"), tuple):
        device["cuda_compute_capability"] = list(device["cuda_compute_capability"])
    return device


def collect_nvml(nvml: Any) -> dict[str, Any]:
    """Everything NVML says about the system and each device; errors recorded, never raised.

    `nvml` is the pynvml module (tests pass a stand-in that raises each NVMLError class).
    """
    fact: dict[str, Any] = {"bindings": {"module": getattr(nvml, "__name__", "?"),
                                         "file": getattr(nvml, "__file__", None)}}
    init = _call(nvml.nvmlInit)
    if isinstance(init, dict) and "error" in init:
        fact["init"] = init
        return fact
    fact["init"] = {"ok": True}
    try:
        fact["driver_version"] = _call(nvml.nvmlSystemGetDriverVersion)
        fact["nvml_version"] = _call(nvml.nvmlSystemGetNVMLVersion)
        fact["cuda_driver_version"] = _call(nvml.nvmlSystemGetCudaDriverVersion)
        count = _call(nvml.nvmlDeviceGetCount)
        fact["device_count"] = count
        devices: list[dict[str, Any]] = []
        if isinstance(count, int):
            for index in range(min(count, 64)):
                devices.append(_device(nvml, index))
        fact["devices"] = devices
    finally:
        _call(nvml.nvmlShutdown)
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
    sys.stdout.write(json.dumps(result))
    return 0


def probe_nvml_start(env: Optional[dict[str, str]] = None) -> subprocess.Popen[bytes]:
    """Start the NVML child; the caller collects it with probe_nvml_finish (so other probes run meanwhile)."""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    child_env = dict(env if env is not None else os.environ)
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, child_env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", "gpu_runbook.probes.nvml"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=child_env, start_new_session=True, close_fds=True,
    )


def probe_nvml_finish(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    started = time.monotonic()
    try:
        stdout, stderr = proc.communicate(timeout=max(timeout, 0.01))
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            proc.communicate(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        return {"error": {"name": "timeout", "message": f"NVML did not answer within {timeout:.1f} s; "
                                                        "the probe was killed"}}
    if proc.returncode != 0:
        tail = stderr.decode("utf-8", errors="replace").strip().splitlines()[-1:] or [""]
        return {"error": {"name": "crashed", "message": f"NVML probe exited {proc.returncode}: {tail[0]}"[:500]}}
    try:
        result = json.loads(stdout.decode("utf-8", errors="replace"))
    except ValueError:
        return {"error": {"name": "garbled", "message": "NVML probe printed no JSON"}}
    if not isinstance(result, dict):
        return {"error": {"name": "garbled", "message": "NVML probe printed no JSON object"}}
    result["waited_seconds"] = round(time.monotonic() - started, 3)
    return result


if __name__ == "__main__":
    sys.exit(child_main())
