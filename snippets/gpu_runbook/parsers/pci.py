"""Parsers for PCI facts from sysfs: class codes, sysfs device paths, config-space capabilities, ACS bits.

Layouts follow the PCI Express Base Specification and Linux include/uapi/linux/pci_regs.h: extended
capabilities start at offset 0x100 of the 4096-byte config space; each header is a 32-bit word holding
the capability id (bits 15:0), its version (19:16) and the next offset (31:20). The ACS capability
(id 0x000D) holds the ACS Capability register at +4 and the ACS Control register at +6, 16 bits each.
"""

from __future__ import annotations

import re
from typing import Any, Optional

NVIDIA_VENDOR = 0x10DE
MELLANOX_VENDOR = 0x15B3  # Mellanox / NVIDIA Networking ConnectX and BlueField functions
# Bridges a hypervisor emulates: QEMU/KVM's pcie-root-port and pci-bridge (Red Hat, Inc. 0x1b36), VMware's
# PCI Express root ports (0x15ad), Hyper-V (0x1414). Their ACS registers describe the guest, not the host.
VIRTUAL_BRIDGE_VENDORS = (0x1B36, 0x15AD, 0x1414)

EXT_CAP_START = 0x100
EXT_CAP_ID_ACS = 0x000D
# pci_regs.h: PCI_ACS_CAP 0x04, PCI_ACS_CTRL 0x06, and the bits both registers share.
ACS_CAP_OFFSET = 0x04
ACS_CTRL_OFFSET = 0x06
ACS_BITS: dict[str, int] = {
    "SrcValid": 0x0001,  # PCI_ACS_SV: Source Validation
    "TransBlk": 0x0002,  # PCI_ACS_TB: Translation Blocking
    "ReqRedir": 0x0004,  # PCI_ACS_RR: P2P Request Redirect
    "CmpltRedir": 0x0008,  # PCI_ACS_CR: P2P Completion Redirect
    "UpstreamFwd": 0x0010,  # PCI_ACS_UF: Upstream Forwarding
    "EgressCtrl": 0x0020,  # PCI_ACS_EC: P2P Egress Control
    "DirectTrans": 0x0040,  # PCI_ACS_DT: Direct Translated P2P
}
# The bits whose control setting sends peer-to-peer traffic up to the root complex instead of across
# the switch: Request Redirect and Completion Redirect (Egress Control can block or redirect per port).
ACS_REDIRECT_BITS = ("ReqRedir", "CmpltRedir", "EgressCtrl")

_BDF = re.compile(r"^[0-9a-f]{4,}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")


def is_bdf(name: str) -> bool:
    """Whether a sysfs name is a PCI address (domain:bus:device.function).

    >>> is_bdf("0000:3b:00.0"), is_bdf("pci0000:3a"), is_bdf("10de:00:00.0")
    (True, False, True)
    """
    return bool(_BDF.match(name.lower()))


def sysfs_chain(link_target: str) -> list[str]:
    """The PCI addresses on a device's sysfs path, root port first, the device itself last.

    /sys/bus/pci/devices/<bdf> is a link into /sys/devices, whose path walks the hierarchy: each
    bridge (root port, switch upstream and downstream port) is a directory above the function.

    >>> sysfs_chain("../../../devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0/0000:3c:08.0/0000:3d:00.0")
    ['0000:3a:00.0', '0000:3b:00.0', '0000:3c:08.0', '0000:3d:00.0']
    >>> sysfs_chain("../../../devices/pci0000:00/0000:00:05.0")
    ['0000:00:05.0']
    """
    return [part for part in link_target.split("/") if is_bdf(part)]


def host_bridge(link_target: str) -> Optional[str]:
    """The root complex a device hangs from (the sysfs "pciDDDD:BB" directory), if the path names one.

    >>> host_bridge("../../../devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0")
    'pci0000:3a'
    """
    for part in link_target.split("/"):
        if part.startswith("pci") and is_bdf(part[3:] + ":00.0"):
            return part
    return None


def parse_hex(text: Optional[str]) -> Optional[int]:
    """A sysfs hex attribute ("0x10de\\n") as an int; None when it is not one.

    >>> parse_hex("0x10de\\n"), parse_hex("bogus"), parse_hex(None)
    (4318, None, None)
    """
    if not isinstance(text, str):
        return None
    try:
        return int(text.strip(), 16)
    except ValueError:
        return None


def is_function(function: Any, kind: str, vendor: int = NVIDIA_VENDOR) -> bool:
    """Whether a `pci_functions` entry is of this kind ("gpu", "nvswitch", "network", ...) and vendor.

    >>> is_function({"kind": "gpu", "vendor": "0x10de"}, "gpu"), is_function({"kind": "gpu", "vendor": "0x1af4"}, "gpu")
    (True, False)
    """
    return isinstance(function, dict) and function.get("kind") == kind and parse_hex(function.get("vendor")) == vendor


def class_kind(pci_class: Optional[int]) -> str:
    """What a 24-bit PCI class code (base, sub-class, prog-if) says a function is.

    NVIDIA GPUs are 0x0300xx (VGA) or 0x0302xx (3D controller); NVSwitch is 0x068000 (bridge, other);
    the HDMI audio function of a GPU is 0x0403xx.

    >>> [class_kind(c) for c in (0x030200, 0x030000, 0x068000, 0x040300, 0x060400, 0x020700, None)]
    ['gpu', 'gpu', 'nvswitch', 'audio', 'pci-bridge', 'network', 'unknown']
    """
    if pci_class is None:
        return "unknown"
    base, sub = pci_class >> 16, (pci_class >> 8) & 0xFF
    if base == 0x03 and sub in (0x00, 0x02):
        return "gpu"
    if base == 0x06 and sub == 0x04:
        return "pci-bridge"
    if base == 0x06 and sub == 0x80:
        return "nvswitch"
    if base == 0x06:
        return "bridge"
    if base == 0x04 and sub == 0x03:
        return "audio"
    if base == 0x02:
        return "network"
    if base == 0x0C and sub == 0x06:  # serial bus, InfiniBand
        return "network"
    return "other"


def ext_capabilities(config: bytes, limit: int = 128) -> dict[int, int]:
    """Extended capability id -> offset, walking the list from 0x100 (bounded against loops).

    An empty dict when the config space is shorter than 0x104 bytes (the 64 or 256 bytes a non-root
    reader gets) or the device has no extended capabilities.

    >>> cfg = bytearray(4096)
    >>> cfg[0x100:0x104] = (0x0001 | 1 << 16 | 0x148 << 20).to_bytes(4, "little")  # AER, next 0x148
    >>> cfg[0x148:0x14c] = (0x000D | 1 << 16).to_bytes(4, "little")                # ACS, last
    >>> ext_capabilities(bytes(cfg))
    {1: 256, 13: 328}
    >>> ext_capabilities(bytes(64))
    {}
    """
    caps: dict[int, int] = {}
    offset = EXT_CAP_START
    seen: set[int] = set()
    while offset >= EXT_CAP_START and offset + 4 <= len(config) and offset not in seen and len(caps) < limit:
        seen.add(offset)
        header = int.from_bytes(config[offset:offset + 4], "little")
        if header in (0, 0xFFFFFFFF):
            break
        caps.setdefault(header & 0xFFFF, offset)
        offset = (header >> 20) & 0xFFC
    return caps


def acs_registers(config: bytes) -> Optional[dict[str, int]]:
    """The ACS capability's offset and its Capability and Control registers; None when it has none.

    >>> cfg = bytearray(4096)
    >>> cfg[0x100:0x104] = (0x000D | 1 << 16).to_bytes(4, "little")
    >>> cfg[0x104:0x108] = (0x005F | 0x001D << 16).to_bytes(4, "little")  # capability, control
    >>> acs_registers(bytes(cfg))
    {'offset': 256, 'capability': 95, 'control': 29}
    """
    offset = ext_capabilities(config).get(EXT_CAP_ID_ACS)
    if offset is None or offset + 8 > len(config):
        return None
    return {"offset": offset,
            "capability": int.from_bytes(config[offset + ACS_CAP_OFFSET:offset + ACS_CAP_OFFSET + 2], "little"),
            "control": int.from_bytes(config[offset + ACS_CTRL_OFFSET:offset + ACS_CTRL_OFFSET + 2], "little")}


def decode_acs(register: int) -> dict[str, bool]:
    """ACS capability or control bits by the names `lspci -vvv` prints (ACSCap:/ACSCtl:).

    >>> decode_acs(0x001D)
    {'SrcValid': True, 'TransBlk': False, 'ReqRedir': True, 'CmpltRedir': True, 'UpstreamFwd': True, \
'EgressCtrl': False, 'DirectTrans': False}
    """
    return {name: bool(register & bit) for name, bit in ACS_BITS.items()}


def lspci_acsctl(register: int) -> str:
    """The control register as lspci prints it, to compare with `lspci -vvv | grep ACSCtl`.

    >>> lspci_acsctl(0x001D)
    'SrcValid+ TransBlk- ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans-'
    """
    return " ".join(f"{name}{'+' if on else '-'}" for name, on in decode_acs(register).items())


def redirecting(control: Any) -> list[str]:
    """The redirect bits set in an ACS control value (empty: peer traffic may go straight across).

    >>> redirecting(0x001D), redirecting(0x0000), redirecting("junk")
    (['ReqRedir', 'CmpltRedir'], [], [])
    """
    if not isinstance(control, int) or isinstance(control, bool):
        return []
    return [name for name in ACS_REDIRECT_BITS if control & ACS_BITS[name]]


def normalize_bdf(bus_id: Any) -> Optional[str]:
    """A PCI address in sysfs form (4-digit domain, lower case), to match NVML's and nvidia-smi's bus ids
    (8-digit domain, upper case) with the PCI walk; None when it is not an address.

    >>> normalize_bdf("00000000:3B:00.0"), normalize_bdf("0000:3b:00.0"), normalize_bdf("3B:00.0"), normalize_bdf(7)
    ('0000:3b:00.0', '0000:3b:00.0', '0000:3b:00.0', None)
    """
    if not isinstance(bus_id, str):
        return None
    parts = bus_id.strip().lower().split(":")
    if len(parts) == 2:
        parts = ["0", *parts]
    if len(parts) != 3:
        return None
    try:
        domain = int(parts[0], 16)
    except ValueError:
        return None
    address = f"{domain:04x}:{parts[1]}:{parts[2]}"
    return address if is_bdf(address) else None
