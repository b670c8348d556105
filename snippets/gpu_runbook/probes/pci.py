"""Read-only walk of the PCI bus in sysfs: NVIDIA and Mellanox functions and the bridges above them.

What it records goes to the snapshot's ``pci`` section, keyed by host path:

- ``"/sys/bus/pci/devices"``: ``{"count": int, "truncated": bool}`` (functions listed), or ``{"error": ...}``
- ``"/sys/bus/pci/devices/<bdf>"``: one kept function (NVIDIA vendor 0x10de, Mellanox 0x15b3, and every
  bridge on their sysfs paths)::

      {"vendor": "0x10de", "device": "0x2330", "class": "0x030200",
       "link": "../../../devices/pci0000:3a/0000:3a:00.0/0000:3b:00.0",  # the sysfs link target
       "driver": "nvidia" | null, "iommu_group": "25" | null, "iommu_group_type": "DMA-FQ" | null,
       "numa_node": "0", "current_link_speed": "32.0 GT/s PCIe", "current_link_width": "16",
       "max_link_speed": ..., "max_link_width": ...,
       # bridges only: what their config space says about ACS
       "config_bytes": 4096, "ext_caps": [1, 13, ...], "acs": {"offset": 328, "capability": 95, "control": 29} | null}

  A value that could not be read is left out; an attribute read error is kept under ``"errors"``
  ({name: errno}); a function whose reads did not return before the deadline is ``{"error": "timeout"}``.

Config space: the kernel gives 4096 bytes only to a reader with CAP_SYS_ADMIN and 64 to anyone else,
so as non-root ``config_bytes`` is 64, ``acs`` is absent and the checks say "needs root" instead of
guessing. Only the ACS registers and the list of extended capability ids are kept: the rest of config
space holds device serial numbers (the DSN capability), which a snapshot must not carry. As with
`lspci -vvv`, the kernel may briefly resume a runtime-suspended bridge to answer a config-space read; nothing is
written.

The derived fact built on this section is ``pci_functions`` (checks/pcie.py): a list, in bus order, of
``{"bdf", "vendor", "device", "class", "kind" ("gpu" | "nvswitch" | "audio" | "network" | "pci-bridge" |
"bridge" | "other"), "driver", "iommu_group", "iommu_group_type", "numa_node", "host_bridge",
"upstream": [bridge bdfs, root port first], "link": {...}}`` for the NVIDIA and Mellanox functions. Addresses are
in sysfs form (``0000:3b:00.0``); ``parsers.pci.normalize_bdf`` turns NVML's ``00000000:3B:00.0`` into it.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

from gpu_runbook.parsers.pci import EXT_CAP_START, acs_registers, class_kind, ext_capabilities, parse_hex, sysfs_chain
from gpu_runbook.probes import plan
from gpu_runbook.probes.host import _err, host_path

Record = Callable[[str, Any], None]
Progress = Callable[[str], None]


def _read_small(root: str, path: str, limit: int = 256) -> tuple[Optional[str], Optional[str]]:
    """Text of a small sysfs attribute, or (None, errno name)."""
    try:
        fd = os.open(host_path(root, path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        return None, _err(exc)["error"]
    try:
        data = os.read(fd, limit)
    except OSError as exc:
        return None, _err(exc)["error"]
    finally:
        os.close(fd)
    return data.decode("ascii", errors="replace").strip(), None


def _read_config(root: str, path: str) -> tuple[Optional[bytes], Optional[str]]:
    """Config space as the kernel lets this process read it (4096 bytes as root, 64 otherwise)."""
    try:
        fd = os.open(host_path(root, path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        return None, _err(exc)["error"]
    try:
        chunks = []
        remaining = plan.PCI_CONFIG_BYTES
        while remaining > 0:
            chunk = os.read(fd, remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks), None
    except OSError as exc:
        return None, _err(exc)["error"]
    finally:
        os.close(fd)


def _link_name(root: str, path: str) -> tuple[Optional[str], Optional[str]]:
    """The last component of a sysfs link's target (driver name, iommu group number)."""
    try:
        return os.path.basename(os.readlink(host_path(root, path, follow=False))), None
    except OSError as exc:
        return None, _err(exc)["error"]


def _function(root: str, bdf: str, link: Optional[str]) -> dict[str, Any]:
    base = f"{plan.PCI_DEVICES}/{bdf}"
    fact: dict[str, Any] = {"link": link}
    errors: dict[str, str] = {}
    for name in plan.PCI_ATTRS:
        value, error = _read_small(root, f"{base}/{name}")
        if value is not None:
            fact[name] = value
        elif error != "ENOENT":
            errors[name] = error or "EIO"
    for name in plan.PCI_LINKS:
        value, error = _link_name(root, f"{base}/{name}")
        fact[name] = value
        if error not in (None, "ENOENT"):
            errors[name] = error or "EIO"
    if fact.get("iommu_group") is not None:
        value, error = _read_small(root, f"{base}/{plan.PCI_IOMMU_GROUP_TYPE}")
        fact["iommu_group_type"] = value
        if error not in (None, "ENOENT"):
            errors["iommu_group_type"] = error or "EIO"
    if class_kind(parse_hex(fact.get("class"))) == "pci-bridge":
        # Root ports and switch ports (of any vendor: Grace's root ports are NVIDIA's): their ACS controls
        # where peer-to-peer traffic between the functions below them goes.
        config, error = _read_config(root, f"{base}/config")
        if config is None:
            errors["config"] = error or "EIO"
        else:
            fact["config_bytes"] = len(config)
            if len(config) >= EXT_CAP_START:
                # A full read (4096 bytes, or 256 for a function without extended config space, which then has
                # no ACS) says whether ACS is there; the 64 bytes a non-root reader gets say nothing either way.
                fact["ext_caps"] = sorted(ext_capabilities(config))
                fact["acs"] = acs_registers(config)
    if errors:
        fact["errors"] = errors
    return fact


def probe_pci(root: str, record: Record, progress: Optional[Progress] = None) -> None:
    """Walk /sys/bus/pci/devices under root, recording the kept functions one by one.

    Recording as it goes lets a caller with a deadline keep what was read before a stuck read;
    `progress` is told each path before it is read, so that the stuck one can be named.
    """
    def at(path: str) -> None:
        if progress is not None:
            progress(path)

    at(plan.PCI_DEVICES)
    try:
        names = sorted(os.listdir(host_path(root, plan.PCI_DEVICES)))
    except OSError as exc:
        record(plan.PCI_DEVICES, _err(exc))
        return
    listed = names[:plan.PCI_MAX_LISTED]
    record(plan.PCI_DEVICES, {"count": len(names), "truncated": len(names) > len(listed)})
    links: dict[str, Optional[str]] = {}
    wanted: list[str] = []
    for bdf in listed:
        path = f"{plan.PCI_DEVICES}/{bdf}"
        at(path)
        vendor = parse_hex(_read_small(root, f"{path}/vendor")[0])
        if vendor in plan.PCI_KEEP_VENDORS:
            wanted.append(bdf)
            links[bdf] = _link_name_full(root, path)
    bridges: list[str] = []
    for bdf in wanted:
        for upstream in sysfs_chain(links[bdf] or "")[:-1]:
            if upstream not in bridges and upstream not in wanted:
                bridges.append(upstream)
    kept = 0
    for bdf in wanted + bridges:
        if kept >= plan.PCI_MAX_KEPT:
            record(plan.PCI_DEVICES, {"count": len(names), "truncated": True,
                                      "detail": f"kept the first {plan.PCI_MAX_KEPT} functions"})
            break
        path = f"{plan.PCI_DEVICES}/{bdf}"
        at(path)
        link = links.get(bdf) if bdf in links else _link_name_full(root, path)
        record(path, _function(root, bdf, link))
        kept += 1


def _link_name_full(root: str, path: str) -> Optional[str]:
    try:
        return os.readlink(host_path(root, path, follow=False))
    except OSError:
        return None
