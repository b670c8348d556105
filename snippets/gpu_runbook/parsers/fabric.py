"""Parsers for what NVSwitch hosts say about Fabric Manager: the unit's state, the daemon's version, its log."""

from __future__ import annotations

import re
from typing import NamedTuple, Optional

# NVML's nvmlGpuFabricState_t (nvml.h): where a GPU is in registering with the NVLink fabric.
FABRIC_STATES = {0: "Not Supported", 1: "Not Started", 2: "In Progress", 3: "Completed"}
FABRIC_NOT_SUPPORTED, FABRIC_NOT_STARTED, FABRIC_IN_PROGRESS, FABRIC_COMPLETED = 0, 1, 2, 3


def parse_systemctl_show(output: str) -> dict[str, str]:
    """`systemctl show UNIT --property=...` output ("Key=Value" lines) as a dict.

    Sample Content::

        LoadState=loaded
        ActiveState=failed
        SubState=failed
        Result=exit-code

    >>> parse_systemctl_show("LoadState=not-found\\nActiveState=inactive\\nSubState=dead\\n")
    {'LoadState': 'not-found', 'ActiveState': 'inactive', 'SubState': 'dead'}
    >>> parse_systemctl_show("System has not been booted with systemd as init system (PID 1). Can't operate.\\n")
    {}
    """
    props: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[A-Za-z]+", key):
            props[key] = value.strip()
    return props


def fm_version_from_output(output: str) -> Optional[str]:
    """The first driver-style version (NNN.NN or NNN.NN.NN) that `nv-fabricmanager --version` printed.

    >>> fm_version_from_output("Fabric Manager version is : 570.172.08\\n")
    '570.172.08'
    >>> fm_version_from_output("nv-fabricmanager: command not found") is None
    True
    """
    match = re.search(r"\b(\d{3}\.\d{2,3}(?:\.\d{2,3})?)\b", output)
    return match.group(1) if match else None


class FmMismatch(NamedTuple):
    """Fabric Manager's refusal to start beside a driver of another version."""

    fm_version: str
    driver_version: str
    line: str


# What nv-fabricmanager prints and exits with when its version is not the driver's, as reporters pasted it
# (NVIDIA/gpu-operator#544): "don't", and a typographic apostrophe where the line was copied from a web page.
_FM_MISMATCH = re.compile(r"fabric manager NVIDIA GPU driver interface version (?P<fm>\d+(?:\.\d+)+) "
                          r"do(?:n|esn)[\u2019']t match with driver version (?P<drv>\d+(?:\.\d+)+)")


def fm_mismatches(log: str) -> list[FmMismatch]:
    """Every Fabric Manager version-mismatch line in a log, oldest first.

    >>> fm_mismatches("Jun 28 nv-fabricmanager[3228]: fabric manager NVIDIA GPU driver interface version "
    ...               "530.30.02 don't match with driver version 530.41.03. Please update with matching NVIDIA "
    ...               "driver package.")[0][:2]
    ('530.30.02', '530.41.03')
    >>> fm_mismatches("started NVIDIA fabric manager")
    []
    """
    found = []
    for line in log.splitlines():
        match = _FM_MISMATCH.search(line)
        if match:
            found.append(FmMismatch(match.group("fm"), match.group("drv").rstrip("."), line.strip()[:300]))
    return found


# Other reasons nv-fabricmanager gives for not starting (verbatim from the reports named beside them).
FM_START_FAILURES = (
    # No NVSwitch the daemon can manage: a host without NVSwitches (data-infra/cube-studio#29), or an NVLink5
    # system (HGX B200 and later) whose NVLink Subnet Manager did not start first (siderolabs/extensions#717).
    ("nothing-to-do", re.compile(r"request to query NVSwitch device information from NVSwitch driver failed")),
    # The start script of FM 570.158.01 and later called with the older argument form of four bare paths
    # (NVIDIA/gpu-driver-container#383 changed the call to --mode start --fm-config-file).
    ("start-script-arguments", re.compile(r"Unknown option: \S*fabricmanager\.cfg")),
)


def fm_start_failures(log: str) -> dict[str, str]:
    """Known reasons in a Fabric Manager log: {reason: the first line that shows it}.

    >>> list(fm_start_failures("nv-fabricmanager[4756]: request to query NVSwitch device information from "
    ...                        "NVSwitch driver failed with error:WARNING Nothing to do [NV_WARN_NOTHING_TO_DO]"))
    ['nothing-to-do']
    """
    reasons: dict[str, str] = {}
    for line in log.splitlines():
        for reason, pattern in FM_START_FAILURES:
            if reason not in reasons and pattern.search(line):
                reasons[reason] = line.strip()[:200]
    return reasons

