"""Checks of GPU programs run as systemd services: a unit's sandbox that hides the GPU from the service."""

from __future__ import annotations

import fnmatch
import re
from typing import Any, Optional

from gpu_runbook.engines import SYSTEM_UNIT_DIRS, unit_assignments, unit_texts
from gpu_runbook.findings import Verdict, fail, ok, skip, unknown, warn
from gpu_runbook.registry import check, fact
from gpu_runbook.snapshot import NOT_PRESENT, Missing, Snapshot

# --8<-- [start:service-device-sandbox]
# Programs that use the GPU and are commonly run as services (media servers, model servers, notebooks); a unit
# is also judged when its environment selects GPUs or its DeviceAllow= names NVIDIA devices.
GPU_PROGRAM = re.compile(r"ollama|jellyfin|plex|emby|jupyter|tdarr|frigate|vllm|tritonserver|comfyui|"
                         r"stable-diffusion|sunshine|llama|localai|ffmpeg|tensorflow|torchrun", re.IGNORECASE)
GPU_ENV = re.compile(r"\b(?:CUDA_VISIBLE_DEVICES|NVIDIA_VISIBLE_DEVICES)=")
TRUE = {"1", "yes", "true", "on"}
# The nodes a CUDA program opens read-write: the control node and a GPU (major 195) and nvidia-uvm.
# The names /proc/devices gives them up to R535 and from R545, for judging `char-` entries when it was not
# read; 511 only stands in for nvidia-uvm's major, which the kernel assigns when the module loads.
NAMES_BY_DRIVER = {"up to R535": {"nvidia-frontend": 195, "nvidia-uvm": 511},
                   "R545 and later": {"nvidia": 195, "nvidiactl": 195, "nvidia-uvm": 511}}


def unit_sandbox(texts: list[str]) -> dict[str, Any]:
    """The device settings of a unit and its drop-ins, read in order as systemd reads them: the last
    assignment wins, DeviceAllow= lines add up and an empty one clears the list.

    >>> s = unit_sandbox(["[Service]\\nPrivateDevices=yes\\nDeviceAllow=/dev/nvidiactl rw\\n", "DeviceAllow=\\n"])
    >>> s["private_devices"], s["device_allow"]
    (True, [])
    """
    settings: dict[str, Any] = {"private_devices": False, "device_policy": "auto", "device_allow": [],
                                "protect_clock": False, "exec": "", "gpu_env": False}
    for key, raw in unit_assignments(texts):
        value = raw.strip()
        if key == "PrivateDevices":
            settings["private_devices"] = value.lower() in TRUE
        elif key == "ProtectClock":
            settings["protect_clock"] = value.lower() in TRUE
        elif key == "DevicePolicy":
            settings["device_policy"] = value.lower() or "auto"
        elif key == "DeviceAllow":
            settings["device_allow"] = settings["device_allow"] + [value] if value else []
        elif key == "ExecStart":
            settings["exec"] = value
        elif key == "Environment" and GPU_ENV.search(value):
            settings["gpu_env"] = True
    return settings


def _allows(entry: str, node: str, majors: dict[str, int], char_names: dict[str, int]) -> bool:
    """Whether one DeviceAllow= entry lets the service open `node` ("control": /dev/nvidiactl, "gpu": a
    /dev/nvidiaN, "uvm": /dev/nvidia-uvm) for reading and writing. `char-<glob>` names groups of /proc/devices
    and allows every minor of their majors; a path, or /dev/char/MAJOR:MINOR, names one node."""
    spec, *rest = entry.split(None, 1)
    access = rest[0].strip() if rest else ""
    if access and not {"r", "w"} <= set(access):
        return False
    frontend = majors.get("frontend", 195)
    wanted = majors.get("uvm") if node == "uvm" else frontend
    if spec.startswith("char-"):
        pattern = spec[len("char-"):]
        return wanted is not None and any(major == wanted for name, major in char_names.items()
                                          if fnmatch.fnmatchcase(name, pattern))
    link = re.fullmatch(r"/dev/char/(\d+):(\d+)", spec)
    if link:
        major, minor = int(link.group(1)), int(link.group(2))
        return major == wanted and (minor == 255 if node == "control" else minor < 255 if node == "gpu" else True)
    if node == "control":
        return spec == "/dev/nvidiactl"
    if node == "gpu":
        return re.fullmatch(r"/dev/nvidia\d+", spec) is not None
    return spec == "/dev/nvidia-uvm"


def sandbox_problems(settings: dict[str, Any], majors: dict[str, int],
                     char_names: dict[str, int]) -> list[tuple[str, str, str]]:
    """(status, what is wrong, page anchor) for each setting of one service that keeps the GPU from it.

    >>> sandbox_problems({"private_devices": False, "device_policy": "auto", "protect_clock": False,
    ...                   "device_allow": ["char-nvidiactl rw", "char-nvidia-uvm rw"]},
    ...                  {"frontend": 195, "uvm": 507}, {"nvidia-frontend": 195, "nvidia-uvm": 507})[0][1]
    'DeviceAllow= makes an allow-list without read-write access to /dev/nvidiactl, /dev/nvidiaN'
    """
    problems = []
    if settings["private_devices"]:
        problems.append(("fail", "PrivateDevices=yes: the service's own /dev has no /dev/nvidia* nodes",
                         "systemd-sandbox"))
    allow = settings["device_allow"]
    policy = settings["device_policy"]
    if policy in ("closed", "strict") or allow:
        nodes = {"control": "/dev/nvidiactl", "gpu": "/dev/nvidiaN", "uvm": "/dev/nvidia-uvm"}
        missing = [path for node, path in nodes.items() if not any(_allows(e, node, majors, char_names) for e in allow)]
        if missing:
            made = f"DevicePolicy={policy}" if policy != "auto" else "DeviceAllow="
            anchor = "systemd-unit" if any("nvidia" in e for e in allow) else "systemd-sandbox"
            problems.append(("fail", f"{made} makes an allow-list without read-write access to {', '.join(missing)}",
                             anchor))
    elif settings["protect_clock"] and not settings["private_devices"]:
        problems.append(("warn", "ProtectClock=yes implies DeviceAllow=char-rtc r, which on systemd releases "
                         "without systemd#25075 makes an allow-list of the RTC and the standard pseudo-devices, "
                         "without the GPU", "systemd-sandbox"))
    return problems


def _remedy(problems: list[tuple[str, str, str]], majors: dict[str, int], char_names: dict[str, int]) -> str:
    """The drop-in lines that give the services back the GPU, with the group names this host's driver uses."""
    frontend = majors.get("frontend", 195)
    group = next((n for n in ("nvidia-frontend", "nvidia") if char_names.get(n) == frontend), None)
    allow = (f"DeviceAllow=char-{group} rw and DeviceAllow=char-nvidia-uvm rw (/proc/devices names major "
             f"{frontend} {group})" if group else
             "DeviceAllow=char-nvidia-frontend rw (drivers up to R535) or DeviceAllow=char-nvidia rw (R545 and "
             "later), and DeviceAllow=char-nvidia-uvm rw")
    wanted = []
    if any("PrivateDevices" in p[1] for p in problems):
        wanted.append("PrivateDevices=no")
    if any("allow-list" in p[1] for p in problems):
        wanted.append(allow)
    if any("ProtectClock" in p[1] for p in problems):
        wanted.append(f"ProtectClock=no (or {allow})")
    return "; ".join(wanted) or allow


@fact("gpu_services")
def gpu_services_fact(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    """GPU services among the system units the snapshot holds: unit name -> its device settings, or
    {"error": why} when a file of the unit could not be read."""
    names: set[str] = set()
    for directory in SYSTEM_UNIT_DIRS:
        for path, file_ in snapshot.files_matching(directory).items():
            name = path[len(directory):]
            if "/" not in name and name.endswith(".service") and (file_.exists or file_.error not in NOT_PRESENT):
                names.add(name)
    services: dict[str, dict[str, Any]] = {}
    for name in sorted(names):
        if name.startswith("nvidia-"):  # the driver's and toolkit's own units
            continue
        try:
            settings = unit_sandbox(unit_texts(snapshot, name, SYSTEM_UNIT_DIRS))
        except Missing as error:
            if GPU_PROGRAM.search(name):
                services[name] = {"error": str(error)}
            continue
        named = any("nvidia" in entry for entry in settings["device_allow"])
        if GPU_PROGRAM.search(name) or GPU_PROGRAM.search(settings["exec"]) or settings["gpu_env"] or named:
            services[name] = settings
    return services


@check("service-device-sandbox", title="GPU services' systemd sandbox lets them open the GPU",
       page="cgroup-device-access", facts=("gpu_services",), optional=("proc_devices", "nvidia_majors"))
def service_device_sandbox(services: dict[str, dict[str, Any]], proc_devices: Optional[dict[str, dict[str, int]]],
                           majors: Optional[dict[str, int]]) -> Verdict:
    """A GPU program run as a systemd service (Ollama, Jellyfin, Plex, a notebook server) cannot open the GPU
    because its unit hides the device nodes: PrivateDevices=yes, a DevicePolicy= or DeviceAllow= allow-list
    without the NVIDIA nodes, or ProtectClock=yes on systemd without systemd#25075. The program works from a
    shell.

    ## Why it matters
    systemd runs a service in the sandbox its unit and drop-ins ask for. PrivateDevices=yes gives the
    service a /dev with only pseudo-devices; DevicePolicy=closed or strict, or any DeviceAllow= line under
    the default policy, makes the device cgroup refuse every node not listed (strict aside, the standard
    pseudo-devices stay allowed); a `char-<name>` entry must
    name the group /proc/devices lists for the major (nvidia-frontend up to R535, nvidia from R545, and
    nvidia-uvm). ProtectClock=yes implies DeviceAllow=char-rtc r, which alone made an allow-list (the RTC
    and the standard pseudo-devices) on systemd releases without systemd#25075. CUDA then reports no device
    and NVENC fails to initialise.

    ## Evidence
    The collected units (every service in /etc/systemd/system, /run/systemd/system and
    /run/systemd/transient, where systemd-run and JupyterHub's SystemdSpawner put theirs, and the packaged
    units of Ollama, Jellyfin, Plex, Emby and JupyterHub under /usr/lib/systemd/system or
    /lib/systemd/system) whose name or ExecStart= names a GPU program, whose environment selects GPUs or
    whose DeviceAllow= names NVIDIA devices, with their .conf drop-ins; /proc/devices.

    ## References
    systemd.exec(5) (PrivateDevices=, ProtectClock=); systemd.resource-control(5) (DevicePolicy=,
    DeviceAllow=); systemd/systemd#25075; jellyfin/jellyfin#7012; NixOS/nixpkgs#152008, #331069.
    """
    if not services:
        return skip("no systemd unit of a GPU program found among the collected units")
    char_names = dict((proc_devices or {}).get("char", {}))
    majors = dict(majors or {})
    if "nvidia-uvm" not in char_names and any(major == 195 for major in char_names.values()):
        # nvidia_uvm not loaded yet: judge char- entries by the name it registers when it loads
        char_names["nvidia-uvm"] = majors["uvm"] = majors.get("uvm", 511)
    known = any(char_names.get(n) == 195 for n in ("nvidia-frontend", "nvidia"))
    problems: list[tuple[str, str, str]] = []
    unreadable = []
    for name, settings in sorted(services.items()):
        if "error" in settings:
            unreadable.append(f"{name}: {settings['error']}")
            continue
        if known:
            found = sandbox_problems(settings, majors, char_names)
        else:  # no driver names in /proc/devices: a `char-` entry may or may not reach major 195, judge both
            answers = {tuple(sandbox_problems(settings, {"frontend": 195, "uvm": 511}, names))
                       for names in NAMES_BY_DRIVER.values()}
            if len(answers) > 1:
                unreadable.append(f"{name}: DeviceAllow= names groups whose majors depend on the driver "
                                  "branch, and /proc/devices lists no NVIDIA driver")
                continue
            found = list(answers.pop())
        problems += [(status, f"{name}: {what}", anchor) for status, what, anchor in found]
    evidence = {"services": sorted(services), "problems": [p[1] for p in problems], "unreadable": unreadable}
    fix = "Add a drop-in (systemctl edit <unit>) with " + _remedy(problems, majors, char_names if known else {}) + \
        ", then restart the service."
    failed = [p for p in problems if p[0] == "fail"]
    if failed:
        return fail("; ".join(p[1] for p in failed), fix, evidence, anchor=failed[0][2])
    if problems:
        return warn("; ".join(p[1] for p in problems), fix, evidence, anchor=problems[0][2])
    if unreadable:
        return unknown(f"could not judge every GPU service: {'; '.join(unreadable)}", evidence,
                       "Collect again as root, so that the unit files and /proc/devices can be read.")
    return ok(f"{len(services)} GPU service(s) can open the GPU: {', '.join(sorted(services))}", evidence)
# --8<-- [end:service-device-sandbox]
