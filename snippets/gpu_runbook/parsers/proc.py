"""Parsers for the kernel's /proc files that describe the NVIDIA driver."""

from __future__ import annotations

import re
from typing import NamedTuple, Optional


def _is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() is also true for "²", which int() rejects."""
    return text.isascii() and text.isdigit()


def parse_proc_devices(text: str) -> dict[str, dict[str, int]]:
    """Parse /proc/devices into {"char": {name: major}, "block": {name: major}}.

    Sample Content::

        Character devices:
          1 mem
        195 nvidia-frontend
        507 nvidia-uvm

        Block devices:
          7 loop

    >>> parse_proc_devices("Character devices:\\n195 nvidia-frontend\\n507 nvidia-uvm\\n\\n"
    ...                    "Block devices:\\n  7 loop\\n")
    {'char': {'nvidia-frontend': 195, 'nvidia-uvm': 507}, 'block': {'loop': 7}}
    """
    result: dict[str, dict[str, int]] = {"char": {}, "block": {}}
    section: Optional[str] = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.lower().startswith("character devices"):
            section = "char"
            continue
        if stripped.lower().startswith("block devices"):
            section = "block"
            continue
        parts = stripped.split(None, 1)
        if section and len(parts) == 2 and _is_number(parts[0]):
            # A name may repeat (several majors); the first is the one the driver registered first.
            result[section].setdefault(parts[1], int(parts[0]))
    return result


def nvidia_char_majors(devices: dict[str, dict[str, int]]) -> dict[str, int]:
    """The NVIDIA entries among the character majors (nvidia-frontend or nvidia, nvidia-uvm, ...).

    >>> nvidia_char_majors({"char": {"mem": 1, "nvidia-frontend": 195, "nvidia-uvm": 507}, "block": {}})
    {'nvidia-frontend': 195, 'nvidia-uvm': 507}

    Drivers 545 and later name the frontend "nvidia" and add "nvidiactl" (same major, 195):

    >>> nvidia_char_majors({"char": {"nvidia": 195, "nvidiactl": 195, "nvidia-uvm": 511}, "block": {}})
    {'nvidia': 195, 'nvidia-uvm': 511}
    """
    return {name: major for name, major in devices.get("char", {}).items()
            if name == "nvidia" or name.startswith("nvidia-") or name.startswith("nvidia_")}


class DriverVersion(NamedTuple):
    """What /proc/driver/nvidia/version says about the loaded kernel module."""

    version: str
    flavour: str  # "open" (NVIDIA open GPU kernel modules) or "proprietary"
    arch: str
    raw: str


_NVRM = re.compile(r"NVRM version:\s*(?P<desc>.*?)\s+(?P<version>\d+\.\d+(?:\.\d+)?)\s")


def parse_driver_version(text: str) -> Optional[DriverVersion]:
    """Parse the NVRM line of /proc/driver/nvidia/version; None if there is none.

    Sample Content::

        NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (dvs-builder@U22)
        GCC version:  gcc version 13.3.0 (Ubuntu 13.3.0-6ubuntu2~24.04)

    >>> parse_driver_version("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  "
    ...                      "Release Build  (x)\\n")[:3]
    ('580.159.04', 'open', 'x86_64')
    >>> parse_driver_version("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  "
    ...                      "Sat Aug 19 01:15:15 UTC 2023\\n")[:3]
    ('535.104.05', 'proprietary', 'x86_64')
    >>> parse_driver_version("garbage") is None
    True
    """
    for line in text.splitlines():
        match = _NVRM.search(line + " ")
        if match:
            desc = match.group("desc")
            arch_match = re.search(r"\b(x86_64|aarch64|ppc64le|arm64)\b", desc)
            flavour = "open" if "Open Kernel Module" in desc else "proprietary"
            return DriverVersion(match.group("version"), flavour, arch_match.group(1) if arch_match else "",
                                 line.strip())
    return None


def parse_driver_params(text: str) -> dict[str, str]:
    """Parse /proc/driver/nvidia/params ("Key: value" lines) into a dict of strings.

    Sample Content::

        ResmanDebugLevel: 4294967295
        RmLogonRC: 1
        ModifyDeviceFiles: 1
        DeviceFileUID: 0
        DeviceFileGID: 0
        DeviceFileMode: 438

    >>> parse_driver_params("ModifyDeviceFiles: 1\\nDeviceFileUID: 0\\nDeviceFileGID: 0\\nDeviceFileMode: 438\\n")
    {'ModifyDeviceFiles': '1', 'DeviceFileUID': '0', 'DeviceFileGID': '0', 'DeviceFileMode': '438'}
    >>> parse_driver_params("NVreg_DeviceFileMode: 432\\nRegistryDwords: \\"\\"\\n")
    {'DeviceFileMode': '432', 'RegistryDwords': ''}
    """
    params: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key and " " not in key:
            # Module parameters are spelled NVreg_<Name> on the modprobe line, <Name> in this file.
            if key.startswith("NVreg_"):
                key = key[len("NVreg_"):]
            params[key] = value.strip().strip('"')
    return params


def device_file_mode(params: dict[str, str]) -> Optional[int]:
    """DeviceFileMode from the parsed params as an int (the file prints it in decimal: 438 = 0o666).

    >>> oct(device_file_mode({"DeviceFileMode": "438"}))
    '0o666'
    >>> device_file_mode({"DeviceFileMode": "x"}) is None
    True
    """
    value = params.get("DeviceFileMode", "")
    return int(value) if _is_number(value) else None


def secure_boot_from_efivar(text: str) -> Optional[bool]:
    """Secure Boot state from the SecureBoot EFI variable: 4 attribute bytes, then 1 (on) or 0 (off).

    >>> secure_boot_from_efivar("\\x06\\x00\\x00\\x00\\x01"), secure_boot_from_efivar("\\x06\\x00\\x00\\x00\\x00")
    (True, False)
    >>> secure_boot_from_efivar("") is None
    True
    """
    if len(text) != 5:
        return None
    return {"\x01": True, "\x00": False}.get(text[4])


def secure_boot_from_mokutil(output: str) -> Optional[bool]:
    """Secure Boot state from `mokutil --sb-state` ("SecureBoot enabled" / "SecureBoot disabled").

    >>> secure_boot_from_mokutil("SecureBoot enabled\\n"), secure_boot_from_mokutil("SecureBoot disabled\\n")
    (True, False)
    >>> secure_boot_from_mokutil("EFI variables are not supported on this system\\n") is None
    True
    """
    match = re.search(r"SecureBoot (enabled|disabled)", output)
    return None if match is None else match.group(1) == "enabled"


def parse_proc_modules(text: str) -> dict[str, dict[str, object]]:
    """Parse /proc/modules into {module: {"size": int, "refcount": int, "used_by": [...], "state": str}}.

    >>> parse_proc_modules("nvidia_uvm 2076672 0 - Live 0x0000000000000000 (POE)\\n"
    ...                    "nvidia 104071168 20 nvidia_uvm,nvidia_modeset, Live 0x0000000000000000 (POE)\\n")["nvidia"]
    {'size': 104071168, 'refcount': 20, 'used_by': ['nvidia_uvm', 'nvidia_modeset'], 'state': 'Live', 'taints': 'POE'}
    """
    modules: dict[str, dict[str, object]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5 or not _is_number(parts[1]):
            continue
        used_by: list[str] = [m for m in parts[3].split(",") if m and m != "-"]
        taints = ""
        if len(parts) >= 7 and parts[6].startswith("("):
            taints = parts[6].strip("()")
        modules[parts[0]] = {
            "size": int(parts[1]),
            "refcount": int(parts[2]) if _is_number(parts[2][1:] if parts[2][:1] == "-" else parts[2]) else -1,
            "used_by": used_by,
            "state": parts[4],
            "taints": taints,
        }
    return modules


class Mount(NamedTuple):
    """One line of /proc/self/mountinfo: where, what type, and the super-block options."""

    mount_point: str
    fstype: str
    options: tuple[str, ...]


def parse_mountinfo(mountinfo: str) -> list[Mount]:
    """The mounts in /proc/self/mountinfo, in order (a later mount on the same point hides the earlier).

    Fields before " - " are id, parent, major:minor, root, mount point, options and optional fields;
    after it come the type, the source and the super-block options.

    Sample Content::

        24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=65984560k,nr_inodes=16496140,mode=755

    >>> parse_mountinfo("35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\\n")
    [Mount(mount_point='/sys/fs/cgroup', fstype='cgroup2', options=('rw', 'nsdelegate'))]
    >>> parse_mountinfo("garbage\\n24 27 0:6 / /dev rw - devtmpfs\\n")
    [Mount(mount_point='/dev', fstype='devtmpfs', options=())]
    """
    mounts = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if sep and len(fields) >= 5 and tail:
            mounts.append(Mount(fields[4], tail[0], tuple(tail[2].split(",")) if len(tail) >= 3 else ()))
    return mounts


def mount_fstype(mountinfo: str, mount_point: str) -> Optional[str]:
    """The file system type mounted at `mount_point` (the last mount there wins), or None.

    >>> mount_fstype("24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,mode=755\\n", "/dev")
    'devtmpfs'
    >>> mount_fstype("610 609 0:77 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755\\n", "/dev")
    'tmpfs'
    >>> mount_fstype("612 610 0:79 / /dev/pts rw - devpts devpts rw\\n", "/dev") is None
    True
    """
    found = [m.fstype for m in parse_mountinfo(mountinfo) if m.mount_point == mount_point]
    return found[-1] if found else None


class ApiMismatch(NamedTuple):
    """One "NVRM: API mismatch" report of the kernel module: a client's user space of another version."""

    client_version: str
    module_version: str
    client: str  # the process name; "" in the form drivers before 575 print
    pid: Optional[int]


# Between two NVRM lines of one message a log may hold a newline and an indent, a dmesg timestamp, a syslog
# prefix, or journald's "#012": allow a short run of anything that is not the next "NVRM:".
_GAP = r"(?:(?!NVRM:).){0,120}?"
_VERSION = r"\d+(?:\.\d+)*"
_MISMATCH_FORMS = (
    # drivers 575 and later (src/nvidia/arch/nvalloc/unix/src/osapi.c at 575.51.02)
    re.compile(r"NVRM: API mismatch: the client '(?P<client>[^'\n]*)' \(pid (?P<pid>\d+)\)" + _GAP
               + r"NVRM: has the version (?P<cv>" + _VERSION + r"), but this kernel module has" + _GAP
               + r"NVRM: the version (?P<mv>" + _VERSION + r")\.", re.DOTALL),
    # drivers before 575 (the same file at 570.211.01)
    re.compile(r"NVRM: API mismatch: the client has the version (?P<cv>" + _VERSION + r"), but" + _GAP
               + r"NVRM: this kernel module has the version (?P<mv>" + _VERSION + r")\.", re.DOTALL),
)


def parse_api_mismatches(log: str) -> list[ApiMismatch]:
    """Every "NVRM: API mismatch" message in a kernel log, in either form, oldest first.

    Sample Content (driver 580; before 575 the first line reads "the client has the version X, but")::

        [ 9.42] NVRM: API mismatch: the client 'nvidia-smi' (pid 4242)
                NVRM: has the version 580.95.05, but this kernel module has
                NVRM: the version 580.82.07.  Please make sure that this

    >>> parse_api_mismatches("[ 9.4] NVRM: API mismatch: the client 'nvidia-smi' (pid 4242)\\n"
    ...     "               NVRM: has the version 580.95.05, but this kernel module has\\n"
    ...     "               NVRM: the version 580.82.07.  Please make sure that this\\n")
    [ApiMismatch(client_version='580.95.05', module_version='580.82.07', client='nvidia-smi', pid=4242)]
    >>> parse_api_mismatches("kernel: NVRM: API mismatch: the client has the version 535.54.03, but#012NVRM: "
    ...     "this kernel module has the version 530.30.02.  Please#012NVRM: make sure")
    [ApiMismatch(client_version='535.54.03', module_version='530.30.02', client='', pid=None)]
    >>> parse_api_mismatches("NVRM: API mismatch: the client has the version")
    []
    """
    found: list[tuple[int, ApiMismatch]] = []
    for form in _MISMATCH_FORMS:
        for match in form.finditer(log):
            names = match.groupdict()
            pid = names.get("pid")
            found.append((match.start(), ApiMismatch(names["cv"], names["mv"], names.get("client") or "",
                                                     int(pid) if pid else None)))
    return [m for _, m in sorted(found, key=lambda item: item[0])]


# Why the nvidia module did not load, or loaded without a usable GPU, as the kernel log says it; the text of
# each pattern is verbatim from the source named beside it.
MODULE_LOAD_CAUSES = (
    # open module on a GPU without GSP (before Turing); src/nvidia/arch/nvalloc/unix/src/osapi.c
    ("open-module-pre-turing", re.compile(r"nvidia\.ko because it does not include the required GPU")),
    # a GPU of a legacy architecture under a newer proprietary driver (590+ on Maxwell, Pascal, Volta), which
    # skips it and, with no other GPU, ends "No NVIDIA GPU found."; a user's paste, NixOS/nixos-hardware#1880
    ("legacy-branch", re.compile(r"supported through the NVIDIA [\d.]+xx Legacy drivers")),
    # another driver bound the GPU first; kernel-open/nvidia/nv.c (the next line names nouveau before 550 only)
    ("another-driver", re.compile(r"NVRM: The NVIDIA probe routine was not called for \d+ device")),
    # module signature enforcement (kernel/module/signing.c) or lockdown (security/lockdown/lockdown.c)
    ("secure-boot", re.compile(r"[Ll]oading of (?:unsigned module|module with unavailable key) is rejected"
                               r"|unsigned module loading is restricted")),
    # the open module's GSP firmware of its own version is missing; src/nvidia/arch/nvalloc/unix/src/osinit.c
    ("gsp-firmware", re.compile(r"RmFetchGspRmImages: No firmware image found")),
)


def module_load_causes(log: str) -> dict[str, str]:
    """The known causes of a failed nvidia load found in a kernel log: {cause: the first line that shows it}.

    >>> module_load_causes("[ 5.1] NVRM: The NVIDIA GPU 0000:09:00.0 (PCI ID: 10de:1d01)\\n"
    ...     "NVRM: installed in this system is not supported by open\\n"
    ...     "NVRM: nvidia.ko because it does not include the required GPU\\n")
    {'open-module-pre-turing': 'NVRM: nvidia.ko because it does not include the required GPU'}
    >>> module_load_causes("[ 3.2] Loading of module with unavailable key is rejected\\n")
    {'secure-boot': '[ 3.2] Loading of module with unavailable key is rejected'}
    >>> module_load_causes("NVRM:  supported through the NVIDIA 580.xx Legacy drivers. Please\\n")
    {'legacy-branch': 'NVRM:  supported through the NVIDIA 580.xx Legacy drivers. Please'}
    >>> module_load_causes("")
    {}
    """
    causes: dict[str, str] = {}
    for line in log.splitlines():
        for cause, pattern in MODULE_LOAD_CAUSES:
            if cause not in causes and pattern.search(line):
                causes[cause] = line.strip()[:200]
    return causes


class InitFailure(NamedTuple):
    """One GPU the driver could not bring up, as the kernel log says it."""

    kind: str  # "rm-init", "gsp-boot", "fell-off-at-probe", "invalid-bar", "probe-failed", "none-initialized"
    pci: str  # "0000:98:00.0", or "" where the line does not name one
    detail: str  # the decoded codes or the count
    line: str


# RmInitAdapter's first code is the stage that failed (rm_init_status in src/nvidia/arch/nvalloc/unix/src/osinit.c),
# the second an NV_STATUS (kernel-open/common/inc/nvstatuscodes.h); the third is a source line number.
RM_INIT_STAGES = {0x20: "allocating the GPU", 0x21: "creating the device", 0x22: "attaching the GPU",
                  0x23: "GPU pre-init", 0x24: "GPU state init", 0x25: "GPU load", 0x30: "VBIOS",
                  0x60: "firmware policy", 0x61: "fetching the GSP firmware", 0x62: "booting the GSP firmware"}
NV_STATUS_NAMES = {0x0F: "NV_ERR_GPU_IS_LOST", 0x1F: "NV_ERR_INVALID_ARGUMENT", 0x40: "NV_ERR_INVALID_STATE",
                   0x56: "NV_ERR_NOT_SUPPORTED", 0x62: "NV_ERR_RESET_REQUIRED", 0x65: "NV_ERR_TIMEOUT"}
_PCI = r"(?P<pci>[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])"
_INIT_FORMS = (
    # osinit.c RmInitAdapter: NV_DEV_PRINTF prefixes "NVRM: GPU <pci>: "
    ("rm-init", re.compile(r"NVRM: GPU " + _PCI + r": RmInitAdapter failed! \((?P<init>0x[0-9a-fA-F]+):"
                           r"(?P<status>0x[0-9a-fA-F]+):(?P<src>\d+)\)")),
    # osinit.c: the GSP firmware did not boot (logged before the RmInitAdapter line of the same GPU)
    ("gsp-boot", re.compile(r"RmInitAdapter: Cannot initialize GSP firmware RM")),
    # osapi.c rm_is_supported_device: the GPU reads back all ones while the driver probes it (no Xid is logged)
    ("fell-off-at-probe", re.compile(r"NVRM: The NVIDIA GPU " + _PCI + _GAP + r"NVRM: \(PCI ID: [0-9a-fA-F]{4}:"
                                     r"[0-9a-fA-F]{4}\) installed in this system has" + _GAP
                                     + r"NVRM: fallen off the bus and is not responding to commands", re.DOTALL)),
    # kernel-open/nvidia/nv-pci.c (nv_pci_validate_bars from 580.65.06, nv_pci_probe before): a BAR the firmware
    # or kernel left unassigned (start or size zero); the probe gives up on the GPU (535.43.02-575.64.05: only
    # for BAR0, other BARs are logged and skipped). The second line names the BAR, its size and the GPU.
    ("invalid-bar", re.compile(r"NVRM: This PCI I/O region assigned to your NVIDIA device is invalid:" + _GAP
                               + r"NVRM: BAR(?P<bar>\d+) is (?P<size>\d+)M @ 0x[0-9a-fA-F]+ \(PCI:" + _PCI + r"\)",
                               re.DOTALL)),
    # kernel-open/nvidia/nv.c: the count of GPUs whose probe failed, and the end of the line when none came up
    ("probe-failed", re.compile(r"NVRM: The NVIDIA probe routine failed for (?P<count>\d+) device\(s\)")),
    ("none-initialized", re.compile(r"NVRM: None of the NVIDIA devices were initialized")),
)


def _probe_failed(log: str, pci: str) -> bool:
    """Whether the kernel logged a failed nvidia probe of this GPU (drivers/base/dd.c; the wording changed in
    Linux 6.x from "nvidia: probe of <pci> failed" to "nvidia <pci>: probe with driver nvidia failed")."""
    address = re.escape(pci)
    return re.search(rf"(?i)nvidia: probe of {address} failed|nvidia {address}: probe with driver nvidia failed",
                     log) is not None


def gpu_init_failures(log: str) -> list[InitFailure]:
    """Every GPU initialisation failure in a kernel log, in log order.

    Sample Content (the driver's format, nv.c and osapi.c; address and PCI ID illustrative)::

        [ 1843.308145] NVRM: The NVIDIA GPU 0000:b3:00.0
                       NVRM: (PCI ID: 10de:26b5) installed in this system has
                       NVRM: fallen off the bus and is not responding to commands.
        [ 1843.439662] NVRM: The NVIDIA probe routine failed for 1 device(s).

    >>> [f[:3] for f in gpu_init_failures("[ 1.3] NVRM: The NVIDIA GPU 0000:b3:00.0\\n               NVRM: "
    ...     "(PCI ID: 10de:26b5) installed in this system has\\n               NVRM: fallen off the bus and is not "
    ...     "responding to commands.\\n[ 1.4] NVRM: The NVIDIA probe routine failed for 1 device(s).\\n")]
    [('fell-off-at-probe', '0000:b3:00.0', 'PCI ID 10de:26b5'), ('probe-failed', '', '1 device(s)')]
    >>> gpu_init_failures("[ 903.6] NVRM: GPU 0000:98:00.0: RmInitAdapter failed! (0x62:0x65:1792)")[0][:3]
    ('rm-init', '0000:98:00.0', 'booting the GSP firmware: NV_ERR_TIMEOUT')
    >>> gpu_init_failures("[ 5.1] NVRM: This PCI I/O region assigned to your NVIDIA device is invalid:\\n"
    ...     "               NVRM: BAR0 is 0M @ 0x0 (PCI:0000:09:00.0)\\n")[0][:3]
    ('invalid-bar', '0000:09:00.0', 'BAR0 0 MiB')
    >>> gpu_init_failures("NVRM: This PCI I/O region assigned to your NVIDIA device is invalid:\\n"
    ...     "NVRM: BAR1 is 0M @ 0x0 (PCI:0009:01:00.1)\\n")  # a BAR the 535-575 drivers skip: the probe went on
    []
    >>> gpu_init_failures("NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  570.158.01")
    []
    """
    found: list[tuple[int, InitFailure]] = []
    for kind, form in _INIT_FORMS:
        for match in form.finditer(log):
            names = match.groupdict()
            pci = (names.get("pci") or "").lower()
            if kind == "rm-init":
                init, status = int(names["init"], 16), int(names["status"], 16)
                detail = (f"{RM_INIT_STAGES.get(init, names['init'])}: "
                          f"{NV_STATUS_NAMES.get(status, names['status'])}")
            elif kind == "fell-off-at-probe":
                pci_id = re.search(r"PCI ID: ([0-9a-fA-F]{4}:[0-9a-fA-F]{4})", match.group(0))
                detail = f"PCI ID {pci_id.group(1).lower()}" if pci_id else ""
            elif kind == "invalid-bar":
                # 535.43.02-575.64.05 log a bad BAR other than BAR0 and carry on (Grace Hopper VFs have zero BARs):
                # such a line counts only where the kernel says the probe of that GPU failed.
                if names["bar"] != "0" and not _probe_failed(log, pci):
                    continue
                detail = f"BAR{names['bar']} {names['size']} MiB"
            elif kind == "probe-failed":
                detail = f"{names['count']} device(s)"
            else:
                detail = ""
            start = log.rfind("\n", 0, match.start()) + 1
            end = log.find("\n", match.start())
            line = log[start:end if end >= 0 else len(log)].strip()[:200]
            found.append((match.start(), InitFailure(kind, pci, detail, line)))
    return [failure for _, failure in sorted(found, key=lambda item: item[0])]


def parse_kernel_config(text: str) -> dict[str, str]:
    """Options of a kernel configuration (.config, /proc/config.gz) with their values; "n" for "is not set".

    >>> parse_kernel_config("CONFIG_BPF_SYSCALL=y\\n# CONFIG_CGROUP_BPF is not set\\nCONFIG_HZ=250\\n# comment\\n")
    {'CONFIG_BPF_SYSCALL': 'y', 'CONFIG_CGROUP_BPF': 'n', 'CONFIG_HZ': '250'}
    """
    options: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("# CONFIG_") and line.endswith(" is not set"):
            options[line[2:-len(" is not set")].strip()] = "n"
        elif line.startswith("CONFIG_") and "=" in line:
            name, _, value = line.partition("=")
            options[name] = value.strip().strip('"')
    return options
