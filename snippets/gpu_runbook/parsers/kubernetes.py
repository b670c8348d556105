"""Parsers for what a Kubernetes GPU node keeps on disk and in its kernel log: Xid lines, the kubelet's
device checkpoint, and GPU feature discovery's label file."""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple, Optional

# The driver prints (open-gpu-kernel-modules, src/nvidia/src/kernel/gpu/rc/kernel_rc.c):
#   NVRM: Xid (PCI:%04x:%02x:%02x): %d, pid=%s, name=%s, <message>
# and on a MIG GPU the parenthesis also carries " GPU-I:%02u" and " GPU-CI:%02u".
_XID_LINE = re.compile(r"NVRM: Xid \((?:PCI:)?(?P<pci>[0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2})[^)]*\):"
                       r" ?(?P<code>\d{1,4}),? ?(?P<rest>[^\n]*)")
# Xid 154 names the recovery the driver now wants, e.g.
# "GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)".
_RECOVERY = re.compile(r"recovery action changed from \S+ \(([^)]*)\) to \S+ \(([^)]*)\)")


class XidEvent(NamedTuple):
    """One NVRM Xid line from the kernel log."""

    pci: str
    code: int
    message: str
    line: str


def parse_xid_lines(text: str) -> list[XidEvent]:
    """Every NVRM Xid line in kernel-log text (dmesg, journalctl -k, /var/log/kern.log), in order.

    Sample Content::

        [ 5713.206163] NVRM: Xid (PCI:0000:2b:00): 79, GPU has fallen off the bus.
        [ 5713.206171] NVRM: GPU 0000:2b:00.0: GPU has fallen off the bus.

    >>> [(e.pci, e.code) for e in parse_xid_lines(
    ...     "[ 5713.2] NVRM: Xid (PCI:0000:2b:00): 79, GPU has fallen off the bus.\\n"
    ...     "[ 5713.3] NVRM: GPU 0000:2b:00.0: GPU has fallen off the bus.\\n")]
    [('0000:2b:00', 79)]
    >>> parse_xid_lines("NVRM: Xid (PCI:0000:01:00 GPU-I:02): 13, pid=42, name=python, Graphics Exception")[0].code
    13
    """
    events = []
    for match in _XID_LINE.finditer(text or ""):
        line_start = text.rfind("\n", 0, match.start()) + 1
        line_end = text.find("\n", match.start())
        line = text[line_start: line_end if line_end != -1 else len(text)].strip()
        events.append(XidEvent(match.group("pci").lower(), int(match.group("code")),
                               match.group("rest").strip(), line[:300]))
    return events


def xid_recovery_action(message: str) -> Optional[str]:
    """The recovery action an Xid 154 message names ("GPU Reset Required", "None"), or None.

    >>> xid_recovery_action("GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)")
    'GPU Reset Required'
    >>> xid_recovery_action("pid=12, name=python, Graphics Exception") is None
    True
    """
    match = _RECOVERY.search(message or "")
    return match.group(2).strip() if match else None


def parse_device_checkpoint(text: str) -> Optional[dict[str, list[str]]]:
    """RegisteredDevices from the kubelet's /var/lib/kubelet/device-plugins/kubelet_internal_checkpoint:
    {resource name: [device ids]}; None when the text is not such a checkpoint.

    Sample Content::

        {"Data":{"PodDeviceEntries":null,"RegisteredDevices":{"nvidia.com/gpu":
         ["GPU-ad63c684-5593-111a-cbb1-c1451ebcd0aa"]}},"Checksum":3364951114}

    >>> parse_device_checkpoint('{"Data":{"PodDeviceEntries":null,"RegisteredDevices":'
    ...                         '{"nvidia.com/gpu":["GPU-1::0","GPU-1::1"]}},"Checksum":1}')
    {'nvidia.com/gpu': ['GPU-1::0', 'GPU-1::1']}
    >>> parse_device_checkpoint("[1, 2]") is None
    True
    """
    try:
        data: Any = json.loads(text)
    except (ValueError, RecursionError):
        return None
    inner = data.get("Data") if isinstance(data, dict) else None
    devices = inner.get("RegisteredDevices") if isinstance(inner, dict) else None
    if devices is None and isinstance(inner, dict):
        return {}
    if not isinstance(devices, dict):
        return None
    return {str(name): [str(i) for i in ids] if isinstance(ids, list) else []
            for name, ids in devices.items()}


def split_replica_id(device_id: str) -> tuple[str, Optional[int]]:
    """Split a device plugin ID "GPU-<uuid>::<replica>" (time-slicing, MPS) into the GPU ID and replica.

    >>> split_replica_id("GPU-8e8f2b4c::3")
    ('GPU-8e8f2b4c', 3)
    >>> split_replica_id("GPU-8e8f2b4c")
    ('GPU-8e8f2b4c', None)
    """
    base, sep, replica = device_id.partition("::")
    if not sep:
        return device_id, None
    return base, int(replica) if replica.isascii() and replica.isdigit() else None


def parse_feature_labels(text: str) -> dict[str, str]:
    """An NFD local-source feature file (GPU feature discovery before v0.19.0, or with
    --use-node-feature-api=false, writes /etc/kubernetes/node-feature-discovery/features.d/gfd): one
    `name=value` label per line.

    Sample Content::

        nvidia.com/gfd.timestamp=1633385165
        nvidia.com/cuda.driver.major=460
        nvidia.com/gpu.count=16

    >>> parse_feature_labels("nvidia.com/gfd.timestamp=1633385165\\n# comment\\nnvidia.com/gpu.count=16\\nflag\\n")
    {'nvidia.com/gfd.timestamp': '1633385165', 'nvidia.com/gpu.count': '16', 'flag': 'true'}
    """
    labels: dict[str, str] = {}
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        # NFD: a name without "=" is a boolean feature set to "true".
        labels[name.strip()] = value.strip() if sep else "true"
    return labels


def label_driver_version(labels: dict[str, str]) -> Optional[str]:
    """The driver version GFD labelled ("580.159.04"): cuda.driver-version.full, else the deprecated
    cuda.driver.major/minor/rev (GFD still writes both at v0.20.0, internal/lm/nvml.go), or None.

    >>> label_driver_version({"nvidia.com/cuda.driver.major": "535", "nvidia.com/cuda.driver.minor": "129",
    ...                       "nvidia.com/cuda.driver.rev": "03"})
    '535.129.03'
    >>> label_driver_version({"nvidia.com/cuda.driver.major": "455", "nvidia.com/cuda.driver.minor": "06",
    ...                       "nvidia.com/cuda.driver.rev": ""})
    '455.06'
    >>> label_driver_version({"nvidia.com/cuda.driver-version.full": "580.159.04"})
    '580.159.04'
    """
    full = (labels.get("nvidia.com/cuda.driver-version.full") or "").strip()
    if full:
        return full
    major = labels.get("nvidia.com/cuda.driver.major")
    minor = labels.get("nvidia.com/cuda.driver.minor")
    if not major or minor is None:
        return None
    rev = labels.get("nvidia.com/cuda.driver.rev") or ""
    return ".".join(p for p in (major, minor, rev) if p)
