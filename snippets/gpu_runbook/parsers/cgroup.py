"""Parsers for cgroup facts: /proc/self/cgroup, the cgroup mounts in /proc/self/mountinfo, devices.list."""

from __future__ import annotations

import re
from typing import NamedTuple, Optional

from gpu_runbook.parsers.proc import parse_mountinfo


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Parse /proc/<pid>/cgroup into {controllers: path}; cgroup v2's single line has controllers "".

    Sample Content::

        0::/system.slice/docker-4f1c9a.scope

    >>> parse_proc_cgroup("0::/system.slice/docker-4f1c9a.scope\\n")
    {'': '/system.slice/docker-4f1c9a.scope'}
    >>> parse_proc_cgroup("12:devices:/docker/4f1c9a\\n1:name=systemd:/docker/4f1c9a\\n0::/\\n")["devices"]
    '/docker/4f1c9a'
    >>> parse_proc_cgroup("garbage")
    {}
    """
    result: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) == 3 and parts[0].isdigit():
            result[parts[1]] = parts[2]
    return result


class CgroupMounts(NamedTuple):
    """What /proc/self/mountinfo says about the cgroup file systems."""

    version: str  # "v2" (unified), "v1" (legacy), "hybrid" (v1 controllers plus a v2 tree), "" unknown
    devices_v1: Optional[str]  # mount point of the v1 devices controller, if mounted
    unified: Optional[str]  # mount point of the cgroup2 tree, if mounted


def parse_cgroup_mounts(mountinfo: str) -> CgroupMounts:
    """Find the cgroup mounts in /proc/self/mountinfo (fields after " - " are type, source, options).

    Sample Content::

        35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate

    >>> parse_cgroup_mounts("35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\\n")
    CgroupMounts(version='v2', devices_v1=None, unified='/sys/fs/cgroup')
    >>> parse_cgroup_mounts("40 30 0:35 / /sys/fs/cgroup/devices rw shared:20 - cgroup cgroup rw,devices\\n")
    CgroupMounts(version='v1', devices_v1='/sys/fs/cgroup/devices', unified=None)
    >>> parse_cgroup_mounts("")
    CgroupMounts(version='', devices_v1=None, unified=None)
    """
    devices_v1: Optional[str] = None
    unified: Optional[str] = None
    v1_seen = False
    for mount in parse_mountinfo(mountinfo):
        if mount.fstype == "cgroup2":
            unified = unified or mount.mount_point
        elif mount.fstype == "cgroup":
            v1_seen = True
            if "devices" in mount.options:
                devices_v1 = devices_v1 or mount.mount_point
    if v1_seen and unified:
        version = "hybrid"
    elif v1_seen:
        version = "v1"
    elif unified:
        version = "v2"
    else:
        version = ""
    return CgroupMounts(version, devices_v1, unified)


def cgroup_driver_from_path(path: str) -> str:
    """Guess which cgroup driver placed a process from its cgroup path: "systemd", "cgroupfs" or "".

    systemd names its units *.slice / *.scope; the cgroupfs driver writes plain directories
    (/docker/<id>, /kubepods/burstable/pod<uid>/<id>).

    >>> cgroup_driver_from_path("/kubepods.slice/kubepods-burstable.slice/cri-containerd-1a2b.scope")
    'systemd'
    >>> cgroup_driver_from_path("/docker/4f1c9a0b2c")
    'cgroupfs'
    >>> cgroup_driver_from_path("/")
    ''
    """
    if re.search(r"\.(slice|scope)(/|$)", path):
        return "systemd"
    if re.search(r"^/(docker|kubepods|libpod_parent|machine)/|^/[0-9a-f]{12,}$", path):
        return "cgroupfs"
    return ""


class DeviceRule(NamedTuple):
    """One line of a cgroup v1 devices.list: type (a, c, b), major, minor ("*" = any), access (rwm)."""

    kind: str
    major: str
    minor: str
    access: str


def parse_devices_list(text: str) -> list[DeviceRule]:
    """Parse a cgroup v1 devices.list ("c 195:* rwm" per line; "a *:* rwm" allows everything).

    Sample Content::

        c 1:5 rwm
        c 195:* rwm
        c 508:* rwm

    >>> [tuple(r) for r in parse_devices_list("c 195:* rwm\\na *:* rwm\\nnonsense\\n")]
    [('c', '195', '*', 'rwm'), ('a', '*', '*', 'rwm')]
    """
    rules: list[DeviceRule] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[0] not in ("a", "b", "c") or ":" not in parts[1]:
            continue
        major, _, minor = parts[1].partition(":")
        rules.append(DeviceRule(parts[0], major, minor, parts[2]))
    return rules


def devices_list_allows(rules: list[DeviceRule], major: int, minor: int, access: str = "rw") -> bool:
    """Whether a v1 devices.list grants `access` to character device major:minor.

    >>> rules = parse_devices_list("c 195:* rwm\\nc 508:0 rw\\n")
    >>> devices_list_allows(rules, 195, 255), devices_list_allows(rules, 508, 1)
    (True, False)
    """
    for rule in rules:
        if rule.kind not in ("a", "c"):
            continue
        if rule.major not in ("*", str(major)) or rule.minor not in ("*", str(minor)):
            continue
        if all(ch in rule.access for ch in access):
            return True
    return False
