"""Checks of device access: /dev/nvidia* nodes, /dev/char links, cgroups, kernel modules, versions."""

from __future__ import annotations

import re
from typing import Any, Optional

from gpu_runbook.checks.containers import runtime_mode
from gpu_runbook.facts import (
    NVIDIA_MODESET_MINOR,
    NVIDIACTL_MINOR,
    OPERATOR_TOOLKIT_DIR,
    has_program,
    in_container_fact,
    kernel_release_fact,
    nvml_gpu_minors,
)
from gpu_runbook.findings import Verdict, fail, ok, skip, unknown, warn
from gpu_runbook.parsers.cgroup import (
    cgroup_driver_from_path,
    devices_list_allows,
    parse_cgroup_mounts,
    parse_devices_list,
    parse_proc_cgroup,
)
from gpu_runbook.parsers.modprobe import library_version, module_disabled_by, module_option_set, nvml_library_version
from gpu_runbook.parsers.proc import (
    DriverVersion,
    device_file_mode,
    module_load_causes,
    parse_api_mismatches,
    parse_driver_params,
    parse_kernel_config,
    parse_proc_modules,
    secure_boot_from_efivar,
    secure_boot_from_mokutil,
)
from gpu_runbook.parsers.toolkit import version_tuple
from gpu_runbook.registry import boundary, check, fact
from gpu_runbook.snapshot import NOT_PRESENT, CommandFact, Missing, Snapshot, nvml_answered

# -- facts of this section ------------------------------------------------------------------------

# /usr/local/nvidia/lib64: where GKE's driver installer and some GPU clouds mount the driver libraries.
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu/", "/usr/lib64/", "/usr/lib/aarch64-linux-gnu/", "/usr/local/nvidia/lib64/")
# Arch Linux and Void install the driver's libraries in /usr/lib; on Fedora and RHEL that directory holds the 32-bit
# ones, whose version may lag, so it is read only when none of the directories above has a libnvidia-ml.
FALLBACK_LIB_DIR = "/usr/lib/"
MODPROBE_DIRS = ("/etc/modprobe.d/", "/lib/modprobe.d/", "/usr/lib/modprobe.d/", "/run/modprobe.d/")
UDEV_RULE_DIRS = ("/etc/udev/rules.d/", "/lib/udev/rules.d/", "/usr/lib/udev/rules.d/")
SECURE_BOOT_EFIVAR = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"


def _collected(snapshot: Snapshot) -> bool:
    """Whether the probes ran the path plan (a glob that matched nothing then means: none there)."""
    return bool(snapshot.paths_matching("/dev/nvidia"))


@fact("driver_params")
def driver_params_fact(snapshot: Snapshot) -> dict[str, str]:
    """/proc/driver/nvidia/params as a dict (DeviceFileMode, DeviceFileUID, ModifyDeviceFiles, ...)."""
    return parse_driver_params(snapshot.file("/proc/driver/nvidia/params").require())


@fact("proc_modules")
def proc_modules_fact(snapshot: Snapshot) -> dict[str, dict[str, object]]:
    """Loaded kernel modules from /proc/modules (inside a container: the host kernel's modules)."""
    return parse_proc_modules(snapshot.file("/proc/modules").require())


@fact("nvidia_smi")
def nvidia_smi_fact(snapshot: Snapshot) -> CommandFact:
    """The `nvidia-smi` query command as run by the probe; missing when it was not run."""
    command = snapshot.command("nvidia-smi")
    if command.error == "not-collected":
        raise Missing("nvidia-smi was not run in this snapshot (not live)", "skip")
    return command


@fact("nvml_libraries")
def nvml_libraries_fact(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    """lstat facts of every libnvidia-ml.so* in the standard library directories (/usr/lib only when they have none)."""
    libs: dict[str, dict[str, Any]] = {}
    for directories in (LIB_DIRS, (FALLBACK_LIB_DIR,)):
        for directory in directories:
            for path, info in snapshot.paths_matching(directory + "libnvidia-ml.so").items():
                # A glob only yields names it listed: a file whose lstat failed (EACCES) still exists.
                if info.get("error") not in NOT_PRESENT:
                    libs[path] = info
        if libs:
            break
    if not libs and not _collected(snapshot):
        raise Missing("library paths were not collected in this snapshot")
    return libs


def _texts_under(snapshot: Snapshot, directories: tuple[str, ...]) -> dict[str, str]:
    """Text of every file the probe read below these directories, by path (empty when there are none)."""
    return {path: conf.text for directory in directories
            for path, conf in snapshot.files_matching(directory).items() if conf.text is not None}


@fact("modprobe_confs")
def modprobe_confs_fact(snapshot: Snapshot) -> dict[str, str]:
    """Text of every modprobe.d file the probe read, by path (empty when there are none)."""
    return _texts_under(snapshot, MODPROBE_DIRS)


@fact("nvidia_udev_rules")
def nvidia_udev_rules_fact(snapshot: Snapshot) -> dict[str, str]:
    """Text of the *nvidia*.rules udev files the probe read, by path."""
    return _texts_under(snapshot, UDEV_RULE_DIRS)


@fact("secure_boot")
def secure_boot_fact(snapshot: Snapshot) -> bool:
    """Whether UEFI Secure Boot is on, from the SecureBoot EFI variable or `mokutil --sb-state`."""
    var = snapshot.file(SECURE_BOOT_EFIVAR)
    state = secure_boot_from_efivar(var.text) if var.text is not None else None
    if state is None:
        state = secure_boot_from_mokutil(snapshot.command("mokutil-sb-state").output)
    if state is None:
        raise Missing("Secure Boot state not visible (no SecureBoot EFI variable, no mokutil answer)", "skip")
    return state


@fact("cgroup_setup")
def cgroup_setup_fact(snapshot: Snapshot) -> dict[str, Any]:
    """cgroup version (v1, v2, hybrid), the likely cgroup driver, this process's cgroup path."""
    mountinfo = snapshot.file("/proc/self/mountinfo")
    mounts = parse_cgroup_mounts(mountinfo.text or "")
    version = mounts.version
    if not version:
        # No mountinfo: cgroup.controllers exists only at the root of a cgroup v2 tree.
        controllers = snapshot.file("/sys/fs/cgroup/cgroup.controllers")
        if controllers.exists:
            version = "v2"
        elif snapshot.path("/sys/fs/cgroup/devices").get("kind") == "dir":
            version = "v1"
    if not version:
        raise Missing("cgroup version not visible: /proc/self/mountinfo and /sys/fs/cgroup were not read")
    own = parse_proc_cgroup(snapshot.file("/proc/self/cgroup").text or "")
    path = own.get("devices") or own.get("") or ""
    setup: dict[str, Any] = {"version": version, "driver": cgroup_driver_from_path(path), "path": path,
                             "devices_v1_mount": mounts.devices_v1}
    if path == "/":
        # "0::/" (or "N:devices:/"): the process sits at the root of its cgroup namespace. In a container that is
        # a private cgroup namespace (Docker's default on cgroup v2, and containerd's for unprivileged CRI
        # containers), which hides the host path, so neither the path nor the cgroup driver can be read here.
        try:
            contained: Optional[bool] = in_container_fact(snapshot)
        except Missing:
            contained = None
        if contained is not False:
            setup["namespace_root"] = True
    # v1: the devices.list of this process's cgroup, as mounted in a container or at the host root.
    for list_path in ("/sys/fs/cgroup/devices/devices.list", "/sys/fs/cgroup/devices.list"):
        listing = snapshot.file(list_path)
        if listing.text is not None:
            setup["devices_list"] = listing.text
            break
    return setup


@fact("open_tests")
def open_tests_fact(snapshot: Snapshot) -> dict[str, Any]:
    """Results of the open test (probes/devopen.py): {path: {"ok": true} | {"error": "EPERM", ...}}."""
    opens = snapshot.data.get("opens")
    if not isinstance(opens, dict) or not opens:
        raise Missing("no open test in this snapshot (taken with --root or by an older gpu-runbook)", "skip")
    if "skipped" in opens:
        raise Missing(f"open test not run: {opens['skipped']}", "skip")
    return opens


def _nvidia_loaded(modules: dict[str, dict[str, object]]) -> bool:
    return "nvidia" in modules


def _int(value: Any) -> Optional[int]:
    """An int fact, or None when a snapshot carries something else there."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --8<-- [start:device-nodes]
def node_access(node: dict[str, Any], euid: Optional[int], groups: list[int]) -> bool:
    """Whether a process with this euid and groups may open the node read-write (root always may)."""
    try:
        mode = int(str(node.get("mode", "0")), 8)
    except ValueError:
        return False
    if euid == 0 or mode & 0o006 == 0o006:
        return True
    if euid is not None and node.get("uid") == euid and mode & 0o600 == 0o600:
        return True
    return node.get("gid") in groups and mode & 0o060 == 0o060


def expected_nodes(majors: dict[str, int], nodes: dict[str, dict[str, Any]],
                   minors: Optional[list[int]]) -> dict[str, tuple[int, int, bool]]:
    """Node path -> (major, minor, required). Optional ones (uvm-tools, modeset) only warn when missing."""
    frontend = majors["frontend"]
    expected = {"/dev/nvidiactl": (frontend, NVIDIACTL_MINOR, True)}
    uvm = majors.get("uvm")
    if uvm is not None:
        expected["/dev/nvidia-uvm"] = (uvm, 0, True)
        expected["/dev/nvidia-uvm-tools"] = (uvm, 1, False)  # profilers (CUPTI) need it, CUDA does not
    # /dev/nvidia-modeset serves display stacks only: judge its numbers when it exists, never require it
    # (nvidia_modeset is often loaded on headless hosts without anyone creating the node).
    if "error" not in nodes.get("/dev/nvidia-modeset", {"error": "absent"}):
        expected["/dev/nvidia-modeset"] = (frontend, NVIDIA_MODESET_MINOR, False)
    if minors is None:  # NVML did not say: judge the GPU nodes that exist
        minors = sorted(int(p[len("/dev/nvidia"):]) for p, n in nodes.items()
                        if p[len("/dev/nvidia"):].isdigit() and "error" not in n)
    for minor in minors:
        expected[f"/dev/nvidia{minor}"] = (frontend, minor, True)
    caps = majors.get("caps")
    for path, node in nodes.items():
        # MIG capability nodes: created on demand, but one that exists must carry the current major.
        minor = _int(node.get("minor"))
        if path.startswith("/dev/nvidia-caps/") and node.get("kind") == "char" and caps is not None \
                and minor is not None:
            expected[path] = (caps, minor, True)
    return expected


@fact("nodes_created_by_probes")
def nodes_created_by_probes_fact(snapshot: Snapshot) -> list[str]:
    """/dev/nvidia* nodes that appeared while the live probes ran (NVML or nvidia-smi, as root, made them)."""
    changes = snapshot.probe.get("dev_changes")
    if not isinstance(changes, dict) or not isinstance(changes.get("appeared"), list):
        raise Missing("this snapshot did not look at /dev twice (not live, or an older collector)", "skip")
    return [p for p in changes["appeared"] if isinstance(p, str)]


# 545.23.06 dropped nv-frontend.c: from then on major 195 is listed as "nvidia" (and "nvidiactl") in
# /proc/devices, before that as "nvidia-frontend" (open-gpu-kernel-modules kernel-open/nvidia/nv.c).
PROC_DEVICES_NVIDIA_NAME = boundary("driver-proc-devices-nvidia-name", "driver", "545")


def frontend_name(driver: Optional[DriverVersion]) -> str:
    """The /proc/devices name of major 195 that a loaded module of this version registers.

    >>> frontend_name(None)
    'nvidia (drivers 545 and later) or nvidia-frontend (before 545)'
    >>> frontend_name(DriverVersion("535.288.01", "open", "x86_64", ""))
    'nvidia-frontend'
    """
    if driver is None or not re.fullmatch(r"\d+(\.\d+)*", driver.version):
        return "nvidia (drivers 545 and later) or nvidia-frontend (before 545)"
    parts = tuple(int(p) for p in driver.version.split("."))
    return "nvidia" if parts >= PROC_DEVICES_NVIDIA_NAME else "nvidia-frontend"


FIX_MISSING_NODES = ("Create them on the host: nvidia-modprobe -c 255 (nvidiactl), nvidia-modprobe -c N for each "
                     "GPU minor N (nvidiaN), nvidia-modprobe -u -c 0 (nvidia-uvm and nvidia-uvm-tools); in a "
                     "container, recreate it so the runtime injects them.")


@check("device-nodes", title="/dev/nvidia* nodes exist and open", page="device-nodes",
       facts=("nvidia_majors", "nvidia_nodes", "host"),
       optional=("nvml", "in_container", "nodes_created_by_probes", "kernel_driver"))
def device_nodes_missing_or_denied(  # noqa: PLR0917 (the registry passes each declared fact positionally)
        majors: dict[str, int], nodes: dict[str, dict[str, Any]], host: dict[str, Any],
        nvml: Optional[dict[str, Any]], in_container: Optional[bool], created: Optional[list[str]],
        driver: Optional[DriverVersion]) -> Verdict:
    """A /dev/nvidia* node is missing, has the wrong type or numbers, or its mode denies the workload.

    ## Why it matters
    CUDA opens /dev/nvidiactl, /dev/nvidiaN and /dev/nvidia-uvm. Without /dev/nvidia-uvm cuInit fails with
    CUDA_ERROR_UNKNOWN (999; PyTorch: "CUDA unknown error"); nodes the user may not open give NVML's
    "Insufficient Permissions" and CUDA's "no CUDA-capable device is detected"; a node left from an earlier
    driver load can carry a stale dynamic major (nvidia-uvm, nvidia-caps). The kernel module creates no
    nodes: the driver's user space (as root) or the setuid nvidia-modprobe does, or the container runtime.

    ## Evidence
    /proc/devices (the majors the driver registered), lstat of every /dev/nvidia* path, the GPU minors
    NVML reports.

    ## References
    NVIDIA driver README, "How and when are the NVIDIA device files created?"; nvidia-modprobe(1) and
    modprobe-utils/nvidia-modprobe-utils.c.
    """
    if majors.get("frontend") is None:
        return skip(f"no NVIDIA driver in /proc/devices (no major 195 named {frontend_name(driver)}): the "
                    "kernel module is not loaded (see kernel-modules)", {"nvidia_majors": majors})
    expected = expected_nodes(majors, nodes, nvml_gpu_minors(nvml))
    euid = host.get("euid") if isinstance(host.get("euid"), int) else None
    groups = [g for g in host.get("groups", []) if isinstance(g, int)] if isinstance(host.get("groups"), list) else []
    missing: list[str] = []
    missing_paths: list[str] = []
    optional_missing: list[str] = []
    wrong: list[str] = []
    denied: list[str] = []
    unreadable: list[str] = []
    for path, (major, minor, required) in sorted(expected.items()):
        # The /dev globs ran (nvidia_nodes holds their results): a node they did not list is absent.
        node = nodes.get(path, {"error": "ENOENT"})
        if node.get("error") and node["error"] not in NOT_PRESENT:
            unreadable.append(f"{path} ({node['error']})")
        elif node.get("error"):
            (missing if required else optional_missing).append(
                f"{path} missing ({node['error']}), expected char {major}:{minor}")
            if required:
                missing_paths.append(path)
        elif node.get("kind") != "char":
            wrong.append(f"{path} is a {node.get('kind')}, expected a character device {major}:{minor}")
        elif (node.get("major"), node.get("minor")) != (major, minor):
            wrong.append(f"{path} is char {node.get('major')}:{node.get('minor')}, expected {major}:{minor}")
        elif not path.startswith("/dev/nvidia-caps/") and not node_access(node, euid, groups):
            # (capability nodes are read-only by design: their mode grants MIG rights, not GPU access)
            denied.append(f"{path} mode {node.get('mode')} owner {node.get('uid')}:{node.get('gid')} "
                          f"denies uid {euid} (groups {groups})")
    evidence = {"expected": {p: f"{a}:{b}" for p, (a, b, _) in expected.items()}, "missing": missing,
                "optional_missing": optional_missing, "wrong": wrong, "denied": denied, "unreadable": unreadable}
    if majors.get("uvm") is None:
        summary = ("nvidia-uvm is not registered in /proc/devices (nvidia_uvm not loaded): CUDA programs fail "
                   "(cuInit: CUDA_ERROR_UNKNOWN)")
        fix = "Load nvidia_uvm and create its nodes: nvidia-modprobe -u -c 0 (as root, or through the setuid binary)."
        if in_container:
            return fail(summary, fix, evidence, anchor="nvidia-uvm")
        # On a host, nvidia-modprobe loads it at the first CUDA call; containers started before that fail.
        return warn(summary + " until nvidia-modprobe loads it on first use", fix, evidence, anchor="nvidia-uvm")
    if wrong:
        return fail("; ".join(wrong), "Remove the stale nodes and recreate them from the current majors "
                    "(nvidia-modprobe puts the right numbers back: -c N for nvidiactl/nvidiaN, -u -c 0 for "
                    "nvidia-uvm), or recreate the container so the runtime injects them.",
                    evidence, anchor="stale-nodes")
    fix_missing = FIX_MISSING_NODES
    made = [p for p in expected if p in (created or [])]
    if made:
        evidence["created_by_probes"] = made
    if missing_paths and set(missing_paths) <= set(made):
        # Root's NVML or nvidia-smi made them on the spot; a non-root workload could not have.
        it = "them" if len(made) > 1 else "it"
        return warn(f"{', '.join(made)} missing until this check ran: NVML or nvidia-smi, running as root, "
                    f"created {it} ({it} exist{'' if len(made) > 1 else 's'} now; a process without root, "
                    "without CAP_MKNOD and without a setuid nvidia-modprobe, as in a container, would have "
                    "failed)",
                    fix_missing + " Make it last: create them at boot (nvidia-modprobe in a unit, or the "
                    "driver package's udev rule) or have the runtime inject them.", evidence,
                    anchor="missing-nodes")
    if missing:
        return fail("; ".join(missing), fix_missing, evidence, anchor="missing-nodes")
    if denied:
        return fail("; ".join(denied), "Add the user to the nodes' group, or set NVreg_DeviceFileMode/"
                    "NVreg_DeviceFileGID (see the page) and reload the driver.", evidence, anchor="permissions")
    if unreadable:
        return unknown(f"could not examine {', '.join(unreadable)}: run as root to judge the nodes", evidence)
    if optional_missing:
        return warn("; ".join(optional_missing), "Create them: nvidia-modprobe -u -c 0 (uvm-tools), "
                    "nvidia-modprobe -m (modeset).", evidence, anchor="missing-nodes")
    return ok(f"{len(expected)} NVIDIA device nodes present with the right numbers and usable modes", evidence)
# --8<-- [end:device-nodes]


# --8<-- [start:device-node-modes]
UVM_NODES = ("/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")
# nvidia_uvm_mknod() passes no params file to mknod_helper(), so the defaults apply: mode 0666, uid 0, gid 0.
# Gentoo patches its nvidia-modprobe (nvidia-modprobe-390.141-uvm-perms.patch) to pass the params file there too,
# so nodes that follow DeviceFileMode/UID/GID are what that nvidia-modprobe creates.
UVM_NODE_MODE = ("0666", "0", "0")


@check("device-node-modes", title="Node modes match the driver's DeviceFile* parameters", page="device-nodes",
       facts=("driver_params", "nvidia_nodes", "nvidia_majors", "host_dev"))
def device_node_modes_differ(params: dict[str, str], nodes: dict[str, dict[str, Any]], majors: dict[str, int],
                             host_dev: bool) -> Verdict:
    """NVreg_DeviceFileMode is not a valid mode, or the nodes' mode/owner differ from what nvidia-modprobe
    creates: DeviceFileMode/UID/GID for major 195, 0666 root:root (or, with Gentoo's patched nvidia-modprobe,
    the same parameters) for nvidia-uvm: something else rewrote them.

    ## Why it matters
    nvidia-modprobe and the driver's user-space create /dev/nvidiactl, /dev/nvidiaN and /dev/nvidia-modeset
    (major 195, hard-coded) with DeviceFileUID, DeviceFileGID and DeviceFileMode (default 0, 0, 0666). The
    nvidia-uvm nodes get the major /proc/devices lists and, from upstream nvidia-modprobe, 0666 root:root: those
    parameters do not govern them (Gentoo patches nvidia-modprobe so that they do). A mode written without its
    leading 0 (NVreg_DeviceFileMode=660) is read as decimal and gives nonsense bits (c-w--w-r-T for 660,
    c-w--wx-wT for 666); nodes that differ were changed by a udev rule or chmod, and nvidia-modprobe puts its
    own mode back the next time it creates or repairs them.

    ## Evidence
    /proc/driver/nvidia/params and lstat of /dev/nvidiactl, /dev/nvidiaN, /dev/nvidia-modeset and
    /dev/nvidia-uvm*.

    ## References
    NVIDIA driver README FAQ, "How and when are the NVIDIA device files created?"; nvidia-modprobe
    modprobe-utils/nvidia-modprobe-utils.c (mknod_helper, nvidia_uvm_mknod).
    """
    mode = device_file_mode(params)
    evidence: dict[str, Any] = {key: params.get(key) for key in
                                ("ModifyDeviceFiles", "DeviceFileUID", "DeviceFileGID", "DeviceFileMode")}
    if mode is None:
        return unknown("/proc/driver/nvidia/params has no numeric DeviceFileMode", evidence)
    evidence["DeviceFileMode_octal"] = f"{mode:04o}"
    if mode > 0o777:
        return fail(f"DeviceFileMode is {mode} = {mode:o} octal, above 0777: the module option was written "
                    f"without its leading 0 and read as decimal (0666 is 438)",
                    "Write the mode in octal with a leading 0 (options nvidia NVreg_DeviceFileMode=0660) "
                    "and reload the driver.", evidence, anchor="mode-parameter")
    if params.get("ModifyDeviceFiles") == "0":
        return ok("ModifyDeviceFiles is 0: the driver's user space leaves nvidiactl and nvidiaN to udev or the "
                  "distribution", evidence)
    if not host_dev:
        return skip("inside a container with its own /dev the runtime creates the nodes; compare on the host",
                    evidence)
    frontend = majors.get("frontend")
    want = (f"{mode:04o}", params.get("DeviceFileUID"), params.get("DeviceFileGID"))
    differ: list[str] = []
    uvm_differ: list[str] = []
    for path, node in sorted(nodes.items()):
        if node.get("kind") != "char":
            continue
        have = (str(node.get("mode")), str(node.get("uid")), str(node.get("gid")))
        if node.get("major") == frontend:
            if have != want:
                differ.append(f"{path} {have[0]} {have[1]}:{have[2]}")
        elif path in UVM_NODES and node.get("major") == majors.get("uvm") and have not in (UVM_NODE_MODE, want):
            # Upstream nvidia-modprobe makes the uvm nodes 0666 root:root whatever the parameters say, Gentoo's
            # patched one follows the parameters; caps nodes take their modes from
            # /proc/driver/nvidia/capabilities and are not judged here.
            uvm_differ.append(f"{path} {have[0]} {have[1]}:{have[2]}")
    evidence["differ"] = differ
    evidence["uvm_differ"] = uvm_differ
    fix = ("Set the wanted mode through NVreg_DeviceFileMode/UID/GID, not chmod or a udev rule, so every driver "
           "load recreates the same nodes; restrict access through nvidiactl (every CUDA and NVML client opens it), "
           "since upstream nvidia-modprobe creates the nvidia-uvm nodes 0666 root:root.")
    if differ or uvm_differ:
        parts = []
        if differ:
            parts.append(f"node mode/owner differ from the driver parameters ({want[0]} {want[1]}:{want[2]}): "
                         f"{', '.join(differ[:6])}")
        if uvm_differ:
            parts.append(f"nvidia-uvm nodes differ from the 0666 0:0 nvidia-modprobe creates (and from the "
                         f"driver parameters): {', '.join(uvm_differ)}")
        return warn("; ".join(parts), fix, evidence, anchor="permissions")
    uvm = next((nodes[p] for p in UVM_NODES if p in nodes and nodes[p].get("kind") == "char"), None)
    uvm_note = f" (nvidia-uvm {uvm.get('mode')} {uvm.get('uid')}:{uvm.get('gid')})" if uvm else ""
    return ok(f"nodes match the driver parameters: mode {want[0]}, owner {want[1]}:{want[2]}{uvm_note}", evidence)
# --8<-- [end:device-node-modes]


# --8<-- [start:dev-char-symlinks]
# `create-dev-char-symlinks --create-all` (1.13.2 on) reads the majors of "nvidia" and "nvidia-uvm" (and "nvidia-caps"
# when MIG caps are listed) from /proc/devices and stops with "missing required device major ..." when one is absent
# (cmd/nvidia-ctk/system/create-dev-char-symlinks/all.go); 1.12.0 to 1.13.1 do not check and use major 0.
# --load-kernel-modules (1.13.2 on, in 1.14.0 and later too) loads the modules first; 1.14.6 (and 1.15.0) added the
# fallback between "nvidia-frontend" (drivers before 545) and "nvidia" (545 and later); before, it looked for
# "nvidia-frontend" only. The command itself first shipped in 1.12.0. nvidia-ctk 1.18.0 (and its release candidates)
# rejects every --create-all with "create-all and watch are mutually exclusive" (validateFlags); 1.18.1 fixed it
# (commit dd654039).
CTK_LOAD_KERNEL_MODULES = boundary("toolkit-dev-char-load-kernel-modules", "toolkit", "1.13.2")
CTK_NVIDIA_NAME_FALLBACK = boundary("toolkit-dev-char-nvidia-name-fallback", "toolkit", "1.14.6")
CTK_CREATE_ALL_FIXED = boundary("toolkit-dev-char-create-all-fixed", "toolkit", "1.18.1")
CTK_CREATE_ALL_BROKEN = boundary("toolkit-dev-char-create-all-broken", "toolkit", "1.18.0")
CREATE_LINKS = "nvidia-ctk system create-dev-char-symlinks --create-all --load-kernel-modules"


def dev_char_fix(ctk_version: Optional[str], uvm_loaded: bool, driver: Optional[DriverVersion]) -> str:
    """The command that creates the links on this host, given the toolkit, nvidia_uvm and the driver.

    >>> dev_char_fix("1.18.1", False, None).split(";")[0]
    'nvidia_uvm is not loaded, so `--create-all` alone stops with "missing required device major nvidia-uvm"'
    >>> dev_char_fix("1.14.5", True, DriverVersion("550.163.01", "open", "x86_64", "")).split(":")[0]
    'Upgrade the NVIDIA Container Toolkit to 1.14.6 or later'
    >>> dev_char_fix("1.18.0", True, None).split(":")[0]
    'Upgrade the NVIDIA Container Toolkit to 1.18.1 or later'
    """
    ctk = version_tuple(ctk_version)
    driver_parts = version_tuple(driver.version) if driver else None
    if ctk is not None and CTK_CREATE_ALL_BROKEN <= ctk < CTK_CREATE_ALL_FIXED:
        return ("Upgrade the NVIDIA Container Toolkit to 1.18.1 or later: nvidia-ctk "
                f"{ctk_version} rejects every `create-dev-char-symlinks --create-all` (\"create-all and watch are "
                f"mutually exclusive\"), so neither a manual run nor the udev rule creates links; then run "
                f"`{CREATE_LINKS}`.")
    if ctk is not None and ctk < CTK_NVIDIA_NAME_FALLBACK and driver_parts is not None \
            and driver_parts >= PROC_DEVICES_NVIDIA_NAME:
        return ("Upgrade the NVIDIA Container Toolkit to 1.14.6 or later: nvidia-ctk "
                f"{ctk_version} looks for the major of \"nvidia-frontend\", which drivers 545 and later no longer "
                "register, so create-dev-char-symlinks --create-all fails (missing required device major "
                "nvidia-frontend; before 1.13.2 it writes the links for major 195 with major 0 instead); then run "
                f"`{CREATE_LINKS}`.")
    if ctk is not None and ctk < CTK_LOAD_KERNEL_MODULES:
        return ("Load nvidia_uvm first (modprobe nvidia-uvm), then run `nvidia-ctk system create-dev-char-symlinks "
                f"--create-all` (nvidia-ctk {ctk_version} predates --load-kernel-modules, added in 1.13.2; before "
                "1.12.0 it lacks the command too, so upgrade).")
    if not uvm_loaded:
        return ("nvidia_uvm is not loaded, so `--create-all` alone stops with \"missing required device major "
                f"nvidia-uvm\"; run `{CREATE_LINKS}` and keep the links with the udev rule on the page, "
                "which runs the same command.")
    return f"Create them with `{CREATE_LINKS}` and keep them with the udev rule on the page."


@check("dev-char-symlinks", title="/dev/char links for NVIDIA nodes", page="dev-char-symlinks",
       facts=("nvidia_nodes", "dev_char", "host_dev", "toolkit_binaries"),
       optional=("nvidia_udev_rules", "nvidia_majors", "toolkit_versions", "kernel_driver"))
def dev_char_links_missing(  # noqa: PLR0917 (the registry passes each declared fact positionally)
        nodes: dict[str, dict[str, Any]], dev_char: dict[str, Any], host_dev: bool, toolkit: list[str],
        udev_rules: Optional[dict[str, str]], majors: Optional[dict[str, int]],
        versions: Optional[dict[str, Optional[str]]], driver: Optional[DriverVersion]) -> Verdict:
    """An NVIDIA device node has no /dev/char/MAJOR:MINOR link, so runc 1.1.3-1.1.6 (or any runc with a
    systemd older than 240) under the systemd cgroup driver leaves it out of the container's systemd device
    rules, and a `systemctl daemon-reload` takes it away ("Failed to initialize NVML: Unknown Error").

    ## Why it matters
    With the systemd cgroup driver runc hands each device rule of the container's spec to systemd as
    DeviceAllow=/dev/char/MAJOR:MINOR. runc 1.1.3 to 1.1.6 skip a rule whose path does not exist; 1.1.7 and
    later skip it only with systemd older than 240. nvidia-modprobe older than 470.182.03, 515.105.01 or
    525.105.17 in those branches (and every 530 release) and any other `mknod` (scripts, udev rules,
    containers) create the nodes without these links, so on such hosts a
    daemon-reload re-applies rules without the GPU and running containers lose it, even GPUs requested as
    devices. (GPUs injected by the legacy hook are never in those rules and are lost either way.) The fix,
    `nvidia-ctk system create-dev-char-symlinks --create-all`, creates nothing (1.13.2 on) while nvidia_uvm is
    not loaded unless it also gets --load-kernel-modules (a udev rule that runs it when the nvidia module loads
    usually meets that state), and nvidia-ctk 1.18.0 rejects --create-all altogether.

    ## Evidence
    lstat of /dev/nvidia* (major:minor), the /dev/char listing with link targets, the nvidia udev rules,
    /proc/devices (is nvidia-uvm registered), the nvidia-ctk version and the module version.

    ## References
    NVIDIA Container Toolkit troubleshooting; runc libcontainer/cgroups/systemd/common.go (v1.1.3-v1.1.7);
    Azure/AgentBaker PR #3502 (the udev rule); nvidia-container-toolkit
    cmd/nvidia-ctk/system/create-dev-char-symlinks (v1.13.2, v1.14.6, v1.18.0, v1.18.1).
    """
    if not host_dev:
        return skip("inside a container with its own /dev: /dev/char links matter on the host that runs runc")
    if "error" in dev_char:
        entries: dict[str, Any] = {}
        listing_error = dev_char.get("error")
    else:
        entries = dev_char.get("entries") or {}
        listing_error = None
    rule_files = sorted(p for p, text in (udev_rules or {}).items() if "create-dev-char-symlinks" in text)
    # A rule that runs --create-all without --load-kernel-modules fires when the nvidia module registers its PCI
    # driver, usually before nvidia_uvm is loaded, and then creates nothing.
    rules_without_load = [p for p in rule_files if "--create-all" in (udev_rules or {})[p]
                          and "--load-kernel-modules" not in (udev_rules or {})[p]]
    uvm_loaded = majors is None or "uvm" in majors
    missing: list[str] = []
    wrong: list[str] = []
    checked = 0
    unreadable = [f"{p} ({n['error']})" for p, n in sorted(nodes.items()) if n.get("error") not in (None, *NOT_PRESENT)]
    for path, node in sorted(nodes.items()):
        if node.get("kind") != "char":
            continue
        checked += 1
        name = f"{node.get('major')}:{node.get('minor')}"
        target = entries.get(name)
        if name not in entries:
            missing.append(f"{name} ({path})")
        elif target is not None and target.rsplit("/", 1)[-1] != path.rsplit("/", 1)[-1]:
            wrong.append(f"{name} -> {target}, expected {path}")
    ctk_version = (versions or {}).get("nvidia-ctk")
    evidence = {"checked": checked, "missing": missing, "wrong": wrong, "dev_char_error": listing_error,
                "toolkit": toolkit, "udev_rule": rule_files,
                "udev_rule_without_load_kernel_modules": rules_without_load, "nvidia_uvm_loaded": uvm_loaded,
                "nvidia_ctk": ctk_version}
    if not missing and not wrong:
        if unreadable:
            return unknown(f"could not examine {', '.join(unreadable[:6])}: their links cannot be judged", evidence)
        if not checked:
            return skip("no NVIDIA character devices on this host")
        if not rule_files:
            note = " (no udev rule keeps them across driver reloads)"
        elif rules_without_load:
            note = (f" (the udev rule in {rules_without_load[0]} lacks --load-kernel-modules: at boot it usually "
                    "runs before nvidia_uvm is loaded, and then creates nothing)")
        else:
            note = ""
        return ok(f"all {checked} NVIDIA nodes have their /dev/char link{note}", evidence)
    summary = (f"{len(missing)} NVIDIA node(s) without /dev/char link: {', '.join(missing[:6])}"
               if missing else f"wrong /dev/char links: {', '.join(wrong[:6])}")
    if rules_without_load and missing:
        summary += (f" (the udev rule in {rules_without_load[0]} runs --create-all without --load-kernel-modules, "
                    "which stops while nvidia_uvm is not loaded)")
    fix = dev_char_fix(ctk_version, uvm_loaded, driver)
    if not toolkit:
        # No container runtime uses the GPU here, so nothing breaks today; keep it visible.
        return warn(summary + " (latent: no NVIDIA container toolkit on this host)", fix, evidence,
                    anchor="fix")
    if all(p.startswith(OPERATOR_TOOLKIT_DIR + "/") for p in toolkit):
        # A GPU Operator node: its driver validator creates the links unless DISABLE_DEV_CHAR_SYMLINK_CREATION.
        summary += f" (GPU Operator node: toolkit in {OPERATOR_TOOLKIT_DIR})"
        fix = ("The GPU Operator's driver validator creates these links: remove DISABLE_DEV_CHAR_SYMLINK_CREATION "
               "from the ClusterPolicy's validator.driver.env and restart the nvidia-operator-validator pod on "
               f"this node, or run `{OPERATOR_TOOLKIT_DIR}/{CREATE_LINKS}` on the node.")
    return fail(summary, fix, evidence, anchor="fix")
# --8<-- [end:dev-char-symlinks]


# --8<-- [start:cgroup-device-access]
DENIED = "EPERM"  # what open(2) returns when the devices cgroup (v1 list or v2 eBPF filter) says no


@check("cgroup-device-access", title="The devices cgroup lets this process open the GPU",
       page="cgroup-device-access", facts=("cgroup_setup",),
       optional=("open_tests", "nvidia_nodes", "in_container", "system_container"))
def cgroup_denies_gpu(cgroup: dict[str, Any], opens: Optional[dict[str, Any]],
                      nodes: Optional[dict[str, dict[str, Any]]], in_container: Optional[bool],
                      system_container: Optional[str] = None) -> Verdict:
    """The devices cgroup denies this process the NVIDIA nodes: open() fails with EPERM even though the
    node exists and its mode allows it (cgroup v1 devices.list, or the cgroup v2 eBPF device filter).

    ## Why it matters
    A container that lost its device rules (systemd daemon-reload, a runtime update) still shows the nodes
    in /dev, but every open fails: "Failed to initialize NVML: Unknown Error". On cgroup v2 the rules are
    eBPF programs that cannot be read back from inside the container, so an open test is the only proof.

    ## Evidence
    The open test (errno of an O_RDONLY|O_NONBLOCK open of /dev/nvidiactl and /dev/nvidia-uvm),
    /proc/self/mountinfo and /proc/self/cgroup (version and driver), the v1 devices.list. In a private cgroup
    namespace (Docker's default on cgroup v2; containerd gives unprivileged CRI containers one)
    /proc/self/cgroup reads "0::/": the cgroup's host path and the cgroup driver are then not visible, and
    the finding says so instead of guessing.
    /run/systemd/container (or $container) names an LXC, Incus or LXD container, whose device rules come
    from its configuration on the host: the fix then goes there.

    ## References
    Linux kernel docs, Control Group v2 "Device controller" and "Namespace"; cgroup v1 devices.txt;
    runc issue #3671.
    """
    evidence: dict[str, Any] = dict(cgroup)
    if opens is not None and "error" in opens and isinstance(opens["error"], str):
        evidence["open_test"] = opens
        return unknown(f"open test did not finish ({opens['error']}: {opens.get('detail', '')}); "
                       "a hang in open() points at a stuck driver", evidence)
    if opens is not None:
        evidence["open_test"] = opens
        denied = [p for p, r in sorted(opens.items()) if isinstance(r, dict) and r.get("error") == DENIED]
        opened = [p for p, r in sorted(opens.items()) if isinstance(r, dict) and r.get("ok")]
        other = {p: r.get("error") for p, r in sorted(opens.items())
                 if isinstance(r, dict) and r.get("error") not in (None, DENIED)}
        if denied:
            where = ("the v1 devices.list" if cgroup["version"] == "v1"
                     else "the cgroup v2 eBPF device filter")
            if system_container:
                evidence["system_container"] = system_container
                # No runtime re-adds rules here: the allow-list comes from the container's configuration on
                # the host, and a restart applies the same list again.
                return fail(f"open({', '.join(denied)}) = EPERM in this {system_container} container: {where} "
                            "set from its configuration on the host does not allow the GPU",
                            "On the host, allow the nodes' majors (195, and nvidia-uvm's and nvidia-caps' from "
                            "/proc/devices) in the container's configuration, or pass the GPU with the "
                            "manager's own device option; then restart the container.", evidence, anchor="lxc")
            return fail(f"open({', '.join(denied)}) = EPERM: {where} of {_cgroup_name(cgroup)} denies "
                        f"the GPU (the node exists; this is not ENOENT)",
                        "Restart the container so the runtime re-adds the device rules; then stop the cause "
                        "(dev-char links + systemd cgroup driver).", evidence, anchor="denied")
        if opened:
            return ok(f"opened {', '.join(opened)}: the devices cgroup ({cgroup['version']}) allows the GPU",
                      evidence)
        return skip(f"open test inconclusive ({other}): a missing node or mode problem, not the cgroup "
                    "(see device-nodes)", evidence)
    if cgroup["version"] in ("v1", "hybrid") and cgroup.get("devices_v1_mount"):
        return _judge_devices_list(cgroup, nodes, evidence)
    hidden = (" (/proc/self/cgroup shows '/', the root of a private cgroup namespace: read the container's "
              "cgroup and the cgroup driver on the host)" if cgroup.get("namespace_root") else "")
    return skip(f"cgroup {cgroup['version']}: device rules are eBPF programs that cannot be listed from here; "
                f"run `gpu-runbook check` live so the open test can judge{hidden}", evidence)


def _cgroup_name(cgroup: dict[str, Any]) -> str:
    """How a finding names the cgroup: its path, or why the path is not visible."""
    if cgroup.get("namespace_root"):
        return "this process's cgroup (shown as '/': a private cgroup namespace hides its host path)"
    return f"cgroup {cgroup.get('path') or '(unknown)'}"


def _judge_devices_list(cgroup: dict[str, Any], nodes: Optional[dict[str, dict[str, Any]]],
                        evidence: dict[str, Any]) -> Verdict:
    text = cgroup.get("devices_list")
    if not isinstance(text, str):
        return unknown("cgroup v1 devices.list was not readable", evidence)
    rules = parse_devices_list(text)
    evidence["devices_list"] = text.splitlines()[:40]
    chars = {p: n for p, n in (nodes or {}).items() if n.get("kind") == "char"
             and _int(n.get("major")) is not None and _int(n.get("minor")) is not None}
    # Capability nodes are opened read-only; every other NVIDIA node needs rw.
    denied = [f"{p} (c {n.get('major')}:{n.get('minor')})" for p, n in sorted(chars.items())
              if not devices_list_allows(rules, n["major"], n["minor"],
                                         "r" if p.startswith("/dev/nvidia-caps/") else "rw")]
    if denied:
        return fail(f"devices.list of {_cgroup_name(cgroup)} does not allow rw on {', '.join(denied[:6])}",
                    "Restart the container so the runtime re-adds the device rules.", evidence, anchor="denied")
    if not chars:
        return skip("no NVIDIA character devices to judge against devices.list", evidence)
    return ok(f"devices.list allows all {len(chars)} NVIDIA nodes", evidence)
# --8<-- [end:cgroup-device-access]


# --8<-- [start:bpf-jit-harden]
@check("bpf-jit-harden", title="eBPF JIT hardening lets the toolkit add device rules", page="cgroup-device-access",
       facts=("cgroup_setup", "toolkit_binaries"), optional=("bpf_jit", "toolkit_config", "engines"))
def bpf_jit_harden_blocks_device_filter(cgroup: dict[str, Any], toolkit: list[str], jit: Optional[dict[str, str]],
                                        config: Optional[dict[str, Any]] = None,
                                        engines: Optional[dict[str, dict[str, Any]]] = None) -> Verdict:
    """net.core.bpf_jit_harden=2 on cgroup v2: libnvidia-container cannot read back runc's device filter
    and fails with "unable to generate new device filter program from existing programs".

    ## Why it matters
    In legacy mode nvidia-container-cli adds the GPU to a cgroup v2 container by reading the eBPF device
    program runc attached and loading an extended copy. With JIT hardening for all users (2) the kernel
    blinds the program's constants and returns a blinded program's instructions only to a caller that may
    read raw kernel addresses, so the copy is rejected by the verifier and the container does not start.

    ## Evidence
    /proc/sys/net/core/bpf_jit_harden and bpf_jit_enable, the cgroup version, the toolkit binaries, and
    no-cgroups and the runtime's mode in the toolkit's config.toml (an explicit cdi, jit-cdi or csv mode
    leaves nvidia-container-cli out), and the container engines: where containerd is the only one and its
    runtime's `auto` mode resolves to jit-cdi (toolkit 1.18.0 and later), nothing runs the legacy hook.
    Docker's `--gpus` and CRI-O's OCI hook file run the hook, which resolves `auto` to legacy.

    ## References
    NVIDIA/libnvidia-container issue #176; Linux kernel/bpf/syscall.c (bpf_prog_get_info_by_fd,
    bpf_dump_raw_ok); kernel docs admin-guide/sysctl/net.rst (bpf_jit_harden).
    """
    if jit is None or "harden" not in jit:
        return skip("/proc/sys/net/core/bpf_jit_harden not readable here", {"cgroup": cgroup["version"]})
    evidence = {"bpf_jit_harden": jit.get("harden"), "bpf_jit_enable": jit.get("enable"),
                "cgroup": cgroup["version"], "toolkit": toolkit}
    if jit["harden"] != "2":
        return ok(f"bpf_jit_harden = {jit['harden']}: device filter programs stay readable", evidence)
    if jit.get("enable") == "0":
        return ok("bpf_jit_harden = 2 but the JIT is off (bpf_jit_enable = 0): no constant blinding", evidence)
    if cgroup["version"] != "v2":
        return ok(f"bpf_jit_harden = 2, but cgroup {cgroup['version']} device rules are not eBPF", evidence)
    doc = (config or {}).get("doc") or {}
    cli = doc.get("nvidia-container-cli")
    if isinstance(cli, dict) and cli.get("no-cgroups") is True:  # a rootless setup: the hook passes --no-cgroups
        return ok(f"bpf_jit_harden = 2, but no-cgroups = true in {(config or {}).get('path')}: nvidia-container-cli "
                  "leaves the device filter alone", evidence)
    mode, explicit, _ = runtime_mode(config, None)
    if explicit and mode in ("cdi", "jit-cdi", "csv"):  # the hook refuses to run, runc writes the filter
        return ok(f"bpf_jit_harden = 2, but the runtime's mode is {mode}: runc writes the device filter itself and "
                  "nvidia-container-cli is not used", evidence)
    cdi_only = _containerd_without_legacy_hook(engines)
    if cdi_only:
        return ok(f"bpf_jit_harden = 2, but {cdi_only}: nvidia-container-cli is not used", evidence)
    summary = ("bpf_jit_harden = 2 on cgroup v2: nvidia-container-cli (legacy mode) cannot extend runc's "
               "device filter (\"unable to generate new device filter program\")")
    fix = ("Set net.core.bpf_jit_harden=1 (sysctl -w, and persist in /etc/sysctl.d), or use CDI mode, "
           "where runc writes the device filter itself.")
    if not has_program(toolkit, "nvidia-container-cli"):
        return warn(summary + " (latent: nvidia-container-cli is not installed)", fix, evidence,
                    anchor="bpf-jit-harden")
    return fail(summary, fix, evidence, anchor="bpf-jit-harden")


def _containerd_without_legacy_hook(engines: Optional[dict[str, dict[str, Any]]]) -> str:
    """Why no container here can reach nvidia-container-cli, or "" when one can (or it is not known).

    Only containerd qualifies: Docker's `--gpus` adds the runtime hook, CRI-O may run it from an OCI hook file
    (the toolkit installer's hook mode), and Podman from one in hooks.d, none of which the snapshot reads; a
    Podman known only by its containers.conf counts too. On containerd it covers pods and `--runtime nvidia`
    starts: `ctr run --gpus` before containerd 2.3.0 (contrib/nvidia) still runs nvidia-container-cli itself;
    from 2.3.0 it requests CDI devices.

    >>> _containerd_without_legacy_hook({"containerd": {"kind": "containerd", "mode": "jit-cdi"}}).split(" (")[0]
    'containerd is the only engine and its runtime resolves to jit-cdi'
    >>> _containerd_without_legacy_hook({"containerd": {"kind": "containerd", "mode": "jit-cdi"},
    ...                                  "docker": {"kind": "docker", "mode": "jit-cdi"}})
    ''
    """
    found = engines or {}
    if not found or any(e.get("kind") != "containerd" for e in found.values()):
        return ""
    modes = sorted({str(e.get("mode")) for e in found.values()})
    if not set(modes) <= {"jit-cdi", "cdi", "csv"}:
        return ""
    names = ", ".join(sorted(found))
    verb = "is the only engine and its runtime resolves" if len(found) == 1 else \
        "are the only engines and their runtimes resolve"
    return f"{names} {verb} to {' / '.join(modes)} (pods, --runtime nvidia; not containerd<2.3 ctr --gpus)"
# --8<-- [end:bpf-jit-harden]


@fact("bpf_jit")
def bpf_jit_fact(snapshot: Snapshot) -> dict[str, str]:
    """net.core.bpf_jit_harden and bpf_jit_enable as strings ("0", "1", "2")."""
    result: dict[str, str] = {}
    for key, path in (("harden", "/proc/sys/net/core/bpf_jit_harden"),
                      ("enable", "/proc/sys/net/core/bpf_jit_enable")):
        text = snapshot.file(path).text
        if text is not None and text.strip():
            result[key] = text.strip()
    if not result:
        raise Missing("bpf_jit sysctls were not readable", "skip")
    return result


# --8<-- [start:kernel-cgroup-bpf]
@check("kernel-cgroup-bpf", title="The kernel can hold cgroup v2 device rules (cgroup BPF)",
       page="cgroup-device-access", facts=("cgroup_setup",), optional=("kernel_config",))
def kernel_lacks_cgroup_bpf(cgroup: dict[str, Any], config: Optional[dict[str, Any]]) -> Verdict:
    """A cgroup v2 host whose kernel was built without CONFIG_CGROUP_BPF or CONFIG_BPF_SYSCALL: runc cannot
    install a container's device rules, and containers fail with "bpf_prog_query(BPF_CGROUP_DEVICE) failed:
    function not implemented".

    ## Why it matters
    cgroup v2 has no devices controller file: runc attaches each container's device rules to its cgroup as an
    eBPF program (and from runc 1.0.0 first queries the programs attached already). A kernel without the bpf()
    system call or without cgroup BPF answers ENOSYS, and every container that is neither privileged nor
    rootless fails at create, GPU or not. Minimal and embedded kernel builds are where this happens.

    ## Evidence
    The cgroup version, and the two options in /proc/config.gz or in /boot/config-<running release>.

    ## References
    opencontainers/runc libcontainer/cgroups/devices/ebpf_linux.go (BPF_PROG_QUERY, the privileged and
    rootless exceptions); avocado-linux/meta-avocado pull request #256; runc script/check-config.sh.
    """
    if config is None:
        return skip("kernel configuration not readable here (no /proc/config.gz, no /boot/config-<release>)",
                    {"cgroup": cgroup["version"]})
    options = config["options"]
    evidence = {"cgroup": cgroup["version"], "source": config["source"],
                "options": {name: options.get(name, "absent") for name in KERNEL_BPF_OPTIONS}}
    if cgroup["version"] != "v2":
        return ok(f"cgroup {cgroup['version']}: device rules go to the v1 devices controller, not eBPF", evidence)
    missing = [name for name in KERNEL_BPF_OPTIONS if options.get(name) != "y"]
    if not missing:
        return ok(f"kernel built with {' and '.join(f'{n}=y' for n in KERNEL_BPF_OPTIONS)} ({config['source']})",
                  evidence)
    if config.get("truncated") and any(name not in options for name in missing):
        return unknown(f"{config['source']} was cut before {', '.join(missing)}: cannot tell", evidence)
    said = ", ".join(f"{name} {'is not set' if options.get(name, 'n') == 'n' else '=' + options[name]}"
                     for name in missing)
    return fail(f"cgroup v2 and a kernel without cgroup BPF ({said}, {config['source']}): runc cannot attach "
                "device rules, so containers that are not privileged or rootless fail at create "
                "(\"bpf_prog_query(BPF_CGROUP_DEVICE) failed: function not implemented\")",
                "Boot a kernel built with CONFIG_BPF_SYSCALL=y and CONFIG_CGROUP_BPF=y (distribution kernels "
                "have both), or rebuild this one with them.", evidence, anchor="no-cgroup-bpf")
# --8<-- [end:kernel-cgroup-bpf]


# The options the check judges, as the probe plan records them (only these lines of the configuration).
KERNEL_BPF_OPTIONS = ("CONFIG_BPF_SYSCALL", "CONFIG_CGROUP_BPF")


@fact("kernel_config")
def kernel_config_fact(snapshot: Snapshot) -> dict[str, Any]:
    """The running kernel's recorded build options: {"source", "options", "truncated"}; /proc/config.gz first,
    then /boot/config-<running release>."""
    candidates = ["/proc/config.gz"]
    try:
        candidates.append(f"/boot/config-{kernel_release_fact(snapshot)}")
    except Missing:
        pass
    for path in candidates:
        record = snapshot.file(path)
        if record.text is not None:
            return {"source": path, "options": parse_kernel_config(record.text), "truncated": record.truncated}
    raise Missing("kernel configuration not readable (/proc/config.gz, /boot/config-<release>)", "skip")


# --8<-- [start:kernel-modules-loaded]
SMI_NO_DRIVER = "couldn't communicate with the NVIDIA driver"


# What the kernel log names as the reason nvidia did not load: (words for the summary, page anchor, fix).
LOAD_CAUSES = {
    "open-module-pre-turing": (
        "the open kernel module does not support a GPU here (no GSP: older than Turing)", "open-module-pre-turing",
        "Install the proprietary kernel module flavour of the driver (open is the default since 560; Maxwell, "
        "Pascal and Volta need the proprietary one, of a 580-branch driver: later branches support neither "
        "flavour on them), then reboot."),
    "legacy-branch": (
        "this driver ignores a GPU that only an older (legacy) branch supports", "pre-turing-590",
        "Install the legacy branch the message names, proprietary flavour (580.xx for Maxwell, Pascal and Volta, "
        "which 590 and later do not drive: the distribution's 580 legacy package or a pinned branch), then reboot."),
    "another-driver": (
        "another driver owns the GPU (the probe routine was not called)", "nouveau",
        "Find the driver in use (lspci -k -d 10de:), blacklist it (nouveau) or unbind it, rebuild the initramfs "
        "and reboot."),
    "secure-boot": (
        "the kernel refused a module for its signature (Secure Boot)", "secure-boot",
        "Enroll the key the module is signed with (mokutil --import, confirm at the next boot) or install the "
        "distribution's signed driver packages."),
    "gsp-firmware": (
        "the GSP firmware of the module's version is missing", "gsp-firmware",
        "Reinstall the firmware package of the module's version, or reboot into a consistent driver install."),
}


@check("kernel-modules-loaded", title="NVIDIA kernel modules loaded", page="kernel-modules",
       facts=("proc_modules",), optional=("nvidia_smi", "in_container", "kernel_log", "kernel_driver", "wsl"))
def kernel_modules_not_loaded(  # noqa: PLR0917 (the registry passes each declared fact positionally)
        modules: dict[str, dict[str, object]], smi: Optional[CommandFact], in_container: Optional[bool],
        log: Optional[CommandFact], driver: Optional[DriverVersion], wsl: Optional[dict[str, Any]]) -> Verdict:
    """The nvidia kernel module (or nvidia_uvm, which CUDA needs) is not loaded or not live, so
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver"; or the open module is
    loaded but the kernel log says a GPU is too old for it.

    ## Why it matters
    Without nvidia.ko there is no /proc/driver/nvidia, no /dev/nvidiactl and NVML reports Driver Not Loaded.
    Without nvidia_uvm CUDA cannot start. nvidia_modeset and nvidia_drm serve displays and are optional on a
    headless compute host. Where the kernel log holds the reason (open module on a pre-Turing GPU, another
    driver first, a refused signature, missing GSP firmware, a GPU only a legacy branch supports), the finding
    names it. Under WSL 2 there is no
    nvidia module by design (the Windows driver lends the GPU through /dev/dxg): the check does not apply there,
    and WSL without /dev/dxg has no GPU from Windows at all.

    ## Evidence
    /proc/modules (name, state, taint flags), the nvidia-smi output, the NVRM lines of the kernel log.

    ## References
    NVIDIA driver README, "Installing the NVIDIA Driver"; nvidia-modprobe(1); NVIDIA driver installation
    guide, "Kernel Modules"; open-gpu-kernel-modules src/nvidia/arch/nvalloc/unix/src/osapi.c.
    """
    nvidia_like = {name: info for name, info in modules.items() if name.startswith("nvidia")}
    evidence: dict[str, Any] = {"loaded": {name: info.get("state") for name, info in sorted(nvidia_like.items())}}
    if smi is not None and SMI_NO_DRIVER in smi.output:
        evidence["nvidia_smi"] = smi.output.strip()[:300]
    causes = module_load_causes(log.output) if log is not None else {}
    if causes:
        evidence["kernel_log"] = causes
    nvidia = modules.get("nvidia")
    if nvidia is None and wsl is not None:
        return _wsl_verdict(wsl, in_container, evidence)
    if nvidia is None:
        named = [LOAD_CAUSES[c] for c in LOAD_CAUSES if c in causes]
        if named:
            return fail("the nvidia kernel module is not loaded: " + "; ".join(n[0] for n in named)
                        + " (kernel log)", named[0][2], evidence, anchor=named[0][1])
        return fail("the nvidia kernel module is not loaded", "Load it (modprobe nvidia) and find out why it did "
                    "not load at boot: dmesg | grep -iE 'nvrm|nvidia|nouveau'.", evidence, anchor="driver-not-loaded")
    if "open-module-pre-turing" in causes and (driver is None or driver.flavour == "open"):
        cause = LOAD_CAUSES["open-module-pre-turing"]
        return fail(f"the open nvidia module is loaded but {cause[0]}: that GPU is unusable (kernel log)", cause[2],
                    evidence, anchor=cause[1])
    if "legacy-branch" in causes:  # the other GPUs loaded the module; the legacy one stays without a driver
        cause = LOAD_CAUSES["legacy-branch"]
        return fail(f"the nvidia module is loaded but {cause[0]}: that GPU is unusable (kernel log)", cause[2],
                    evidence, anchor=cause[1])
    if nvidia.get("state") != "Live":
        return fail(f"the nvidia module is {nvidia.get('state')}, not Live", "Wait for it to finish loading; if it "
                    "stays, check dmesg for NVRM errors and follow the recovery runbook.", evidence,
                    anchor="driver-not-loaded")
    if "nvidia_uvm" not in modules:
        summary = "nvidia is loaded but nvidia_uvm is not: CUDA programs cannot start"
        fix = "Load it: nvidia-modprobe -u -c 0 (or modprobe nvidia-uvm), and at boot via /etc/modules-load.d."
        if in_container:
            return fail(summary, fix, evidence, anchor="uvm-not-loaded")
        return warn(summary + " until nvidia-modprobe loads it on first use", fix, evidence, anchor="uvm-not-loaded")
    display = [m for m in ("nvidia_modeset", "nvidia_drm") if m in modules]
    note = (f"also {', '.join(display)}" if display else
            "no nvidia_modeset/nvidia_drm: fine on a headless compute host")
    return ok(f"nvidia and nvidia_uvm are Live ({note})", evidence)

def _wsl_verdict(wsl: dict[str, Any], in_container: Optional[bool], evidence: dict[str, Any]) -> Verdict:
    """Under WSL there is no nvidia module by design: say whether Windows lends this place a GPU (/dev/dxg)."""
    evidence["wsl"] = wsl
    version = wsl.get("version")
    if wsl.get("dxg") is None:
        return unknown(f"WSL {version}: no nvidia kernel module here by design, and /dev/dxg was not looked at",
                       evidence)
    if wsl["dxg"]:
        return skip(f"WSL {version}: no nvidia kernel module here by design; the Windows driver lends GPUs through "
                    "/dev/dxg (/usr/lib/wsl/lib/nvidia-smi -L shows whether one is NVIDIA's; do not install a Linux "
                    "NVIDIA driver in the distribution)", evidence)
    if in_container:
        return fail("a container on WSL without /dev/dxg: it was started without GPUs",
                    "Start it with a GPU request: docker run --gpus all (or the CDI device nvidia.com/gpu=all); "
                    "check the WSL distribution itself with /usr/lib/wsl/lib/nvidia-smi -L.", evidence,
                    page="gpu-not-visible", anchor="wsl")
    if version == 1:
        return fail("WSL 1: it has no GPU support", "Move the distribution to WSL 2 (wsl --set-version "
                    "<distribution> 2 in PowerShell); do not install a Linux NVIDIA driver inside it.", evidence,
                    page="gpu-not-visible", anchor="wsl")
    return fail("WSL 2 without /dev/dxg: Windows lends this distribution no GPU",
                "On Windows: an NVIDIA GPU in WDDM mode (not TCC) and a current NVIDIA Windows driver, then "
                "wsl --shutdown and start the distribution again; do not install a Linux NVIDIA driver inside it.",
                evidence, page="gpu-not-visible", anchor="wsl")
# --8<-- [end:kernel-modules-loaded]


# --8<-- [start:nouveau-conflict]
@check("nouveau-conflict", title="nouveau does not hold the GPU", page="kernel-modules",
       facts=("proc_modules", "modprobe_confs"), optional=("kernel_cmdline", "pci_functions"))
def nouveau_holds_gpu(modules: dict[str, dict[str, object]], confs: dict[str, str],
                      cmdline: Optional[str], pci: Optional[list[dict[str, Any]]] = None) -> Verdict:
    """The open-source nouveau driver drives an NVIDIA GPU (it claims the GPU before nvidia can), or nothing
    keeps it from doing so on a host where nvidia is not loaded.

    ## Why it matters
    Two drivers cannot own one PCI device. When nouveau binds first, nvidia logs "NVRM: The NVIDIA probe
    routine was not called for N device(s)" and every NVIDIA tool fails. nvidia-installer offers to write
    modprobe.d files that disable nouveau; the blacklist must also be in the initramfs, which loads nouveau
    early. A nouveau loaded with `modeset=0` returns from its init before it registers its PCI driver, so
    it binds nothing: not a conflict.

    ## Evidence
    /proc/modules; blacklist, install, alias and `options nouveau modeset=0` lines in modprobe.d;
    /proc/cmdline; the driver each NVIDIA GPU on the PCI bus is bound to, where the bus was walked.

    ## References
    NVIDIA CUDA installation guide, "Disabling Nouveau"; NVIDIA driver README, "Common Problems"; Linux
    drivers/gpu/drm/nouveau/nouveau_drm.c (nouveau_drm_init).
    """
    disabled = module_disabled_by(confs, cmdline or "", "nouveau")
    modeset_off = module_option_set(confs, cmdline or "", "nouveau", "modeset", "0")
    gpus = [f for f in pci or [] if f.get("kind") == "gpu"]
    bound = [f["bdf"] for f in gpus if f.get("driver") == "nouveau"]
    evidence = {"nouveau_loaded": "nouveau" in modules, "nvidia_loaded": _nvidia_loaded(modules),
                "disabled_by": disabled, "modeset_off": modeset_off,
                "gpus_bound_to_nouveau": bound if gpus else None}
    fix = ("Blacklist nouveau in /etc/modprobe.d, rebuild the initramfs (update-initramfs -u -k all or "
           "dracut -f --regenerate-all) and reboot.")
    if bound:
        return fail(f"nouveau drives {len(bound)} NVIDIA GPU(s) ({', '.join(bound)}): the nvidia module cannot "
                    "bind them", fix, evidence, anchor="nouveau")
    if "nouveau" in modules:
        if gpus:
            return ok(f"nouveau is loaded but drives none of the {len(gpus)} NVIDIA GPU(s)"
                      + (f" ({modeset_off[0]})" if modeset_off else ""), evidence)
        if modeset_off:
            return ok(f"nouveau is loaded with modeset=0 ({modeset_off[0]}): it registers no PCI driver and "
                      "binds no GPU", evidence)
        return fail("nouveau is loaded: it claims NVIDIA GPUs before the nvidia module can"
                    + ("" if disabled else "; nothing blacklists it"), fix, evidence, anchor="nouveau")
    if _nvidia_loaded(modules):
        return ok("nouveau is not loaded; nvidia owns the GPU"
                  + (f" (blacklisted: {disabled[0]})" if disabled else ""), evidence)
    if disabled or modeset_off:
        return ok(f"nouveau is not loaded and is kept off the GPU ({(disabled or modeset_off)[0]})", evidence)
    return warn("nvidia is not loaded and nothing blacklists nouveau: nouveau may take the GPU at boot",
                "Blacklist nouveau in /etc/modprobe.d and rebuild the initramfs.", evidence, anchor="nouveau")
# --8<-- [end:nouveau-conflict]


@fact("kernel_cmdline")
def kernel_cmdline_fact(snapshot: Snapshot) -> str:
    """/proc/cmdline text."""
    return snapshot.file("/proc/cmdline").require()


@fact("gsp_firmware")
def gsp_firmware_fact(snapshot: Snapshot) -> dict[str, list[str]]:
    """GSP firmware files by driver version directory: {"580.159.04": ["gsp_ga10x.bin", ...]}."""
    found: dict[str, list[str]] = {}
    for prefix in ("/lib/firmware/nvidia/", "/usr/lib/firmware/nvidia/"):
        for path, info in snapshot.paths_matching(prefix).items():
            # Distributions may compress firmware (gsp_ga10x.bin.zst); the kernel loads either.
            match = re.match(re.escape(prefix) + r"([^/]+)/(gsp_[^/]+\.bin(?:\.zst|\.xz)?)$", path)
            if match and info.get("error") not in NOT_PRESENT:
                found.setdefault(match.group(1), []).append(match.group(2))
    if not found and not _collected(snapshot):
        raise Missing("firmware paths were not collected in this snapshot")
    return found


# --8<-- [start:gsp-firmware]
@check("gsp-firmware", title="GSP firmware for the loaded driver", page="kernel-modules",
       facts=("kernel_driver", "gsp_firmware", "in_container"), optional=("nvml", "system_container"))
def gsp_firmware_missing(driver: DriverVersion, firmware: dict[str, list[str]], in_container: bool,
                         nvml: Optional[dict[str, Any]], system_container: Optional[str] = None) -> Verdict:
    """The open kernel module is loaded but /lib/firmware/nvidia/<version>/gsp_*.bin for its version is
    missing, so GPU initialisation fails ("RmFetchGspRmImages: No firmware image found").

    ## Why it matters
    The open GPU kernel modules run the GPU's resource manager on its GSP and must load the firmware file
    of exactly their version. After a package upgrade without reboot the old module stays loaded while the
    old firmware directory is gone: the next GPU initialisation (reset, first open without persistence
    mode) fails with RmInitAdapter errors.

    ## Evidence
    /proc/driver/nvidia/version (open or proprietary, version) and the gsp_*.bin files under
    /lib/firmware/nvidia/.

    ## References
    NVIDIA/open-gpu-kernel-modules README; NVIDIA driver README, "GSP Firmware".
    """
    evidence = {"module": driver.version, "flavour": driver.flavour, "firmware_versions": sorted(firmware)}
    files = firmware.get(driver.version, [])
    if in_container or system_container:
        return skip("inside a container: the firmware is loaded by the host kernel from the host's /lib/firmware",
                    evidence)
    if system_container is None:
        return unknown("cannot tell whether this is an LXC or Incus container, whose /lib/firmware is not the "
                       "one the host kernel loads from (/run/systemd/container could not be read)", evidence)
    if driver.flavour != "open":
        return ok(f"proprietary module {driver.version}: GSP firmware optional "
                  f"({'present' if files else 'absent'} for this version)", evidence)
    if files:
        return ok(f"open module {driver.version} with its GSP firmware ({', '.join(sorted(files))})", evidence)
    nvml_ok = nvml_answered(nvml)
    summary = (f"open module {driver.version} is loaded but /lib/firmware/nvidia/{driver.version}/gsp_*.bin "
               f"is missing (firmware present for: {', '.join(sorted(firmware)) or 'no version'})")
    fix = ("Reboot into the installed driver (module and firmware versions then match), or reinstall the "
           "firmware package of the loaded version.")
    if nvml_ok:
        return warn(summary + "; GPUs already initialised work until the next GPU initialisation", fix, evidence,
                    anchor="gsp-firmware")
    return fail(summary, fix, evidence, anchor="gsp-firmware")
# --8<-- [end:gsp-firmware]


# --8<-- [start:secure-boot-unsigned]
@check("secure-boot-unsigned", title="Secure Boot does not reject the nvidia module", page="kernel-modules",
       facts=("proc_modules", "secure_boot"), optional=("kernel_log",))
def secure_boot_rejects_module(modules: dict[str, dict[str, object]], secure_boot: bool,
                               log: Optional[CommandFact]) -> Verdict:
    """Secure Boot is on and the nvidia module is not loaded: an unsigned module, or one signed with a key
    that is not enrolled, is refused ("Key was rejected by service").

    ## Why it matters
    With Secure Boot the kernel only loads modules signed by a trusted key. DKMS-built or .run-installed
    modules are signed with a machine-owner key (MOK) that must be enrolled first. The kernel logs "Loading of
    unsigned module is rejected" (no signature) or "Loading of module with unavailable key is rejected"
    (signed, key not enrolled); a kernel that enforces through lockdown alone logs "Lockdown: modprobe:
    unsigned module loading is restricted; see man kernel_lockdown.7". Such a line turns the warning into a
    failure.

    ## Evidence
    The SecureBoot EFI variable (or `mokutil --sb-state`), /proc/modules, the kernel log.

    ## References
    Kernel docs admin-guide/module-signing; Linux kernel/module/signing.c (module_sig_check) and
    security/lockdown/lockdown.c.
    """
    nvidia = modules.get("nvidia")
    evidence: dict[str, Any] = {"secure_boot": secure_boot, "nvidia_loaded": nvidia is not None,
                                "taints": nvidia.get("taints") if nvidia else None}
    if nvidia is not None:
        state = "on: the module is signed by a trusted key" if secure_boot else "off"
        return ok(f"nvidia is loaded (Secure Boot {state})", evidence)
    if not secure_boot:
        return ok("Secure Boot is off: signatures are not why nvidia is not loaded", evidence)
    fix = ("Enroll the DKMS/MOK signing key (mokutil --import, then confirm at the next boot) or install the "
           "distribution's signed driver packages.")
    rejected = module_load_causes(log.output).get("secure-boot") if log is not None else None
    if rejected:
        evidence["kernel_log"] = rejected
        return fail(f"Secure Boot is on, nvidia is not loaded, and the kernel refused a module signature: "
                    f"{rejected}", fix, evidence, anchor="secure-boot")
    return warn("Secure Boot is on and nvidia is not loaded: an unsigned module, or one signed with a key that is "
                "not enrolled, is refused (\"Key was rejected by service\")", fix, evidence, anchor="secure-boot")
# --8<-- [end:secure-boot-unsigned]


# --8<-- [start:driver-library-mismatch]
SMI_MISMATCH = "Driver/library version mismatch"
# Since 575.51.02 the kernel names the client and its pid: "NVRM: API mismatch: the client '<name>' (pid N)" and
# "NVRM: has the version X, but this kernel module has" on the next line; before, "NVRM: API mismatch: the client
# has the version X, but" (src/nvidia/arch/nvalloc/unix/src/osapi.c). parse_api_mismatches reads both forms.
API_MISMATCH_NAMES_CLIENT = boundary("driver-api-mismatch-names-client", "driver", "575")


def current_mismatches(log: Optional[CommandFact], driver: Optional[DriverVersion]) -> list[str]:
    """The kernel log's API mismatch reports that the loaded module printed, as one line each.

    A report names the module's version; one that names another version was printed by a module loaded
    earlier (the log outlives `rmmod`) and says nothing about the module loaded now.
    """
    if log is None or driver is None:
        return []
    lines = []
    for report in parse_api_mismatches(log.output):
        if report.module_version != driver.version:
            continue
        who = f"client '{report.client}' (pid {report.pid})" if report.client else "a client"
        lines.append(f"{who} has {report.client_version}, the module {report.module_version}")
    return lines


def mismatch_form(driver: DriverVersion) -> str:
    """How the loaded module words an API mismatch in the kernel log (what to grep for).

    >>> mismatch_form(DriverVersion("580.159.04", "open", "x86_64", ""))
    "NVRM: API mismatch: the client '<name>' (pid N), then NVRM: has the version X"
    >>> mismatch_form(DriverVersion("570.211.01", "open", "x86_64", ""))
    'NVRM: API mismatch: the client has the version X'
    """
    parts = tuple(int(p) for p in re.findall(r"\d+", driver.version)[:3])
    if parts >= API_MISMATCH_NAMES_CLIENT:
        return "NVRM: API mismatch: the client '<name>' (pid N), then NVRM: has the version X"
    return "NVRM: API mismatch: the client has the version X"


@check("driver-library-mismatch", title="Kernel module and libnvidia-ml versions match", page="driver-mismatch",
       facts=("nvml_libraries",),
       optional=("kernel_driver", "nvml", "nvidia_smi", "in_container", "kernel_log", "system_container"))
def driver_library_mismatch(  # noqa: PLR0917 (the registry passes each declared fact positionally)
        libs: dict[str, dict[str, Any]], driver: Optional[DriverVersion], nvml: Optional[dict[str, Any]],
        smi: Optional[CommandFact], in_container: Optional[bool], log: Optional[CommandFact],
        system_container: Optional[str] = None) -> Verdict:
    """The loaded kernel module and the user-space libnvidia-ml differ in version: "Failed to initialize
    NVML: Driver/library version mismatch" (an upgrade without reboot, or an image with its own driver libs).

    ## Why it matters
    The user-space driver and the kernel module must be the same build. A package upgrade replaces the
    libraries at once but the old module stays loaded until it is reloaded; a container image that ships
    libnvidia-ml of another version shadows the one the toolkit injects; an initramfs that still holds the
    old nvidia.ko loads it again at every boot.

    ## Evidence
    /proc/driver/nvidia/version, the libnvidia-ml.so.<version> files and where libnvidia-ml.so.1 points,
    nvmlInit's error, the nvidia-smi output, and the kernel's "NVRM: API mismatch" reports in either form
    (drivers before 575: "the client has the version X"; 575 and later: "the client '<name>' (pid N)").
    In an LXC, Incus or LXD container (/run/systemd/container or $container) the module is the host's, and the
    fix is the container's own user-space driver, not a reboot.

    ## References
    NVML API reference (NVML_ERROR_LIB_RM_VERSION_MISMATCH); NVIDIA driver README, "Installing the NVIDIA Driver";
    open-gpu-kernel-modules src/nvidia/arch/nvalloc/unix/src/osapi.c at 570.211.01 and 575.51.02.
    """
    versions = sorted({v for v in (library_version(p) for p in libs) if v})
    soname = {p: info.get("target") for p, info in libs.items() if p.endswith(".so.1") and info.get("target")}
    soname_versions = sorted({v for v in (library_version(str(t)) for t in soname.values()) if v})
    evidence: dict[str, Any] = {"kernel_module": driver.version if driver else None, "libnvidia_ml": versions,
                                "so1_targets": soname}
    logged = current_mismatches(log, driver)
    if logged:
        evidence["kernel_log"] = logged[-3:]
    if driver is not None:
        evidence["kernel_log_form"] = mismatch_form(driver)
    fix, anchor = _mismatch_advice(in_container, system_container)
    init = (nvml or {}).get("init")
    nvml_error = init.get("error") if isinstance(init, dict) else None
    smi_text = smi.output if smi is not None else ""
    if SMI_MISMATCH in smi_text or (isinstance(nvml_error, dict) and
                                    nvml_error.get("name") == "NVMLError_LibRmVersionMismatch"):
        lib = re.search(r"NVML library version: ([\d.]+)", smi_text)
        evidence["nvidia_smi"] = smi_text.strip()[:300]
        evidence["nvml_error"] = nvml_error
        return fail(f"Driver/library version mismatch: kernel module {evidence['kernel_module'] or '?'}, "
                    f"NVML library {lib.group(1) if lib else ', '.join(versions) or '?'}" + _logged_note(logged),
                    fix, evidence, anchor=anchor)
    if driver is None:
        return skip("no kernel module version (/proc/driver/nvidia/version absent): see kernel-modules", evidence)
    # NVML's own version names the library it loaded, wherever that lives (LD_LIBRARY_PATH included). A
    # loaded library that differs from the module cannot initialise, so it only stands in for missing files.
    loaded = nvml_library_version((nvml or {}).get("nvml_version")) if nvml_error is None else None
    evidence["nvml_library"] = loaded
    if not versions and not soname:
        if loaded:
            return ok(f"kernel module {driver.version} = the libnvidia-ml NVML loaded ({loaded}; it is not in "
                      "the standard library directories)", evidence)
        return skip("no libnvidia-ml.so* in the standard library directories", evidence)
    stale = [v for v in soname_versions if v != driver.version]
    if stale or (versions and driver.version not in versions):
        return fail(f"kernel module {driver.version} but libnvidia-ml {', '.join(stale or versions)}"
                    + _logged_note(logged), fix, evidence, anchor=anchor)
    others = [v for v in versions if v != driver.version]
    if others:
        return warn(f"libnvidia-ml {driver.version} matches the module, but other versions sit beside it: "
                    f"{', '.join(others)}" + (" (the image ships its own driver libraries)" if in_container else ""),
                    "Remove the stray libnvidia-ml copies (in an image: do not install driver packages in it).",
                    evidence, anchor="container-libs")
    # A log report alone makes no verdict: the log is often unreadable (kernel.dmesg_restrict=1), and a
    # warning that an unreadable log turns into "ok" would be no warning. The summary names the client instead.
    return ok(f"kernel module {driver.version} = libnvidia-ml.so.{driver.version}"
              + (f" (the kernel log shows an earlier refused client with other libraries: {logged[-1]})"
                 if logged else ""), evidence)


def _logged_note(logged: list[str]) -> str:
    return f" (kernel log: {logged[-1]})" if logged else ""


def _mismatch_advice(in_container: Optional[bool], system_container: Optional[str]) -> tuple[str, str]:
    """The fix for a module/library mismatch where this runs, and the page anchor that explains it."""
    if system_container:
        return (f"This {system_container} container uses the host's kernel module: install its user-space driver "
                "at the host's version (the same runfile with --no-kernel-modules, or the packages of that "
                "version), after every driver upgrade on the host."), "system-container"
    if in_container:
        return ("If the image installs its own driver libraries (libnvidia-ml, libcuda), remove them so the "
                "toolkit's host copies are used and rebuild the image; if only the host's copies are there, the "
                "host's own module and libraries differ: fix the host (see Causes)."), "causes"
    return ("Reboot (or unload and reload the nvidia modules) so the kernel module matches the installed "
            "libraries."), "causes"
# --8<-- [end:driver-library-mismatch]

