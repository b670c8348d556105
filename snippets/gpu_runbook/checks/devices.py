"""Checks of device access: /dev/nvidia* nodes, /dev/char links, cgroups, kernel modules, versions."""

from __future__ import annotations

from typing import Any, Optional

from gpu_runbook.facts import NVIDIACTL_MINOR, nvml_gpu_minors
from gpu_runbook.findings import Verdict, fail, ok, skip, warn
from gpu_runbook.registry import check


# --8<-- [start:device-nodes]
def node_access(node: dict[str, Any], euid: Optional[int], groups: list[int]) -> bool:
    """Whether a process with this euid and groups may open the node read-write (root always may)."""
    mode = int(str(node.get("mode", "0")), 8)
    if euid == 0 or mode & 0o006 == 0o006:
        return True
    if euid is not None and node.get("uid") == euid and mode & 0o600 == 0o600:
        return True
    return node.get("gid") in groups and mode & 0o060 == 0o060


@check("device-nodes", title="/dev/nvidia* nodes exist and open", page="device-nodes",
       facts=("nvidia_majors", "nvidia_nodes", "host"), optional=("nvml",))
def device_nodes_missing_or_denied(majors: dict[str, int], nodes: dict[str, dict[str, Any]],
                                   host: dict[str, Any], nvml: Optional[dict[str, Any]]) -> Verdict:
    """A /dev/nvidia* node is missing, has the wrong type or numbers, or its mode denies the workload.

    ## Why it matters
    CUDA opens /dev/nvidiactl, /dev/nvidiaN and /dev/nvidia-uvm. A missing node gives "no CUDA-capable
    device is detected" or NVML errors; a node with the wrong mode gives "Insufficient Permissions".

    ## Evidence
    /proc/devices (the majors the driver registered) and lstat of every /dev/nvidia* path.

    ## References
    NVIDIA driver README, "Installation and Configuration of nvidia-modprobe" and "Device file creation".
    """
    frontend = majors.get("frontend")
    if frontend is None:
        return skip("no NVIDIA driver in /proc/devices: the kernel module is not loaded "
                    "(see kernel-modules)", {"nvidia_majors": majors})
    expected = {"/dev/nvidiactl": (frontend, NVIDIACTL_MINOR)}
    uvm = majors.get("uvm")
    if uvm is not None:
        expected["/dev/nvidia-uvm"] = (uvm, 0)
    minors = nvml_gpu_minors(nvml)
    if minors is None:  # NVML did not say: judge the GPU nodes that exist
        minors = sorted(int(p[len("/dev/nvidia"):]) for p, n in nodes.items()
                        if p[len("/dev/nvidia"):].isdigit() and "error" not in n)
    for minor in minors:
        expected[f"/dev/nvidia{minor}"] = (frontend, minor)

    problems: list[str] = []
    euid = host.get("euid") if isinstance(host.get("euid"), int) else None
    groups = [g for g in host.get("groups", []) if isinstance(g, int)] if isinstance(host.get("groups"), list) else []
    for path, (major, minor) in sorted(expected.items()):
        node = nodes.get(path, {"error": "not-collected"})
        if node.get("error"):
            problems.append(f"{path} missing ({node['error']}), expected char {major}:{minor}")
        elif node.get("kind") != "char":
            problems.append(f"{path} is a {node.get('kind')}, expected a character device {major}:{minor}")
        elif (node.get("major"), node.get("minor")) != (major, minor):
            problems.append(f"{path} is char {node.get('major')}:{node.get('minor')}, expected {major}:{minor}")
        elif not node_access(node, euid, groups):
            problems.append(f"{path} mode {node.get('mode')} owner {node.get('uid')}:{node.get('gid')} "
                            f"denies uid {euid}")
    evidence = {"expected": {p: f"{a}:{b}" for p, (a, b) in expected.items()}, "problems": problems}
    if uvm is None:
        return fail("nvidia-uvm is not registered in /proc/devices: CUDA programs cannot start",
                    "Load nvidia_uvm and create its node: nvidia-modprobe -u -c=0 (or modprobe nvidia-uvm).",
                    evidence, anchor="nvidia-uvm")
    if problems:
        denied = all("denies" in p for p in problems)
        return fail("; ".join(problems),
                    "Fix the node modes (driver parameter NVreg_DeviceFileMode) or the process's groups."
                    if denied else
                    "Recreate the nodes: nvidia-modprobe -c=0 -u (host), or restart the container so the "
                    "runtime injects them.",
                    evidence, anchor="permissions" if denied else "missing-nodes")
    return ok(f"{len(expected)} NVIDIA device nodes present with the right numbers and usable modes", evidence)
# --8<-- [end:device-nodes]


# --8<-- [start:dev-char-symlinks]
@check("dev-char-symlinks", title="/dev/char links for NVIDIA nodes", page="dev-char-symlinks",
       facts=("nvidia_nodes", "dev_char", "in_container", "toolkit_binaries"))
def dev_char_links_missing(nodes: dict[str, dict[str, Any]], dev_char: dict[str, Any],
                           in_container: bool, toolkit: list[str]) -> Verdict:
    """An NVIDIA device node has no /dev/char/MAJOR:MINOR link, so runc with the systemd cgroup
    driver drops the device on `systemctl daemon-reload` ("Failed to initialize NVML: Unknown Error").

    ## Why it matters
    runc translates device rules for systemd through /dev/char/MAJOR:MINOR. The NVIDIA driver creates
    its nodes without udev, so the links are absent; after a daemon-reload systemd re-applies rules
    without the GPU and running containers lose it.

    ## Evidence
    lstat of /dev/nvidia* (major:minor) and the /dev/char listing with link targets.

    ## References
    NVIDIA Container Toolkit troubleshooting; NVIDIA/nvidia-container-toolkit issue #48; runc issue #3671.
    """
    if in_container:
        return skip("inside a container: /dev/char links matter on the host that runs runc")
    if "error" in dev_char:
        entries: dict[str, Any] = {}
        listing_error = dev_char.get("error")
    else:
        entries = dev_char.get("entries") or {}
        listing_error = None
    missing: list[str] = []
    wrong: list[str] = []
    for path, node in sorted(nodes.items()):
        if node.get("kind") != "char":
            continue
        name = f"{node.get('major')}:{node.get('minor')}"
        target = entries.get(name)
        if name not in entries:
            missing.append(f"{name} ({path})")
        elif target is not None and target.rsplit("/", 1)[-1] != path.rsplit("/", 1)[-1]:
            wrong.append(f"{name} -> {target}, expected {path}")
    if not missing and not wrong:
        if not any(n.get("kind") == "char" for n in nodes.values()):
            return skip("no NVIDIA character devices on this host")
        return ok("every NVIDIA node has its /dev/char link", {"checked": len(nodes)})
    evidence = {"missing": missing, "wrong": wrong, "dev_char_error": listing_error,
                "toolkit": toolkit}
    summary = (f"{len(missing)} NVIDIA node(s) without /dev/char link: {', '.join(missing[:6])}"
               if missing else f"wrong /dev/char links: {', '.join(wrong[:6])}")
    fix = ("Create them with `nvidia-ctk system create-dev-char-symlinks --create-all` "
           "and keep them with the udev rule on the page.")
    if not toolkit:
        # No container runtime uses the GPU here, so nothing breaks today; keep it visible.
        return warn(summary + " (latent: no NVIDIA container toolkit on this host)", fix, evidence,
                    anchor="fix")
    return fail(summary, fix, evidence, anchor="fix")
# --8<-- [end:dev-char-symlinks]
