"""Checks of the driver's health: GPU tools that hang, GPUs that fell off the bus or need a reset."""

from __future__ import annotations

import re
from typing import Any, Optional

from gpu_runbook.findings import Verdict, fail, ok, skip, unknown, warn
from gpu_runbook.registry import check, fact
from gpu_runbook.snapshot import CommandFact, Missing, Snapshot

# Commands that go through the NVIDIA driver (NVML or the RM ioctls); a hang there is the driver's.
GPU_TOOLS = ("nvidia-smi", "nvidia-container-cli", "nvidia-ctk", "nvidia-persistenced", "dcgmi")
# Host files served by the NVIDIA driver itself.
DRIVER_PATHS = ("/proc/driver/nvidia", "/sys/module/nvidia", "/dev/nvidia")


@fact("probe_runs")
def probe_runs_fact(snapshot: Snapshot) -> dict[str, Any]:
    """What the live probes ran: {"commands": {name: CommandFact}, "nvml": the NVML section or None,
    "blocked_on": a host path whose read never returned, or None}.

    Missing (skip) when nothing was run: a snapshot collected under --root without --live.
    """
    raw = snapshot.data.get("commands")
    names = sorted(n for n in raw if isinstance(n, str)) if isinstance(raw, dict) else []
    nvml = snapshot.nvml
    blocked = snapshot.probe.get("blocked_on")
    blocked = blocked if isinstance(blocked, str) else None
    if not names and (not nvml or "skipped" in nvml) and blocked is None:
        reason = nvml.get("skipped") if isinstance(nvml.get("skipped"), str) else "no command or NVML query"
        raise Missing(f"commands and NVML were not run for this snapshot ({reason})", "skip")
    return {"commands": {n: snapshot.command(n) for n in names}, "nvml": nvml or None, "blocked_on": blocked}


def _nvml_error(nvml: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The error of the NVML probe as a whole (timeout, crash) or of nvmlInit, if any."""
    if not nvml:
        return None
    if isinstance(nvml.get("error"), dict):
        return nvml["error"]
    init = nvml.get("init")
    if isinstance(init, dict) and isinstance(init.get("error"), dict):
        return init["error"]
    return None


# --8<-- [start:gpu-tools-hung]
def _is_gpu_tool(command: CommandFact, name: str) -> bool:
    program = (command.argv[0] if command.argv else name).rsplit("/", 1)[-1]
    return program.startswith(GPU_TOOLS)


@check("gpu-tools-hung", title="GPU tools answer", page="recovery", facts=("probe_runs",))
def gpu_tools_hang(runs: dict[str, Any]) -> Verdict:
    """nvidia-smi, another NVIDIA tool or NVML did not answer within its timeout, or a read of the driver's
    files never returned: the driver is hung.

    ## Why it matters
    A healthy driver answers nvidia-smi within seconds, well inside the probe's timeout. When it does
    not, the GPU or the driver is stuck (often after an Xid error): CUDA programs, monitoring agents and
    container starts on the node are likely to hang the same way, and a process stuck in the kernel does
    not die even on SIGKILL. The hang itself is the diagnosis; the node needs draining and a GPU reset
    or reboot, not more queries.

    ## Evidence
    The probes' own record of every command and of the NVML child: timed out (killed), skipped
    after an earlier hang, or not started because the collection deadline was reached; and a host
    file whose read never returned (a read of /proc/driver/nvidia blocks only when the driver does).

    ## References
    leptonai/gpud pull request #117 (after an Xid 45, nvidia-smi stuck in D state and never returning);
    NVIDIA GPU Debug Guidelines: https://docs.nvidia.com/deploy/gpu-debug-guidelines/index.html
    """
    commands: dict[str, CommandFact] = runs["commands"]
    nvml_error = _nvml_error(runs.get("nvml"))
    hung_gpu, hung_other, answered, not_run = [], [], [], []
    for name, command in sorted(commands.items()):
        if command.error == "timeout":
            (hung_gpu if _is_gpu_tool(command, name) else hung_other).append(f"{name} ({command.detail})")
        elif command.error in ("deadline", "skipped") and _is_gpu_tool(command, name):
            not_run.append(f"{name} ({command.error})")
        elif command.ran and _is_gpu_tool(command, name):
            answered.append(f"{name} in {command.seconds if command.seconds is not None else '?'} s")
    if nvml_error is not None and nvml_error.get("name") == "timeout":
        hung_gpu.append(f"NVML ({nvml_error.get('message', 'no answer')})")
    elif runs.get("nvml") and nvml_error is None:
        answered.append("NVML")
    elif nvml_error is not None:
        # An error code (no driver, no permission) is quick, but says nothing about a hang on the GPU.
        not_run.append(f"NVML ({nvml_error.get('name')})")
    blocked = runs.get("blocked_on")
    if blocked:
        # A read of the driver's own /proc or /sys files blocks only when the driver is stuck.
        driver_file = blocked.startswith(DRIVER_PATHS) or "/proc/driver/nvidia" in blocked
        (hung_gpu if driver_file else hung_other).append(f"read of {blocked} (abandoned at the deadline)")
    evidence = {"hung": hung_gpu + hung_other, "not_run": not_run, "answered": answered}
    if hung_gpu:
        return fail(f"{len(hung_gpu)} GPU tool(s) never answered and were killed: {'; '.join(hung_gpu)} "
                    "(expected an answer within the timeout): the driver or a GPU is hung",
                    "Start no more GPU tools on this node: cordon and drain it, look for Xid errors in "
                    "the kernel log, then reset the GPU or reboot.",
                    evidence, anchor="hung-driver")
    if hung_other:
        return warn(f"host command(s) never answered: {'; '.join(hung_other)}: the host itself is struggling",
                    "Look at the kernel log and load on this host before trusting any GPU result from it.",
                    evidence, anchor="hung-host")
    if not answered and any("(deadline)" in n for n in not_run):
        return unknown(f"GPU tools were not run before the collection deadline: {', '.join(not_run)}",
                       evidence, fix="Collect again with a longer --deadline.")
    if not answered:
        return skip("no GPU tool answered normally here (not installed, no driver, or no permission), "
                    "so a hang could be neither seen nor ruled out", evidence)
    return ok(f"GPU tools answered: {', '.join(answered)}", evidence)
# --8<-- [end:gpu-tools-hung]


# --8<-- [start:gpu-lost]
# What nvidia-smi prints per GPU when NVML cannot get a handle, e.g.
# "Unable to determine the device handle for GPU 0000:02:00.0: GPU is lost.  Reboot the system to recover this GPU";
# releases differ in the space after "GPU", and pastes also show an index before the bus id ("GPU0: 0000:...").
HANDLE_ERROR = re.compile(r"Unable to determine the device handle for (?:GPU|gpu) ?(?:\d+: )?"
                          r"([0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f.]+): ([^\n]*)")
LOST_ERRORS = {"NVMLError_GpuIsLost": "gpu-lost", "NVMLError_ResetRequired": "reset"}


def _device_errors(nvml: Optional[dict[str, Any]]) -> list[tuple[str, str]]:
    """(where, NVML error class) for every lost/reset-required error in the NVML section."""
    found: list[tuple[str, str]] = []
    if not nvml:
        return found
    error = _nvml_error(nvml)
    if error is not None and str(error.get("name")) in LOST_ERRORS:
        found.append(("nvmlInit", str(error["name"])))
    devices = nvml.get("devices")
    for device in devices if isinstance(devices, list) else []:
        if not isinstance(device, dict):
            continue
        for key, value in sorted(device.items(), key=lambda kv: str(kv[0])):
            if key == "error" and isinstance(value, dict):  # the handle itself: {"index": 0, "error": {...}}
                name = value.get("name")
            elif isinstance(value, dict) and isinstance(value.get("error"), dict):  # one getter
                name = value["error"].get("name")
            else:
                continue
            if isinstance(name, str) and name in LOST_ERRORS:
                found.append((f"GPU {device.get('index', '?')} {key}", name))
    return found


@check("gpu-lost", title="No GPU lost or waiting for a reset", page="recovery", facts=("probe_runs",))
def gpu_lost_or_reset_required(runs: dict[str, Any]) -> Verdict:
    """A GPU has fallen off the bus ("GPU is lost") or needs a reset before it can be used again.

    ## Why it matters
    NVML answers GPU_IS_LOST when the GPU fell off the bus or otherwise became inaccessible (the kernel
    logs Xid 79) and RESET_REQUIRED when the GPU needs a reset before it can be used again. Jobs
    scheduled on that GPU fail. A GPU reset can clear RESET_REQUIRED; a lost GPU needs a reboot, and one
    that is lost again after a cold boot needs reseating or replacing. Either way the node is drained
    first.

    ## Evidence
    NVML's error class for nvmlInit and for each device query; nvidia-smi's
    "Unable to determine the device handle for GPU ..." lines.

    ## References
    NVML API reference, nvmlReturn_t: https://docs.nvidia.com/deploy/nvml-api/group__nvmlDeviceEnumvs.html;
    NVIDIA Xid errors: https://docs.nvidia.com/deploy/xid-errors/index.html
    """
    commands: dict[str, CommandFact] = runs["commands"]
    nvml = runs.get("nvml")
    problems = [f"{where}: {name}" for where, name in _device_errors(nvml)]
    anchors = {LOST_ERRORS[name] for _, name in _device_errors(nvml)}
    smi_answered = False
    for name, command in sorted(commands.items()):
        if not name.startswith("nvidia-smi") or command.error is not None:
            continue
        smi_answered = True
        for bus_id, message in HANDLE_ERROR.findall(command.output):
            problems.append(f"nvidia-smi: GPU {bus_id}: {message.strip()}")
            anchors.add("gpu-lost" if "lost" in message.lower() or "unknown" in message.lower() else "reset")
    evidence = {"problems": problems}
    if problems:
        anchor = "gpu-lost" if "gpu-lost" in anchors else "reset"
        return fail(f"{len(problems)} GPU error(s) that need a reset or reboot: {'; '.join(problems[:4])}",
                    "Cordon and drain the node, then reset the GPU (nvidia-smi -r -i <id>; this fails on a GPU "
                    "that fell off the bus) or reboot; if it comes back lost, reseat or replace it.",
                    evidence, anchor=anchor)
    nvml_ok = bool(nvml) and _nvml_error(nvml) is None and isinstance(nvml.get("devices"), list)
    if not nvml_ok and not smi_answered:
        return skip("neither NVML nor nvidia-smi answered, so no GPU state could be read", evidence)
    return ok("no GPU reported lost or waiting for a reset", evidence)
# --8<-- [end:gpu-lost]


# --8<-- [start:row-remapping]
@check("row-remapping", title="No memory row remapping pending or failed", page="health-monitoring",
       facts=("nvml",))
def row_remapping_pending_or_failed(nvml: dict[str, Any]) -> Verdict:
    """A GPU's memory row remapping has failed (the GPU is due for service) or waits for a GPU reset.

    ## Why it matters
    On Ampere and newer GPUs an uncorrectable memory error marks the bad row for remapping; the spare
    row is used only after the next GPU reset. Until then NVIDIA says unaffected applications keep running
    and new work can be launched (error containment and dynamic page offlining cover the bad row; NVIDIA
    lists those for GA100 and GH100, not for GA10x or Ada), so a pending remap is a reset to schedule, not
    an outage and not NVML's RESET_REQUIRED state. A remapping *failure* flag is set when a remap could not
    be done (a bank that already has eight uncorrectable remaps, a row remapped before, or 512 in all; on
    Blackwell a third uncorrectable remap in a bank first tries an HBM channel repair, per the RMA policy):
    NVIDIA's RMA policy applies once its field diagnostic validates the flag, and the GPU should leave
    service.

    ## Evidence
    NVML nvmlDeviceGetRemappedRows per GPU: rows remapped for correctable and uncorrectable errors, the
    pending flag and the failure flag. Not supported before Ampere, nor on MIG-enabled GPUs with instances.

    ## References
    NVML API reference, nvmlDeviceGetRemappedRows; NVIDIA A100/H100 GPU memory error management,
    "Error Recovery and Response Flags": https://docs.nvidia.com/deploy/a100-gpu-mem-error-mgmt/
    """
    devices = nvml.get("devices")
    if not isinstance(devices, list) or not devices:
        return unknown("NVML listed no GPU, so row remapping could not be read (see nvml-init)")
    failed, pending, unreadable, clean, unsupported = [], [], [], [], []
    for device in devices:
        if not isinstance(device, dict):
            continue
        name = f"GPU {device.get('index', '?')}"
        rows = device.get("remapped_rows")
        if isinstance(rows, dict) and isinstance(rows.get("error"), dict):
            error = str(rows["error"].get("name"))
            (unsupported if error == "NVMLError_NotSupported" else unreadable).append(f"{name} ({error})")
        elif isinstance(rows, dict) and {"pending", "failure"} <= set(rows):
            counts = f"{rows.get('uncorrectable', '?')} uncorrectable, {rows.get('correctable', '?')} correctable"
            if rows["failure"] is True:
                failed.append(f"{name} ({counts})")
            elif rows["pending"] is True:
                pending.append(f"{name} ({counts})")
            else:
                clean.append(name)
        else:
            unreadable.append(f"{name} (not recorded)")
    evidence = {"failed": failed, "pending": pending, "unreadable": unreadable, "unsupported": unsupported,
                "clean": clean}
    if failed:
        return fail(f"row remapping failed on {', '.join(failed)} (expected no failure): a row could not be remapped",
                    "Drain the node and take the GPU out of service; NVIDIA's RMA policy applies once its field "
                    "diagnostic validates the failure (collect `nvidia-bug-report.sh`).", evidence,
                    anchor="row-remapping")
    if pending:
        return warn(f"row remapping pending on {', '.join(pending)} (expected none pending): the spare rows take "
                    "effect at the next GPU reset; the GPU still takes new work until then",
                    "Schedule a drain and GPU reset (or reboot) in the next maintenance window; no emergency "
                    "drain is needed for a pending remap alone.", evidence, anchor="row-remapping")
    if unreadable:
        return unknown(f"row remapping could not be read on {', '.join(unreadable)}", evidence)
    if not clean:
        return skip("no GPU here reports row remapping (before Ampere, or MIG instances are active)", evidence)
    return ok(f"no row remapping pending or failed on {', '.join(clean)}", evidence)
# --8<-- [end:row-remapping]
