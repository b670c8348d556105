"""Derived facts shared by checks: pure functions of the snapshot, registered with @fact.

A fact raises Missing when what it needs was not collected or could not be read, with the reason
the finding will show (skip when it simply does not apply, unknown when it was unreadable).
"""

from __future__ import annotations

import re
from typing import Any, Optional

from gpu_runbook.parsers.operands import OPERATOR_TOOLKIT_CONFIG, OPERATOR_TOOLKIT_DIR
from gpu_runbook.parsers.proc import (
    DriverVersion,
    mount_fstype,
    nvidia_char_majors,
    parse_driver_version,
    parse_proc_devices,
)
from gpu_runbook.registry import fact
from gpu_runbook.snapshot import NOT_PRESENT, Missing, Snapshot

# Minors fixed by the driver; the majors are read from /proc/devices (UVM's is assigned at load time).
NVIDIACTL_MINOR = 255
NVIDIA_MODESET_MINOR = 254
NVIDIA_NODE = re.compile(r"^/dev/nvidia(?:\d+|ctl|-uvm|-uvm-tools|-modeset|-caps/.+|-nvswitch\d+|-nvlink)$")


@fact("kernel_release")
def kernel_release_fact(snapshot: Snapshot) -> str:
    """The running kernel's release (uname -r), from the host facts or /proc/sys/kernel/osrelease."""
    release = snapshot.host.get("kernel_release")
    if isinstance(release, str) and release:
        return release
    return snapshot.file("/proc/sys/kernel/osrelease").require().strip()


@fact("wsl")
def wsl_fact(snapshot: Snapshot) -> dict[str, Any]:
    """Windows Subsystem for Linux: {"version": 1 or 2, "dxg": whether /dev/dxg is a character device}.

    Missing (skip) on any other kernel. WSL 2 kernels say so in their release ("5.15.167.4-microsoft-standard-WSL2",
    older "4.19.128-microsoft-standard"), WSL 1's ends in "-Microsoft" ("4.4.0-19041-Microsoft"); under WSL 2 the
    GPU comes from the Windows driver through /dev/dxg, and there is no nvidia kernel module or /dev/nvidia* node
    by design. "dxg" is None when the snapshot did not look at /dev/dxg.
    """
    try:
        release = kernel_release_fact(snapshot).strip()
    except Missing:
        release = ""  # no kernel release to go by: not taken for WSL
    lower = release.lower()
    # Not any "microsoft": Microsoft's own cloud kernels name it too (systemd dropped that test, systemd#15614).
    if "microsoft-standard" in lower or "wsl" in lower:
        version = 2
    elif release.endswith("-Microsoft"):
        version = 1
    else:
        raise Missing("not Windows Subsystem for Linux", "skip")
    dxg = snapshot.path("/dev/dxg")
    # None when /dev/dxg was not looked at (an older snapshot): not the same as absent.
    present = None if dxg.get("error") == "not-collected" else dxg.get("kind") == "char"
    return {"version": version, "release": release, "dxg": present}


@fact("nvml")
def nvml_fact(snapshot: Snapshot) -> dict[str, Any]:
    """The NVML section; skip when the collection did not ask NVML (e.g. --root)."""
    nvml = snapshot.nvml
    if not nvml:
        raise Missing("NVML was not queried in this snapshot", "skip")
    if "skipped" in nvml:
        raise Missing(f"NVML was not queried: {nvml['skipped']}", "skip")
    return nvml


@fact("proc_devices")
def proc_devices_fact(snapshot: Snapshot) -> dict[str, dict[str, int]]:
    return parse_proc_devices(snapshot.file("/proc/devices").require())


@fact("nvidia_majors")
def nvidia_majors_fact(snapshot: Snapshot) -> dict[str, int]:
    """NVIDIA character majors by role: "frontend" (nvidiactl, nvidiaN), "uvm", "caps", ..."""
    majors = nvidia_char_majors(parse_proc_devices(snapshot.file("/proc/devices").require()))
    roles: dict[str, int] = {}
    for name, major in majors.items():
        if name not in ("nvidia", "nvidia-frontend"):
            roles[name.replace("nvidia-", "", 1)] = major
    # Drivers before 545 register major 195 as "nvidia-frontend"; 545.23.06 dropped nv-frontend.c and
    # registers "nvidia" and "nvidiactl" (open-gpu-kernel-modules kernel-open/nvidia/nv.c). Both are 195.
    frontend = majors.get("nvidia-frontend", majors.get("nvidia"))
    if frontend is not None:
        roles["frontend"] = frontend
    return roles


@fact("nvidia_nodes")
def nvidia_nodes_fact(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    """lstat facts of every /dev/nvidia* path the probe looked at (ENOENT ones included)."""
    nodes = {p: f for p, f in snapshot.paths_matching("/dev/nvidia").items() if NVIDIA_NODE.match(p)}
    if not nodes:
        raise Missing("the snapshot holds no /dev/nvidia* facts (not collected)")
    return nodes


@fact("dev_char")
def dev_char_fact(snapshot: Snapshot) -> dict[str, Any]:
    """The /dev/char listing: {"entries": {"195:0": "../nvidia0", ...}} or {"error": ...}."""
    listing = snapshot.dir("/dev/char")
    if listing.get("error") == "not-collected":
        raise Missing("/dev/char was not listed in this snapshot")
    return listing


@fact("in_container")
def in_container_fact(snapshot: Snapshot) -> bool:
    """Whether the snapshot was taken inside a container (Docker, Podman, containerd/Kubernetes)."""
    if snapshot.path("/.dockerenv").get("kind") or snapshot.path("/run/.containerenv").get("kind"):
        return True
    if snapshot.env.get("container") or snapshot.env.get("KUBERNETES_SERVICE_HOST"):
        return True
    cgroup = snapshot.file("/proc/1/cgroup")
    if cgroup.text and re.search(r"docker|kubepods|containerd|libpod|crio", cgroup.text):
        return True
    for marker in ("/.dockerenv", "/run/.containerenv"):
        error = snapshot.path(marker).get("error")
        if error is not None and error not in NOT_PRESENT:
            # An unexaminable marker is not proof of a host: say so rather than guess.
            raise Missing(f"cannot tell host from container: {marker} could not be examined ({error})")
    return False


# Managers of system containers: a whole distribution with its own init, sharing the host's kernel and driver.
SYSTEM_CONTAINER_MANAGERS = ("lxc", "lxc-libvirt", "systemd-nspawn")


@fact("system_container")
def system_container_fact(snapshot: Snapshot) -> str:
    """The manager of the system container this runs in ("lxc" for LXC, Incus, LXD and Proxmox containers), or
    "" when this is not one.

    systemd writes the manager's name, which the manager passes to PID 1 as $container, to
    /run/systemd/container; a shell entered with lxc-attach also carries $container. In such a container the
    kernel module, the device nodes and the device cgroup belong to the host, so fixes that reload the driver
    or restart "the container" run on the host, not here. Missing (unknown) when the record exists but cannot
    be read: then nobody can say.
    """
    recorded = snapshot.file("/run/systemd/container")
    name = (recorded.text or snapshot.env.get("container") or "").strip()
    if name in SYSTEM_CONTAINER_MANAGERS:
        return name
    if recorded.error is not None and recorded.error not in NOT_PRESENT and not name:
        raise Missing(f"cannot tell whether this is a system container: /run/systemd/container could not be "
                      f"read ({recorded.why})")
    return ""


# --8<-- [start:host-dev]
@fact("host_dev")
def host_dev_fact(snapshot: Snapshot) -> bool:
    """Whether the /dev the probes examined is the kernel's own devtmpfs, so host-level device facts (node
    modes, /dev/char links) can be judged there.

    True on a host, and in a container that mounts the host's /dev at /dev (a hostPath /dev, for example);
    False in a container whose runtime filled a private tmpfs /dev (privileged ones included). Where
    mountinfo does not say (another --root, an old snapshot, no /dev mount), it is "not in a container".
    """
    root = snapshot.host.get("root")
    mountinfo = snapshot.file("/proc/self/mountinfo").text
    if root in (None, "/") and mountinfo:
        fstype = mount_fstype(mountinfo, "/dev")
        if fstype is not None:
            # A /.dockerenv left in a VM image or a container with the host's /dev both land here: the
            # mount, not the marker file, says whose nodes these are.
            return fstype == "devtmpfs"
    if system_container_fact(snapshot):
        return False  # LXC, Incus and nspawn give the guest a /dev of its own, whatever nodes are bound into it
    return not in_container_fact(snapshot)
# --8<-- [end:host-dev]


TOOLKIT_PROGRAMS = ("nvidia-container-cli", "nvidia-container-runtime", "nvidia-ctk", "nvidia-container-runtime-hook")
PACKAGE_TOOLKIT_CONFIG = "/etc/nvidia-container-runtime/config.toml"
TOOLKIT_BINARIES = tuple(f"/usr/bin/{name}" for name in TOOLKIT_PROGRAMS)
OPERATOR_TOOLKIT_BINARIES = tuple(f"{OPERATOR_TOOLKIT_DIR}/{name}" for name in TOOLKIT_PROGRAMS)


@fact("toolkit_binaries")
def toolkit_binaries_fact(snapshot: Snapshot) -> list[str]:
    """Paths of NVIDIA Container Toolkit binaries present on the host, from the packages (/usr/bin) or the
    GPU Operator's install (/usr/local/nvidia/toolkit); empty: not installed."""
    return [p for p in TOOLKIT_BINARIES + OPERATOR_TOOLKIT_BINARIES
            if snapshot.path(p).get("kind") in ("file", "symlink")]


def has_program(binaries: Optional[list[str]], program: str) -> bool:
    """Whether one of the toolkit binary paths is `program`, wherever it was installed.

    >>> has_program(["/usr/local/nvidia/toolkit/nvidia-container-cli"], "nvidia-container-cli")
    True
    """
    return any(path.rsplit("/", 1)[-1] == program for path in binaries or ())


@fact("toolkit_config_path")
def toolkit_config_path_fact(snapshot: Snapshot) -> str:
    """The config.toml the `nvidia` runtime reads: the GPU Operator's when an engine's nvidia runtime is the
    operator's wrapper, or when only the operator's file exists; /etc/nvidia-container-runtime/config.toml
    otherwise."""
    operator = snapshot.file(OPERATOR_TOOLKIT_CONFIG)
    if operator.error == "not-collected" or operator.absent:
        return PACKAGE_TOOLKIT_CONFIG
    engine_files = [f.text or "" for path, f in snapshot.files_matching("/").items()
                    if re.search(r"docker/daemon\.json|containerd/|/crio/|/rancher/", path)]
    if any(OPERATOR_TOOLKIT_DIR + "/nvidia-container-runtime" in text for text in engine_files):
        return OPERATOR_TOOLKIT_CONFIG
    return OPERATOR_TOOLKIT_CONFIG if snapshot.file(PACKAGE_TOOLKIT_CONFIG).absent else PACKAGE_TOOLKIT_CONFIG


@fact("kernel_driver")
def kernel_driver_fact(snapshot: Snapshot) -> DriverVersion:
    """The loaded kernel module's version, from /proc/driver/nvidia/version."""
    text = snapshot.file("/proc/driver/nvidia/version").require()
    parsed = parse_driver_version(text)
    if parsed is None:
        raise Missing("/proc/driver/nvidia/version has no NVRM version line")
    return parsed


def nvml_gpu_minors(nvml: Optional[dict[str, Any]]) -> Optional[list[int]]:
    """Minor numbers of the GPUs NVML sees, or None when NVML did not say."""
    if not nvml or not isinstance(nvml.get("devices"), list):
        return None
    minors = [d.get("minor_number") for d in nvml["devices"] if isinstance(d, dict)]
    if not minors or not all(isinstance(m, int) and not isinstance(m, bool) for m in minors):
        return None
    return sorted(minors)  # type: ignore[arg-type]


@fact("host")
def host_fact(snapshot: Snapshot) -> dict[str, Any]:
    """Host facts (uid, groups, kernel); an empty dict when absent, never missing."""
    return snapshot.host
