"""Parsers for the kernel's /proc files that describe the NVIDIA driver."""

from __future__ import annotations

import re
from typing import NamedTuple, Optional


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
        if section and len(parts) == 2 and parts[0].isdigit():
            # A name may repeat (several majors); the first is the one the driver registered first.
            result[section].setdefault(parts[1], int(parts[0]))
    return result


def nvidia_char_majors(devices: dict[str, dict[str, int]]) -> dict[str, int]:
    """The NVIDIA entries among the character majors (nvidia-frontend or nvidia, nvidia-uvm, ...).

    >>> nvidia_char_majors({"char": {"mem": 1, "nvidia-frontend": 195, "nvidia-uvm": 507}, "block": {}})
    {'nvidia-frontend': 195, 'nvidia-uvm': 507}
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

    >>> parse_driver_params("ModifyDeviceFiles: 1\\nDeviceFileUID: 0\\nDeviceFileGID: 0\\nDeviceFileMode: 438\\n")
    {'ModifyDeviceFiles': '1', 'DeviceFileUID': '0', 'DeviceFileGID': '0', 'DeviceFileMode': '438'}
    """
    params: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() and " " not in key.strip():
            params[key.strip()] = value.strip().strip('"')
    return params


def parse_proc_modules(text: str) -> dict[str, dict[str, object]]:
    """Parse /proc/modules into {module: {"size": int, "refcount": int, "used_by": [...], "state": str}}.

    >>> parse_proc_modules("nvidia_uvm 2076672 0 - Live 0x0000000000000000 (POE)\\n"
    ...                    "nvidia 104071168 20 nvidia_uvm,nvidia_modeset, Live 0x0000000000000000 (POE)\\n")["nvidia"]
    {'size': 104071168, 'refcount': 20, 'used_by': ['nvidia_uvm', 'nvidia_modeset'], 'state': 'Live', 'taints': 'POE'}
    """
    modules: dict[str, dict[str, object]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 5 or not parts[1].isdigit():
            continue
        used_by: list[str] = [m for m in parts[3].split(",") if m and m != "-"]
        taints = ""
        if len(parts) >= 7 and parts[6].startswith("("):
            taints = parts[6].strip("()")
        modules[parts[0]] = {
            "size": int(parts[1]),
            "refcount": int(parts[2]) if parts[2].lstrip("-").isdigit() else -1,
            "used_by": used_by,
            "state": parts[4],
            "taints": taints,
        }
    return modules
